"""Transfer learning: reuse the lower layers of another checkpoint, freeze them, keep a new head.

Layers are matched by parameter name and shape; a head whose shape differs (another class count) is
therefore left freshly initialised. Frozen layers get requires_grad=False, and their batch-norm layers
stay in eval mode during training, so neither weights nor running statistics move.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from dnnzoo.errors import UserError
from training import checkpoint


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str, rename: dict[str, str] | None = None) -> list[str]:
    """Copy every tensor of `state` whose (renamed) name and shape exist in `model`; returns their names."""
    own = model.state_dict()
    copied = []
    for name, tensor in state.items():
        for old, new in (rename or {}).items():
            if name.startswith(old):
                name = new + name[len(old):]
        if name in own and own[name].shape == tensor.shape:
            own[name] = tensor
            copied.append(name)
    if not copied:
        raise UserError(f"{source}: no layer matches this model by name and shape; nothing to transfer")
    model.load_state_dict(own)
    return copied


def init_from(model: nn.Module, path: Path, families: Iterable[str], rename: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Load `path` (a run folder or checkpoint) into `model` if its family is one of `families`."""
    ckpt = checkpoint.load(path)
    families = tuple(families)
    if ckpt["family"] not in families:
        raise UserError(f"--init-from {path}: a {ckpt['family']} checkpoint cannot initialise this model (expects {', '.join(families)})")
    return load_matching(model, ckpt["state_dict"], str(path), (rename or {}).get(ckpt["family"]))


def freeze(model: nn.Module, prefixes: Iterable[str]) -> list[str]:
    """Stop gradients for parameters whose names start with one of `prefixes`; returns their names."""
    prefixes = tuple(prefixes)
    if not prefixes:
        return []
    frozen = []
    for name, param in model.named_parameters():
        if name.startswith(prefixes):
            param.requires_grad_(False)
            frozen.append(name)
    if not frozen:
        names = sorted({n.split(".")[0] for n, _ in model.named_parameters()})
        raise UserError(f"--freeze {' '.join(prefixes)} matches no layer; top-level layers are: {', '.join(names)}")
    return frozen


def hold_frozen(model: nn.Module, prefixes: Iterable[str]) -> None:
    """Put frozen sub-modules back in eval mode after model.train() so batch norm does not update.

    A module counts as frozen when its name matches a prefix or all its own parameters are frozen.
    """
    prefixes = tuple(prefixes)
    if not prefixes:
        return
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        matched = name and (name.startswith(prefixes) or f"{name}.".startswith(prefixes))
        if matched or (own and not any(p.requires_grad for p in own)):
            module.eval()
