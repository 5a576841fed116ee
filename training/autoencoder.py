"""Stacked autoencoder: a symmetric, undercomplete dense net trained end to end or one layer pair at a time.

Why this shape: the book's chapter 17 stacked autoencoder is dense and mirrored (784 → … → code → … → 784),
and its encoder is what the classifier reuses for unsupervised pretraining. The classifier's `mlp`
architecture builds its lower layers with `dense_stack` below, so parameter names match (`mean`, `std`,
`encoder.<i>.linear.*`) and `--init-from AUTOENCODER_RUN --freeze encoder` copies them by name.

`--layerwise` is greedy layer-wise pretraining: pair i is (encoder[i], decoder[n-1-i]), trained to
reconstruct its own input (the image for i = 0, the frozen lower encoder's activations above that),
then the whole net can be fine-tuned end to end. Training is monitored on a validation split carved
from the training images, where the run also compares itself with the mean image and with PCA at the
same code size (training.baselines); the test split is scored once at the end, and the quality bar
compares its reconstruction MSE with PCA's there, both stored in metrics.json.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dnnzoo.errors import UserError
from training import baselines, plots
from training.arguments import int_list
from training.config import TrainConfig, apply_profile
from training.data import images as image_data
from training.data import validation
from training.device import pick, seed_everything, set_threads
from training.fit import fit
from training.initialization import initialize
from training.layers import activation as make_activation
from training.layers import dropout as make_dropout
from training.runs import Run
from training.transfer import freeze, init_from


@dataclass
class Options:
    hidden: tuple[int, ...] | None = None  # encoder widths after the input, the last is the code size
    layerwise: bool | None = None
    pair_steps: int | None = None  # optimiser steps per layer pair with --layerwise (a budget, as --steps)
    noise: float | None = None  # Gaussian input noise (denoising autoencoder); 0 disables
    samples: int | None = None  # held-out images shown in reconstructions.png
    val_fraction: float | None = None  # validation split carved from the training images (never the test split)


VAL_FRACTION = 0.1  # of the training images: monitoring, early stopping and the baselines (never the test split)

# Budgets in optimiser steps (training.budget): the quick profile's 2,250 steps are about 55 passes over
# the embedded digits' 1,293 training images at batch 32, and as many steps for a dataset of any size.
PROFILES = {
    "tiny": {"steps": 60, "batch_size": 64, "lr": 2e-3, "optimizer": "adam", "schedule": "constant", "activation": "selu",
             "hidden": (64, 16), "layerwise": False, "pair_steps": 20, "noise": 0.0, "batch_norm": False, "dropout": 0.0, "augment": False, "samples": 4, "val_fraction": VAL_FRACTION},
    "quick": {"steps": 2250, "batch_size": 32, "lr": 2e-3, "optimizer": "adam", "schedule": "1cycle", "activation": "selu",
              "hidden": (256, 64, 16), "layerwise": False, "pair_steps": 400, "noise": 0.0, "batch_norm": False, "dropout": 0.0, "augment": False, "samples": 16, "val_fraction": VAL_FRACTION},
    "full": {"steps": 4600, "batch_size": 64, "lr": 1e-3, "optimizer": "adam", "schedule": "1cycle", "activation": "selu",
             "hidden": (512, 128, 16), "layerwise": False, "pair_steps": 600, "noise": 0.0, "batch_norm": False, "dropout": 0.0, "augment": False, "samples": 16, "val_fraction": VAL_FRACTION},
}
def add_arguments(group) -> None:
    group.add_argument("--hidden", type=int_list, help="encoder widths after the input, e.g. 256,64,16 (the last is the code size)")
    group.add_argument("--layerwise", action="store_true", default=None, help="greedy layer-wise pretraining of each (encoder, mirrored decoder) pair, then --epochs of end-to-end fine-tuning (0 skips it)")
    group.add_argument("--pair-steps", type=int, help="optimiser steps per layer pair with --layerwise")
    group.add_argument("--samples", type=int, help="held-out images shown in reconstructions.png")
    group.add_argument("--noise", type=float, help="std of Gaussian noise added to inputs while training (denoising); 0 disables")
    group.add_argument("--val-fraction", type=float, help=f"fraction of the training images held out for validation: monitoring, --early-stopping and the baselines (default {VAL_FRACTION})")


class Dense(nn.Module):
    """One dense layer and its activation; the unit the encoder and decoder are stacked from."""

    def __init__(self, n_in: int, n_out: int, activation: str | None, dropout: float = 0.0, batch_norm: bool = False):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.norm = nn.BatchNorm1d(n_out) if batch_norm else nn.Identity()
        self.act = make_activation(activation)
        self.drop = make_dropout(activation, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.act(self.norm(self.linear(x))))


def dense_stack(sizes: list[int], activation: str | None, last_activation: str | None, dropout: float = 0.0, batch_norm: bool = False) -> nn.Sequential:
    """Dense layers sizes[0] → sizes[1] → …; the last gets `last_activation` (and no dropout or batch norm)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(Dense(a, b, last_activation if last else activation, 0.0 if last else dropout, batch_norm and not last))
    return nn.Sequential(*layers)


