"""Optimisers and learning-rate schedules by name (the book's chapter 11).

Schedules, with t counted in optimiser steps:
  piecewise    η0 · 0.1^k after the k-th milestone (milestones are fractions of the whole run)
  performance  reduce η by 10× when the validation loss stops improving (PyTorch's ReduceLROnPlateau)
  power        η0 / (1 + t/s)^c
  exponential  η0 · 0.1^(t/s)
  1cycle       the book's (Smith 2018): η rises linearly from η1/10 to the peak η1 (--lr) over the first
               half of the run before its final tenth, falls linearly back to η1/10 over the second half,
               then drops linearly by three more orders of magnitude in the final tenth. Momentum, only
               for --optimizer momentum or nesterov (asked for), runs 0.95 → 0.85 → 0.95 inversely and
               stays at 0.95 for the final tenth; other optimisers keep theirs (Adam's β1 included).
  1cycle-torch PyTorch's OneCycleLR (cosine, peak at 30 %, start η1/25), cycling the momentum an
               optimiser has (SGD's when on, Adam's β1); for comparison with the book's shape.
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
    if name == "1cycle":
        return one_cycle(step, total_steps)[0]
    raise ValueError(f"schedule {name!r} has no closed form")


ONE_CYCLE_START = 0.1  # η at the start and end of the cycle, as a fraction of the peak
ONE_CYCLE_END = 1e-4  # η after the final drop, as a fraction of the peak
ONE_CYCLE_FINAL = 0.1  # fraction of the run spent on the final drop
ONE_CYCLE_MOMENTUM = (0.95, 0.85)  # (high, low)


def one_cycle(step: int, total_steps: int) -> tuple[float, float]:
    """(η(t)/η_peak, momentum(t)) of the book's 1cycle at optimiser step t of `total_steps`."""
    total = max(total_steps, 2)
    cycle = (1.0 - ONE_CYCLE_FINAL) * total
    half = cycle / 2
    high, low = ONE_CYCLE_MOMENTUM
    if step <= half:
        x = step / half
        return ONE_CYCLE_START + (1 - ONE_CYCLE_START) * x, high + (low - high) * x
    if step <= cycle:
        x = (step - half) / (cycle - half)
        return 1 - (1 - ONE_CYCLE_START) * x, low + (high - low) * x
    x = min(1.0, (step - cycle) / (total - cycle))
    return ONE_CYCLE_START + (ONE_CYCLE_END - ONE_CYCLE_START) * x, high


def asked_for_momentum(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the book's 1cycle cycles momentum: only SGD whose momentum the user switched on."""
    return isinstance(optimizer, torch.optim.SGD) and optimizer.defaults.get("momentum", 0) > 0


def has_momentum(optimizer: torch.optim.Optimizer) -> bool:
    """Whether 1cycle-torch may cycle this optimiser's momentum: Adam's β1, or SGD's momentum when it is on.

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
        self.scheduler_total = total_steps
        self.cycle_momentum = self.name == "1cycle" and asked_for_momentum(optimizer)
        if self.name == "1cycle-torch":
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=config.lr, total_steps=max(total_steps, 2), cycle_momentum=has_momentum(optimizer)
            )
        elif self.name == "performance":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=2)
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: lr_factor(self.name, step, total_steps, config)
            )

        self._set_momentum()

    def after_step(self) -> None:
        if self.name != "performance":
            if self.name != "1cycle-torch" or self.scheduler.last_epoch + 1 < self.scheduler.total_steps:
                self.scheduler.step()
        self._set_momentum()

    def _set_momentum(self) -> None:
        if self.cycle_momentum:
            momentum = one_cycle(self.scheduler.last_epoch, self.scheduler_total)[1]
            for group in self.optimizer.param_groups:
                group["momentum"] = momentum

    def after_epoch(self, val_loss: float | None) -> None:
        if self.name == "performance" and val_loss is not None:
            self.scheduler.step(val_loss)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])
