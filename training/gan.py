"""Generate digit images with a DCGAN: latent vectors to 28×28 images, judged by the trained classifier.

The generator follows the DCGAN recipe: a dense projection of the latent vector to a 7×7 feature
map, one stride-1 transposed convolution there (cheap at 7×7; with the matching discriminator layer it
lifted the quick profile's judged confidence from ≈0.79 to ≈0.80–0.82, where wider 14×14 layers cost
more and gained less), then transposed convolutions (stride 2) with batch norm and ReLU up to
28×28, ending in a sigmoid so that images come out in [0, 1] like every other image model here
(export turns them into uint8). The discriminator mirrors it with strided convolutions, batch norm and LeakyReLU; it exists
only for training, so the checkpoint's state_dict is the generator alone (what `build_model`
rebuilds and export serves) and the discriminator goes to a side file, `discriminator.pt`.

What made the quick profile's digits recognisable at every seed (README, "The GAN"): the
discriminator sees real and generated images through DiffAugment's random translation
(training.gan_augment), a lazy R1 penalty keeps it smooth around the real digits, the shipped
generator is an exponential moving average of the weights, and the run is long enough for that
average to settle. Spectral norm, a faster discriminator (TTUR, --d-lr), cutout, wider layers and a
longer latent were tried and are left as flags or out.

GAN losses say little about image quality, so the run is scored by the classifier family: generated
digits should be recognisable (a high mean top-class probability) and cover the classes (a class
histogram of high entropy); `judge` computes both. training.gan_judge adds a Fréchet distance to
held-out digits in that classifier's feature space, the real-vs-real floor, and trivial baselines
the run must beat. The GAN trains on the classifier's training split of the same data and seed, so
the held-out digits are unseen by both networks.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from dnnzoo.errors import UserError
from training import checkpoint, gan_judge, plots
from training.gan_augment import translate
from training import device as devices
from training.config import TrainConfig, apply_profile, set_fields
from training.initialization import initialize
from training.optim import Schedule, make_optimizer
from training.regularization import clip_gradients
from training.runs import Run
from training.transfer import freeze, init_from

OUTPUTS = ("sigmoid", "tanh")
R1_EVERY = 4


@dataclass
class Options:
    latent_size: int | None = None
    channels: int | None = None
    output: str | None = None
    beta1: float | None = None
    label_smoothing: float | None = None
    judge: Path | None = None
    judge_samples: int | None = None
    judge_every: int | None = None
    ema: float | None = None
    d_lr: float | None = None
    spectral_norm: bool | None = None
    dcgan_init: bool | None = None
    diff_augment: int | None = None
    r1: float | None = None


PROFILES = {
    "tiny": {"epochs": 2, "batch_size": 16, "lr": 2e-3, "optimizer": "adam", "schedule": "constant", "threads": 1,
             "latent_size": 8, "channels": 8, "output": "sigmoid", "beta1": 0.5, "label_smoothing": 0.1, "judge_samples": 100, "judge_every": 0,
             "ema": 0.9, "diff_augment": 2, "r1": 0.1, "spectral_norm": False, "dcgan_init": False},
    "quick": {"epochs": 120, "batch_size": 64, "lr": 3e-3, "optimizer": "adam", "schedule": "constant", "threads": 1,
              "latent_size": 32, "channels": 24, "output": "sigmoid", "beta1": 0.5, "label_smoothing": 0.0, "judge_samples": 1000, "judge_every": 0,
              "ema": 0.99, "diff_augment": 3, "r1": 0.1, "spectral_norm": False, "dcgan_init": False},
    "full": {"epochs": 200, "batch_size": 64, "lr": 2e-4, "optimizer": "adam", "schedule": "constant",
             "latent_size": 64, "channels": 64, "output": "sigmoid", "beta1": 0.5, "label_smoothing": 0.1, "judge_samples": 1000, "judge_every": 0,
             "ema": 0.99, "diff_augment": 0, "r1": 0.0, "spectral_norm": False, "dcgan_init": False},
}


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--latent-size", type=int, help="length Z of the latent vector z ~ N(0, I)")
    group.add_argument("--channels", type=int, help="feature maps of the 14×14 layers (the 7×7 ones have twice as many)")
    group.add_argument("--output", choices=OUTPUTS, help="generator's last activation; tanh is rescaled to [0, 1] inside the module")
    group.add_argument("--beta1", type=float, help="Adam's β1 for both networks (DCGAN uses 0.5)")
    group.add_argument("--label-smoothing", type=float, help="real images are labelled 1 - this for the discriminator")
    group.add_argument("--judge", type=Path, metavar="CLASSIFIER_RUN",
                       help="classifier run that scores the samples and whose features the Fréchet distance uses (default runs/classifier-PROFILE if it exists)")
    group.add_argument("--judge-samples", type=int, help="how many generated images the classifier judges")
    group.add_argument("--ema", type=float, metavar="DECAY",
                       help="keep an exponential moving average of the generator's weights with this decay per step and ship it (0: the last weights)")
    group.add_argument("--judge-every", type=int, metavar="EPOCHS", help="also judge every EPOCHS epochs into the history (0: at the end only)")
    group.add_argument("--diff-augment", type=int, metavar="PIXELS",
                       help="move real and generated images by up to ±PIXELS before the discriminator sees them (DiffAugment; 0: off)")
    group.add_argument("--r1", type=float, metavar="GAMMA",
                       help=f"R1 penalty γ/2·‖∇D(x)‖² on real images, applied every {R1_EVERY}th discriminator step at {R1_EVERY}× weight (0: off)")
    group.add_argument("--d-lr", type=float, metavar="LR",
                       help="the discriminator's learning rate (two time-scale update rule; default: --lr, which is the generator's)")
    group.add_argument("--spectral-norm", action=argparse.BooleanOptionalAction, default=None,
                       help="spectral normalisation of the discriminator's weights (SN-GAN), replacing its batch norm")
    group.add_argument("--dcgan-init", action=argparse.BooleanOptionalAction, default=None,
                       help="DCGAN's initialisation for both networks: weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02), biases 0 "
                            "(instead of --init's schemes, so the two are refused together)")


class Generator(nn.Module):
    """latent [N, Z] -> images [N, 1, 28, 28] in [0, 1]."""

    def __init__(self, latent_size: int = 32, channels: int = 32, output: str = "sigmoid", image_size: int = 28):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; choose from {', '.join(OUTPUTS)}")
        if image_size % 4:
            raise ValueError("image_size must be a multiple of 4 (two stride-2 upsamplings)")
        self.latent_size, self.output, self.base = latent_size, output, image_size // 4
        wide = 2 * channels
        self.project = nn.Sequential(nn.Linear(latent_size, wide * self.base * self.base, bias=False),
                                     nn.BatchNorm1d(wide * self.base * self.base), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(wide, wide, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(wide), nn.ReLU(),
            nn.ConvTranspose2d(wide, channels, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.ConvTranspose2d(channels, 1, 4, stride=2, padding=1),
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        features = self.project(latent).unflatten(1, (-1, self.base, self.base))
        logits = self.up(features)
        if self.output == "tanh":
            return (torch.tanh(logits) + 1) * 0.5
        return torch.sigmoid(logits)


class Discriminator(nn.Module):
    """images [N, 1, 28, 28] in [0, 1] -> one logit per image (real vs generated).

    Two strided convolutions bring the image to 7×7, where one more 3×3 convolution adds depth
    at little cost (the generator got it too: the two grew together in the experiments).

    Before the dense layer it appends one feature map holding the batch's mean per-feature standard
    deviation (ProGAN's minibatch-stddev): a batch of near-identical fakes is then easy to spot,
    which pushes the generator away from collapsing onto a few digits.
    """

    def __init__(self, channels: int = 32, image_size: int = 28, batch_norm: bool = True):
        super().__init__()
        base = image_size // 4
        norm = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())
        self.body = nn.Sequential(
            nn.Conv2d(1, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1, bias=not batch_norm), norm(2 * channels), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, bias=not batch_norm), norm(2 * channels), nn.LeakyReLU(0.2),
        )
        self.head = nn.Linear((2 * channels + 1) * base * base, 1)

    def spectrally_normalise(self) -> "Discriminator":
        """Divide each weight by its largest singular value (SN-GAN), after initialisation: the
        parametrisation keeps the initial weights as its `original`."""
        for layer in list(self.modules()):
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.utils.parametrizations.spectral_norm(layer)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.body(images * 2 - 1)
        spread = features.std(dim=0, unbiased=False).mean().expand(features.shape[0], 1, *features.shape[2:])
        return self.head(torch.cat([features, spread], dim=1).flatten(1)).squeeze(1)


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor, gamma: float) -> torch.Tensor:
    """R1 (Mescheder et al., 2018): γ/2 · E‖∇ₓD(x)‖² on real images, which keeps the discriminator from
    growing steep around the data, where the generator's gradient comes from. `real` must require grad."""
    (gradient,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return gamma / 2 * gradient.pow(2).flatten(1).sum(1).mean()


def build_model(**model_args) -> Generator:
    return Generator(**model_args)


@torch.no_grad()
def dcgan_initialize(model: nn.Module) -> None:
    """DCGAN's initialisation (Radford et al., 2015): every convolution and dense weight from N(0, 0.02),
    biases 0; batch-norm scales from N(1, 0.02) as in PyTorch's DCGAN example, shifts 0."""
    for layer in model.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, 0.02)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.affine:
            nn.init.normal_(layer.weight, 1.0, 0.02)
        else:
            continue
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


@torch.no_grad()
def sample(generator: nn.Module, n: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """n images from latents drawn with their own seeded generator (the same seed gives the same images)."""
    latent = torch.randn(n, generator.latent_size, generator=torch.Generator().manual_seed(seed)).to(device)
    was_training = generator.training
    generator.eval()
    images = generator(latent)
    generator.train(was_training)
    return images


@torch.no_grad()
def judge(generator: nn.Module, classifier: nn.Module, n: int = 1000, seed: int = 0, batch: int = 500) -> dict:
    """Score generated images with a classifier: recognisability and class coverage.

    mean_top_prob is the classifier's average confidence in its top class; class_entropy is the
    natural-log entropy of the histogram of predicted classes (ln C when every class is equally
    frequent, 0 when all samples look like one digit).
    """
    device = next(classifier.parameters(), torch.empty(0)).device
    classifier.eval()
    tops, predicted = [], []
    for start in range(0, n, batch):
        images = sample(generator, min(batch, n - start), seed + start, device)
        probabilities = F.softmax(classifier(images), dim=1)
        top, cls = probabilities.max(dim=1)
        tops.append(top.cpu())
        predicted.append(cls.cpu())
    classes = probabilities.shape[1]
    histogram = torch.bincount(torch.cat(predicted), minlength=classes).double()
    share = histogram / histogram.sum()
    entropy = float(-(share[share > 0] * share[share > 0].log()).sum())
    return {"mean_top_prob": float(torch.cat(tops).mean()), "class_entropy": entropy,
            "entropy_ratio": entropy / math.log(classes) if classes > 1 else 0.0,
            "histogram": [int(v) for v in histogram]}


def load_classifier(run_dir: Path) -> nn.Module:
    """The classifier family's module from its run folder, in eval mode."""
    from training.families import module

    ckpt = checkpoint.load(run_dir, family="classifier")
    classifier = module("classifier").build_model(**ckpt["model_args"])
    classifier.load_state_dict(ckpt["state_dict"])
    return classifier.eval()


def judge_run_dir(config: TrainConfig, options: Options) -> Path | None:
    """--judge if given (it must exist), else runs/classifier-PROFILE when present, else None."""
    if options.judge is not None:
        if not Path(options.judge).exists():
            raise UserError(f"--judge {options.judge}: no such classifier run folder or checkpoint")
        return Path(options.judge)
    default = Path("runs") / f"classifier-{config.profile}"
    return default if (default / checkpoint.FILENAME).is_file() else None


@torch.no_grad()
def recalibrate_batch_norm(generator: nn.Module, latent_size: int, batches: int, batch_size: int, rng: torch.Generator, device) -> None:
    """Re-estimate the generator's batch-norm statistics as a plain average over fresh latent batches.

    The running averages collected during training trail weights that kept moving (and never match
    averaged EMA weights), so eval-mode samples would come from statistics of older generators.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    generator.train()
    for _ in range(batches):
        generator(torch.randn(batch_size, latent_size, generator=rng).to(device))
    for norm in norms:
        norm.momentum = 0.1
    generator.eval()


def _optimizer(params, config: TrainConfig, beta1: float) -> torch.optim.Optimizer:
    optimizer = make_optimizer(params, config)
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (beta1, group["betas"][1])
    return optimizer


def _shipped(generator: nn.Module, average: nn.Module | None, options: Options, device) -> nn.Module:
    """The generator as it will be exported: the weight average when kept, batch norm recalibrated, eval mode."""
    shipped = copy.deepcopy(average if average is not None else generator)
    recalibrate_batch_norm(shipped, options.latent_size, 20, 100, torch.Generator().manual_seed(0), device)
    return shipped


def _refuse_two_initialisations(config: TrainConfig, options: Options) -> None:
    given = [f"--{name.replace('_', '-')}" for name in ("init", "init_distribution") if name in set_fields(config)]
    if options.dcgan_init and given:
        raise UserError(f"gan: --dcgan-init and {' '.join(given)} both choose the initial weights: give one of them")


def _initialize(generator: Generator, discriminator: Discriminator, config: TrainConfig, options: Options) -> None:
    if options.dcgan_init:
        dcgan_initialize(generator)
        dcgan_initialize(discriminator)
    else:
        initialize(generator, "relu", config.init, config.init_distribution)
        initialize(discriminator, "leaky_relu", config.init, config.init_distribution)


def _scores(generator: nn.Module, untrained: nn.Module, classifier: nn.Module, train_images: torch.Tensor,
            held_out: torch.Tensor | None, options: Options, seed: int, device) -> dict:
    """The judge's confidence and class entropy, and (with held-out digits) the Fréchet figures against the baselines."""
    scores = judge(generator, classifier, options.judge_samples, seed=seed)
    if held_out is not None:
        n = len(held_out)
        baselines = {"untrained_generator": sample(untrained, n, seed, device).cpu(),
                     "pixel_gaussian": gan_judge.pixel_gaussian(train_images, n, seed)}
        scores.update(gan_judge.frechet_report(classifier, sample(generator, n, seed, device).cpu(), train_images, held_out, baselines, seed))
    return scores


def train(config: TrainConfig, options: Options) -> dict:
    config, options = apply_profile(config, options, PROFILES[config.profile])
    if config.schedule == "performance":
        raise UserError("gan: --schedule performance needs a validation loss, which a GAN has none of; use constant, piecewise, power, exponential or 1cycle")
    _refuse_two_initialisations(config, options)
    generator_rng = devices.seed_everything(config.seed)
    devices.set_threads(config.threads)
    device = devices.pick(config.device)
    judge_dir = judge_run_dir(config, options)  # fail on a bad --judge before training, not after
    classifier = load_classifier(judge_dir).to(device) if judge_dir is not None else None
    train_set, held_out_set = gan_judge.split(config)
    real = gan_judge.unit_tensor(train_set)
    no_frechet = gan_judge.why_no_frechet(judge_dir, config) if judge_dir is not None else None
    held_out = gan_judge.unit_tensor(held_out_set) if judge_dir is not None and no_frechet is None else None
    image_size = real.shape[-1]

    model_args = {"latent_size": options.latent_size, "channels": options.channels, "output": options.output, "image_size": image_size}
    generator = build_model(**model_args)
    discriminator = Discriminator(options.channels, image_size, batch_norm=not options.spectral_norm)
    _initialize(generator, discriminator, config, options)
    if options.spectral_norm:
        discriminator.spectrally_normalise()
    if config.init_from:
        init_from(generator, config.init_from, ("gan",))
    freeze(generator, config.freeze)
    generator.to(device)
    discriminator.to(device)
    untrained = _shipped(generator, None, options, device) if held_out is not None else None  # a Fréchet baseline

    steps_per_epoch = math.ceil(len(real) / config.batch_size)
    d_config = dataclasses.replace(config, lr=options.d_lr or config.lr)
    opt_g = _optimizer(generator.parameters(), config, options.beta1)
    opt_d = _optimizer(discriminator.parameters(), d_config, options.beta1)
    schedules = [Schedule(opt_g, config, steps_per_epoch * config.epochs), Schedule(opt_d, d_config, steps_per_epoch * config.epochs)]
    real_label = 1.0 - options.label_smoothing
    average = copy.deepcopy(generator) if options.ema else None
    run = Run(config, options)
    seen = lambda images: translate(images, options.diff_augment or 0, generator_rng)  # noqa: E731  (what the discriminator sees)
    history = []
    step = 0
    started = time.perf_counter()
    bar = tqdm(range(1, config.epochs + 1), desc="gan", unit="epoch", disable=not config.progress, leave=False)
    for epoch in bar:
        generator.train()
        discriminator.train()
        sums = {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0, "d_fake": 0.0}
        order = torch.randperm(len(real), generator=generator_rng)
        for start in range(0, len(order), config.batch_size):
            batch = real[order[start : start + config.batch_size]].to(device)
            if len(batch) < 2:  # batch norm needs two samples
                continue
            step += 1
            regularise = bool(options.r1) and step % R1_EVERY == 0  # lazy regularisation (StyleGAN2): the penalty every few steps, scaled up
            batch.requires_grad_(regularise)
            latent = torch.randn(len(batch), options.latent_size, generator=generator_rng).to(device)
            fake = generator(latent)

            real_logits, fake_logits = discriminator(seen(batch)), discriminator(seen(fake.detach()))
            d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
                      + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
            penalty = r1_penalty(real_logits, batch, options.r1 * R1_EVERY) if regularise else 0.0
            opt_d.zero_grad(set_to_none=True)
            (d_loss + penalty).backward()
            clip_gradients(discriminator, config.clip_norm, config.clip_value)
            opt_d.step()

            fooled = discriminator(seen(fake))
            g_loss = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            clip_gradients(generator, config.clip_norm, config.clip_value)
            opt_g.step()
            for schedule in schedules:
                schedule.after_step()
            if average is not None:
                with torch.no_grad():
                    for mean_p, p in zip(average.parameters(), generator.parameters()):
                        mean_p.lerp_(p, 1.0 - options.ema)

            sums["d_loss"] += float(d_loss.detach())
            sums["g_loss"] += float(g_loss.detach())
            sums["d_real"] += float(torch.sigmoid(real_logits.detach()).mean())
            sums["d_fake"] += float(torch.sigmoid(fake_logits.detach()).mean())
        row = {"epoch": epoch, **{k: v / steps_per_epoch for k, v in sums.items()}, "lr": schedules[0].lr}
        if classifier is not None and options.judge_every and epoch % options.judge_every == 0:
            scores = _scores(_shipped(generator, average, options, device), untrained, classifier, real, held_out, options, config.seed, device)
            row.update({k: scores[k] for k in ("mean_top_prob", "class_entropy", "frechet") if k in scores})
        if not all(math.isfinite(v) for v in sums.values()):
            raise FloatingPointError(f"gan: a loss became non-finite at epoch {epoch}; lower --lr")
        history.append(row)
        bar.set_postfix(d_loss=f"{row['d_loss']:.3f}", g_loss=f"{row['g_loss']:.3f}")
    bar.close()
    generator = _shipped(generator, average, options, device)
    discriminator.eval()
    train_seconds = time.perf_counter() - started

    final: dict = {"train_seconds": round(train_seconds, 2), "parameters": sum(p.numel() for p in generator.parameters()),
                   "d_loss": history[-1]["d_loss"], "g_loss": history[-1]["g_loss"], "train_images": len(real)}
    if judge_dir is None:
        final["judge"] = f"skipped: no classifier run at runs/classifier-{config.profile} (train one or pass --judge)"
    else:
        final.update(_scores(generator, untrained, classifier, real, held_out, options, config.seed, device), judge=str(judge_dir))
        if no_frechet:
            final["frechet_skipped"] = no_frechet
        gan_judge.speak_up(final)

    extra = {"latent_size": options.latent_size, "image_size": image_size, "output_range": [0.0, 1.0],
             "latent_distribution": "normal(0, 1)", "classes": train_set.classes,
             "metrics": {k: final[k] for k in ("mean_top_prob", "class_entropy", "frechet", "frechet_real_floor") if isinstance(final.get(k), float)}}
    run.save_checkpoint(model_args, generator.state_dict(), extra)
    checkpoint.save(run.file("discriminator.pt"), "gan-discriminator",
                    {"channels": options.channels, "image_size": image_size, "batch_norm": not options.spectral_norm,
                     "spectral_norm": bool(options.spectral_norm)}, discriminator.state_dict())
    plots.curves(history, run.file("curves.png"), keys=["d_loss", "g_loss", "d_real", "d_fake"], title="DCGAN")
    plots.image_grid(sample(generator, 64, config.seed, device).cpu().numpy(), run.file("samples.png"), columns=8)
    return run.save_metrics(history, final)
