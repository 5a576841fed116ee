"""The GAN family: module shapes and ranges, the classifier judge on hand-made cases, runs and the quality bar."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dnnzoo.errors import UserError
from training import checkpoint, gan
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


def test_tiny_run_is_judged_by_a_classifier_run(tmp_path):
    from training import classifier

    clf_dir = tmp_path / "clf"
    classifier.train(TrainConfig(family="classifier", profile="tiny", out=clf_dir, progress=False), classifier.Options())
    options = gan.Options(judge=clf_dir, judge_samples=50)
    final = gan.train(TrainConfig(family="gan", profile="tiny", out=tmp_path / "run", progress=False), options)["final"]
    assert final["judge"] == str(clf_dir) and sum(final["histogram"]) == 50
    assert 0.0 < final["mean_top_prob"] <= 1.0 and 0.0 <= final["class_entropy"] <= math.log(10) + 1e-9


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
