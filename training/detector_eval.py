"""How the detector is scored: VOC-style mAP (all-point interpolation, mean over classes), with
precision and recall at the serving threshold, on detections decoded and suppressed as served."""

from __future__ import annotations

import numpy as np
import torch

from training.data import scenes as scene_data
from training.detector_model import Detector, box_iou, decode, nms

EVAL_SCORE_THRESHOLD = 0.01  # mAP needs the whole precision/recall curve, not just the serving threshold


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


def scored_detections(detections: list[np.ndarray], scenes: scene_data.Scenes, score_threshold: float) -> dict:
    """mAP@0.5 of detections kept above EVAL_SCORE_THRESHOLD, with precision and recall above the serving
    `score_threshold` (a false positive lowers both mAP and precision)."""
    return mean_average_precision(detections, truths_of(scenes), len(scenes.classes), 0.5, score_threshold)
