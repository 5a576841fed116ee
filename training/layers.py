"""Small building blocks shared by the families: activations by name, conv/linear blocks."""

from __future__ import annotations

from torch import nn


def activation(name: str | None) -> nn.Module:
    """An activation module by the names the CLI accepts."""
    table = {
        None: nn.Identity,
        "none": nn.Identity,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.2),
        "elu": nn.ELU,
        "selu": nn.SELU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(k for k in table if k)}")
    return table[name]()


def dropout(name: str | None, p: float) -> nn.Module:
    """Alpha dropout keeps SELU's self-normalisation; plain dropout otherwise."""
    if not p:
        return nn.Identity()
    return nn.AlphaDropout(p) if name == "selu" else nn.Dropout(p)
