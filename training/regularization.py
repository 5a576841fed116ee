"""Regularisers that act outside the model: L1/L2 penalties, max-norm, gradient clipping, early stopping."""

from __future__ import annotations

import copy

import torch
from torch import nn

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Embedding)


def weight_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Connection weights only: biases and batch-norm scales are not penalised."""
    return [m.weight for m in model.modules() if isinstance(m, _WEIGHTED) and m.weight.requires_grad]


def penalty(model: nn.Module, l1: float, l2: float) -> torch.Tensor | float:
    """l1·Σ|w| + l2·Σw² over the connection weights."""
    if not l1 and not l2:
        return 0.0
    total = 0.0
    for w in weight_tensors(model):
        if l1:
            total = total + l1 * w.abs().sum()
        if l2:
            total = total + l2 * w.pow(2).sum()
    return total


@torch.no_grad()
def apply_max_norm(model: nn.Module, r: float) -> None:
    """Rescale each unit's incoming weight vector so that ‖w‖₂ ≤ r (applied after every step)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) and m.weight.requires_grad:
            m.weight.copy_(torch.renorm(m.weight, p=2, dim=0, maxnorm=r))


def clip_gradients(model: nn.Module, clip_norm: float | None, clip_value: float | None) -> None:
    params = [p for p in model.parameters() if p.grad is not None]
    if clip_value:
        torch.nn.utils.clip_grad_value_(params, clip_value)
    if clip_norm:
        torch.nn.utils.clip_grad_norm_(params, clip_norm)


class EarlyStopping:
    """Stop after `patience` epochs without improvement and keep a copy of the best weights."""

    def __init__(self, patience: int | None, mode: str = "min"):
        self.patience = patience
        self.sign = 1.0 if mode == "min" else -1.0
        self.best: float | None = None
        self.best_epoch = -1
        self.best_state: dict | None = None
        self.bad_epochs = 0

    def update(self, model: nn.Module, value: float, epoch: int) -> bool:
        """Record this epoch's monitored value; True means stop now."""
        if self.best is None or self.sign * value < self.sign * self.best:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.bad_epochs += 1
        return self.patience is not None and self.bad_epochs >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
