"""Classify: images -> per image the top-k (label, class id, probability), best first."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from protos import contract

from serving.errors import InvalidInput
from serving.tasks.catalog import Catalog
from serving.tasks.images import ImageInput, model_inputs

DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class ClassScore:
    label: str
    class_id: int
    score: float


@dataclass(frozen=True)
class Classified:
    model: str
    version: str
    results: list[list[ClassScore]]


async def classify(catalog: Catalog, model: str, version: str, images: Sequence[ImageInput], top_k: int | None,
                   deadline: float | None = None) -> Classified:  # fmt: skip
    catalog.cap("max_images", len(images), "Classify", "images in one call")
    handle = catalog.find(model, version, contract.CLASSIFICATION, "Classify")
    image_input, output = handle.spec.inputs[0], handle.spec.outputs[0]
    classes = int(output.dims[-1])
    k = min(DEFAULT_TOP_K, classes) if top_k is None else top_k
    if not 1 <= k <= classes:
        raise InvalidInput(f"top_k must be between 1 and the model's {classes} classes, got {k}")
    size = int(image_input.dims[-1])
    batch, _ = await asyncio.to_thread(model_inputs, images, size, catalog.limits.max_image_pixels)
    values = await catalog.run(handle, {image_input.name: batch}, [output.name], deadline)
    probabilities = values[output.name]
    labels = catalog.labels(handle, output.name, classes)
    best = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    results = [[ClassScore(labels[c], int(c), float(row[c])) for c in order] for row, order in zip(probabilities, best)]
    return Classified(handle.name, handle.version, results)
