"""Optimisers and learning-rate schedules by name (the book's chapter 11).

Schedules, with t counted in optimiser steps:
  piecewise    η0 · 0.1^k after the k-th milestone (milestones are fractions of the whole run)
  performance  reduce η by 10× when the validation loss stops improving (PyTorch's ReduceLROnPlateau)
  power        η0 / (1 + t/s)^c
  exponential  η0 · 0.1^(t/s)
  1cycle       PyTorch's OneCycleLR: warm up to η0 then anneal, momentum cycled inversely (0.95 → 0.85 → 0.95)
               when the optimiser has momentum: SGD with momentum or Nesterov, Adam/AdamW's β1. Plain SGD,
               RMSprop and Adagrad keep the momentum they have (none): only their learning rate cycles.
"""

from __future__ import annotations

from typing import Iterable

import torch

from training.config import TrainConfig


def make_optimizer(params: Iterable[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    name, lr, momentum = config.optimizer, config.lr, config.momentum
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    if name == "nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    raise ValueError(f"unknown optimizer {name!r}")


def lr_factor(name: str, step: int, total_steps: int, config: TrainConfig) -> float:
    """η(t)/η0 for the closed-form schedules (the formulas the tests check)."""
    s = config.schedule_steps or max(1.0, total_steps / 10)
    if name == "constant":
        return 1.0
    if name == "power":
        return 1.0 / (1.0 + step / s) ** config.schedule_power
    if name == "exponential":
        return 0.1 ** (step / s)
    if name == "piecewise":
        passed = sum(step >= m * total_steps for m in config.milestones)
        return 0.1**passed
    raise ValueError(f"schedule {name!r} has no closed form")


def has_momentum(optimizer: torch.optim.Optimizer) -> bool:
    """Whether 1cycle may cycle this optimiser's momentum: Adam's β1, or SGD's momentum when it is on.

    OneCycleLR would otherwise switch on momentum the user did not ask for (plain SGD, RMSprop) or
    fail on an optimiser without any (Adagrad).
    """
    defaults = optimizer.defaults
    return "betas" in defaults or defaults.get("momentum", 0) > 0


class Schedule:
    """One object the fit loop drives: `after_step()` every batch, `after_epoch(val_loss)` every epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
        self.name = config.schedule or "constant"
        self.optimizer = optimizer
        if self.name == "1cycle":
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=config.lr, total_steps=max(total_steps, 2), cycle_momentum=has_momentum(optimizer)
            )
        elif self.name == "performance":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=2)
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: lr_factor(self.name, step, total_steps, config)
            )

    def after_step(self) -> None:
        if self.name != "performance":
            if self.name != "1cycle" or self.scheduler.last_epoch + 1 < self.scheduler.total_steps:
                self.scheduler.step()

    def after_epoch(self, val_loss: float | None) -> None:
        if self.name == "performance" and val_loss is not None:
            self.scheduler.step(val_loss)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])
