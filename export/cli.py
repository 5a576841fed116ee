"""`dnnzoo export RUN_DIR --repository DIR`: one training run into a Triton-compatible model repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dnnzoo.errors import UserError
from dnnzoo.openmp import passive_wait
from export.options import add_export_arguments, check_opset


def describe(exported) -> str:
    size = exported.bytes / 1024
    checked = getattr(exported, "judged", "") or f"parity max |diff| {exported.parity_max_abs_diff:.2g}"
    return f"{exported.name} v{exported.version} ({exported.task}) -> {exported.path} ({size:.1f} KiB, {checked})"


def main(argv: list[str], prog: str = "dnnzoo export") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Export a training run to ONNX in a model repository, parity-checked.")
    parser.add_argument("run", type=Path, metavar="RUN_DIR", help="training run folder (checkpoint.pt, metrics.json)")
    parser.add_argument("--name", help="model name (default: the family's, e.g. digits_classifier)")
    parser.add_argument("--version", type=int, help="version number (default: the next free one)")
    add_export_arguments(parser)
    args = parser.parse_args(argv)
    passive_wait()  # before torch loads: no spinning on a shared CPU
    try:
        check_opset(args.opset)
        from export.precision_variants import parse
        from export.pipeline import export_run

        exported = export_run(args.run, args.repository, args.name, args.version, args.opset, args.force, args.instance_kind,
                              parse(args.precision), args.allow_degraded)  # fmt: skip
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    for item in exported:
        print(describe(item))
    return 0
