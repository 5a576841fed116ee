"""`dnnzoo train FAMILY [flags]`: common technique flags plus the family's own."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from dnnzoo.errors import UserError
from dnnzoo.openmp import passive_wait
from training import config as cfg
from training import distributed, resume, scale
from training.families import FAMILIES, refuse_unsupported
from training.precision import PRECISIONS


def _bool_flag(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    parser.add_argument(f"--{name}", dest=name.replace("-", "_"), action=argparse.BooleanOptionalAction, default=None, help=help)


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions, got {text!r}") from None
    if not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError("milestones are fractions of the run, each between 0 and 1")
    return values


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The shared flags. Technique flags default to None (TrainConfig holds the real defaults), so
    `parse` can tell a flag the user gave from one left out and refuse one the family never applies."""
    run = parser.add_argument_group("run")
    run.add_argument("--profile", choices=cfg.PROFILES, default="quick", help="tiny (seconds, tests), quick (this CPU), full (a GPU)")
    run.add_argument("--out", type=Path, help="run folder (default runs/FAMILY-PROFILE)")
    run.add_argument("--data", type=Path, help="user data instead of the embedded default")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument("--seed", type=int, default=42)
    run.add_argument("--threads", type=int, help="torch intra-op threads (default: PyTorch's choice)")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    run.add_argument("--precision", choices=PRECISIONS, help="autocast dtype of the training step (fp32 default; bf16 or fp16 with a gradient scaler, on CPU or CUDA); weights stay FP32")
    run.add_argument("--resume", type=Path, metavar="RUN", help="continue this run folder from its last round (give the run's own flags)")
    run.add_argument("--force", action="store_true", default=None, help="overwrite the run folder if it already holds a run")
    run.add_argument("--nproc", type=int, metavar="N", help="train on N processes (DistributedDataParallel through torchrun's agent)")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--steps", type=int, help="training budget in optimiser steps (the profile's default), whatever the data's size")
    opt.add_argument("--epochs", type=int, help="train this many passes over the data instead of --steps")
    opt.add_argument("--batch-size", type=int)
    opt.add_argument("--lr", type=float, help="learning rate (η0; the peak for 1cycle)")
    opt.add_argument("--optimizer", choices=cfg.OPTIMIZERS)
    opt.add_argument("--momentum", type=float, help="β of --optimizer momentum and nesterov (0.9)")
    opt.add_argument("--schedule", choices=cfg.SCHEDULES)
    opt.add_argument("--schedule-steps", type=float, help="s in power η0/(1+t/s)^c and exponential η0·0.1^(t/s) (steps)")
    opt.add_argument("--schedule-power", type=float, help="c in the power schedule (1)")
    opt.add_argument("--milestones", type=_fractions, help="piecewise: fractions of the run where lr drops 10× (0.5,0.75)")
    opt.add_argument("--clip-norm", type=float, help="clip the gradient's global L2 norm")
    opt.add_argument("--clip-value", type=float, help="clip each gradient element to ±value")

    arch = parser.add_argument_group("architecture")
    arch.add_argument("--activation", choices=cfg.ACTIVATIONS)
    arch.add_argument(
        "--init",
        choices=cfg.INITS,
        help="auto (the default) matches the activation (Glorot: none/logistic/tanh, He: ReLU family, LeCun: SELU); "
        "survey-table is the survey's table as printed (4x on tanh, where Glorot & Bengio put it on the logistic)",
    )
    arch.add_argument("--init-distribution", choices=("auto", "uniform", "normal"), help="how initial weights are drawn (auto: normal for LeCun, as SELU needs; uniform otherwise)")
    _bool_flag(arch, "batch-norm", "batch normalisation after each hidden layer")

    reg = parser.add_argument_group("regularisation")
    reg.add_argument("--dropout", type=float)
    reg.add_argument("--l1", type=float, help="λ of the penalty λ·Σ|w| on connection weights")
    reg.add_argument("--l2", type=float, help="λ of the penalty λ·Σw² on connection weights")
    reg.add_argument("--max-norm", type=float, help="keep each unit's incoming weights at ‖w‖₂ ≤ r")
    reg.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="stop after PATIENCE evaluations without improvement (one per epoch, or per ≥ 50 steps), restore the best")
    _bool_flag(reg, "augment", "data augmentation (image families)")

    tr = parser.add_argument_group("transfer learning")
    tr.add_argument("--init-from", type=Path, metavar="CHECKPOINT", help="reuse the matching layers of this run or checkpoint")
    tr.add_argument("--freeze", nargs="+", metavar="PREFIX", help="freeze parameters whose names start with PREFIX")


def parse(family_name: str, argv: list[str], prog: str):
    from training.families import module

    family = module(family_name)
    parser = argparse.ArgumentParser(prog=f"{prog} {family_name}", description=(family.__doc__ or "").strip().splitlines()[0])
    add_common_arguments(parser)
    family.add_arguments(parser.add_argument_group(f"{family_name} options"))
    args = vars(parser.parse_args(argv))
    config_fields = {f.name for f in dataclasses.fields(cfg.TrainConfig)}
    option_fields = {f.name for f in dataclasses.fields(family.Options)}
    given = {k: v for k, v in args.items() if k in config_fields and v is not None}
    config = cfg.TrainConfig(family=family_name, **given)
    config = dataclasses.replace(config, freeze=tuple(config.freeze))
    refuse_unsupported(family_name, given)
    profile = {k: v for k, v in family.PROFILES[config.profile].items() if k in config_fields}
    cfg.refuse_ignored_combinations(cfg.apply_profile(config, None, profile)[0], given)
    options = family.Options(**{k: v for k, v in args.items() if k in option_fields})
    return family, config, options


def main(argv: list[str], prog: str = "dnnzoo train") -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} FAMILY [flags]\n\nfamilies: {', '.join(FAMILIES)}\n\nRun `{prog} FAMILY --help` for its flags.")
        return 0 if argv else 2
    passive_wait()  # before a family module imports torch
    try:
        family, config, options = parse(argv[0], argv[1:], prog)
        scale.refuse(config, options)
        if config.nproc and not distributed.launched():
            return distributed.launch(config.nproc, scale.without_nproc(argv))
        config = resume.prepare(config)
        distributed.start(config.device)
        try:
            with distributed.quiet_followers():
                record = family.train(config, options)
        finally:
            distributed.stop()
    except (UserError, FloatingPointError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if not distributed.is_leader_process():
        return 0
    final = record.get("final", {})
    summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in final.items() if not isinstance(v, (dict, list)))
    print(f"{config.family}: {summary} ({record.get('seconds', 0):.0f}s) -> {config.run_dir()}")
    return 0
