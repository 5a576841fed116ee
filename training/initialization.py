"""Weight initialisation matched to the activation that follows (the book's chapter 11).

Variance rules: Glorot σ² = 1/fan_avg (none, logistic, tanh, softmax), He σ² = 2/fan_in (ReLU and its
variants), LeCun σ² = 1/fan_in (SELU). Uniform draws use r = √(3σ²); normal draws use σ. The
distribution "auto" draws LeCun's scheme from a normal (self-normalisation is derived for LeCun
*normal* weights) and the others from a uniform.

"survey-table" reproduces the survey's table as printed: uniform with r = √(6/(n_in+n_out)) for the
logistic function, 4× that for tanh, √2× that for ReLU. Glorot and Bengio's paper puts the 4× on the
logistic function instead; the table is offered as written because users ask for it by that name.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SCHEME_FOR_ACTIVATION = {
    None: "glorot",
    "none": "glorot",
    "sigmoid": "glorot",
    "tanh": "glorot",
    "softmax": "glorot",
    "relu": "he",
    "leaky_relu": "he",
    "elu": "he",
    "selu": "lecun",
}

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)


def fans(weight: torch.Tensor, transposed: bool = False) -> tuple[int, int]:
    """fan_in and fan_out of a Linear/Conv weight (ConvTranspose stores in/out the other way round)."""
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    out_ch, in_ch = weight.shape[0], weight.shape[1]
    if transposed:
        out_ch, in_ch = in_ch, out_ch
    return in_ch * receptive, out_ch * receptive


def variance(scheme: str, fan_in: int, fan_out: int) -> float:
    if scheme == "glorot":
        return 2.0 / (fan_in + fan_out)
    if scheme == "he":
        return 2.0 / fan_in
    if scheme == "lecun":
        return 1.0 / fan_in
    raise ValueError(f"unknown initialisation scheme {scheme!r}")


def survey_table_limit(activation: str | None, fan_in: int, fan_out: int) -> float:
    base = math.sqrt(6.0 / (fan_in + fan_out))
    if activation == "tanh":
        return 4.0 * base
    if activation in ("relu", "leaky_relu", "elu"):
        return math.sqrt(2.0) * base
    return base


@torch.no_grad()
def init_tensor(
    weight: torch.Tensor,
    activation: str | None,
    scheme: str = "auto",
    distribution: str = "auto",
    transposed: bool = False,
) -> None:
    fan_in, fan_out = fans(weight, transposed)
    if scheme == "survey-table":
        r = survey_table_limit(activation, fan_in, fan_out)
        weight.uniform_(-r, r)
        return
    if scheme == "auto":
        scheme = SCHEME_FOR_ACTIVATION.get(activation, "glorot")
    var = variance(scheme, fan_in, fan_out)
    if distribution == "auto":
        distribution = "normal" if scheme == "lecun" else "uniform"
    if distribution == "uniform":
        r = math.sqrt(3.0 * var)
        weight.uniform_(-r, r)
    elif distribution == "normal":
        weight.normal_(0.0, math.sqrt(var))
    else:
        raise ValueError(f"unknown distribution {distribution!r} (auto, uniform or normal)")


def initialize(model: nn.Module, activation: str | None, scheme: str = "auto", distribution: str = "auto") -> None:
    """Initialise every Linear/Conv weight of `model` for `activation`; biases start at zero.

    scheme "default" leaves PyTorch's own initialisation in place.
    """
    if scheme == "default":
        return
    for module in model.modules():
        if isinstance(module, _LAYERS):
            init_tensor(module.weight, activation, scheme, distribution, isinstance(module, nn.ConvTranspose2d))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
