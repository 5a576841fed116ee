"""The stacked autoencoder: run folder, rebuild, encode/decode, layer-wise pretraining, user data, quality bar."""

from __future__ import annotations

import math
import numpy as np
import pytest
import torch
from PIL import Image

from dnnzoo.errors import UserError
from training import autoencoder, checkpoint
from training.config import TrainConfig
from training.data import images as image_data
from training.runs import read_metrics

from tests.training.hopeless import hopeless_run


def tiny(tmp_path, **config) -> TrainConfig:
    return TrainConfig(family="autoencoder", profile="tiny", out=tmp_path / "run", progress=False, **config)


def _mean_image_mse_on_test(seed: int = 42) -> float:
    """The test split's MSE when every image is answered with the training split's mean image."""
    train, test = image_data.split(image_data.digits(), 0.2, seed)
    flat = lambda s: s.images.reshape(len(s.images), -1).astype(np.float64) / 255  # noqa: E731
    return float(np.mean((flat(test) - flat(train).mean(axis=0)) ** 2))


def test_tiny_run_writes_a_complete_run_folder(tmp_path):
    record = autoencoder.train(tiny(tmp_path), autoencoder.Options())
    ckpt = checkpoint.load(tmp_path / "run", family="autoencoder")
    final = read_metrics(tmp_path / "run")["final"]
    assert final == record["final"]
    assert final["code_size"] == 16 and (final["test_images"], final["val_images"]) == (360, 144)
    assert ckpt["extra"]["code_size"] == 16 and ckpt["extra"]["outputs"] == ["codes", "reconstructions"]
    for png in ("curves.png", "reconstructions.png"):
        assert (tmp_path / "run" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tiny_run_reconstructs_held_out_digits_better_than_the_mean_image(tmp_path):
    final = autoencoder.train(tiny(tmp_path), autoencoder.Options())["final"]
    mean_image = _mean_image_mse_on_test()
    assert final["test_mse"] < 0.6 * mean_image, (final["test_mse"], mean_image)
    records = {r["baseline"]: r for r in final["baselines"]}
    assert records["mean_image"]["beats"] is True and records["mean_image"]["model"] == final["val_mse"]


def test_monitoring_sees_validation_only(tmp_path):
    record = autoencoder.train(tiny(tmp_path, steps=150), autoencoder.Options())
    history, final = record["history"], record["final"]
    assert len(history) > 1 and all(set(row) >= {"loss", "val_loss"} and not any(k.startswith("test") for k in row) for row in history)
    assert history[-1]["val_loss"] == pytest.approx(final["val_mse"], rel=1e-6) and final["val_mse"] != final["test_mse"]


def test_a_run_that_cannot_beat_its_baselines_says_so_and_still_exits_0(tmp_path, capsys):
    run = hopeless_run("autoencoder", autoencoder.VAL_FRACTION, tmp_path / "run", capsys)
    assert run.code == 0 and "autoencoder: test_mse=" in run.out
    records = run.records
    assert records["mean_image"]["beats"] is False and records["pca"]["beats"] is False
    flat = lambda s: s.images.reshape(len(s.images), -1).astype(np.float64) / 255  # noqa: E731
    assert records["mean_image"]["value"] == pytest.approx(np.mean((flat(run.val) - flat(run.fit_part).mean(axis=0)) ** 2), rel=1e-5)
    assert records["pca"]["value"] < records["mean_image"]["value"]
    assert "WARNING: autoencoder: val_mse" in run.err and "does NOT beat the mean_image baseline" in run.err


def test_rebuilt_model_reproduces_the_recorded_error_and_splits_into_encode_decode(tmp_path):
    record = autoencoder.train(tiny(tmp_path), autoencoder.Options())
    ckpt = checkpoint.load(tmp_path / "run")
    model = autoencoder.build_model(**ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    _, test = image_data.split(image_data.digits(), 0.2, 42)
    x = torch.from_numpy(test.images.astype(np.float32) / 255)
    with torch.no_grad():
        codes = model.encode(x)
        recon = model(x)
        assert codes.shape == (len(x), 16) and recon.shape == x.shape
        assert torch.equal(model.decode(codes), recon)
    assert recon.min() >= 0 and recon.max() <= 1
    assert float(((recon - x) ** 2).mean()) == pytest.approx(record["final"]["test_mse"], rel=1e-5)


def test_pca_baseline_is_exact_with_enough_components():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(3, 20))
    train, test = rng.normal(size=(50, 3)) @ basis, rng.normal(size=(10, 3)) @ basis
    assert autoencoder.pca_mse(train, test, 3) < 1e-20
    assert autoencoder.pca_mse(train, test, 1) > 1e-3


def test_encoder_and_decoder_mirror_each_other():
    model = autoencoder.build_model(hidden=[64, 32, 8], activation="selu")
    enc = [layer.linear for layer in model.encoder]
    dec = [layer.linear for layer in model.decoder]
    assert [(l.in_features, l.out_features) for l in enc] == [(784, 64), (64, 32), (32, 8)]
    assert [(l.in_features, l.out_features) for l in dec] == [(8, 32), (32, 64), (64, 784)]
    assert isinstance(model.decoder[-1].act, torch.nn.Sigmoid) and isinstance(model.encoder[-1].act, torch.nn.Identity)


def test_layerwise_pretraining_trains_each_pair_then_fine_tunes(tmp_path):
    record = autoencoder.train(tiny(tmp_path), autoencoder.Options(layerwise=True, pair_steps=30))
    history = record["history"]
    assert [row["stage"] for row in history] == [1, 2, 0]  # each stage is under 50 steps a round: one evaluation each
    per_epoch = math.ceil(record["final"]["train_images"] / 64)
    budget = autoencoder.PROFILES["tiny"]["steps"]
    whole = lambda steps: math.ceil(steps / per_epoch) * per_epoch  # noqa: E731 - a budget ends with its epoch
    assert [row["step"] for row in history] == [whole(30), whole(30), whole(budget)]
    assert record["final"]["layerwise"] is True


def test_layerwise_without_fine_tuning_keeps_the_pretrained_stack(tmp_path):
    record = autoencoder.train(tiny(tmp_path, epochs=0), autoencoder.Options(layerwise=True, pair_steps=60))
    assert [row["stage"] for row in record["history"]] == [1, 2]  # one evaluation round per pair, no end-to-end stage
    # The stacked pairs, never trained end to end, already reconstruct held-out digits better than the mean image.
    assert record["final"]["test_mse"] < _mean_image_mse_on_test()


def test_nothing_to_train_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nothing to train"):
        autoencoder.train(tiny(tmp_path, epochs=0), autoencoder.Options())


def test_image_folder_via_data(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(20):
        folder = tmp_path / "pics" / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(folder / f"{i}.png")
    record = autoencoder.train(tiny(tmp_path, data=tmp_path / "pics"), autoencoder.Options())
    assert record["final"]["code_size"] == 16 and np.isfinite(record["final"]["test_mse"])


@pytest.mark.slow
def test_quick_profile_beats_pca_at_the_same_code_size(quick_build):
    final = read_metrics(quick_build.run("autoencoder"))["final"]
    assert final["test_mse"] < final["pca_mse"], final