"""The GAN family: module shapes and ranges, the classifier judge and the Fréchet distance on hand-made cases,
runs measured against an untrained generator, and the quality bars."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from dnnzoo.errors import UserError
from training import baselines, checkpoint, frechet, gan, gan_judge
from training import cli as train_cli
from training.config import TrainConfig
from training.runs import read_metrics


@pytest.mark.parametrize("output", ["sigmoid", "tanh"])
def test_generator_maps_latents_to_images_in_unit_range(output):
    generator = gan.build_model(latent_size=8, channels=4, output=output).eval()
    with torch.no_grad():
        images = generator(torch.randn(5, 8) * 10)
    assert images.shape == (5, 1, 28, 28)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


def test_discriminator_gives_one_logit_per_image():
    assert gan.Discriminator(channels=4)(torch.rand(3, 1, 28, 28)).shape == (3,)


class Brightness(nn.Module):
    """A 'generator' whose image brightness is Φ(z₀), uniform in [0, 1]."""

    latent_size = 2

    def forward(self, latent):
        level = 0.5 * (1 + torch.erf(latent[:, :1] / math.sqrt(2)))
        return level[:, :, None, None].expand(-1, 1, 28, 28)


class Bins(nn.Module):
    """A confident classifier whose class is the brightness decile: uniform classes for Brightness."""

    def __init__(self, classes=10):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(50.0))
        self.classes = classes

    def forward(self, images):
        decile = (images.mean(dim=(1, 2, 3)) * self.classes).long().clamp(0, self.classes - 1)
        return nn.functional.one_hot(decile, self.classes).float() * self.scale


class Constant(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, images):
        return self.logits.expand(len(images), -1)


def test_judge_on_a_confident_classifier_with_uniform_classes():
    scores = gan.judge(Brightness(), Bins(), n=2000, seed=1)
    assert scores["mean_top_prob"] == pytest.approx(1.0, abs=1e-6)
    assert sum(scores["histogram"]) == 2000 and len(scores["histogram"]) == 10
    assert min(scores["histogram"]) > 130  # 200 expected per class
    assert scores["class_entropy"] > 0.99 * math.log(10) and scores["class_entropy"] <= math.log(10) + 1e-9


def test_judge_on_one_confident_class_and_on_an_undecided_classifier():
    one = gan.judge(Brightness(), Constant([0.0, 0.0, 0.0, 40.0] + [0.0] * 6), n=300, seed=0)
    assert one["histogram"][3] == 300 and one["class_entropy"] == pytest.approx(0.0, abs=1e-12)
    assert one["mean_top_prob"] > 0.99
    undecided = gan.judge(Brightness(), Constant([0.0] * 10), n=300, seed=0)
    assert undecided["mean_top_prob"] == pytest.approx(0.1)


def test_judge_is_reproducible_for_a_seed():
    generator = gan.build_model(latent_size=4, channels=2)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    assert gan.judge(generator, classifier, n=64, seed=5) == gan.judge(generator, classifier, n=64, seed=5)


def test_frechet_distance_matches_the_matrix_square_root_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 6))
    b = rng.normal(size=(250, 6)) @ rng.normal(size=(6, 6)) + 0.5
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real)
    assert frechet.distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet.distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_a_shifted_copy_is_the_squared_shift():
    a = np.random.default_rng(1).normal(size=(200, 4))
    shift = np.array([3.0, 0.0, -4.0, 0.0])
    assert frechet.distance(a, a + shift) == pytest.approx(25.0, rel=1e-9)


def test_frechet_features_are_the_input_of_the_last_linear_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 5), nn.ReLU(), nn.Dropout(0.5), nn.Linear(5, 10)).train()
    images = torch.rand(7, 1, 28, 28)
    expected = torch.relu(model[1](images.flatten(1))).double().detach().numpy()
    assert np.allclose(frechet.features(model, images), expected)
    assert model.training  # put back as found


def test_dcgan_initialisation_draws_weights_from_normal_0_002():
    torch.manual_seed(0)
    generator, discriminator = gan.build_model(latent_size=32, channels=24), gan.Discriminator(channels=24)
    for model in (generator, discriminator):
        gan.dcgan_initialize(model)
        weights = torch.cat([m.weight.detach().flatten() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))])
        assert float(weights.mean()) == pytest.approx(0.0, abs=1e-3) and float(weights.std()) == pytest.approx(0.02, rel=0.02)
        scales = torch.cat([m.weight.detach() for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))])
        assert float(scales.mean()) == pytest.approx(1.0, abs=0.01) and float(scales.std()) == pytest.approx(0.02, rel=0.2)
        assert all(float(m.bias.detach().abs().max()) == 0.0 for m in model.modules() if getattr(m, "bias", None) is not None)


def test_dcgan_init_and_init_are_refused_together(tmp_path):
    argv = ["--profile", "tiny", "--out", str(tmp_path / "run"), "--dcgan-init", "--init", "he", "--no-progress"]
    trainer, config, options = train_cli.parse("gan", argv, "dnnzoo train")
    with pytest.raises(UserError, match="--dcgan-init and --init"):
        trainer.train(config, options)


def test_spectral_norm_makes_each_discriminator_weight_1_lipschitz():
    torch.manual_seed(0)
    discriminator = gan.Discriminator(channels=4, batch_norm=False)
    gan.dcgan_initialize(discriminator)
    raw = discriminator.head.weight.detach().clone()
    discriminator.spectrally_normalise()
    assert torch.equal(discriminator.head.parametrizations.weight.original, raw)  # initialised first, then normalised
    for layer in (discriminator.body[0], discriminator.body[2], discriminator.head):
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert float(sigma) == pytest.approx(1.0, rel=0.05)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in discriminator.modules())


def _untrained_generator(model_args: dict, seed: int) -> nn.Module:
    """The baseline a test builds for itself: the same architecture, PyTorch's own initialisation, batch norm estimated."""
    torch.manual_seed(seed)
    untrained = gan.build_model(**model_args)
    gan.recalibrate_batch_norm(untrained, model_args["latent_size"], 5, 100, torch.Generator().manual_seed(0), "cpu")
    return untrained


