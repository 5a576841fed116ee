"""PNG pictures of a run: curves, image grids. matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(history: list[dict], path: Path, keys: Sequence[str] | None = None, title: str = "") -> Path:
    """One panel per metric family: every numeric history key, loss-like keys on one panel."""
    plt = _pyplot()
    keys = list(keys or sorted({k for row in history for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))}))
    losses = [k for k in keys if "loss" in k or "mse" in k]
    others = [k for k in keys if k not in losses]
    panels = [p for p in (losses, others) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    for ax, group in zip(axes[0], panels):
        for k in group:
            ax.plot(epochs, [row.get(k, np.nan) for row in history], label=k)
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
        if group is losses and all(row.get(k, 1) is None or row.get(k, 1) > 0 for row in history for k in group):
            ax.set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def image_grid(images: np.ndarray, path: Path, columns: int = 8, titles: Sequence[str] | None = None) -> Path:
    """Save `images` ([N, H, W] or [N, 1, H, W], values in [0, 1] or uint8) as one grid."""
    plt = _pyplot()
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[:, 0]
    n = len(images)
    rows = max(1, int(np.ceil(n / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.2), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255 if images.dtype == np.uint8 else 1)
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
