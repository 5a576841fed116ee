"""Mixed precision for the fit loop: autocast around the training step, a gradient scaler for fp16.

Only the forward pass and the loss run in the lower precision; the weights, the optimiser state and
every checkpoint stay FP32 (autocast never changes a parameter's dtype), so exported graphs are FP32
too. fp16 needs a `GradScaler` so that small gradients do not flush to zero (its scale is part of the
round state, training.resume); bf16 has FP32's exponent range and needs none. Both run on CPU as well as
on CUDA (`torch.amp.GradScaler("cpu")`), slower than FP32 on a CPU without native half-precision units,
but the same numerics a GPU run has.
"""

from __future__ import annotations

import contextlib

import torch

from dnnzoo.errors import UserError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check(name: str) -> None:
    if name not in PRECISIONS:
        raise UserError(f"unknown --precision {name!r}; choose from {', '.join(PRECISIONS)}")


class Precision:
    """What the fit loop calls around one step: `autocast()`, `backward(objective)`, `unscale(opt)`, `step(opt)`."""

    def __init__(self, name: str, device: torch.device):
        check(name)
        self.name, self.device = name, device
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None

    def autocast(self):
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.name])

    def backward(self, objective: torch.Tensor) -> None:
        (self.scaler.scale(objective) if self.scaler else objective).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients back to their true scale before clipping looks at them."""
        if self.scaler:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler:
            self.scaler.step(optimizer)  # skipped when the scaled gradients overflowed
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler and state:
            self.scaler.load_state_dict(state)
