"""Detector: uint8 `images` [N,1,H,W] -> `detections` [N, max_det, 6] = x1, y1, x2, y2, score, class
in input pixels, best first, zero-padded.

PyTorch traces the network and the YOLO decode (`training.detector_model.decode`, plain tensor ops); the
non-maximum suppression is ONNX's own `NonMaxSuppression`, appended by `nms.append_nms`. Parity is
therefore judged against the training module's own decode + `nms` on a fixed set of generated
scenes: the same detections, in the same order, coordinates and scores within 1e-4.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from protos import contract

from export.graphs.common import fact, image_input_parameters, labels_file, rebuild, unit_pixels
from export.graphs.nms import append_nms
from export.parity import FLOAT_TOLERANCE
from export.spec import Arrays, ExportSpec, TensorSpec
from training import detector, detector_model

MAX_BATCH = 32


class Decoded(nn.Module):
    def __init__(self, model: detector_model.Detector):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.model(unit_pixels(images))
        return detector_model.decode(raw, self.model.boxes, self.model.classes, self.model.canvas)


def reference(model: detector_model.Detector, score: float, iou: float, max_det: int):
    """The training module's decode + NMS, padded to the graph's fixed size."""

    def run(case: Arrays) -> Arrays:
        with torch.no_grad():
            images = unit_pixels(torch.from_numpy(case["images"]))
            boxes, scores = detector_model.decode(model(images), model.boxes, model.classes, model.canvas)
            out = np.zeros((len(images), max_det, 6), np.float32)
            for i, (b, s) in enumerate(zip(boxes, scores)):
                found = detector_model.nms(b, s, score, iou, max_det).numpy()
                out[i, : len(found)] = found
        return {"detections": out}

    return run


def compare_detections(expected: Arrays, actual: Arrays) -> tuple[float, str | None]:
    """The same rows in the same order: classes equal, boxes and scores within tolerance."""
    want, got = expected["detections"], actual.get("detections")
    if got is None or got.shape != want.shape:
        return math.inf, f"detections shape {None if got is None else list(got.shape)}, expected {list(want.shape)}"
    worst = 0.0
    for i in range(len(want)):
        kept_want, kept_got = int((want[i, :, 4] > 0).sum()), int((got[i, :, 4] > 0).sum())
        if kept_want != kept_got:
            return math.inf, f"image {i}: {kept_got} detections, expected {kept_want}"
        if not np.array_equal(want[i, :, 5], got[i, :, 5]):
            return math.inf, f"image {i}: classes {got[i, :kept_got, 5].tolist()}, expected {want[i, :kept_want, 5].tolist()}"
        diff = np.abs(want[i, :, :5] - got[i, :, :5])
        if diff.size:
            worst = max(worst, float(diff.max()))
        if diff.size and float(diff.max()) > FLOAT_TOLERANCE:
            row, col = np.unravel_index(int(diff.argmax()), diff.shape)
            return worst, f"image {i}, detection {row}, field {'x1 y1 x2 y2 score'.split()[col]}: differs by {float(diff.max()):.3g}"
    return worst, None


def scene_images(canvas: int, min_size: int, max_size: int):
    """A sampler of generated scenes (fixed seeds), digits pasted as in training."""
    from training.data import images, scenes

    bank = scenes.make_bank(images.digits(), min(min_size, canvas), min(max_size, canvas))

    def sample(n: int) -> Arrays:
        return {"images": scenes.generate(bank, n, seed=1000 + n, canvas=canvas).images}

    return sample


def _scene_sizes(run_dir: Path) -> tuple[int, int]:
    """The digit sizes the run pasted (its metrics.json options), else the training defaults."""
    try:
        options = json.loads((run_dir / "metrics.json").read_text()).get("options", {})
    except (OSError, ValueError):
        options = {}
    return int(options.get("min_size") or 14), int(options.get("max_size") or 32)


def specs(checkpoint: dict, run_dir: Path) -> list[ExportSpec]:
    model = rebuild(detector, checkpoint)
    classes = [str(c) for c in fact(checkpoint, "classes")]
    score, iou = float(fact(checkpoint, "score_threshold")), float(fact(checkpoint, "iou_threshold"))
    max_det = int(fact(checkpoint, "max_detections"))
    canvas, grid, per_cell = int(model.canvas), int(model.grid), int(model.boxes)
    anchors = grid * grid * per_cell
    min_size, max_size = _scene_sizes(run_dir)
    return [
        ExportSpec(
            suffix="",
            module=Decoded(model).eval(),
            export_outputs=["boxes", "scores"],
            finish=lambda onnx_model, opset: append_nms(onnx_model, "boxes", "scores", "detections", model.classes,
                                                        anchors, score, iou, max_det),  # fmt: skip
            inputs=[TensorSpec("images", np.uint8, (1, canvas, canvas))],
            outputs=[TensorSpec("detections", np.float32, (max_det, 6))],
            max_batch_size=MAX_BATCH,
            samples=scene_images(canvas, min_size, max_size),
            reference=reference(model, score, iou, max_det),
            compare=compare_detections,
            side_files={contract.LABELS_FILE: labels_file(classes)},
            parameters={
                contract.TASK: contract.DETECTION,
                **image_input_parameters(model, canvas),
                contract.GRID: str(grid),
                contract.BOXES_PER_CELL: str(per_cell),
                contract.CLASSES: str(len(classes)),
                contract.LABELS_FILE_KEY: contract.LABELS_FILE,
                contract.SCORE_THRESHOLD: repr(score),
                contract.IOU_THRESHOLD: repr(iou),
                contract.MAX_DETECTIONS: str(max_det),
                contract.DETECTION_LAYOUT: "x1,y1,x2,y2,score,class; input pixels; best first; zero rows pad",
            },
        )
    ]
