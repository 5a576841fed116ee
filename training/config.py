"""Typed training configuration shared by every family.

A field left at None means "the family's profile default"; `apply_profile` fills those in, so a flag
the user gave always wins over the profile. It first refuses a set field the family never applies
(training.families.NOT_APPLIED), so no technique is silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from dnnzoo.errors import UserError
from dnnzoo.profiles import PROFILES  # noqa: F401  (re-exported: cfg.PROFILES)

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "piecewise", "performance", "power", "exponential", "1cycle", "1cycle-torch")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "tanh", "sigmoid")
INITS = ("auto", "glorot", "he", "lecun", "survey-table", "default")


@dataclass
class TrainConfig:
    """What every family understands. Family-specific choices live in the family's own `Options`."""

    family: str
    profile: str = "quick"
    out: Path | None = None
    data: Path | None = None
    device: str = "auto"
    seed: int = 42
    threads: int | None = None
    progress: bool = True
    # scale (training.precision, training.resume, training.distributed)
    precision: str = "fp32"  # autocast dtype of the training step; weights and checkpoints stay FP32
    resume: Path | None = None  # continue this run folder from its last round (resume.pt)
    force: bool = False  # overwrite an existing run folder
    nproc: int | None = None  # launch this many processes through torchrun (the launcher itself does not train)
    # optimisation
    epochs: int | None = None  # a user's explicit choice; profiles give `steps` (training.budget)
    steps: int | None = None  # budget in optimiser steps
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    momentum: float = 0.9
    schedule: str | None = None
    schedule_steps: float | None = None  # s in power/exponential schedules, in optimiser steps
    schedule_power: float = 1.0  # c in the power schedule
    milestones: tuple[float, ...] = (0.5, 0.75)  # piecewise: fractions of training where lr drops 10x
    clip_norm: float | None = None
    clip_value: float | None = None
    # architecture techniques
    activation: str | None = None
    init: str = "auto"
    init_distribution: str = "auto"  # LeCun normal for SELU, uniform otherwise
    batch_norm: bool | None = None
    # regularisation
    dropout: float | None = None
    l1: float = 0.0
    l2: float = 0.0
    max_norm: float | None = None
    early_stopping: int | None = None  # patience in evaluation rounds (training.budget); the best weights are restored
    augment: bool | None = None
    # transfer learning
    init_from: Path | None = None
    freeze: tuple[str, ...] = ()
    # evaluation (used by some families)
    extra: dict[str, Any] = field(default_factory=dict)

    def run_dir(self) -> Path:
        return self.out if self.out is not None else Path("runs") / f"{self.family}-{self.profile}"


def set_fields(config: TrainConfig) -> dict[str, Any]:
    """The fields whose value differs from TrainConfig's default: what the caller asked for."""
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.default is not dataclasses.MISSING and getattr(config, f.name) != f.default
    }


def apply_profile(config: TrainConfig, options: Any, defaults: dict[str, Any]) -> tuple[TrainConfig, Any]:
    """Fill fields left at None in `config` and in the family's `options` from one profile entry.

    Every key of `defaults` must name a field of one of the two, so a typo in a profile table fails loudly.
    A set field that the family never applies is a UserError (checked before the profile fills anything).
    """
    from training.families import refuse_unsupported

    refuse_unsupported(config.family, set_fields(config))
    config_names = {f.name for f in dataclasses.fields(config)}
    option_names = {f.name for f in dataclasses.fields(options)} if options is not None else set()
    unknown = set(defaults) - config_names - option_names
    if unknown:
        raise KeyError(f"profile names unknown fields: {sorted(unknown)}")
    if config.epochs is not None or config.steps is not None:  # the user's budget replaces the profile's
        defaults = {k: v for k, v in defaults.items() if k not in ("epochs", "steps")}
    config = dataclasses.replace(
        config, **{k: v for k, v in defaults.items() if k in config_names and getattr(config, k) is None}
    )
    if options is not None:
        options = dataclasses.replace(
            options, **{k: v for k, v in defaults.items() if k in option_names and getattr(options, k) is None}
        )
    return config, options


def refuse_ignored_combinations(config: TrainConfig, given: Iterable[str]) -> None:
    """Refuse a given flag that the resolved optimiser or schedule of `config` would ignore.

    `config` has its profile applied; `given` names the fields the user set on the command line.
    """
    given = set(given)
    if {"epochs", "steps"} <= given:
        raise UserError("--epochs and --steps both set how long to train: give one")
    schedule = config.schedule or "the family's default"
    if "momentum" in given and config.optimizer not in ("momentum", "nesterov"):
        raise UserError(f"--momentum is the β of --optimizer momentum or nesterov; {config.optimizer} has no such term: leave it out or choose one of those")
    if "momentum" in given and config.schedule in ("1cycle", "1cycle-torch"):
        raise UserError(f"--momentum is not used with --schedule {config.schedule}, which cycles momentum from 0.95 down to 0.85 and back: leave it out")
    uses = {"schedule_steps": ("power", "exponential"), "schedule_power": ("power",), "milestones": ("piecewise",)}
    for field, schedules in uses.items():
        if field in given and config.schedule not in schedules:
            flag = "--" + field.replace("_", "-")
            raise UserError(f"{flag} applies to --schedule {' or '.join(schedules)} only; this run uses {schedule}: leave it out or choose one of those")
