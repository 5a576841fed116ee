"""How long a run trains: a budget in optimiser steps, so a small dataset trains as long as a large one.

Profiles give `steps`; `--epochs` (a user's explicit choice) wins over it. One epoch of a small
dataset can be a single step, so the fit loop evaluates (and early stopping counts patience) once per
*round*: one epoch, or as many whole epochs as make up at least MIN_STEPS_PER_ROUND steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dnnzoo.errors import UserError
from training.config import TrainConfig

MIN_STEPS_PER_ROUND = 50


@dataclass(frozen=True)
class Budget:
    epochs: int
    epochs_per_round: int
    steps_per_epoch: int

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def evaluates_after(self, epoch: int) -> bool:
        return epoch % self.epochs_per_round == 0 or epoch == self.epochs


def plan(config: TrainConfig, steps_per_epoch: int) -> Budget:
    """The epochs `config` asks for (its --epochs, else its step budget) and the evaluation rhythm."""
    steps_per_epoch = max(1, int(steps_per_epoch))
    if config.epochs is not None:
        epochs = config.epochs
    elif config.steps is not None:
        epochs = math.ceil(config.steps / steps_per_epoch)
    else:
        raise ValueError(f"{config.family}: the profile gives neither steps nor epochs")
    if epochs < 1:
        raise UserError(f"--epochs/--steps must be at least 1 (got {config.epochs if config.epochs is not None else config.steps})")
    return Budget(epochs, max(1, math.ceil(MIN_STEPS_PER_ROUND / steps_per_epoch)), steps_per_epoch)


def grown(steps: int, items: int, items_per_budget: int, cap: float) -> int:
    """A profile's step budget, sized for `items_per_budget` training items, grown in proportion to
    `items` (never below the budget, at most `cap` times it): more distinct examples take more steps to
    learn, while the embedded data keeps the profile's budget (and CI its time)."""
    return round(steps * min(cap, max(1.0, items / items_per_budget)))
