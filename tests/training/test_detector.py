"""The detector family: scene generator, YOLO loss, decode + NMS, mAP, and training runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dnnzoo.errors import UserError
from training.runs import read_metrics
from training import checkpoint
from training import detector as det
from training import detector_eval, detector_loss, detector_model
from training.config import TrainConfig
from training.initialization import initialize
from training.data import scenes as scene_data
from training.data.images import ImageSet

S, B, C, SIZE = 4, 2, 3, 64


def _toy_digits(n_per_class: int = 4, classes: int = 3) -> ImageSet:
    """Filled rectangles of class-dependent width: ink whose extent is known to the pixel."""
    images = np.zeros((n_per_class * classes, 1, 28, 28), np.uint8)
    labels = np.repeat(np.arange(classes), n_per_class)
    for i, label in enumerate(labels):
        images[i, 0, 4:24, 10 - 2 * label : 18 + 2 * label] = 255
    return ImageSet(images, labels.astype(np.int64), [str(c) for c in range(classes)])


# ---------------------------------------------------------------- scenes


@pytest.fixture(scope="module")
def bank():
    return scene_data.make_bank(_toy_digits(), 14, 30)


def test_scenes_hold_one_to_four_digits_inside_the_canvas(bank):
    scenes = scene_data.generate(bank, 300, seed=1, canvas=64, max_objects=4)
    assert scenes.images.shape == (300, 1, 64, 64) and scenes.images.dtype == np.uint8
    assert scenes.counts.min() == 1 and scenes.counts.max() == 4
    for i in range(len(scenes)):
        k = scenes.counts[i]
        boxes = scenes.boxes[i, :k]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert (scenes.labels[i, k:] == -1).all() and (scenes.labels[i, :k] >= 0).all()
        assert (scenes.labels[i, :k] == bank.labels[scenes.sources[i, :k]]).all()


def test_each_box_is_tight_around_its_pasted_digit(bank):
    scenes = scene_data.generate(bank, 100, seed=2)
    for i in range(len(scenes)):
        for k in range(scenes.counts[i]):
            x1, y1, x2, y2 = scenes.boxes[i, k].astype(int)
            size, src = scenes.sizes[i, k], scenes.sources[i, k]
            px1, py1, px2, py2 = bank.ink_boxes[size][src]
            patch = bank.patches[size][src][py1:py2, px1:px2]
            region = scenes.images[i, 0, y1:y2, x1:x2]
            ink = patch >= scene_data.INK
            assert region.shape == patch.shape
            np.testing.assert_array_equal(region[ink], patch[ink])
            # tight: ink touches every edge of the box
            assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any()


def test_toy_rectangles_have_their_exact_ink_boxes(bank):
    # the 28-pixel rectangle of class 0 spans rows 4..24 and columns 10..18: at size 28 that is the box
    box = bank.ink_boxes[28][0]
    assert box.tolist() == [10, 4, 18, 24]


def test_generation_is_seeded(bank):
    a, b = scene_data.generate(bank, 20, seed=5), scene_data.generate(bank, 20, seed=5)
    c = scene_data.generate(bank, 20, seed=6)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.images, c.images)


def test_ink_boxes_fall_back_to_the_whole_patch_without_ink():
    assert scene_data.ink_boxes(np.zeros((1, 10, 10), np.uint8)).tolist() == [[0, 0, 10, 10]]


# ---------------------------------------------------------------- a hand-built raw grid


def _logit(p):
    p = torch.as_tensor(p, dtype=torch.float64).clamp(1e-9, 1 - 1e-9)
    return torch.log(p / (1 - p))


def _perfect_raw(boxes: torch.Tensor, labels: torch.Tensor, big: float = 30.0) -> torch.Tensor:
    """Raw logits that put each true box exactly in box 0 of its centre's cell, confident and sure of
    its class; every other box has confidence logit -big."""
    n = boxes.shape[0]
    raw = torch.zeros(n, S, S, B * 5 + C, dtype=torch.float64)
    raw[..., 4:B * 5:5] = -big
    cell = SIZE / S
    for i in range(n):
        for box, label in zip(boxes[i], labels[i]):
            if label < 0:
                continue
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            col, row = int(cx // cell), int(cy // cell)
            w, h = box[2] - box[0], box[3] - box[1]
            raw[i, row, col, 0] = _logit(cx / cell - col)
            raw[i, row, col, 1] = _logit(cy / cell - row)
            raw[i, row, col, 2] = _logit((w / SIZE).sqrt())
            raw[i, row, col, 3] = _logit((h / SIZE).sqrt())
            raw[i, row, col, 4] = big
            raw[i, row, col, B * 5 + int(label)] = big
    return raw


GT_BOXES = torch.tensor([[[4.0, 2.0, 20.0, 26.0], [36.0, 34.0, 60.0, 58.0], [0, 0, 0, 0]]], dtype=torch.float64)
GT_LABELS = torch.tensor([[2, 0, -1]])


def test_loss_is_minimal_for_a_perfect_prediction_and_grows_with_errors():
    raw = _perfect_raw(GT_BOXES, GT_LABELS)
    perfect = detector_loss.yolo_loss(raw, GT_BOXES, GT_LABELS, B, SIZE)
    assert float(perfect) < 1e-6

    shifted = raw.clone()
    shifted[0, 0, 0, 0] += 1.0  # the first object's x moves
    wrong_class = raw.clone()
    wrong_class[0, 0, 0, B * 5 + 1] = 60.0
    spurious = raw.clone()
    spurious[0, 3, 0, 4] = 2.0  # a confident box in an empty cell
    losses = {name: float(detector_loss.yolo_loss(r, GT_BOXES, GT_LABELS, B, SIZE)) for name, r in
              {"shifted": shifted, "wrong_class": wrong_class, "spurious": spurious}.items()}  # fmt: skip
    assert all(v > 1e-3 for v in losses.values()), losses

    further = raw.clone()
    further[0, 0, 0, 0] += 3.0
    assert float(detector_loss.yolo_loss(further, GT_BOXES, GT_LABELS, B, SIZE)) > losses["shifted"]


def test_loss_terms_follow_the_yolo_weights():
    raw = _perfect_raw(GT_BOXES, GT_LABELS)
    raw[0, 3, 0, 4] = 0.0  # an empty cell's box at confidence 0.5: λ_noobj · 0.25
    _, parts = detector_loss.yolo_loss(raw, GT_BOXES, GT_LABELS, B, SIZE, parts=True)
    assert float(parts["conf_noobj"]) == pytest.approx(detector_loss.LAMBDA_NOOBJ * 0.25, rel=1e-6)
    raw = _perfect_raw(GT_BOXES, GT_LABELS)
    raw[0, 0, 0, 0] = _logit(torch.tensor(12 / 16 + 0.1))  # x off by 0.1 cell: λ_coord · 0.01
    _, parts = detector_loss.yolo_loss(raw, GT_BOXES, GT_LABELS, B, SIZE, parts=True)
    assert float(parts["coord"]) == pytest.approx(detector_loss.LAMBDA_COORD * 0.01, rel=1e-4)


def test_the_responsible_box_is_the_one_with_the_highest_iou():
    raw = _perfect_raw(GT_BOXES, GT_LABELS)
    # move the perfect prediction of the first object from box 0 to box 1 of its cell; box 0 now
    # predicts a box elsewhere in the cell: box 1 is responsible, box 0 only pays λ_noobj·conf².
    raw[0, 0, 0, 5:10] = raw[0, 0, 0, 0:5]
    raw[0, 0, 0, 0:4] = torch.tensor([-3.0, -3.0, -3.0, -3.0], dtype=torch.float64)
    raw[0, 0, 0, 4] = 0.0
    _, parts = detector_loss.yolo_loss(raw, GT_BOXES, GT_LABELS, B, SIZE, parts=True)
    assert float(parts["coord"]) < 1e-6
    assert float(parts["conf_noobj"]) == pytest.approx(detector_loss.LAMBDA_NOOBJ * 0.25, rel=1e-6)


def test_decode_and_nms_recover_the_boxes_of_a_hand_built_grid():
    raw = _perfect_raw(GT_BOXES, GT_LABELS).float()
    # a duplicate of the second object in box 1 of the same cell, slightly shifted, less confident
    raw[0, 2, 3, 5:10] = raw[0, 2, 3, 0:5]
    raw[0, 2, 3, 5] += 0.2
    raw[0, 2, 3, 9] = 1.0
    boxes, scores = detector_model.decode(raw, B, C, SIZE)
    assert boxes.shape == (1, S * S * B, 4) and scores.shape == (1, C, S * S * B)
    found = detector_model.nms(boxes[0], scores[0], score_threshold=0.2, iou_threshold=0.5, max_detections=10)
    assert found.shape == (2, 6)
    expected = torch.tensor([[4.0, 2.0, 20.0, 26.0, 1.0, 2.0], [36.0, 34.0, 60.0, 58.0, 1.0, 0.0]])
    order = torch.argsort(found[:, 5], descending=True)
    torch.testing.assert_close(found[order], expected, atol=1e-3, rtol=0)

    without_nms = detector_model.nms(boxes[0], scores[0], score_threshold=0.2, iou_threshold=1.0, max_detections=10)
    assert len(without_nms) == 3  # the duplicate survives when nothing overlaps "more than 1"
    assert len(detector_model.nms(boxes[0], scores[0], 0.2, 0.5, max_detections=1)) == 1


def test_decode_box_index_layout_and_clipping():
    raw = torch.zeros(1, S, S, B * 5 + C)
    raw[0, 1, 2, 5 + 2] = 10.0  # box 1 of cell (row 1, col 2): w ≈ the whole image
    boxes, scores = detector_model.decode(raw, B, C, SIZE)
    a = (1 * S + 2) * B + 1
    centre_x, centre_y = (2 + 0.5) * 16, (1 + 0.5) * 16
    assert float(boxes[0, a, 0]) == pytest.approx(centre_x - SIZE / 2, abs=1e-2)
    assert float(boxes[0, a, 2]) == SIZE  # clipped
    assert float((boxes[0, a, 1] + boxes[0, a, 3]) / 2) == pytest.approx(centre_y)
    torch.testing.assert_close(scores[0, :, a], torch.full((C,), 0.5 / C))


def test_nms_matches_onnx_non_max_suppression_then_top_k():
    """The export stage runs ONNX's NonMaxSuppression and a top-k in the graph: same detections."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    names = ("boxes", "scores", "max_per_class", "iou", "threshold")
    shapes = ([None, None, 4], [None, None, None], [1], [1], [1])
    types = (TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.INT64, TensorProto.FLOAT, TensorProto.FLOAT)
    graph = helper.make_graph(
        [helper.make_node("NonMaxSuppression", list(names), ["selected"])], "nms",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in zip(names, types, shapes)],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    torch.manual_seed(1)
    raw = torch.randn(16, S, S, B * 5 + C) * 2
    boxes, scores = detector_model.decode(raw, B, C, SIZE)
    for threshold, iou in ((0.01, 0.5), (0.2, 0.3)):
        feed = {"boxes": boxes.numpy(), "scores": scores.numpy(), "max_per_class": np.array([5]),
                "iou": np.array([iou], np.float32), "threshold": np.array([threshold], np.float32)}  # fmt: skip
        selected = session.run(None, feed)[0]
        for i in range(len(raw)):
            rows = selected[selected[:, 0] == i]
            found = scores[i].numpy()[rows[:, 1], rows[:, 2]]
            best = np.argsort(-found, kind="stable")[:5]
            expected = sorted((float(found[t]), int(rows[t, 1]), *boxes[i, rows[t, 2]].tolist()) for t in best)
            mine = sorted((r[4], int(r[5]), *r[:4]) for r in detector_model.nms(boxes[i], scores[i], threshold, iou, 5).tolist())
            np.testing.assert_allclose(np.array(mine), np.array(expected), atol=1e-6)


