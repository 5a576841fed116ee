"""Checkpoints that rebuild a module without the training code's state.

A checkpoint is a plain dict: {"format", "family", "model_args", "state_dict", "extra"}. Everything in
it is a tensor, str, number, bool, None, list or dict, so `torch.load(weights_only=True)` reads it and
no pickle from an untrusted file ever runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dnnzoo.errors import UserError

FORMAT = 1
FILENAME = "checkpoint.pt"


def save(path: Path, family: str, model_args: dict[str, Any], state_dict: dict, extra: dict | None = None) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    tmp = path.with_suffix(".tmp")
    state = {k: v.detach().cpu() for k, v in state_dict.items()}
    torch.save(
        {"format": FORMAT, "family": family, "model_args": model_args, "state_dict": state, "extra": extra or {}},
        tmp,
    )
    tmp.replace(path)
    return path


def load(path: Path, family: str | None = None) -> dict[str, Any]:
    """Load a checkpoint (a file or a run folder) safely; `family` checks that it is the expected kind."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a dnnzoo checkpoint that loads with weights_only=True ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "family" not in ckpt:
        raise UserError(f"{path} is not a dnnzoo checkpoint (format {FORMAT} expected)")
    if family is not None and ckpt["family"] != family:
        raise UserError(f"{path} is a {ckpt['family']} checkpoint, not a {family} one")
    return ckpt
