"""Per family: how its FP16/INT8 variants are judged (held-out metric, tolerance, calibration inputs),
or why the family has no reduced-precision variants. The one table of both is `judge` / `REFUSED`.

Held-out data and calibration data come from the run folder alone (metrics.json's config and
options, the checkpoint's facts), rebuilt with the training code's own split functions, so the
held-out images are the ones training scored once and never trained on, and calibration sees
training images only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from dnnzoo.errors import UserError
from export.precision import Judge, Runner
from export.spec import Arrays

CALIBRATION_IMAGES = 512  # MinMax scales settle within a few hundred images of this size
CALIBRATION_BATCH = 32
ACCURACY_TOLERANCE = 0.005  # half a point of held-out accuracy
MAP_TOLERANCE = 0.01  # of held-out mAP@0.5
EVAL_BATCH = 64

REFUSED: dict[str, str] = {
    "word2vec": "its graphs are a vector lookup (Gather) and one cosine matrix product: there is little compute to speed up, "
                "and the vectors are what it serves, so rounding them changes every answer",
    "sequence": "ONNX Runtime's static quantisation leaves LSTM/GRU/RNN nodes in float (int8 LSTM exists only as dynamic "
                "quantisation), its CPU kernels have no float16 LSTM, and the streaming companion carries h/c across calls, "
                "where rounding accumulates",
    "gan": "a generator has no held-out metric to judge a variant by at export (its images are judged by the classifier's "
           "Fréchet distance during training), so a degraded variant could not be refused",
    "autoencoder": "no held-out judge is wired for its two outputs (codes, reconstructions) yet; codes feed other models, "
                   "so a variant needs a reconstruction and a code-drift bound first",
}  # fmt: skip


def _batches(images: np.ndarray, size: int) -> Iterable[Arrays]:
    for start in range(0, len(images), size):
        yield {"images": np.ascontiguousarray(images[start : start + size])}


def _spread(count: int, limit: int, seed: int) -> np.ndarray:
    """At most `limit` indices of `count`, drawn without replacement (seeded)."""
    return np.sort(np.random.default_rng(seed).permutation(count)[:limit])


def _classifier(run_dir: Path, metrics: dict, checkpoint: dict) -> Judge:
    from training import classifier
    from training.config import TrainConfig

    config, options = metrics.get("config", {}), metrics.get("options", {})
    data = Path(config["data"]) if config.get("data") else None
    train_config = TrainConfig(family="classifier", data=data, seed=int(config.get("seed", 42)))
    known = {"classes", "labels_per_class", "val_fraction"}
    opts = classifier.Options(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in options.items() if k in known})
    if opts.val_fraction is None:
        opts.val_fraction = classifier.VAL_FRACTION
    train_set, _val, test_set = classifier.prepare_data(train_config, opts)

    def evaluate(run: Runner) -> float:
        right = 0
        for start, batch in zip(range(0, len(test_set.labels), EVAL_BATCH), _batches(test_set.images, EVAL_BATCH)):
            predicted = run(batch)["probabilities"].argmax(1)
            right += int((predicted == test_set.labels[start : start + len(predicted)]).sum())
        return right / len(test_set.labels)

    def calibration() -> Iterable[Arrays]:
        keep = _spread(len(train_set.labels), CALIBRATION_IMAGES, train_config.seed)
        return _batches(train_set.images[keep], CALIBRATION_BATCH)

    return Judge("accuracy", True, ACCURACY_TOLERANCE, f"the run's {len(test_set.labels)} held-out test images", evaluate, calibration)


def _detector(run_dir: Path, metrics: dict, checkpoint: dict) -> Judge:
    from training import detector as det
    from training.data import images as image_data
    from training.data import scenes as scene_data

    extra = checkpoint.get("extra") or {}
    held_out = extra.get("held_out")
    if not held_out:
        raise UserError(f"{run_dir.name}: the detector checkpoint has no 'held_out' record, so no held-out scenes can judge a variant")
    test_scenes = int(metrics.get("final", {}).get("test_scenes") or 1000)
    # The very scenes training scored once at the end (training.detector.train: seed + 20,000).
    scenes = det.held_out_scenes(extra, test_scenes, int(held_out["seed"]) + 20_000)
    score_threshold = float(extra["score_threshold"])

    def evaluate(run: Runner) -> float:
        found = []
        for batch in _batches(scenes.images, EVAL_BATCH):
            for rows in run(batch)["detections"]:
                found.append(rows[rows[:, 4] > 0].astype(np.float64))
        return float(det.scored_detections(found, scenes, score_threshold)["map"])

    def calibration() -> Iterable[Arrays]:
        train_digits = det.split_digits(image_data.load(Path(held_out["data"]) if held_out.get("data") else None), int(held_out["seed"]))[0]
        bank = scene_data.make_bank(train_digits, held_out["min_size"], held_out["max_size"])
        train = scene_data.generate(bank, CALIBRATION_IMAGES, int(held_out["seed"]), held_out["canvas"], held_out["max_objects"])
        return _batches(train.images, CALIBRATION_BATCH)

    described = f"the run's {len(scenes)} held-out test scenes (served threshold {score_threshold:g})"
    return Judge("map50", True, MAP_TOLERANCE, described, evaluate, calibration)


JUDGES = {"classifier": _classifier, "detector": _detector}


def supported(family: str) -> bool:
    return family in JUDGES


def judge(family: str, run_dir: Path, metrics: dict, checkpoint: dict) -> Judge:
    """The family's judge, or a UserError saying why the family has no reduced-precision variants."""
    if family in REFUSED:
        raise UserError(f"the {family} family has no FP16/INT8 variants: {REFUSED[family]}")
    if family not in JUDGES:
        raise UserError(f"the {family} family has no FP16/INT8 variants (no held-out judge for it)")
    return JUDGES[family](Path(run_dir), metrics, checkpoint)
