"""The validation split of the image families: carved from the training images, never from the test split.

Why its own function: the test split must stay exactly what `images.split(all, 0.2, seed)` gives (so
a quality bar means the same at every change), and model selection, early stopping and the trivial
baselines must never see it. The validation part is stratified like the test split and follows
`--seed`; on a small dataset it still holds at least one image per class, or the run stops with a
clear error rather than monitoring nothing.
"""

from __future__ import annotations

import math

import numpy as np

from dnnzoo.errors import UserError
from training.data.images import ImageSet


def carve(train: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """(training, validation): `fraction` of `train` (at least one image per class present), stratified."""
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise UserError(f"--val-fraction must be between 0 and 1 (exclusive), got {fraction}")
    present = np.unique(train.labels)
    n = len(train.labels)
    n_val = max(math.ceil(fraction * n), len(present))
    if n - n_val < len(present):
        raise UserError(f"{n} training images of {len(present)} classes are too few to carve a validation split "
                        f"({n_val} images) and keep one training image per class")
    counts = np.bincount(train.labels)
    stratify = train.labels if counts[present].min() >= 2 else None
    train_idx, val_idx = train_test_split(np.arange(n), test_size=n_val, random_state=seed, stratify=stratify)
    pick = lambda ix: ImageSet(train.images[ix], train.labels[ix], train.classes)  # noqa: E731
    return pick(np.sort(train_idx)), pick(np.sort(val_idx))
