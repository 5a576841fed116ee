"""`dnnzoo repo check DIR`: validate a model repository without serving it (one line per model)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dnnzoo.errors import UserError


def main(argv: list[str], prog: str = "dnnzoo repo") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Check a model repository without serving it.")
    actions = parser.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="configs parse, graphs match configs, side files exist")
    check.add_argument("repository", type=Path, metavar="DIR")
    check.add_argument("--report", action="store_true", help="also print each model's precision figures (held-out metric, size, CPU latency)")
    args = parser.parse_args(argv)

    from export.check import check_repository

    try:
        results = check_repository(args.repository)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if not results:
        print(f"{prog}: error: {args.repository} holds no model folders", file=sys.stderr)
        return 1
    width = max(len(r.name) for r in results)
    for result in results:
        print(result.line(width))
    if args.report:
        from export.check import read_configs
        from export.precision import report_table

        print(report_table(read_configs(args.repository)))
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} of {len(results)} models ok")
    return 1 if failed else 0
