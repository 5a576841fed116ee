"""The settings every export command shares (`dnnzoo export`, `dnnzoo build`): their flags, defaults
and checks. Plain Python, so `--help` loads no torch, and the converter reads its default opset here."""

from __future__ import annotations

import argparse
from pathlib import Path

from dnnzoo.errors import UserError

DEFAULT_OPSET = 17
OPSETS = range(13, 21)  # Unsqueeze/ReduceSum with axes inputs need 13; torch's TorchScript exporter stops at 20
INSTANCE_KINDS = ("auto", "cpu", "gpu")  # export.config maps each to a ModelInstanceGroup kind


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repository", type=Path, required=True, metavar="DIR", help="model repository to write into")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, 13 to 20 (default {DEFAULT_OPSET})")
    parser.add_argument("--force", action="store_true", help="export: replace an existing version; build: retrain every family (even a finished run) and export each again")
    parser.add_argument("--instance-kind", choices=INSTANCE_KINDS, default="auto",
                        help="instance_group kind in config.pbtxt (auto: a GPU when the server has one)")  # fmt: skip
    parser.add_argument("--precision", default="fp32", metavar="LIST",
                        help="fp32, fp16, int8, comma-separated (default fp32): fp16 and int8 write NAME_fp16 / NAME_int8, "
                             "judged on the run's held-out data against FP32")  # fmt: skip
    parser.add_argument("--allow-degraded", action="store_true",
                        help="write a reduced-precision variant that loses more than its family's tolerance")


def check_opset(opset: int) -> None:
    if opset not in OPSETS:
        raise UserError(f"--opset {opset} is unsupported: the graphs need 13 or later, torch's TorchScript exporter writes at most 20")
