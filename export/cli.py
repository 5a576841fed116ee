"""`dnnzoo export RUN_DIR --repository DIR`: one training run into a Triton-compatible model repository."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dnnzoo.errors import UserError

DEFAULT_OPSET = 17  # export.convert.DEFAULT_OPSET, repeated so --help needs no torch
OPSETS = range(13, 21)  # Unsqueeze/ReduceSum with axes inputs need 13; torch's TorchScript exporter stops at 20


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repository", type=Path, required=True, metavar="DIR", help="model repository to write into")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, 13 to 20 (default {DEFAULT_OPSET})")
    parser.add_argument("--force", action="store_true", help="export: replace an existing version; build: re-export models already up to date")
    parser.add_argument("--instance-kind", choices=("auto", "cpu", "gpu"), default="auto",
                        help="instance_group kind in config.pbtxt (auto: a GPU when the server has one)")  # fmt: skip
    parser.add_argument("--precision", default="fp32", metavar="LIST",
                        help="fp32, fp16, int8, comma-separated (default fp32): fp16 and int8 write NAME_fp16 / NAME_int8, "
                             "judged on the run's held-out data against FP32")  # fmt: skip
    parser.add_argument("--allow-degraded", action="store_true",
                        help="write a reduced-precision variant that loses more than its family's tolerance")


def describe(exported) -> str:
    size = exported.bytes / 1024
    checked = getattr(exported, "judged", "") or f"parity max |diff| {exported.parity_max_abs_diff:.2g}"
    return f"{exported.name} v{exported.version} ({exported.task}) -> {exported.path} ({size:.1f} KiB, {checked})"


def check_opset(opset: int) -> None:
    if opset not in OPSETS:
        raise UserError(f"--opset {opset} is unsupported: the graphs need 13 or later, torch's TorchScript exporter writes at most 20")


def main(argv: list[str], prog: str = "dnnzoo export") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Export a training run to ONNX in a model repository, parity-checked.")
    parser.add_argument("run", type=Path, metavar="RUN_DIR", help="training run folder (checkpoint.pt, metrics.json)")
    parser.add_argument("--name", help="model name (default: the family's, e.g. digits_classifier)")
    parser.add_argument("--version", type=int, help="version number (default: the next free one)")
    add_export_arguments(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: no spinning on a shared CPU
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