def test_nms_with_no_candidates_is_empty():
    boxes, scores = detector_model.decode(torch.full((1, S, S, B * 5 + C), -20.0), B, C, SIZE)
    assert detector_model.nms(boxes[0], scores[0], 0.2, 0.5, 10).shape == (0, 6)


# ---------------------------------------------------------------- mAP


TRUTHS = [
    (np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([0, 1])),
    (np.array([[5, 5, 15, 15]], float), np.array([0])),
]


def _rows(*rows):
    return np.array(rows, float).reshape(-1, 6)


def test_map_of_perfect_detections_is_one():
    found = [_rows([0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.8, 1]), _rows([5, 5, 15, 15, 0.7, 0])]
    result = detector_eval.mean_average_precision(found, TRUTHS, classes=3, score_threshold=0.5)
    assert result["map"] == pytest.approx(1.0)
    assert result["ap"] == [pytest.approx(1.0), pytest.approx(1.0), None]
    assert result["precision"] == 1.0 and result["recall"] == 1.0


def test_a_missing_box_or_a_confident_false_positive_lowers_map():
    missing = [_rows([0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.8, 1]), _rows()]
    result = detector_eval.mean_average_precision(missing, TRUTHS, classes=3)
    assert result["ap"][0] == pytest.approx(0.5) and result["map"] == pytest.approx(0.75)

    # a wrong box scoring above every right one: class 0 precision 0, 1/2, 2/3 at recall 0, 1/2, 1;
    # the envelope holds 2/3 from recall 0 to 1
    false_first = [_rows([0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.8, 1], [40, 40, 50, 50, 0.95, 0]),
                   _rows([5, 5, 15, 15, 0.7, 0])]  # fmt: skip
    result = detector_eval.mean_average_precision(false_first, TRUTHS, classes=3)
    assert result["ap"][0] == pytest.approx(2 / 3)


