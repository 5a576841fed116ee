"""Image classifier: a ResNet-style CNN (residual units, batch norm, projection shortcuts), a VGG-style variant, or a dense net.

Why three architectures: the ResNet is the default and the one served; the VGG-style stack is the
book's plain "conv-conv-pool" baseline; the dense `mlp` has lower layers named exactly like the
stacked autoencoder's encoder (`mean`, `std`, `encoder.<i>.linear.*`), so `--init-from AUTOENCODER_RUN
--freeze encoder` is unsupervised pretraining. `--init-from` a classifier run reuses every layer whose
name and shape match (a head for another class count stays new), and `--classes`/`--labels-per-class`
make the book's few-labels transfer experiment (benchmarks/transfer.py).

`forward` takes float images [N,1,28,28] in [0,1] and returns logits; the mean/std normalisation is
inside the module as buffers, so an exported graph needs nothing else. Model selection never looks at
the held-out test split, which is scored once at the end: monitoring, early stopping, the plateau
schedule and the baselines (majority class, a linear classifier on pixels) use a validation split
carved from the training images (training.data.validation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from dnnzoo.errors import UserError
from training import baselines, checkpoint, plots
from training.arguments import int_list
from training.autoencoder import dense_stack
from training.config import TrainConfig, apply_profile
from training.data import images as image_data
from training.data import validation
from training.device import pick, seed_everything, set_threads
from training.fit import fit
from training.initialization import initialize
from training.layers import activation as make_activation
from training.runs import Run
from training.transfer import freeze, init_from

ARCHS = ("resnet", "vgg", "mlp")
VAL_FRACTION = 0.1  # of the training images, for monitoring, early stopping and the baselines


@dataclass
class Options:
    arch: str | None = None
    widths: tuple[int, ...] | None = None  # channels per stage (resnet, vgg)
    blocks: int | None = None  # residual units per stage (resnet)
    stem_stride: int | None = None  # stride of the resnet's first convolution (2: the stages see 14×14 maps)
    hidden: tuple[int, ...] | None = None  # dense widths (mlp); the autoencoder's when transferring from one
    classes: tuple[str, ...] | None = None  # train on these class names only, relabelled 0..k-1
    labels_per_class: int | None = None  # keep this many training labels per class
    val_fraction: float | None = None  # validation split carved from the training images (never the test split)
    samples: int | None = None  # held-out images in predictions.png


# Budgets in optimiser steps (training.budget): the quick profile's 600 steps are about 15 passes over
# the embedded digits' 1,293 training images at batch 32, and as many steps for a dataset of any size.
PROFILES = {
    "tiny": {"steps": 30, "batch_size": 64, "lr": 1e-2, "optimizer": "adamw", "schedule": "constant", "activation": "relu",
             "batch_norm": True, "dropout": 0.0, "augment": False, "arch": "resnet", "widths": (8, 16), "blocks": 1, "stem_stride": 1,
             "hidden": (64, 16), "labels_per_class": 20, "val_fraction": VAL_FRACTION, "samples": 8},
    "quick": {"steps": 1000, "batch_size": 32, "lr": 4e-3, "optimizer": "adamw", "schedule": "1cycle", "activation": "relu",
              "batch_norm": True, "dropout": 0.1, "augment": True, "arch": "resnet", "widths": (16, 32, 64), "blocks": 1, "stem_stride": 2,
              "hidden": (256, 64, 16), "val_fraction": VAL_FRACTION, "samples": 32},
    "full": {"steps": 1500, "batch_size": 64, "lr": 3e-3, "optimizer": "adamw", "schedule": "1cycle", "activation": "relu",
             "batch_norm": True, "dropout": 0.2, "augment": True, "arch": "resnet", "widths": (32, 64, 128), "blocks": 2, "stem_stride": 1,
             "hidden": (512, 128, 32), "val_fraction": VAL_FRACTION, "samples": 32},
}
LINEAR_MAX_IMAGES = 10000  # the linear reference fits at most this many training images (seconds on any dataset)


def add_arguments(group) -> None:
    group.add_argument("--arch", choices=ARCHS, help="resnet (default), vgg, or mlp (dense; reuses an autoencoder's encoder)")
    group.add_argument("--widths", type=int_list, help="channels per stage, e.g. 16,32,64 (resnet, vgg)")
    group.add_argument("--blocks", type=int, help="residual units per stage (resnet)")
    group.add_argument("--stem-stride", type=int, choices=(1, 2), help="stride of the resnet's first convolution: 2 halves the maps every stage sees (about half the compute)")
    group.add_argument("--hidden", type=int_list, help="dense widths, e.g. 256,64,16 (mlp)")
    group.add_argument("--classes", type=lambda t: tuple(c.strip() for c in t.split(",") if c.strip()),
                       help="train and test on these class names only, e.g. 5,6,7,8,9 (relabelled 0..k-1)")
    group.add_argument("--labels-per-class", type=int, help="keep only this many training images per class")
    group.add_argument("--samples", type=int, help="held-out images shown in predictions.png (misclassified first)")
    group.add_argument("--val-fraction", type=float, help=f"fraction of the training images held out for validation: monitoring, --early-stopping, --schedule performance and the baselines (default {VAL_FRACTION})")


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


def _conv(c_in: int, c_out: int, stride: int, batch_norm: bool, kernel: int = 3) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=not batch_norm)


class ResidualUnit(nn.Module):
    """Two 3×3 convolutions plus a shortcut; the shortcut is a 1×1 conv + BN projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, activation: str, batch_norm: bool):
        super().__init__()
        self.conv1, self.bn1, self.act1 = _conv(c_in, c_out, stride, batch_norm), _norm(c_out, batch_norm), make_activation(activation)
        self.conv2, self.bn2 = _conv(c_out, c_out, 1, batch_norm), _norm(c_out, batch_norm)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(_conv(c_in, c_out, stride, batch_norm, kernel=1), _norm(c_out, batch_norm))
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(y + self.shortcut(x))


