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
The network, `decode` and `nms` are in detector_model.py, the loss in detector_loss.py, the mAP in
detector_eval.py; this module is the family: its options, profiles, data and `train`.

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
from torch import nn

from dnnzoo.errors import UserError
from training import baselines, budget, plots, transfer
from training.config import TrainConfig, apply_profile
from training.data import images as image_data
from training.data import scenes as scene_data
from training.detector_eval import EVAL_SCORE_THRESHOLD, detect, mean_average_precision, scored_detections, truths_of
from training.detector_loss import yolo_loss
from training.detector_model import build_model
from training.device import pick, seed_everything, set_threads
from training.fit import fit
from training.initialization import initialize
from training.runs import Run


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


# ---------------------------------------------------------------- data, pictures

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