def test_map_counts_a_duplicate_and_a_poor_overlap_as_false_positives():
    found = [_rows([0, 0, 10, 10, 0.9, 0], [0, 0, 10, 10, 0.85, 0], [20, 20, 30, 30, 0.8, 1]),
             _rows([10, 10, 20, 20, 0.7, 0])]  # fmt: skip  (IoU 25/175 with the truth)
    result = detector_eval.mean_average_precision(found, TRUTHS, classes=3, score_threshold=0.0)
    assert result["ap"][0] == pytest.approx(0.5)
    assert result["precision"] == pytest.approx(2 / 4) and result["recall"] == pytest.approx(2 / 3)


def test_average_precision_uses_the_all_point_envelope():
    # precision 1, 0.5, 2/3 at recall 0.5, 0.5, 1: the envelope lifts the middle point
    assert detector_eval.average_precision(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(0.5 + 0.5 * 2 / 3)


# ---------------------------------------------------------------- model and training runs


def test_forward_gives_the_raw_grid_and_build_model_rebuilds_it():
    model = det.build_model(canvas=64, grid=8, boxes=2, classes=10, width=8)
    model.eval()
    raw = model(torch.rand(3, 1, 64, 64))
    assert raw.shape == (3, 8, 8, 2 * 5 + 10)
    larger = det.build_model(canvas=96, grid=12, boxes=3, classes=4, width=4)
    assert larger(torch.rand(1, 1, 96, 96)).shape == (1, 12, 12, 3 * 5 + 4)


def test_bad_geometry_is_a_user_error(tmp_path):
    config = TrainConfig(family="detector", profile="tiny", out=tmp_path / "run", progress=False)
    with pytest.raises(UserError, match="--canvas"):
        det.train(config, det.Options(canvas=60))
    with pytest.raises(UserError, match="--max-size"):
        det.train(config, det.Options(max_size=80))


def _map50(model: detector_model.Detector, scenes: scene_data.Scenes, extra: dict) -> float:
    found, _ = detector_eval.detect(model, det.scene_tensors(scenes)[0], detector_eval.EVAL_SCORE_THRESHOLD, extra["iou_threshold"], extra["max_detections"])
    return detector_eval.scored_detections(found, scenes, extra["score_threshold"])["map"]


def test_a_short_run_beats_an_untrained_model_on_held_out_digits(tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(family="detector", profile="tiny", out=out, progress=False, threads=1, steps=80)
    record = det.train(config, det.Options())
    for name in ("checkpoint.pt", "metrics.json", "curves.png", "detections.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["steps"] == 80 and metrics["history"][-1]["step"] == 80
    assert set(metrics["final"]["ap50"]) == {str(d) for d in range(10)}
    assert record["final"]["map50"] == metrics["final"]["map50"]
    (baseline,) = metrics["final"]["baselines"]
    assert baseline["baseline"] == "untrained_model" and baseline["metric"] == "val_map50"
    assert baseline["model"] == metrics["final"]["val_map50"] and baseline["beats"] == (baseline["model"] > baseline["value"])

    ckpt = checkpoint.load(out, family="detector")
    extra = ckpt["extra"]
    assert extra["grid"] == 8 and extra["boxes"] == 2 and extra["image_size"] == 64
    assert extra["classes"] == [str(d) for d in range(10)]
    assert {"score_threshold", "iou_threshold", "max_detections"} <= set(extra)
    trained = det.build_model(**ckpt["model_args"])
    trained.load_state_dict(ckpt["state_dict"])
    assert trained(torch.rand(2, 1, 64, 64)).shape == (2, 8, 8, 20)
    untrained = det.build_model(**ckpt["model_args"])
    initialize(untrained, "leaky_relu")

    # 80 steps of the tiny net already place and name some digits (mAP about 0.2) where the same
    # network before training finds none: a run that learns nothing fails here.
    scenes = det.held_out_scenes(extra, 64, seed=99)
    learned, chance = _map50(trained, scenes, extra), _map50(untrained, scenes, extra)
    assert learned > chance + 0.05, (learned, chance)


def test_the_profiles_budget_grows_with_the_training_digits_and_a_users_does_not(tmp_path, monkeypatch):
    """The embedded set's 1,257 training digits keep the profile's steps; more digits get more, up to the cap
    (here the embedded digits stand in for a larger set by lowering the digits a budget is for)."""
    small = dict(progress=False, threads=1, train_scenes=64, val_scenes=8, test_scenes=8)
    scenes = {k: small.pop(k) for k in ("train_scenes", "val_scenes", "test_scenes")}
    steps = lambda out: json.loads((out / "metrics.json").read_text())["final"]["steps"]  # noqa: E731
    tiny = det.PROFILES["tiny"]["steps"]
    det.train(TrainConfig(family="detector", profile="tiny", out=tmp_path / "a", **small), det.Options(**scenes))
    assert steps(tmp_path / "a") == tiny
    monkeypatch.setattr(det, "STEPS_ARE_FOR_DIGITS", 1257 * 2 // 3)  # 1.5× as many digits as the budget is for
    det.train(TrainConfig(family="detector", profile="tiny", out=tmp_path / "b", **small), det.Options(**scenes))
    assert steps(tmp_path / "b") == round(tiny * 1.5)
    det.train(TrainConfig(family="detector", profile="tiny", out=tmp_path / "c", steps=tiny, **small), det.Options(**scenes))
    assert steps(tmp_path / "c") == tiny


def test_held_out_scenes_show_only_digits_training_never_saw():
    from training.data import images

    digits = images.digits()
    train, val, test = det.split_digits(digits, seed=7)
    assert len(train.labels) + len(val.labels) + len(test.labels) == len(digits.labels)
    assert len(test.labels) == pytest.approx(det.TEST_FRACTION * len(digits.labels), abs=1)
    assert len(val.labels) == pytest.approx(det.VAL_FRACTION * len(digits.labels), abs=2)
    keys = lambda part: {image.tobytes() for image in part.images}  # noqa: E731
    counts: dict[bytes, int] = {}
    for image in digits.images:
        counts[image.tobytes()] = counts.get(image.tobytes(), 0) + 1
    repeated = {k for k, n in counts.items() if n > 1}  # the same picture twice in the data may land in two parts
    assert not (keys(train) & keys(test)) - repeated and not (keys(train) & keys(val)) - repeated
    assert not (keys(val) & keys(test)) - repeated

    extra = {"held_out": {"data": None, "seed": 7, "min_size": 14, "max_size": 20, "max_objects": 4, "canvas": 64}}
    scenes = det.held_out_scenes(extra, 30, seed=3)
    bank = scene_data.make_bank(test, 14, 20)
    for i in range(len(scenes)):
        for k in range(scenes.counts[i]):
            size, src = scenes.sizes[i, k], scenes.sources[i, k]
            x1, y1 = scenes.boxes[i, k, :2].astype(int) - bank.ink_boxes[size][src][:2]
            pasted = scenes.images[i, 0, y1 : y1 + size, x1 : x1 + size]
            assert (pasted >= bank.patches[size][src]).all()  # the test digit is there (neighbours may add ink)


def test_cli_trains_the_tiny_profile(tmp_path, capsys):
    from training.cli import main

    argv = ["detector", "--profile", "tiny", "--out", str(tmp_path / "cli"), "--no-progress", "--threads", "1", "--epochs", "1",
            "--train-scenes", "32", "--val-scenes", "8", "--test-scenes", "8"]  # fmt: skip
    assert main(argv) == 0
    assert "map50=" in capsys.readouterr().out
    assert (tmp_path / "cli" / "detections.png").exists()


@pytest.mark.slow
def test_quick_profile_reaches_map50_of_0_90(quick_build):
    final = read_metrics(quick_build.run("detector"))["final"]
    assert final["map50"] >= 0.90, final