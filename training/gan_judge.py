"""The GAN's independent judge: Fréchet distance to held-out real digits, a real-vs-real floor, trivial baselines.

The classifier's confidence (gan.judge) rewards images that look like *some* digit; the Fréchet distance
in the same classifier's penultimate feature space (training.frechet) also sees whether the generated
set is spread like real digits. The real digits it compares with are the classifier's held-out test
split of the same data and seed, which neither the judge nor the GAN trained on (the GAN trains on
that split's training part, as the classifier does). Two reference points make the figure readable:

  frechet_real_floor  training digits vs the held-out digits, same sample size: what a generator
                      that reproduced its training set would score (the estimator's small-sample bias
                      included);
  baseline_frechet    generators that learnt nothing worth shipping: the untrained generator, and
                      independent pixels drawn from each pixel's training mean and standard deviation.
                      A run that does not beat the better of them says so loudly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from training import baselines, frechet
from training.config import TrainConfig
from training.data import images as image_data
from training.runs import read_metrics


def split(config: TrainConfig) -> tuple[image_data.ImageSet, image_data.ImageSet]:
    """(training, held-out) digits: the classifier family's test split for this data and seed is held out
    (the judge never trained on it); the GAN trains on the rest (the classifier's training and validation)."""
    return image_data.split(image_data.load(config.data), 0.2, config.seed)


def unit_tensor(images: image_data.ImageSet) -> torch.Tensor:
    return torch.from_numpy(images.images).float().div_(255)


def why_no_frechet(judge: Path, config: TrainConfig) -> str | None:
    """None when the judge classifier never trained on this run's held-out digits, else the reason it may have.

    The judge's metrics.json records its data and seed; the same two give the same split.
    """
    run = judge if judge.is_dir() else judge.parent
    try:
        judged = read_metrics(run)["config"]
    except (OSError, ValueError, KeyError):
        return f"skipped: {run} has no metrics.json saying which digits the judge held out"
    data = str(config.data) if config.data is not None else None
    if judged.get("seed") != config.seed or judged.get("data") != data:
        return (f"skipped: the judge was trained with --seed {judged.get('seed')} --data {judged.get('data')}, this run has "
                f"--seed {config.seed} --data {data}, so its held-out digits may be the judge's training images")
    return None


def pixel_gaussian(train: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n images whose pixels are independent draws from each pixel's training mean and standard deviation, clipped to [0, 1]."""
    noise = torch.randn(n, *train.shape[1:], generator=torch.Generator().manual_seed(seed))
    return (train.mean(dim=0) + noise * train.std(dim=0)).clamp_(0.0, 1.0)


def frechet_report(classifier: nn.Module, generated: torch.Tensor, train: torch.Tensor, held_out: torch.Tensor,
                   baselines: dict[str, torch.Tensor], seed: int) -> dict:
    """Fréchet distances to the held-out digits of the generated images, of a same-size sample of training
    digits (the floor) and of each baseline's images, all in the classifier's penultimate features."""
    reference = frechet.features(classifier, held_out)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[: len(held_out)]
    distance = lambda images: frechet.distance(frechet.features(classifier, images), reference)  # noqa: E731
    return {"frechet": distance(generated), "frechet_real_floor": distance(train[pick]), "frechet_samples": len(held_out),
            "baseline_frechet": {name: distance(images) for name, images in baselines.items()}}


def speak_up(final: dict) -> bool:
    """Compare the generator's Fréchet distance with each baseline's (training.baselines records under
    final["baselines"], a WARNING line for each it does not beat). Returns whether it beat them all."""
    figures = final.get("baseline_frechet") or {}
    if not figures or "frechet" not in final:
        return True
    records = [baselines.compare(name, "frechet", final["frechet"], value) for name, value in figures.items()]
    final[baselines.BASELINES] = baselines.speak("gan", records)
    return not baselines.lost(final)
