"""Generate: a count and a seed (or explicit latent vectors) -> images from the GAN generator.

Latents for a seed are `numpy.random.default_rng(seed).standard_normal((count, latent_size))` as
float32, the model's `dnnzoo.latent_distribution` (normal(0, 1)): the same seed always gives the
same images, and a smaller count gives a prefix of a larger one. Without a seed the server draws one
and returns it, so any answer can be reproduced. `count` is capped by the server setting
`max_generate_count` (over it is TooLarge: RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from protos import contract

from serving.errors import InvalidInput
from serving.tasks.catalog import Catalog


@dataclass(frozen=True)
class Generated:
    model: str
    version: str
    images: np.ndarray  # uint8 [N, 1, H, W]
    seed: int
    seeded: bool
    latent_size: int


SEED_LIMIT = 2**64  # seeds are gRPC uint64s, so every seed REST takes can be repeated over gRPC


def latents_for(seed: int, count: int, latent_size: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, latent_size)).astype(np.float32)


async def generate(catalog: Catalog, model: str, version: str, count: int, seed: int | None,
                   latents: Sequence[Sequence[float]] | None, deadline: float | None = None) -> Generated:  # fmt: skip
    catalog.cap("max_generate_count", count if latents is None else len(latents), "Generate", "images in one call")
    handle = catalog.find(model, version, contract.GENERATION, "Generate")
    size = catalog.number(handle, contract.LATENT_SIZE, int)
    if latents is not None:
        if not latents:
            raise InvalidInput("Generate: give at least one latent vector")
        for i, vector in enumerate(latents):
            if len(vector) != size:
                raise InvalidInput(f"latent vector {i} has {len(vector)} values; the model's latent size is {size}")
        array = np.asarray(latents, np.float64)
        if not np.isfinite(array).all():
            row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
            raise InvalidInput(f"latent vector {row} has a value that is not finite")
        inputs, used, seeded = array.astype(np.float32), 0, False
    else:
        if count < 1:
            raise InvalidInput(f"Generate: count must be at least 1, got {count}")
        if seed is not None and not 0 <= seed < SEED_LIMIT:
            raise InvalidInput(f"Generate: seed must be at least 0 and below 2**64 (gRPC's uint64), got {str(seed)[:40]}")
        used = secrets.randbits(63) if seed is None else int(seed)
        inputs, seeded = latents_for(used, count, size), True
    name = handle.spec.inputs[0].name
    output = handle.spec.outputs[0].name
    values = await catalog.run(handle, {name: inputs}, [output], deadline)
    return Generated(handle.name, handle.version, np.asarray(values[output], np.uint8), used, seeded, size)
