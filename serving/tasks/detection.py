"""Detect: images -> boxes with labels and scores, in the pixel coordinates of each image as sent.

The exported graph decodes the grid and runs non-maximum suppression itself with the model's own
thresholds (`dnnzoo.score_threshold`, `dnnzoo.iou_threshold`, `dnnzoo.max_detections`), giving the
best rows first, zero-padded. A request may only tighten those: a higher score threshold, a lower
IoU threshold, fewer detections. Tightening is applied here to the graph's rows by the same rules
(scores strictly above the threshold; per class, greedily, drop boxes whose IoU with a kept one is
strictly above the threshold; the best `max_detections`). Rows the graph already dropped cannot
come back, which is why loosening is refused rather than silently ignored.

Images are resized to the model's square canvas as training's conversion does; boxes are scaled
back by the width and height ratios of each image.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from protos import contract

from serving.errors import InvalidInput
from serving.tasks.catalog import Catalog
from serving.tasks.images import ImageInput, model_inputs


@dataclass(frozen=True)
class Box:
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    label: str
    class_id: int
    score: float


@dataclass(frozen=True)
class Detected:
    model: str
    version: str
    results: list[list[Box]]
    sizes: list[tuple[int, int]]  # (width, height) of each image as sent
    score_threshold: float
    iou_threshold: float
    max_detections: int


def thresholds(own: tuple[float, float, int], score: float | None, iou: float | None, max_det: int | None) -> tuple[float, float, int]:
    """The thresholds to apply: the model's, tightened by the request's; looser values are refused."""
    own_score, own_iou, own_max = own
    if score is not None and not (math.isfinite(score) and own_score <= score <= 1.0):
        raise InvalidInput(f"score_threshold {score} must be between the model's own {own_score:g} and 1 (a request may only raise it)")
    if iou is not None and not (math.isfinite(iou) and 0.0 <= iou <= own_iou):
        raise InvalidInput(f"iou_threshold {iou} must be between 0 and the model's own {own_iou:g} (a request may only lower it)")
    if max_det is not None and not 1 <= max_det <= own_max:
        raise InvalidInput(f"max_detections {max_det} must be between 1 and the model's own {own_max} (a request may only lower it)")
    return (own_score if score is None else score, own_iou if iou is None else iou, own_max if max_det is None else max_det)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def tighten(rows: np.ndarray, applied: tuple[float, float, int], own: tuple[float, float, int]) -> np.ndarray:
    """The graph's rows [max_det, 6] (best first, zero padding) filtered by stricter thresholds."""
    score, iou, max_det = applied
    rows = rows[rows[:, 4] > 0]  # padding rows have score 0; kept rows score above the threshold >= 0
    if score > own[0]:
        rows = rows[rows[:, 4] > score]
    if iou < own[1] and len(rows) > 1:
        alive = np.ones(len(rows), bool)
        for i in range(len(rows)):
            if alive[i]:
                later = np.arange(len(rows)) > i
                same = rows[:, 5] == rows[i, 5]
                alive &= ~(later & same & (_iou(rows[i, :4], rows[:, :4]) > iou))
        rows = rows[alive]
    return rows[:max_det]


async def detect(catalog: Catalog, model: str, version: str, images: Sequence[ImageInput], score: float | None,
                 iou: float | None, max_det: int | None, deadline: float | None = None) -> Detected:  # fmt: skip
    catalog.cap("max_images", len(images), "Detect", "images in one call")
    handle = catalog.find(model, version, contract.DETECTION, "Detect")
    own = (
        catalog.number(handle, contract.SCORE_THRESHOLD, float),
        catalog.number(handle, contract.IOU_THRESHOLD, float),
        catalog.number(handle, contract.MAX_DETECTIONS, int),
    )
    applied = thresholds(own, score, iou, max_det)
    image_input, output = handle.spec.inputs[0], handle.spec.outputs[0]
    canvas = int(image_input.dims[-1])
    batch, sizes = await asyncio.to_thread(model_inputs, images, canvas, catalog.limits.max_image_pixels)
    values = await catalog.run(handle, {image_input.name: batch}, [output.name], deadline)
    classes = catalog.number(handle, contract.CLASSES, int)
    labels = catalog.labels(handle, output.name, classes)
    results = []
    for rows, (width, height) in zip(values[output.name], sizes):
        kept = tighten(np.asarray(rows, np.float64), applied, own)
        sx, sy = width / canvas, height / canvas
        results.append([
            Box(float(r[0] * sx), float(r[1] * sy), float(r[2] * sx), float(r[3] * sy),
                labels[int(r[5])] if 0 <= int(r[5]) < len(labels) else str(int(r[5])), int(r[5]), float(r[4]))
            for r in kept
        ])  # fmt: skip
    return Detected(handle.name, handle.version, results, sizes, *applied)