class _Classifier(nn.Module):
    """Shared by the three architectures: normalisation buffers, then `features`-like layers, then `head`."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


class ResNet(_Classifier):
    def __init__(self, num_classes: int, widths: list[int], blocks: int, activation: str, batch_norm: bool, dropout: float, mean: float, std: float,
                 stem_stride: int = 1):
        super().__init__(mean, std)
        self.stem = nn.Sequential(_conv(1, widths[0], stem_stride, batch_norm), _norm(widths[0], batch_norm), make_activation(activation))
        stages, c_in = [], widths[0]
        for i, width in enumerate(widths):
            units = [ResidualUnit(c_in if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1, activation, batch_norm) for j in range(blocks)]
            stages.append(nn.Sequential(*units))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(widths[-1], num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.stem(self.normalise(images)))
        return self.head(features.mean(dim=(2, 3)))


class VGG(_Classifier):
    def __init__(self, num_classes: int, widths: list[int], activation: str, batch_norm: bool, dropout: float, mean: float, std: float, image_size: int = 28):
        super().__init__(mean, std)
        layers, c_in, size = [], 1, image_size
        for width in widths:
            for _ in range(2):
                layers += [_conv(c_in, width, 1, batch_norm), _norm(width, batch_norm), make_activation(activation)]
                c_in = width
            layers.append(nn.MaxPool2d(2))
            size //= 2
        self.features = nn.Sequential(*layers)
        hidden = 4 * widths[-1]
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in * size * size, hidden), make_activation(activation),
                                  nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.normalise(images)))


class MLP(_Classifier):
    """Dense net whose `encoder` is built exactly like the stacked autoencoder's (same names, linear last layer)."""

    def __init__(self, num_classes: int, hidden: list[int], activation: str, batch_norm: bool, dropout: float, mean: float, std: float, image_size: int = 28):
        super().__init__(mean, std)
        self.encoder = dense_stack([image_size * image_size, *hidden], activation, None, dropout, batch_norm)
        self.head = nn.Sequential(make_activation(activation), nn.Dropout(dropout), nn.Linear(hidden[-1], num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.normalise(images).flatten(1)))


