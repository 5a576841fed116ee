"""The YOLO-v1-style detector network and its inference ops: the S×S-grid convolutional model,
`decode` (raw grid -> corner boxes and class-specific scores) and `nms` (ONNX NonMaxSuppression's
rules), which the export stage repeats inside the ONNX graph. The layout and the formulas are in
training/detector.py's docstring; the loss is in detector_loss.py, the mAP in detector_eval.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from training.layers import activation as make_activation
from training.layers import dropout as dropout_layer


def _conv(c_in: int, c_out: int, stride: int, act: str, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    return layers + [make_activation(act)]


class Detector(nn.Module):
    """A small conv net whose spatial output is the S×S grid: stride-2 3×3 conv blocks until the
    canvas shrinks to S, two more 3×3 blocks for context, then a 1×1 head (a cell's box predictor).

    Stride-2 convolutions rather than max pooling: on this CPU pooling and batch norm at full
    resolution cost more than the convolutions themselves (a training step was about 3× slower)."""

    def __init__(self, canvas: int = 64, grid: int = 8, boxes: int = 2, classes: int = 10, width: int = 16,
                 activation: str = "leaky_relu", batch_norm: bool = True, dropout: float = 0.0,
                 mean: float = 0.0, std: float = 1.0):  # fmt: skip
        super().__init__()
        self.canvas, self.grid, self.boxes, self.classes = canvas, grid, boxes, classes
        stages = int(round(math.log2(canvas / grid)))
        layers, c = [], 1
        for i in range(stages):
            layers += _conv(c, width * 2**i, 2, activation, batch_norm)
            c = width * 2**i
        layers += _conv(c, c, 1, activation, batch_norm) + _conv(c, 2 * c, 1, activation, batch_norm)
        self.features = nn.Sequential(*layers)
        self.dropout = dropout_layer(activation, dropout)
        self.head = nn.Conv2d(2 * c, boxes * 5 + classes, 1)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images float [N, 1, canvas, canvas] in [0, 1] -> raw logits [N, S, S, B*5 + C]."""
        out = self.head(self.dropout(self.features((images - self.mean) / self.std)))
        return out.permute(0, 2, 3, 1)


def build_model(**model_args) -> Detector:
    return Detector(**model_args)


def cell_boxes(raw: torch.Tensor, boxes: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid-activated box outputs [N, S, S, B, 5] and their corners in pixels [N, S, S, B, 4]."""
    s = raw.shape[1]
    act = torch.sigmoid(raw[..., : boxes * 5].reshape(-1, s, s, boxes, 5))
    cell = image_size / s
    offsets = torch.arange(s, dtype=raw.dtype, device=raw.device)
    cx = (offsets.view(1, 1, s, 1) + act[..., 0]) * cell
    cy = (offsets.view(1, s, 1, 1) + act[..., 1]) * cell
    w, h = act[..., 2] ** 2 * image_size, act[..., 3] ** 2 * image_size
    corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    return act, corners


def decode(raw: torch.Tensor, boxes: int, classes: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw grid [N, S, S, B*5+C] -> boxes [N, S·S·B, 4] (x1, y1, x2, y2 pixels, clipped) and
    class-specific scores [N, C, S·S·B] (confidence × class probability).

    The layouts are the ones ONNX `NonMaxSuppression` takes; box index a = (r·S + c)·B + b.
    """
    s = raw.shape[1]
    act, corners = cell_boxes(raw, boxes, image_size)
    probs = torch.softmax(raw[..., boxes * 5 :], dim=-1)
    scores = act[..., 4:5] * probs.unsqueeze(3)  # [N, S, S, B, C]
    corners = corners.clamp(0.0, float(image_size))
    return corners.reshape(-1, s * s * boxes, 4), scores.reshape(-1, s * s * boxes, classes).transpose(1, 2)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of corner boxes, broadcasting over leading axes; 0 where a box has no area."""
    inter_w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    inter_h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = inter_w * inter_h
    area = lambda x: (x[..., 2] - x[..., 0]).clamp(min=0) * (x[..., 3] - x[..., 1]).clamp(min=0)  # noqa: E731
    union = area(a) + area(b) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes: torch.Tensor, scores: torch.Tensor, score_threshold: float, iou_threshold: float,
        max_detections: int) -> torch.Tensor:  # fmt: skip
    """Per-class greedy NMS for one image, by ONNX `NonMaxSuppression`'s rules, then the best overall.

    boxes [A, 4], scores [C, A] (as `decode` gives them for one image). Candidates score strictly above
    score_threshold; taken highest first (ties: lower class, then lower box index), each drops the
    candidates of its class whose IoU with it is strictly above iou_threshold. Returns the first
    max_detections kept, [M, 6] rows x1, y1, x2, y2, score, class, in descending score: the same set as
    ONNX NMS with max_output_boxes_per_class = max_detections followed by a top-max_detections over all
    classes (a class's kept boxes below its first max_detections could never make the overall top).
    """
    n_boxes = boxes.shape[0]
    flat = scores.reshape(-1)  # index = class * A + box
    candidates = torch.nonzero(flat > score_threshold).flatten()
    order = candidates[torch.argsort(flat[candidates], descending=True, stable=True)]
    label, which = order // n_boxes, order % n_boxes
    chosen = boxes[which]
    alive = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    kept: list[int] = []
    while len(kept) < max_detections:
        remaining = torch.nonzero(alive).flatten()
        if remaining.numel() == 0:
            break
        i = int(remaining[0])
        kept.append(i)
        alive &= ~((box_iou(chosen[i], chosen) > iou_threshold) & (label == label[i]))
        alive[i] = False
    kept_t = torch.tensor(kept, dtype=torch.long, device=boxes.device)
    return torch.cat([chosen[kept_t], flat[order[kept_t]].unsqueeze(1), label[kept_t].unsqueeze(1).to(boxes.dtype)], dim=1)
