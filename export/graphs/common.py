"""Pieces several graphs share: uint8 image inputs, rebuilding a module, sample images, reading
checkpoint facts with a clear message when one is missing."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from protos import contract

from dnnzoo.errors import UserError

IMAGE_SCALE = "uint8 pixels divided by 255 inside the graph"


def rebuild(family_module: Any, checkpoint: dict) -> nn.Module:
    """The training module rebuilt from the checkpoint's constructor arguments, weights loaded, in eval mode."""
    try:
        model = family_module.build_model(**checkpoint["model_args"])
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"the checkpoint does not rebuild a {checkpoint.get('family')} model ({first})") from None
    return model.eval()


def fact(checkpoint: dict, key: str, where: str = "extra") -> Any:
    """A value the export needs from the checkpoint; its absence is a user-facing error."""
    source = checkpoint.get(where) or {}
    if key not in source:
        raise UserError(f"the {checkpoint.get('family')} checkpoint has no {where}[{key!r}], which export needs")
    return source[key]


def unit_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [0, 1], as the first step of a graph: what a client sends is pixels."""
    return images.to(torch.float32) / 255.0


def image_samples(pool: np.ndarray, seed: int):
    """A sampler of n images drawn from `pool` (uint8 [M, 1, H, W]) with a fixed seed per size."""

    def sample(n: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed + n)
        return {"images": np.ascontiguousarray(pool[rng.integers(0, len(pool), size=n)])}

    return sample


def digit_pool(size: int = 28, count: int = 256) -> np.ndarray:
    """Real digits (not noise) for parity: their logits span the range a served model sees."""
    from training.data import images

    data = images.digits()
    pool = data.images[:count]
    if pool.shape[-1] != size:
        resized = torch.nn.functional.interpolate(torch.from_numpy(pool).float(), size=(size, size), mode="bilinear")
        pool = resized.round().clamp(0, 255).to(torch.uint8).numpy()
    return pool


def labels_file(labels: list[str]) -> bytes:
    """One label per line, line i naming class i (Triton's label_filename format)."""
    bad = [label for label in labels if "\n" in label or "\r" in label]
    if bad:
        raise UserError(f"a label contains a line break and cannot go into labels.txt: {bad[0]!r}")
    return "".join(f"{label}\n" for label in labels).encode("utf-8")


def image_input_parameters(model: nn.Module, size: int) -> dict[str, str]:
    """The config facts every image model shares: input size, scaling and the module's normalisation."""
    return {
        contract.INPUT_SIZE: str(size),
        contract.INPUT_SCALING: IMAGE_SCALE,
        contract.NORMALIZATION_MEAN: repr(float(model.mean)),
        contract.NORMALIZATION_STD: repr(float(model.std)),
    }