def build_model(arch: str = "resnet", num_classes: int = 10, widths=(16, 32, 64), blocks: int = 1, hidden=(256, 64, 16),
                activation: str = "relu", batch_norm: bool = True, dropout: float = 0.0, mean: float = 0.0, std: float = 1.0,
                image_size: int = 28, stem_stride: int = 1) -> nn.Module:
    if arch == "resnet":
        return ResNet(num_classes, list(widths), blocks, activation, batch_norm, dropout, mean, std, stem_stride)
    if arch == "vgg":
        return VGG(num_classes, list(widths), activation, batch_norm, dropout, mean, std, image_size)
    if arch == "mlp":
        return MLP(num_classes, list(hidden), activation, batch_norm, dropout, mean, std, image_size)
    raise UserError(f"unknown --arch {arch!r}; choose from {', '.join(ARCHS)}")


def augment(images: torch.Tensor, degrees: float = 12.0, scale: float = 0.1, shift: float = 0.1) -> torch.Tensor:
    """Random rotation, scaling and shift of each image (shift as a fraction of the half-width), by affine_grid."""
    n, device = images.shape[0], images.device
    uniform = lambda *shape: torch.rand(*shape, device=device) * 2 - 1  # noqa: E731
    angle = uniform(n) * math.radians(degrees)
    zoom = 1 + uniform(n) * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    offset = uniform(n, 2) * shift
    theta = torch.stack([torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


# ---- data -------------------------------------------------------------------------------------------

def _subset_classes(images: image_data.ImageSet, names: tuple[str, ...]) -> image_data.ImageSet:
    unknown = [n for n in names if n not in images.classes]
    if unknown:
        raise UserError(f"--classes {','.join(names)}: {', '.join(unknown)} not among the data's classes ({', '.join(images.classes)})")
    old = [images.classes.index(n) for n in names]
    keep = np.isin(images.labels, old)
    remap = {o: i for i, o in enumerate(old)}
    labels = np.asarray([remap[int(v)] for v in images.labels[keep]], dtype=np.int64)
    return image_data.ImageSet(images.images[keep], labels, list(names))


def _few_labels(images: image_data.ImageSet, per_class: int, seed: int) -> image_data.ImageSet:
    if per_class < 1:
        raise UserError("--labels-per-class must be at least 1")
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.permutation(np.flatnonzero(images.labels == c))[:per_class] for c in range(len(images.classes))])
    keep.sort()
    return image_data.ImageSet(images.images[keep], images.labels[keep], images.classes)


def prepare_data(config: TrainConfig, options: Options) -> tuple[image_data.ImageSet, image_data.ImageSet, image_data.ImageSet]:
    """(train, validation, test): stratified 80/20 split, class subset, validation carved from train, label budget.

    The test split is the same at every setting of the other options; the label budget limits the
    training images only, after the validation images are set aside.
    """
    full = image_data.load(config.data)
    if len(full.labels) < 2 * len(full.classes):
        raise UserError(f"--data {config.data}: {len(full.labels)} images for {len(full.classes)} classes is too few to split into train and test")
    train_set, test_set = image_data.split(full, 0.2, config.seed)
    if options.classes:
        train_set, test_set = _subset_classes(train_set, options.classes), _subset_classes(test_set, options.classes)
    train_set, val_set = validation.carve(train_set, options.val_fraction, config.seed)
    if options.labels_per_class:
        train_set = _few_labels(train_set, options.labels_per_class, config.seed)
    return train_set, val_set, test_set


