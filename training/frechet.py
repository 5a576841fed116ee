"""Fréchet distance between two image sets in a classifier's feature space (FID's formula, our features).

FID fits a Gaussian to Inception-v3 features of each set and takes the closed-form Fréchet (2-Wasserstein)
distance between the two: ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁^½ Σ₂ Σ₁^½)^½). Inception knows nothing of
28×28 digits and nothing may be downloaded, so the features here are the penultimate layer of a
digit classifier: the input of its last Linear layer (the global-average-pooled channels of the
ResNet, the hidden layer of the VGG head or the MLP). The estimate is biased upward at small sample
sizes, so a figure means something only beside the same distance between two real sets of the same
size (the floor a perfect generator would reach).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last Linear layer in definition order: its input is the penultimate feature vector."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError("the feature model has no Linear layer to take penultimate features from")
    return layers[-1]


@torch.no_grad()
def features(model: nn.Module, images: torch.Tensor, batch: int = 500) -> np.ndarray:
    """Penultimate features [N, D] (float64) of images [N, 1, S, S] in [0, 1], with the model in eval mode."""
    captured: list[torch.Tensor] = []
    hook = last_linear(model).register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach().flatten(1).cpu()))
    device = next(model.parameters(), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch):
            model(images[start : start + batch].to(device))
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured).double().numpy()


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature rows a [N, D] and b [M, D].

    Tr((Σa Σb)^½) is computed as Tr((Σa^½ Σb Σa^½)^½), a symmetric PSD matrix whose eigenvalues are real,
    so no complex round-off from a general matrix square root leaks in.
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a Fréchet distance needs at least two feature rows on each side")
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _sqrt_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0.0, None)).sum()
    value = float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)
    return max(value, 0.0)