class StackedAutoencoder(nn.Module):
    """images [N,1,S,S] in [0,1] → reconstructions in [0,1]; `encode` gives the linear codes."""

    def __init__(self, hidden: list[int], activation: str = "selu", image_size: int = image_data.SIZE,
                 mean: float = 0.0, std: float = 1.0, dropout: float = 0.0, batch_norm: bool = False):
        super().__init__()
        self.image_size = image_size
        sizes = [image_size * image_size, *hidden]
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.encoder = dense_stack(sizes, activation, None, dropout, batch_norm)
        # The decoder mirrors the encoder; its inner layers use the hidden activation so each layer
        # pair reconstructs activations of the same kind, and the output is a sigmoid (pixels in [0,1]).
        self.decoder = dense_stack(sizes[::-1], activation, "sigmoid", dropout, batch_norm)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(((images - self.mean) / self.std).flatten(1))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(codes).view(-1, 1, self.image_size, self.image_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))


def build_model(**model_args) -> StackedAutoencoder:
    return StackedAutoencoder(**model_args)


def pca_mse(train: np.ndarray, held_out: np.ndarray, code_size: int) -> float:
    """Held-out reconstruction MSE of PCA with `code_size` components: the linear bar to beat."""
    from sklearn.decomposition import PCA

    code_size = min(code_size, train.shape[0], train.shape[1])
    pca = PCA(code_size, random_state=0).fit(train)
    return float(np.mean((pca.inverse_transform(pca.transform(held_out)) - held_out) ** 2))


def mean_image_mse(train: np.ndarray, held_out: np.ndarray) -> float:
    """Held-out MSE of answering every image with the training images' mean: the code-free baseline."""
    return float(np.mean((held_out - train.mean(axis=0)) ** 2))


def baseline_records(train: np.ndarray, val: np.ndarray, val_mse: float, code_size: int) -> list[dict]:
    """The model's validation MSE against the mean image and PCA at the same code size (flat [N, pixels] arrays)."""
    return [baselines.compare("mean_image", "val_mse", val_mse, mean_image_mse(train, val)),
            baselines.compare("pca", "val_mse", val_mse, pca_mse(train, val, code_size))]


def _as_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / 255.0)


def _loader(tensors: tuple[torch.Tensor, ...], batch_size: int, generator: torch.Generator) -> DataLoader:
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=True, generator=generator)


@torch.no_grad()
def _mse(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, device: torch.device, batch: int = 512) -> float:
    total = 0.0
    for i in range(0, len(inputs), batch):
        out = model(inputs[i : i + batch].to(device))
        total += float(((out - targets[i : i + batch].to(device)) ** 2).sum())
    return total / targets.numel()


def _noisy(x: torch.Tensor, noise: float) -> torch.Tensor:
    return x + noise * torch.randn_like(x) if noise else x


def _train_layerwise(model: StackedAutoencoder, train_x: torch.Tensor, val_x: torch.Tensor, config: TrainConfig,
                     options: Options, device: torch.device, generator: torch.Generator) -> list[dict]:
    """Greedy pretraining: pair i learns to reconstruct the (fixed) output of the encoder layers below it."""
    history: list[dict] = []
    n = len(model.encoder)
    pair_config = dataclasses.replace(config, epochs=None, steps=options.pair_steps, early_stopping=None, freeze=())
    with torch.no_grad():
        model.eval()
        flat = lambda x: ((x - model.mean.cpu()) / model.std.cpu()).flatten(1)  # noqa: E731
        inputs_train, inputs_val = flat(train_x), flat(val_x)
    for i in range(n):
        encoder_layer, decoder_layer = model.encoder[i], model.decoder[n - 1 - i]
        pair = nn.Sequential(encoder_layer, decoder_layer).to(device)
        # The image pair reconstructs pixels in [0,1]; higher pairs reconstruct their own inputs.
        targets_train = train_x.flatten(1) if i == 0 else inputs_train
        targets_val = val_x.flatten(1) if i == 0 else inputs_val

        def loss_step(m, batch):
            x, y = batch
            return nn.functional.mse_loss(m(_noisy(x, options.noise)), y)

        def evaluate(m, xi=inputs_val, yi=targets_val):
            return {"val_loss": _mse(m, xi, yi, device)}

        rows = fit(pair, _loader((inputs_train, targets_train), config.batch_size, generator), pair_config, loss_step, evaluate, device)
        history += [{**row, "epoch": len(history) + k + 1, "stage": i + 1} for k, row in enumerate(rows)]
        with torch.no_grad():
            encoder_layer.eval()
            inputs_train = torch.cat([encoder_layer(b.to(device)).cpu() for b in inputs_train.split(512)])
            inputs_val = torch.cat([encoder_layer(b.to(device)).cpu() for b in inputs_val.split(512)])
    return history


