"""YOLO-v1-style digit detector: S×S grid, B boxes per cell, class scores per cell, on generated scenes.

Why this shape: YOLO v1 (Redmon et al., 2016) is the survey's single-pass detector; every cell of an
S×S grid predicts B boxes `(x, y, w, h, confidence)` and one set of C class scores, and a detection's
score is confidence × class probability. The scenes (`training.data.scenes`) paste 1–4 digits on a
64×64 canvas, so the boxes are known exactly and nothing is downloaded.

The raw output of `forward` is a grid of logits, `[N, S, S, B*5 + C]`: for cell (row r, column c) the
last axis holds, per box b, `tx, ty, tw, th, tc`, then C class logits. `decode` turns it into boxes
and class-specific scores with plain tensor ops (sigmoid, square, softmax, multiply), which the export
stage repeats in the ONNX graph before `NonMaxSuppression`:

    x_centre = (c + σ(tx)) · W/S        w = σ(tw)² · W      (σ(tw) is √(w/W), as the loss sees it)
    y_centre = (r + σ(ty)) · H/S        h = σ(th)² · H
    score[class k] = σ(tc) · softmax(class logits)[k]

Boxes leave `decode` as corners `x1, y1, x2, y2` in input pixels, clipped to the image; `nms` then
follows ONNX `NonMaxSuppression`'s rules (see its docstring), so the exported graph can match it.

Quality is VOC-style mAP@0.5 (all-point interpolation, mean over classes). The digits are split
three ways (`split_digits`: 70 % training, 10 % validation, 20 % test, stratified by the run's seed):
validation scenes, built only from validation digits, are evaluated once per round (monitoring, early
stopping, the untrained-model baseline of metrics.json's "baselines"); test scenes, built only from
test digits, are scored once at the end. The checkpoint's "held_out" record lets a later test rebuild
scenes of the test digits (`held_out_scenes`), e.g. to ask the served model. mAP needs the whole
precision/recall curve, so its detections keep scores above 0.01; the checkpoint's `score_threshold`
(0.2) is the serving default, and metrics.json also gives precision and recall at it. Profiles give a
budget in optimiser steps (training.budget), whatever the number of digits.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dnnzoo.errors import UserError
from training import baselines, budget, plots, transfer
from training.config import TrainConfig, apply_profile
from training.data import images as image_data
from training.data import scenes as scene_data
from training.device import pick, seed_everything, set_threads
from training.fit import fit
from training.initialization import initialize
from training.layers import activation as make_activation
from training.layers import dropout as dropout_layer
from training.runs import Run

LAMBDA_COORD = 5.0
LAMBDA_NOOBJ = 0.5


@dataclass
class Options:
    canvas: int | None = None
    grid: int | None = None
    boxes: int | None = None
    width: int | None = None
    min_size: int | None = None
    max_size: int | None = None
    max_objects: int | None = None
    train_scenes: int | None = None
    val_scenes: int | None = None
    test_scenes: int | None = None
    score_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int | None = None


_COMMON = dict(
    canvas=64, grid=8, boxes=2, min_size=14, max_size=32, max_objects=4, optimizer="adam",
    activation="leaky_relu", batch_norm=True, augment=True, score_threshold=0.2, iou_threshold=0.5,
    max_detections=10,
)  # fmt: skip
PROFILES = {
    "tiny": {**_COMMON, "steps": 8, "batch_size": 32, "lr": 2e-3, "schedule": "constant", "width": 8,
             "train_scenes": 128, "val_scenes": 32, "test_scenes": 64},
    "quick": {**_COMMON, "steps": 1536, "batch_size": 64, "lr": 3e-3, "schedule": "1cycle", "width": 16,
              "train_scenes": 3072, "val_scenes": 256, "test_scenes": 1000},
    "full": {**_COMMON, "steps": 7680, "batch_size": 128, "lr": 3e-3, "schedule": "1cycle", "width": 32,
             "train_scenes": 16384, "val_scenes": 1000, "test_scenes": 4000},
}  # fmt: skip
# quick's 1536 steps (32 epochs of 3072 fresh scenes): at 768 the served test's mAP@0.5 on held-out digits
# cleared 0.90 by only 0.034 at seed 42, and 5,000 real MNIST digits reached 0.895 (0.947 at 1536).
# A profile's steps are for up to STEPS_ARE_FOR_DIGITS training digits (the embedded set has 1,257);
# with more (`--data`), the budget grows in proportion, up to MAX_BUDGET_GROWTH times (training.budget.grown):
# 3,500 real MNIST training digits at 1536 steps left the served scenes' mAP@0.5 at the 0.90 bar.
STEPS_ARE_FOR_DIGITS, MAX_BUDGET_GROWTH = 1300, 2.0


def add_arguments(group) -> None:
    group.add_argument("--canvas", type=int, help="scene size in pixels (64; a multiple of --grid)")
    group.add_argument("--grid", type=int, help="S: the output grid is S×S cells (8)")
    group.add_argument("--boxes", type=int, help="B: boxes predicted per cell (2)")
    group.add_argument("--width", type=int, help="channels of the first convolution; later stages double it")
    group.add_argument("--min-size", type=int, help="smallest pasted digit, pixels")
    group.add_argument("--max-size", type=int, help="largest pasted digit, pixels")
    group.add_argument("--max-objects", type=int, help="at most this many digits per scene (at least 1)")
    group.add_argument("--train-scenes", type=int, help="training scenes per epoch (fresh each epoch with --augment)")
    group.add_argument("--val-scenes", type=int, help="held-out scenes evaluated after each epoch")
    group.add_argument("--test-scenes", type=int, help="held-out scenes of the final mAP")
    group.add_argument("--score-threshold", type=float, help="serving default: keep detections scoring above this")
    group.add_argument("--iou-threshold", type=float, help="non-maximum suppression drops boxes overlapping more than this")
    group.add_argument("--max-detections", type=int, help="detections kept per image after NMS")


# ---------------------------------------------------------------- model


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


# ---------------------------------------------------------------- decode, loss, NMS, mAP


def _cell_boxes(raw: torch.Tensor, boxes: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
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
    act, corners = _cell_boxes(raw, boxes, image_size)
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


def yolo_loss(raw: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor, boxes: int,
              image_size: int, parts: bool = False):  # fmt: skip
    """The YOLO v1 sum-squared loss, summed over the grid and averaged over the batch.

    gt_boxes [N, K, 4] pixel corners, gt_labels [N, K] (-1 = padding). Each object belongs to the cell
    holding its centre; of that cell's B boxes the one whose prediction has the highest IoU with it is
    "responsible" (ties: the first). Terms: λ_coord·[(x−x̂)² + (y−ŷ)² + (√w−√ŵ)² + (√h−√ĥ)²] and
    (C − IoU)² for responsible boxes; λ_noobj·C² for every other box; Σ_k (p_k − p̂_k)² over classes
    for cells holding an object. √w and √h are relative to the image, x and y to the cell; the
    confidence target IoU (of the prediction with its object) is held constant. A cell holds one object:
    when two centres share a cell one of them wins (YOLO v1's limit; the scenes' ink boxes never
    overlap, so it is rare).
    """
    n, s = raw.shape[0], raw.shape[1]
    classes = raw.shape[-1] - boxes * 5
    act, corners = _cell_boxes(raw, boxes, image_size)
    probs = torch.softmax(raw[..., boxes * 5 :], dim=-1)

    valid = gt_labels >= 0
    item = torch.arange(n, device=raw.device).unsqueeze(1).expand_as(gt_labels)[valid]
    box = gt_boxes[valid]
    centre = (box[:, :2] + box[:, 2:]) / 2 * (s / image_size)
    col, row = centre[:, 0].floor().clamp(0, s - 1).long(), centre[:, 1].floor().clamp(0, s - 1).long()
    index = (item, row, col)
    obj = torch.zeros(n, s, s, dtype=torch.bool, device=raw.device)
    obj[index] = True
    target = torch.zeros(n, s, s, 4, dtype=raw.dtype, device=raw.device)
    size = ((box[:, 2:] - box[:, :2]).clamp(min=0) / image_size).sqrt()
    target[index] = torch.cat([centre - torch.stack([col, row], 1).to(raw.dtype), size], dim=1)
    target_corners = torch.zeros(n, s, s, 4, dtype=raw.dtype, device=raw.device)
    target_corners[index] = box.to(raw.dtype)
    onehot = torch.zeros(n, s, s, classes, dtype=raw.dtype, device=raw.device)
    onehot[index] = F.one_hot(gt_labels[valid], classes).to(raw.dtype)

    iou = box_iou(corners, target_corners.unsqueeze(3)).detach()  # [N, S, S, B]
    responsible = F.one_hot(iou.argmax(-1), boxes).bool() & obj.unsqueeze(-1)
    r = responsible.to(raw.dtype)
    coord = LAMBDA_COORD * (r * ((act[..., :4] - target.unsqueeze(3)) ** 2).sum(-1)).sum()
    conf_obj = (r * (act[..., 4] - iou) ** 2).sum()
    conf_noobj = LAMBDA_NOOBJ * ((1 - r) * act[..., 4] ** 2).sum()
    cls = (obj.unsqueeze(-1).to(raw.dtype) * (probs - onehot) ** 2).sum()
    total = (coord + conf_obj + conf_noobj + cls) / n
    if parts:
        return total, {"coord": coord / n, "conf_obj": conf_obj / n, "conf_noobj": conf_noobj / n, "class": cls / n}
    return total


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


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC (2010+) all-point interpolation: area under the precision envelope, max precision to the right."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def _match_class(detections: list[np.ndarray], truths: list[tuple[np.ndarray, np.ndarray]], k: int,
                 iou_threshold: float) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
    """Class k's detections of all images in descending score, whether each is a hit, and the true count.

    As in the VOC devkit, a detection is matched to the true box of its class and image with the
    highest IoU: a hit if that IoU is ≥ iou_threshold and the box is not yet claimed, else a miss.
    """
    records, n_true, truth_k = [], 0, []
    for i, ((gt, labels), det) in enumerate(zip(truths, detections)):
        gt_k = np.asarray(gt, dtype=np.float64).reshape(-1, 4)[np.asarray(labels) == k]
        n_true += len(gt_k)
        truth_k.append((gt_k, np.zeros(len(gt_k), bool)))
        det = np.asarray(det, dtype=np.float64).reshape(-1, 6)
        records += [(row[4], i, row[:4]) for row in det[det[:, 5] == k]]
    records.sort(key=lambda r: -r[0])
    hits = np.zeros(len(records), bool)
    for j, (_, i, box) in enumerate(records):
        gt_k, used = truth_k[i]
        if len(gt_k) == 0:
            continue
        iou = box_iou(torch.from_numpy(box), torch.from_numpy(gt_k)).numpy()
        best = int(iou.argmax())
        if iou[best] >= iou_threshold and not used[best]:
            used[best] = hits[j] = True
    return np.array([r[0] for r in records]), hits, n_true


def mean_average_precision(detections: list[np.ndarray], truths: list[tuple[np.ndarray, np.ndarray]],
                           classes: int, iou_threshold: float = 0.5, score_threshold: float | None = None) -> dict:  # fmt: skip
    """VOC-style mAP over classes. detections: per image [M, 6] (x1, y1, x2, y2, score, class);
    truths: per image (boxes [K, 4], labels [K]). Classes without any true box are left out of the
    mean (their AP is None). With `score_threshold`, also the precision and recall of the detections
    scoring above it (over all classes)."""
    per_class: list[float | None] = []
    tp = found = total = 0
    for k in range(classes):
        scores, hits, n_true = _match_class(detections, truths, k, iou_threshold)
        total += n_true
        if score_threshold is not None:
            above = scores > score_threshold
            tp, found = tp + int(hits[above].sum()), found + int(above.sum())
        if n_true == 0:
            per_class.append(None)
            continue
        cumulative = np.cumsum(hits)
        precision = cumulative / np.arange(1, len(hits) + 1)
        per_class.append(average_precision(cumulative / n_true, precision))
    scored = [ap for ap in per_class if ap is not None]
    result: dict = {"map": float(np.mean(scored)) if scored else 0.0, "ap": per_class}
    if score_threshold is not None:
        result["precision"] = tp / found if found else 0.0
        result["recall"] = tp / total if total else 0.0
    return result


# ---------------------------------------------------------------- data, evaluation, pictures

EVAL_SCORE_THRESHOLD = 0.01  # mAP needs the whole precision/recall curve, not just the serving threshold


def scene_tensors(scenes: scene_data.Scenes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.from_numpy(scenes.images).float() / 255.0, torch.from_numpy(scenes.boxes), torch.from_numpy(scenes.labels)


class SceneBatches:
    """Training batches (images, boxes, labels). With `fresh`, every epoch draws new scenes from the
    bank (the detector's data augmentation: new layouts, sizes and pairings); without, one fixed set."""

    def __init__(self, bank: scene_data.PatchBank, count: int, batch_size: int, seed: int, canvas: int,
                 max_objects: int, fresh: bool):  # fmt: skip
        self.bank, self.count, self.batch_size, self.seed = bank, count, batch_size, seed
        self.canvas, self.max_objects, self.fresh = canvas, max_objects, fresh
        self.epoch = 0
        self._fixed: tuple[torch.Tensor, ...] | None = None

    def __len__(self) -> int:
        return math.ceil(self.count / self.batch_size)

    def scenes(self, epoch: int) -> scene_data.Scenes:
        seed = self.seed + (epoch if self.fresh else 0)
        return scene_data.generate(self.bank, self.count, seed, self.canvas, self.max_objects)

    def __iter__(self):
        if self.fresh or self._fixed is None:
            self._fixed = scene_tensors(self.scenes(self.epoch))
        images, boxes, labels = self._fixed
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            pick_ = order[start : start + self.batch_size]
            yield images[pick_], boxes[pick_], labels[pick_]


@torch.no_grad()
def detect(model: Detector, images: torch.Tensor, score_threshold: float, iou_threshold: float,
           max_detections: int, chunk: int = 256) -> tuple[list[np.ndarray], torch.Tensor]:  # fmt: skip
    """Detections per image ([M, 6] numpy) and the raw grid, for images already on the model's device."""
    model.eval()
    raws, found = [], []
    for start in range(0, len(images), chunk):
        raw = model(images[start : start + chunk])
        boxes, scores = decode(raw, model.boxes, model.classes, model.canvas)
        found += [nms(b, s, score_threshold, iou_threshold, max_detections).cpu().numpy() for b, s in zip(boxes, scores)]
        raws.append(raw)
    return found, torch.cat(raws)


def truths_of(scenes: scene_data.Scenes) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(scenes.boxes[i, : scenes.counts[i]], scenes.labels[i, : scenes.counts[i]]) for i in range(len(scenes))]