def test_tiny_profile_writes_a_generator_only_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/classifier-tiny here: judging is skipped and said so
    record = gan.train(TrainConfig(family="gan", profile="tiny", out=tmp_path / "run", progress=False), gan.Options())
    for name in ("checkpoint.pt", "discriminator.pt", "metrics.json", "curves.png", "samples.png"):
        assert (tmp_path / "run" / name).is_file()
    assert record["final"]["judge"].startswith("skipped")
    ckpt = checkpoint.load(tmp_path / "run", family="gan")
    generator = gan.build_model(**ckpt["model_args"])
    generator.load_state_dict(ckpt["state_dict"])  # strict: exactly the generator's keys
    assert ckpt["extra"]["latent_size"] == 8 and ckpt["extra"]["image_size"] == 28
    assert ckpt["extra"]["output_range"] == [0.0, 1.0]
    with torch.no_grad():
        assert generator.eval()(torch.randn(2, 8)).shape == (2, 1, 28, 28)


@pytest.fixture(scope="module")
def judge_run(tmp_path_factory):
    """A classifier whose features mean something (the tiny profile's does not learn): quick, two epochs."""
    from training import classifier

    run = tmp_path_factory.mktemp("judge") / "classifier"
    classifier.train(TrainConfig(family="classifier", profile="quick", epochs=2, threads=1, out=run, progress=False), classifier.Options())
    return run


def test_tiny_run_beats_untrained_and_mean_image_baselines_in_the_judges_features(tmp_path, judge_run):
    config = TrainConfig(family="gan", profile="tiny", out=tmp_path / "run", progress=False)
    final = gan.train(config, gan.Options(judge=judge_run, judge_samples=200))["final"]
    assert final["judge"] == str(judge_run) and sum(final["histogram"]) == 200

    classifier = gan.load_classifier(judge_run)
    train_set, held_out_set = gan_judge.split(config)
    train, held_out = gan_judge.unit_tensor(train_set), gan_judge.unit_tensor(held_out_set)
    assert final["train_images"] == len(train) and final["frechet_samples"] == len(held_out)
    reference = frechet.features(classifier, held_out)
    fd = lambda images: frechet.distance(frechet.features(classifier, images), reference)  # noqa: E731
    ckpt = checkpoint.load(tmp_path / "run", family="gan")
    generator = gan.build_model(**ckpt["model_args"])
    generator.load_state_dict(ckpt["state_dict"])
    assert final["frechet"] == pytest.approx(fd(gan.sample(generator, len(held_out), config.seed)), rel=1e-6)  # the shipped generator's

    untrained = _untrained_generator(ckpt["model_args"], config.seed)
    untrained_fd = fd(gan.sample(untrained, len(held_out), config.seed))
    mean_image_fd = fd(train.mean(dim=0, keepdim=True).expand(len(held_out), -1, -1, -1))
    assert final["frechet"] < 0.25 * min(untrained_fd, mean_image_fd), (final["frechet"], untrained_fd, mean_image_fd)
    assert final["frechet"] > final["frechet_real_floor"]  # no generator is closer to held-out digits than real ones
    assert final["class_entropy"] > gan.judge(untrained, classifier, 200, seed=config.seed)["class_entropy"]
    assert not baselines.lost(final), final


def test_a_generator_that_learns_nothing_speaks_up(tmp_path, judge_run, capsys):
    config = TrainConfig(family="gan", profile="tiny", epochs=1, out=tmp_path / "run", progress=False, lr=0.0)
    final = gan.train(config, gan.Options(judge=judge_run, judge_samples=50, ema=0.0))["final"]
    assert final["frechet"] == pytest.approx(final["baseline_frechet"]["untrained_generator"])  # lr 0: it is the untrained one
    lost = baselines.lost(final)
    assert {r["baseline"] for r in lost} >= {"untrained_generator"} and all(r["model"] == final["frechet"] for r in lost)
    assert "WARNING: gan: frechet" in capsys.readouterr().err


def test_frechet_is_skipped_when_the_judge_held_out_other_digits(tmp_path, judge_run):
    config = TrainConfig(family="gan", profile="tiny", epochs=1, out=tmp_path / "run", progress=False, seed=7)
    final = gan.train(config, gan.Options(judge=judge_run, judge_samples=50))["final"]
    assert "frechet" not in final and "--seed 42" in final["frechet_skipped"], final
    assert "mean_top_prob" in final and "baseline_frechet" not in final  # the confidence judge still runs


def test_missing_judge_run_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--judge"):
        gan.train(TrainConfig(family="gan", profile="tiny", out=tmp_path / "run", progress=False), gan.Options(judge=tmp_path / "nope"))


@pytest.mark.slow
def test_quick_profile_meets_the_bars(quick_build):
    # `dnnzoo build` trains the classifier first and judges the GAN with it.
    final = read_metrics(quick_build.run("gan"))["final"]
    assert final["judge"] == str(quick_build.run("classifier")), final
    assert final["mean_top_prob"] >= 0.8, final
    assert final["class_entropy"] >= 0.85 * math.log(10), final
    assert not baselines.lost(final) and final["frechet"] < min(final["baseline_frechet"].values()), final
