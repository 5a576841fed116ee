"""The classifier family: run folder, rebuild, architectures, user data, bad input, transfer, quality bar."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from PIL import Image

from dnnzoo.errors import UserError
from training import autoencoder, baselines, checkpoint, classifier
from training import cli as train_cli
from training.config import TrainConfig
from training.data import images as image_data
from training.data import validation
from training.runs import read_metrics

from tests.training.hopeless import hopeless_run


def tiny(tmp_path, name="run", **config) -> TrainConfig:
    return TrainConfig(family="classifier", profile="tiny", out=tmp_path / name, progress=False, **config)


def test_tiny_run_writes_a_complete_run_folder(tmp_path):
    record = classifier.train(tiny(tmp_path), classifier.Options())
    run = tmp_path / "run"
    ckpt = checkpoint.load(run, family="classifier")  # weights_only=True inside
    assert ckpt["extra"]["labels"] == [str(i) for i in range(10)]
    norm = ckpt["extra"]["normalisation"]
    assert norm["scale"] == pytest.approx(1 / 255) and 0 < norm["mean"] < 1 and norm["std"] > 0
    metrics = read_metrics(run)
    assert metrics["final"]["test_acc"] == record["final"]["test_acc"]
    assert metrics["final"]["test_images"] == 360 and metrics["final"]["val_images"] == 144 and len(metrics["history"]) == 1
    for png in ("curves.png", "predictions.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tiny_run_beats_every_constant_answer_on_the_test_split(tmp_path):
    final = classifier.train(tiny(tmp_path), classifier.Options())["final"]
    _, test = image_data.split(image_data.digits(), 0.2, 42)
    best_constant = np.bincount(test.labels).max() / len(test.labels)  # the majority class, chosen knowing the test labels
    assert final["test_acc"] > best_constant + 0.1, (final["test_acc"], best_constant)


def test_monitoring_sees_validation_only_and_the_test_split_is_todays(tmp_path):
    """The history holds validation figures only; validation is carved from the training split, stratified,
    following --seed, and the test split is exactly images.split(all, 0.2, seed)."""
    record = classifier.train(tiny(tmp_path, steps=60), classifier.Options())  # 4 steps an epoch: rounds of 13 epochs, then the last
    assert len(record["history"]) > 1
    assert all("val_loss" in row and "val_acc" in row and not any(k.startswith("test") for k in row) for row in record["history"])
    train, test = image_data.split(image_data.digits(), 0.2, 42)
    fit_part, val = validation.carve(train, classifier.VAL_FRACTION, 42)
    assert (record["final"]["val_images"], record["final"]["train_images"]) == (len(val.labels), 10 * 20)  # then 20 labels per class
    assert len(val.labels) == 144 and len(fit_part.labels) + len(val.labels) == len(train.labels) and len(test.labels) == 360
    key = lambda s: {img.tobytes() for img in s.images}  # noqa: E731
    assert key(val) <= key(train) and not key(val) & key(fit_part) and not key(val) & key(test)
    assert np.abs(np.bincount(val.labels, minlength=10) / 144 - np.bincount(train.labels) / len(train.labels)).max() < 0.01
    assert key(validation.carve(train, classifier.VAL_FRACTION, 7)[1]) != key(val)


def test_a_run_that_cannot_beat_its_baselines_says_so_and_still_exits_0(tmp_path, capsys):
    run = hopeless_run("classifier", classifier.VAL_FRACTION, tmp_path / "run", capsys)
    assert run.code == 0 and "classifier: test_acc=" in run.out
    shares = np.bincount(run.val.labels) / len(run.val.labels)  # a constant answer scores one class's share of validation
    assert min(abs(run.records["majority_class"]["value"] - shares)) < 1e-9
    linear = run.records["linear_pixels"]
    assert linear["beats"] is False and linear["model"] == run.final["val_acc"] and linear["value"] > 0.9
    assert "WARNING: classifier: val_acc" in run.err and "does NOT beat the linear_pixels baseline" in run.err


def test_rebuilt_model_reproduces_the_recorded_accuracy(tmp_path):
    record = classifier.train(tiny(tmp_path), classifier.Options())
    ckpt = checkpoint.load(tmp_path / "run")
    model = classifier.build_model(**ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    _, test = image_data.split(image_data.digits(), 0.2, 42)
    x = torch.from_numpy(test.images.astype(np.float32) / 255)
    with torch.no_grad():
        logits = model(x)
        again = classifier.build_model(**ckpt["model_args"])
        again.load_state_dict(ckpt["state_dict"])
        assert torch.equal(again.eval()(x), logits)
    assert logits.shape == (360, 10)
    accuracy = float((logits.argmax(1) == torch.from_numpy(test.labels)).float().mean())
    assert accuracy == pytest.approx(record["final"]["test_acc"], abs=1e-6)


@pytest.mark.parametrize("arch", ["vgg", "mlp"])
def test_other_architectures_train_and_map_images_to_logits(tmp_path, arch):
    record = classifier.train(tiny(tmp_path), classifier.Options(arch=arch))
    ckpt = checkpoint.load(tmp_path / "run")
    assert ckpt["model_args"]["arch"] == arch == record["final"]["arch"]
    model = classifier.build_model(**ckpt["model_args"]).eval()
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_residual_unit_projects_the_shortcut_only_when_the_shape_changes():
    same = classifier.ResidualUnit(8, 8, 1, "relu", True)
    assert isinstance(same.shortcut, torch.nn.Identity)
    down = classifier.ResidualUnit(8, 16, 2, "relu", True)
    conv, norm = down.shortcut
    assert conv.kernel_size == (1, 1) and conv.stride == (2, 2) and isinstance(norm, torch.nn.BatchNorm2d)
    assert down(torch.rand(2, 8, 14, 14)).shape == (2, 16, 7, 7)


def test_a_stride_2_stem_halves_every_stage_and_keeps_the_logits():
    images = torch.rand(2, 1, 28, 28)
    for stride, size in ((1, 28), (2, 14)):
        model = classifier.build_model(widths=(8, 16), stem_stride=stride).eval()
        assert model.stem(model.normalise(images)).shape == (2, 8, size, size)
        assert model.stages(model.stem(model.normalise(images))).shape == (2, 16, size // 2, size // 2)
        assert model(images).shape == (2, 10)


def test_augmentation_moves_pixels_but_keeps_shape_and_range():
    torch.manual_seed(0)
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1.0
    y = classifier.augment(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert not torch.allclose(x, y)
    assert y.sum().item() == pytest.approx(x.sum().item(), rel=0.35)  # small transforms keep most of the ink


def test_class_subset_and_label_budget_are_relabelled(tmp_path):
    options = classifier.Options(classes=("5", "6", "7"), labels_per_class=4)
    record = classifier.train(tiny(tmp_path), options)
    assert record["final"]["train_images"] == 12
    assert record["final"]["test_images"] == pytest.approx(108, abs=3)
    ckpt = checkpoint.load(tmp_path / "run")
    assert ckpt["extra"]["labels"] == ["5", "6", "7"] and ckpt["model_args"]["num_classes"] == 3


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two easy classes: a bright square on the left or on the right."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 30, (n, 28, 28))
    for i, label in enumerate(labels):
        images[i, 8:20, (4 if label == 0 else 16) : (12 if label == 0 else 24)] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def test_idx_files_via_data(tmp_path):
    images, labels = _blobs(40)
    folder = tmp_path / "idx"
    folder.mkdir()
    _write_idx(folder / "train-images-idx3-ubyte", images)
    _write_idx(folder / "train-labels-idx1-ubyte", labels)
    record = classifier.train(tiny(tmp_path, data=folder), classifier.Options())
    assert record["final"]["test_images"] == 8
    assert checkpoint.load(tmp_path / "run")["extra"]["labels"] == ["0", "1"]


def test_image_folder_via_data(tmp_path):
    images, labels = _blobs(24)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "pics" / ("left" if label == 0 else "right")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).resize((32, 32)).save(folder / f"{i}.png")
    classifier.train(tiny(tmp_path, data=tmp_path / "pics"), classifier.Options(arch="vgg"))
    assert checkpoint.load(tmp_path / "run")["extra"]["labels"] == ["left", "right"]


def test_empty_folder_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = train_cli.main(["classifier", "--profile", "tiny", "--no-progress", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")])
    assert code == 2
    assert "no class sub-folders" in capsys.readouterr().err


def test_wrong_idx_magic_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(struct.pack(">HBB", 0, 0x0D, 3) + b"\x00" * 64)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    code = train_cli.main(["classifier", "--profile", "tiny", "--no-progress", "--data", str(bad), "--out", str(tmp_path / "run")])
    assert code == 2
    assert "wrong IDX magic number" in capsys.readouterr().err


def test_unknown_class_name_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not among the data's classes"):
        classifier.train(tiny(tmp_path), classifier.Options(classes=("5", "x")))


def test_init_from_a_checkpoint_of_another_family_is_refused(tmp_path):
    checkpoint.save(tmp_path, "gan", {"latent": 8}, {"w": torch.zeros(1)})
    with pytest.raises(UserError, match="gan checkpoint cannot initialise a classifier"):
        classifier.train(tiny(tmp_path, init_from=tmp_path), classifier.Options())


def test_transfer_from_the_autoencoder_reuses_and_freezes_its_encoder(tmp_path):
    autoencoder.train(TrainConfig(family="autoencoder", profile="tiny", out=tmp_path / "ae", progress=False), autoencoder.Options())
    source = checkpoint.load(tmp_path / "ae")["state_dict"]
    record = classifier.train(tiny(tmp_path, init_from=tmp_path / "ae", freeze=("encoder",)), classifier.Options())
    assert record["final"]["arch"] == "mlp" and record["final"]["frozen"] > 0
    state = checkpoint.load(tmp_path / "run")["state_dict"]
    encoder = [k for k in source if k.startswith("encoder.")]
    assert encoder and all(torch.equal(state[k], source[k]) for k in encoder + ["mean", "std"])
    head = checkpoint.load(tmp_path / "run")["model_args"]
    assert head["hidden"] == checkpoint.load(tmp_path / "ae")["model_args"]["hidden"]


def test_transfer_from_a_classifier_replaces_the_head_and_keeps_frozen_layers(tmp_path):
    classifier.train(tiny(tmp_path, name="low"), classifier.Options(classes=("0", "1", "2", "3", "4")))
    low = checkpoint.load(tmp_path / "low")["state_dict"]
    config = tiny(tmp_path, name="high", init_from=tmp_path / "low", freeze=("stem", "stages.0"))
    record = classifier.train(config, classifier.Options(classes=("5", "6", "7"), labels_per_class=5))
    high = checkpoint.load(tmp_path / "high")["state_dict"]
    frozen = [k for k in low if k.startswith(("stem.", "stages.0."))]
    assert frozen and all(torch.equal(high[k], low[k]) for k in frozen)  # running BN statistics included
    assert high["head.1.weight"].shape == (3, 16) and low["head.1.weight"].shape == (5, 16)
    trained = [k for k in low if k.startswith("stages.1.") and k.endswith("weight")]
    assert any(not torch.equal(high[k], low[k]) for k in trained)
    assert record["final"]["transferred"] > 0


def test_arch_conflicting_with_the_source_is_refused(tmp_path):
    classifier.train(tiny(tmp_path, name="low"), classifier.Options())
    with pytest.raises(UserError, match="cannot reuse its layers"):
        classifier.train(tiny(tmp_path, name="high", init_from=tmp_path / "low"), classifier.Options(arch="vgg"))


@pytest.mark.slow
def test_quick_profile_reaches_the_accuracy_bar_and_beats_its_baselines(quick_build):
    final = read_metrics(quick_build.run("classifier"))["final"]
    assert final["test_acc"] >= 0.98, final
    assert {r["baseline"] for r in final["baselines"]} == {"majority_class", "linear_pixels"} and not baselines.lost(final), final["baselines"]

def test_too_few_images_to_split_stratified_is_a_clear_error():
    import numpy as np

    from dnnzoo.errors import UserError
    from training.data.images import ImageSet, split

    images = ImageSet(np.zeros((20, 28, 28), np.uint8), np.repeat(np.arange(10), 2), [str(i) for i in range(10)])
    with pytest.raises(UserError, match="20 images of 10 classes are too few .* at least 50 images"):
        split(images, 0.2, seed=1)
    train, test = split(ImageSet(np.zeros((50, 28, 28), np.uint8), np.repeat(np.arange(10), 5), images.classes), 0.2, seed=1)
    assert sorted(test.labels) == list(range(10)) and len(train.labels) == 40