def draw(scenes: scene_data.Scenes, detections: list[np.ndarray], path, columns: int = 8) -> None:
    """Truth (top row, green) and predictions with class and score (bottom row, orange) per scene."""
    plt = plots._pyplot()
    from matplotlib.patches import Rectangle

    n = min(columns, len(scenes))
    fig, axes = plt.subplots(2, n, figsize=(n * 1.8, 4.0), squeeze=False)
    for j in range(n):
        panels = (
            (axes[0, j], scenes.boxes[j, : scenes.counts[j]], scenes.labels[j, : scenes.counts[j]], None, "tab:green"),
            (axes[1, j], detections[j][:, :4], detections[j][:, 5].astype(int), detections[j][:, 4], "tab:orange"),
        )
        for ax, boxes, labels, scores, colour in panels:
            ax.imshow(scenes.images[j, 0], cmap="gray", vmin=0, vmax=255)
            ax.axis("off")
            for b, (x1, y1, x2, y2) in enumerate(boxes):
                ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1))
                text = scenes.classes[labels[b]] + ("" if scores is None else f" {scores[b]:.2f}")
                ax.text(x1 - 0.5, y1 - 1.5 if y1 > 6 else y2 + 4.5, text, color=colour, fontsize=6,
                        bbox=dict(facecolor="black", alpha=0.6, pad=0.3, linewidth=0))
    axes[0, 0].set_title("truth", fontsize=8, loc="left")
    axes[1, 0].set_title("predicted", fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- digits held out


VAL_FRACTION, TEST_FRACTION = 0.1, 0.2  # of all digits; the three parts are disjoint


def split_digits(digits: image_data.ImageSet, seed: int) -> tuple[image_data.ImageSet, image_data.ImageSet, image_data.ImageSet]:
    """Disjoint training, validation and test digits (stratified, seeded). Validation scenes (monitoring,
    early stopping, the baseline) and test scenes (scored once, at the end) show only digits that
    training never saw, and model selection never sees the test digits."""
    rest, test = image_data.split(digits, TEST_FRACTION, seed)
    train, val = image_data.split(rest, VAL_FRACTION / (1 - TEST_FRACTION), seed)
    return train, val, test


def _scenes_of(digits: image_data.ImageSet, held_out: dict, count: int, seed: int) -> scene_data.Scenes:
    bank = scene_data.make_bank(digits, held_out["min_size"], held_out["max_size"])
    return scene_data.generate(bank, count, seed, held_out["canvas"], held_out["max_objects"])


def held_out_scenes(extra: dict, count: int, seed: int) -> scene_data.Scenes:
    """`count` new scenes built only from a run's test digits, in its scene geometry: what a test of the
    trained (or exported and served) model may show it. `extra` is the checkpoint's: its "held_out"
    record names the data, the split seed and the sizes."""
    held_out = extra["held_out"]
    test_digits = split_digits(image_data.load(held_out["data"]), held_out["seed"])[2]
    return _scenes_of(test_digits, held_out, count, seed)


def scored_detections(detections: list[np.ndarray], scenes: scene_data.Scenes, score_threshold: float) -> dict:
    """mAP@0.5 of detections kept above EVAL_SCORE_THRESHOLD, with precision and recall above the serving
    `score_threshold` (a false positive lowers both mAP and precision)."""
    return mean_average_precision(detections, truths_of(scenes), len(scenes.classes), 0.5, score_threshold)


# ---------------------------------------------------------------- train


def _check(options: Options) -> None:
    counts = {"--grid": options.grid, "--boxes": options.boxes, "--max-objects": options.max_objects,
              "--max-detections": options.max_detections, "--width": options.width,
              "--train-scenes": options.train_scenes, "--val-scenes": options.val_scenes, "--test-scenes": options.test_scenes}  # fmt: skip
    for flag, value in counts.items():
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    ratio = options.canvas / options.grid
    if options.canvas % options.grid or ratio < 2 or not math.log2(ratio).is_integer():
        raise UserError(f"--canvas {options.canvas} must be the grid ({options.grid}) times a power of two (2, 4, 8...)")
    if not 4 <= options.min_size <= options.max_size <= options.canvas:
        raise UserError(
            f"digit sizes must satisfy 4 ≤ --min-size ({options.min_size}) ≤ --max-size ({options.max_size}) ≤ --canvas ({options.canvas})"
        )
    if not 0 <= options.score_threshold < 1 or not 0 < options.iou_threshold <= 1:
        raise UserError("--score-threshold must be in [0, 1) and --iou-threshold in (0, 1]")


def train(config: TrainConfig, options: Options) -> dict:
    profile_budget = config.epochs is None and config.steps is None  # a user's --steps/--epochs is kept as given
    config, options = apply_profile(config, options, PROFILES[config.profile])
    _check(options)
    set_threads(config.threads)
    seed_everything(config.seed)
    device = pick(config.device)
    digits = image_data.load(config.data)  # before the run folder exists: bad --data leaves nothing behind
    train_digits, val_digits, test_digits = split_digits(digits, config.seed)
    if profile_budget:
        config = dataclasses.replace(config, steps=budget.grown(config.steps, len(train_digits.labels), STEPS_ARE_FOR_DIGITS, MAX_BUDGET_GROWTH))
    run = Run(config, options)
    held_out = {"data": None if config.data is None else str(config.data), "seed": config.seed, "min_size": options.min_size,
                "max_size": options.max_size, "max_objects": options.max_objects, "canvas": options.canvas}  # fmt: skip
    train_bank = scene_data.make_bank(train_digits, options.min_size, options.max_size)
    batches = SceneBatches(train_bank, options.train_scenes, config.batch_size, config.seed, options.canvas,
                           options.max_objects, fresh=bool(config.augment))  # fmt: skip
    sample = scene_tensors(batches.scenes(0))[0]
    val = _scenes_of(val_digits, held_out, options.val_scenes, config.seed + 10_000)
    test = _scenes_of(test_digits, held_out, options.test_scenes, config.seed + 20_000)

    model_args = dict(canvas=options.canvas, grid=options.grid, boxes=options.boxes, classes=len(digits.classes),
                      width=options.width, activation=config.activation, batch_norm=bool(config.batch_norm),
                      dropout=config.dropout or 0.0, mean=float(sample.mean()), std=float(sample.std()))  # fmt: skip
    model = build_model(**model_args)
    initialize(model, config.activation, config.init, config.init_distribution)
    if config.init_from:
        transfer.init_from(model, config.init_from, ("detector",))
    transfer.freeze(model, config.freeze)
    model.to(device)

    val_images, val_boxes, val_labels = (t.to(device) for t in scene_tensors(val))
    nms_args = (EVAL_SCORE_THRESHOLD, options.iou_threshold, options.max_detections)

    def loss_step(model: nn.Module, batch) -> torch.Tensor:
        return yolo_loss(model(batch[0]), batch[1], batch[2], options.boxes, options.canvas)

    def evaluate(model: nn.Module) -> dict:
        found, raw = detect(model, val_images, *nms_args)
        val_loss = float(yolo_loss(raw, val_boxes, val_labels, options.boxes, options.canvas))
        return {"val_loss": val_loss, "val_map50": mean_average_precision(found, truths_of(val), model.classes)["map"]}

    untrained_val_map50 = evaluate(model)["val_map50"]  # the baseline: the same network before any step
    started = time.perf_counter()
    history = fit(model, batches, config, loss_step, evaluate, device, monitor="val_map50", mode="max")
    train_seconds = time.perf_counter() - started
    val_map50 = evaluate(model)["val_map50"]  # the weights kept (the best ones with --early-stopping)

    test_images, test_boxes, test_labels = (t.to(device) for t in scene_tensors(test))
    found, raw = detect(model, test_images, *nms_args)
    scored = scored_detections(found, test, options.score_threshold)
    loss, parts = yolo_loss(raw, test_boxes, test_labels, options.boxes, options.canvas, parts=True)
    final = {
        "map50": scored["map"],
        "ap50": {name: ap for name, ap in zip(digits.classes, scored["ap"])},
        "precision": scored["precision"],
        "recall": scored["recall"],
        "at_score_threshold": options.score_threshold,
        "test_loss": float(loss),
        "test_loss_parts": {k: float(v) for k, v in parts.items()},
        "test_scenes": len(test),
        "test_objects": int(test.counts.sum()),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(train_seconds, 2),
        "steps": history[-1]["step"] if history else 0,
        "val_map50": val_map50,
        baselines.BASELINES: baselines.speak("detector", [
            baselines.compare("untrained_model", "val_map50", val_map50, untrained_val_map50, higher_is_better=True)]),
    }  # fmt: skip
    extra = {
        "task": "detection",
        "classes": list(digits.classes),
        "grid": options.grid,
        "boxes": options.boxes,
        "image_size": options.canvas,
        "input": "float [N, 1, image_size, image_size] in [0, 1], ink bright on dark",
        "raw_layout": "[N, S, S, B*5 + C]: per box tx, ty, tw, th, tc (logits), then C class logits",
        "box_format": "x1, y1, x2, y2 in input pixels",
        "score_threshold": options.score_threshold,
        "iou_threshold": options.iou_threshold,
        "max_detections": options.max_detections,
        "map50": scored["map"],
        "held_out": held_out,  # how to rebuild the test digits (split_digits) and their scenes: held_out_scenes
    }
    run.save_checkpoint(model_args, model.state_dict(), extra)
    plots.curves(history, run.file("curves.png"), keys=("loss", "val_loss", "val_map50"), title="detector")
    shown = [f[f[:, 4] > options.score_threshold] for f in found[:8]]
    draw(test, shown, run.file("detections.png"))
    return run.save_metrics(history, final)
