"""Encode / Reconstruct with the autoencoder: images -> codes, or reconstructions with their error.

The reconstruction error is the mean squared difference between the image as the model saw it
(pixels / 255, after the usual grayscale-and-resize conversion) and the reconstruction in [0, 1]:
an anomaly score, large for pictures unlike the training digits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from protos import contract

from serving.tasks.catalog import Catalog
from serving.tasks.images import ImageInput, model_inputs


@dataclass(frozen=True)
class Encoded:
    model: str
    version: str
    codes: np.ndarray  # [N, K]


@dataclass(frozen=True)
class Reconstructed:
    model: str
    version: str
    images: np.ndarray  # uint8 [N, 1, S, S]: round(255 * reconstruction)
    errors: np.ndarray  # [N] mean squared error in [0, 1] pixel units


async def _run(catalog: Catalog, model: str, version: str, images: Sequence[ImageInput], output: str, service: str, deadline):
    catalog.cap("max_images", len(images), service, "images in one call")
    handle = catalog.find(model, version, contract.AUTOENCODING, service)
    image_input = handle.spec.inputs[0]
    size = int(image_input.dims[-1])
    batch, _ = await asyncio.to_thread(model_inputs, images, size, catalog.limits.max_image_pixels)
    values = await catalog.run(handle, {image_input.name: batch}, [output], deadline)
    return handle, batch, np.asarray(values[output], np.float32)


async def encode(catalog: Catalog, model: str, version: str, images: Sequence[ImageInput], deadline: float | None = None) -> Encoded:
    handle, _, codes = await _run(catalog, model, version, images, "codes", "Encode", deadline)
    return Encoded(handle.name, handle.version, codes)


async def reconstruct(catalog: Catalog, model: str, version: str, images: Sequence[ImageInput],
                      deadline: float | None = None) -> Reconstructed:  # fmt: skip
    handle, batch, recon = await _run(catalog, model, version, images, "reconstructions", "Reconstruct", deadline)
    seen = batch.astype(np.float32) / 255.0
    errors = ((seen - recon) ** 2).reshape(len(batch), -1).mean(axis=1)
    pixels = np.clip(np.round(recon * 255.0), 0, 255).astype(np.uint8)
    return Reconstructed(handle.name, handle.version, pixels, errors)