def _tensors(images: image_data.ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(images.images.astype(np.float32) / 255.0), torch.from_numpy(images.labels)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: torch.device, batch: int = 500) -> torch.Tensor:
    model.eval()
    return torch.cat([model(images[i : i + batch].to(device)).cpu() for i in range(0, len(images), batch)])


def _scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[float, float]:
    logits = predict(model, x, device)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


# ---- baselines -----------------------------------------------------------------------------------------

def majority_accuracy(train: image_data.ImageSet, val: image_data.ImageSet) -> float:
    """Accuracy on `val` of always answering the training split's most frequent class."""
    majority = np.bincount(train.labels, minlength=len(train.classes)).argmax()
    return float(np.mean(val.labels == majority))


def linear_accuracy(train: image_data.ImageSet, val: image_data.ImageSet, seed: int) -> float | None:
    """Accuracy on `val` of a linear classifier on raw pixels (ridge regression on one-hot labels, a closed
    form that takes a second): the linear model a CNN has to beat. None with a single training class."""
    from sklearn.linear_model import RidgeClassifier

    if len(np.unique(train.labels)) < 2:
        return None
    keep = np.random.default_rng(seed).permutation(len(train.labels))[:LINEAR_MAX_IMAGES]
    flat = lambda images: images.reshape(len(images), -1).astype(np.float32) / 255.0  # noqa: E731
    model = RidgeClassifier(alpha=10.0).fit(flat(train.images[keep]), train.labels[keep])
    return float(np.mean(model.predict(flat(val.images)) == val.labels))


def baseline_records(train: image_data.ImageSet, val: image_data.ImageSet, val_acc: float, seed: int) -> list[dict]:
    """The model's validation accuracy against the majority class and a linear classifier on pixels."""
    records = [baselines.compare("majority_class", "val_acc", val_acc, majority_accuracy(train, val), higher_is_better=True)]
    linear = linear_accuracy(train, val, seed)
    if linear is not None:
        records.append(baselines.compare("linear_pixels", "val_acc", val_acc, linear, higher_is_better=True))
    return records


# ---- model arguments and transfer ----------------------------------------------------------------------

def _model_args(config: TrainConfig, options: Options, requested_arch: str | None, num_classes: int, train_x: torch.Tensor) -> dict:
    """Constructor arguments; with --init-from the source's architecture is adopted so its layers fit."""
    args = {"arch": options.arch, "num_classes": num_classes, "widths": list(options.widths), "blocks": int(options.blocks), "stem_stride": int(options.stem_stride),
            "hidden": list(options.hidden), "activation": config.activation, "batch_norm": bool(config.batch_norm),
            "dropout": float(config.dropout or 0.0), "mean": float(train_x.mean()), "std": float(train_x.std()),
            "image_size": int(train_x.shape[-1])}
    if not config.init_from:
        return args
    source = checkpoint.load(config.init_from)
    given = source["model_args"]
    if source["family"] == "autoencoder":
        if requested_arch not in (None, "mlp"):
            raise UserError(f"--init-from {config.init_from} is an autoencoder: only --arch mlp can reuse its encoder")
        return {**args, "arch": "mlp", "hidden": list(given["hidden"]), "activation": given["activation"],
                "batch_norm": bool(given.get("batch_norm", False)), "image_size": int(given.get("image_size", args["image_size"]))}
    if source["family"] == "classifier":
        if requested_arch not in (None, given["arch"]):
            raise UserError(f"--init-from {config.init_from} is a {given['arch']} classifier; --arch {requested_arch} cannot reuse its layers")
        keep = ("arch", "widths", "blocks", "stem_stride", "hidden", "activation", "batch_norm", "image_size")
        return {**args, **{k: given[k] for k in keep if k in given}}
    raise UserError(f"--init-from {config.init_from}: a {source['family']} checkpoint cannot initialise a classifier (expects classifier or autoencoder)")