def train(config: TrainConfig, options: Options | None = None) -> dict:
    config, options = apply_profile(config, options or Options(), PROFILES[config.profile])
    set_threads(config.threads)
    generator = seed_everything(config.seed)
    device = pick(config.device)
    run = Run(config, options)

    train_set, test_set = image_data.split(image_data.load(config.data), 0.2, config.seed)
    train_set, val_set = validation.carve(train_set, options.val_fraction, config.seed)
    train_x, val_x, test_x = _as_float(train_set.images), _as_float(val_set.images), _as_float(test_set.images)
    model_args = {"hidden": list(options.hidden), "activation": config.activation, "image_size": int(train_x.shape[-1]),
                  "mean": float(train_x.mean()), "std": float(train_x.std()), "dropout": float(config.dropout or 0.0),
                  "batch_norm": bool(config.batch_norm)}
    model = build_model(**model_args)
    initialize(model, config.activation, config.init, config.init_distribution)
    initialize(model.decoder[-1], "sigmoid", config.init, config.init_distribution)
    if config.init_from:
        init_from(model, config.init_from, ["autoencoder"])
    freeze(model, config.freeze)
    model.to(device)

    history: list[dict] = []
    if options.layerwise:
        history = _train_layerwise(model, train_x, val_x, config, options, device, generator)
    if config.epochs != 0:  # --epochs 0 with --layerwise: pretraining only
        offset = len(history)

        def loss_step(m, batch):
            (x,) = batch
            return nn.functional.mse_loss(m(_noisy(x, options.noise)), x)

        def evaluate(m):  # validation only: the test split is scored once, below
            return {"val_loss": _mse(m, val_x, val_x, device)}

        rows = fit(model, _loader((train_x,), config.batch_size, generator), config, loss_step, evaluate, device)
        history += [{**row, "epoch": offset + k + 1, "stage": 0} for k, row in enumerate(rows)]
    if not history:
        raise UserError("nothing to train: --epochs 0 without --layerwise")

    model.eval()
    code_size = int(options.hidden[-1])
    flat = lambda t: t.flatten(1).numpy()  # noqa: E731
    val_mse = _mse(model, val_x, val_x, device)
    final = {"test_mse": _mse(model, test_x, test_x, device), "pca_mse": pca_mse(flat(train_x), flat(test_x), code_size),
             "val_mse": val_mse, "train_mse": _mse(model, train_x, train_x, device), "code_size": code_size,
             "layerwise": bool(options.layerwise), "train_images": len(train_x), "val_images": len(val_x), "test_images": len(test_x),
             baselines.BASELINES: baselines.speak("autoencoder", baseline_records(flat(train_x), flat(val_x), val_mse, code_size))}
    final["beats_pca"] = final["test_mse"] < final["pca_mse"]

    run.save_checkpoint(model_args, model.state_dict(), {
        "classes": train_set.classes, "code_size": code_size, "image_size": model_args["image_size"],
        "normalisation": {"input": "float [N,1,S,S] in [0,1]", "scale": 1 / 255, "mean": model_args["mean"], "std": model_args["std"]},
        "outputs": ["codes", "reconstructions"],
    })
    plots.curves(history, run.file("curves.png"), keys=["loss", "val_loss"], title="autoencoder: reconstruction MSE")
    with torch.no_grad():
        shown = test_x[: options.samples]
        recon = model(shown.to(device)).cpu()
    pictures = torch.stack([shown, recon], 1).reshape(-1, 1, *shown.shape[-2:]).numpy()
    plots.image_grid(pictures, run.file("reconstructions.png"), columns=8, titles=["original", "reconstruction"] * len(shown))
    return run.save_metrics(history, final)
