"""`dnnzoo build`: train every default family that has no finished run yet, then export each into the repository.

An interrupted build picks up where it stopped: a family whose run folder holds a finished run
(training.resume.finished) is not trained again, one killed mid-run continues from its last round's
resume.pt as `dnnzoo train --resume` would (the families on the shared fit loop; word2vec and the GAN
start their run again), and --force retrains every family. The order is the family table's build
column (training/families.py), which puts the classifier before the GAN, which is judged by it. A
model whose repository config already records this run's checkpoint digest
(`dnnzoo.source.checkpoint_sha256`) is up to date and is not exported again unless --force; a
retrained run is exported as the next version.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from protos import contract

from dnnzoo.errors import UserError
from dnnzoo.openmp import passive_wait
from dnnzoo.profiles import PROFILES
from export.options import add_export_arguments, check_opset
from training.families import BUILD_ORDER, DEFAULT_NAMES


@dataclass
class Step:
    family: str
    run_dir: Path
    trained_seconds: float | None = None
    resumed: bool = False
    exported: list = dataclasses.field(default_factory=list)
    export_seconds: float = 0.0
    up_to_date: bool = False


def ensure_run(family: str, profile: str, runs: Path, progress: bool, force: bool = False,
               out=print) -> tuple[Path, float | None, bool]:  # fmt: skip
    """The run folder of `family` at `profile` and (seconds trained or None, whether it resumed): a finished
    run is kept unless `force`, an unfinished one with a round state continues from it, otherwise it trains."""
    from training import resume
    from training.config import TrainConfig
    from training.families import module

    run_dir = runs / f"{family}-{profile}"
    if resume.finished(run_dir) and not force:
        return run_dir, None, False
    trainer = module(family)
    config = TrainConfig(family=family, profile=profile, out=run_dir, progress=progress)
    options = trainer.Options()
    if family == "gan":  # judged by the classifier trained just before, wherever --runs points
        options = dataclasses.replace(options, judge=runs / f"classifier-{profile}")
    resumed = (run_dir / resume.STATE).is_file() and not force
    if resumed:
        config = dataclasses.replace(config, resume=run_dir)
        out(f"{family}: continuing the interrupted run in {run_dir} from its last round")
    started = time.perf_counter()
    try:
        trainer.train(config, options)
    except resume.ConfigChanged as exc:  # checked before the run folder is touched (training.runs.Run)
        raise UserError(f"{run_dir} holds an unfinished {family} run started with other settings (differing: {'; '.join(exc.keys)}): "
                        f"finish it with `dnnzoo train {family} --resume {run_dir}` and its own flags, or pass --force to retrain every family") from None
    return run_dir, time.perf_counter() - started, resumed


def up_to_date(repository: Path, name: str, run_dir: Path) -> bool:
    """The repository's model and its companions already hold this run's checkpoint."""
    from export.pipeline import checkpoint_digest
    from protos.config_text import parse_config

    digest = checkpoint_digest(run_dir)
    pending, seen = [name], set()
    while pending:
        current = pending.pop()
        seen.add(current)
        path = repository / current / contract.CONFIG_FILE
        if not path.is_file() or not contract.versions(repository / current):
            return False
        try:
            config = parse_config(path.read_text(encoding="utf-8"))
        except ValueError:
            return False
        params = config.parameters
        if contract.SOURCE_CHECKPOINT not in params or params[contract.SOURCE_CHECKPOINT].string_value != digest:
            return False
        pending += [v.string_value for k, v in params.items() if k.startswith(contract.COMPANION_PREFIX) and v.string_value not in seen]
    return True


def build(profile: str, repository: Path, runs: Path, opset: int, force: bool, instance_kind: str, progress: bool, out=print,
          precisions: tuple[str, ...] = ("fp32",), allow_degraded: bool = False) -> list[Step]:  # fmt: skip
    """`force` retrains every family and exports each again. `precisions` beyond fp32 add NAME_fp16 /
    NAME_int8 beside each FP32 model whose family has reduced-precision variants (export.precision_data);
    the others are built in FP32 and say so."""
    from export.pipeline import export_run
    from export.precision_data import REFUSED, supported
    from export.precision_variants import requested, variant_name

    reduced = requested(precisions)
    steps = []
    for family in BUILD_ORDER:
        run_dir, seconds, resumed = ensure_run(family, profile, runs, progress, force, out)
        step = Step(family, run_dir, seconds, resumed)
        name = DEFAULT_NAMES[family]
        variants = reduced if supported(family) else []
        if reduced and not variants:
            out(f"{name}: FP32 only ({REFUSED.get(family, 'no held-out judge for its variants')})")
        wanted = [name] + [variant_name(name, p) for p in variants]
        if not force and all(up_to_date(repository, n, run_dir) for n in wanted):
            step.up_to_date = True
            out(f"{name}: up to date ({run_dir})")
        else:
            started = time.perf_counter()
            step.exported = export_run(run_dir, repository, name, None, opset, False, instance_kind, ("fp32", *variants), allow_degraded)
            step.export_seconds = time.perf_counter() - started
            for item in step.exported:
                out(f"{name}: exported {item.name} v{item.version} ({item.bytes / 1024:.1f} KiB) in {step.export_seconds:.1f}s")
        steps.append(step)
    return steps


def main(argv: list[str], prog: str = "dnnzoo build") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Train (where no finished run exists; an interrupted one continues) and export every default model.")
    parser.add_argument("--profile", choices=PROFILES, default="quick")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="folder of run folders FAMILY-PROFILE (default runs)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide training progress bars")
    add_export_arguments(parser)
    args = parser.parse_args(argv)
    passive_wait()  # before torch loads
    started = time.perf_counter()
    try:
        check_opset(args.opset)
        from export.precision_variants import parse

        steps = build(args.profile, args.repository, args.runs, args.opset, args.force, args.instance_kind, args.progress,
                      precisions=parse(args.precision), allow_degraded=args.allow_degraded)  # fmt: skip
    except (UserError, FloatingPointError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    trained = sum(s.trained_seconds or 0.0 for s in steps)
    exported = sum(s.export_seconds for s in steps)
    print(f"built {args.repository} in {time.perf_counter() - started:.0f}s (training {trained:.0f}s, export {exported:.0f}s)")
    return 0