# ---- training ---------------------------------------------------------------------------------------

def train(config: TrainConfig, options: Options | None = None) -> dict:
    options = options or Options()
    requested_arch = options.arch
    config, options = apply_profile(config, options, PROFILES[config.profile])
    if options.arch not in ARCHS:
        raise UserError(f"unknown --arch {options.arch!r}; choose from {', '.join(ARCHS)}")
    set_threads(config.threads)
    generator = seed_everything(config.seed)
    device = pick(config.device)

    train_set, val_set, test_set = prepare_data(config, options)
    (train_x, train_y), val, (test_x, test_y) = _tensors(train_set), _tensors(val_set), _tensors(test_set)
    model_args = _model_args(config, options, requested_arch, len(train_set.classes), train_x)
    run = Run(config, options)

    model = build_model(**model_args)
    initialize(model, model_args["activation"], config.init, config.init_distribution)
    transferred = init_from(model, config.init_from, ["classifier", "autoencoder"]) if config.init_from else []
    frozen = freeze(model, config.freeze)
    model.to(device)

    def loss_step(m, batch):
        x, y = batch
        if config.augment:
            x = augment(x)
        return F.cross_entropy(m(x), y)

    def evaluate(m):  # validation only: the test split is scored once, below
        return dict(zip(("val_loss", "val_acc"), _scores(m, *val, device)))

    batches = DataLoader(TensorDataset(train_x, train_y), batch_size=config.batch_size, shuffle=True, generator=generator)
    history = fit(model, batches, config, loss_step, evaluate, device)

    val_loss, val_acc = _scores(model, *val, device)
    logits = predict(model, test_x, device)
    predicted = logits.argmax(1)
    final = {"test_acc": float((predicted == test_y).float().mean()), "test_loss": float(F.cross_entropy(logits, test_y)),
             "val_acc": val_acc, "val_loss": val_loss, "train_acc": _scores(model, train_x, train_y, device)[1],
             "test_images": len(test_y), "val_images": len(val_set.labels), "train_images": len(train_y),
             "epochs": history[-1]["epoch"], "steps": history[-1]["step"], "arch": model_args["arch"],
             "parameters": sum(p.numel() for p in model.parameters()), "transferred": len(transferred), "frozen": len(frozen),
             baselines.BASELINES: baselines.speak("classifier", baseline_records(train_set, val_set, val_acc, config.seed))}
    normalisation = {"input": "float [N,1,S,S] in [0,1] (uint8 / 255)", "scale": 1 / 255,
                     "mean": float(model.mean), "std": float(model.std)}
    run.save_checkpoint({**model_args, "mean": normalisation["mean"], "std": normalisation["std"]}, model.state_dict(),
                        {"labels": list(train_set.classes), "normalisation": normalisation, "image_size": model_args["image_size"],
                         "test_acc": final["test_acc"]})
    plots.curves(history, run.file("curves.png"), keys=["loss", "val_loss", "val_acc"],
                 title=f"classifier ({model_args['arch']})")
    _prediction_grid(test_x, test_y, predicted, train_set.classes, run.file("predictions.png"), options.samples)
    return run.save_metrics(history, final)


def _prediction_grid(images: torch.Tensor, truth: torch.Tensor, predicted: torch.Tensor, classes: list[str], path, count: int) -> None:
    """Misclassified held-out images ("true→predicted") first, then correctly classified ones up to `count`."""
    wrong = torch.nonzero(predicted != truth).flatten()
    right = torch.nonzero(predicted == truth).flatten()
    shown = torch.cat([wrong, right])[:count]
    titles = [f"{classes[truth[i]]}→{classes[predicted[i]]}" if truth[i] != predicted[i] else f"{classes[predicted[i]]}" for i in shown.tolist()]
    plots.image_grid(images[shown].numpy(), path, columns=8, titles=titles)
