"""Generated detection scenes: 1–4 digit images pasted at random sizes and places on a dark canvas.

Why generated: the detector needs images whose boxes are known exactly, and nothing may be downloaded.
Every digit image (28×28 uint8, ink bright on dark) is resized once to every allowed size (a
`PatchBank`), so building a scene is only slicing and `np.maximum`: thousands of scenes a second.

Boxes are **tight around the ink**, not the pasted square: a box spans the pixels of the resized digit
that reach `INK` (64 of 255), in continuous pixel coordinates `x1, y1, x2, y2` (x2/y2 exclusive, so a
box covering columns 3..7 has x1 = 3, x2 = 8). A digit whose patch has no such pixel keeps the whole
patch as its box. Pastes are composited with `maximum`, so a patch's dark margin never hides a
neighbour, and two ink boxes never overlap (a placement that would overlap is re-drawn; after a few
tries the scene keeps the digits it has, so it always holds at least one).

Seeded: the same bank, count and seed give the same scenes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from training.data.images import ImageSet

INK = 64
PLACEMENT_TRIES = 20


@dataclass
class PatchBank:
    """Every source digit resized to every size in `sizes`, with its ink box inside the patch."""

    patches: dict[int, np.ndarray]  # size -> uint8 [n, size, size]
    ink_boxes: dict[int, np.ndarray]  # size -> int64 [n, 4] x1, y1, x2, y2 inside the patch
    labels: np.ndarray  # int64 [n]
    classes: list[str]

    @property
    def sizes(self) -> list[int]:
        return sorted(self.patches)


def ink_boxes(patches: np.ndarray, threshold: int = INK) -> np.ndarray:
    """Tight boxes [n, 4] (x1, y1, x2, y2, x2/y2 exclusive) of the pixels ≥ threshold; the full patch if none."""
    ink = patches >= threshold
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    size = patches.shape[-1]
    first = lambda m: np.where(m.any(1), m.argmax(1), 0)  # noqa: E731
    last = lambda m: np.where(m.any(1), size - m[:, ::-1].argmax(1), size)  # noqa: E731
    return np.stack([first(cols), first(rows), last(cols), last(rows)], axis=1).astype(np.int64)


def make_bank(images: ImageSet, min_size: int, max_size: int) -> PatchBank:
    """Resize every image to each size in [min_size, max_size] (bilinear with antialiasing)."""
    source = torch.from_numpy(images.images).float()
    patches, boxes = {}, {}
    for size in range(min_size, max_size + 1):
        resized = F.interpolate(source, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        patch = resized[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()
        patches[size], boxes[size] = patch, ink_boxes(patch)
    return PatchBank(patches, boxes, images.labels.astype(np.int64), list(images.classes))


@dataclass
class Scenes:
    images: np.ndarray  # uint8 [N, 1, H, W]
    boxes: np.ndarray  # float32 [N, K, 4] x1, y1, x2, y2 in pixels; rows past `counts` are zero
    labels: np.ndarray  # int64 [N, K]; -1 past `counts`
    counts: np.ndarray  # int64 [N], each in 1..K
    sources: np.ndarray  # int64 [N, K] index of the pasted digit in the bank; -1 past `counts`
    sizes: np.ndarray  # int64 [N, K] pasted patch size; 0 past `counts`
    classes: list[str]

    def __len__(self) -> int:
        return len(self.images)


def _overlaps(box: tuple[int, ...], placed: list[tuple[int, ...]]) -> bool:
    x1, y1, x2, y2 = box
    return any(min(x2, b[2]) > max(x1, b[0]) and min(y2, b[3]) > max(y1, b[1]) for b in placed)


def generate(bank: PatchBank, count: int, seed: int, canvas: int = 64, max_objects: int = 4) -> Scenes:
    """`count` scenes of `canvas`×`canvas` pixels holding 1..max_objects digits each."""
    if max(bank.sizes) > canvas:
        raise ValueError(f"digit size {max(bank.sizes)} does not fit a {canvas}-pixel canvas")
    rng = np.random.default_rng(seed)
    n_sources, sizes = len(bank.labels), np.asarray(bank.sizes)
    images = np.zeros((count, 1, canvas, canvas), np.uint8)
    boxes = np.zeros((count, max_objects, 4), np.float32)
    labels = np.full((count, max_objects), -1, np.int64)
    sources = np.full((count, max_objects), -1, np.int64)
    scales = np.zeros((count, max_objects), np.int64)
    counts = np.zeros(count, np.int64)
    wanted = rng.integers(1, max_objects + 1, size=count)
    picks = rng.integers(0, n_sources, size=(count, max_objects))
    drawn = sizes[rng.integers(0, len(sizes), size=(count, max_objects))]
    corners = rng.integers(0, canvas - drawn + 1, size=(PLACEMENT_TRIES, 2, count, max_objects)).transpose(2, 3, 0, 1)
    ink_lists = {size: bank.ink_boxes[size].tolist() for size in bank.sizes}
    for i in range(count):
        placed: list[tuple[int, ...]] = []
        for k in range(int(wanted[i])):
            src, size = int(picks[i, k]), int(drawn[i, k])
            a, b, c, d = ink_lists[size][src]
            for x, y in corners[i, k].tolist():
                box = (a + x, b + y, c + x, d + y)
                if not _overlaps(box, placed):
                    break
            else:
                continue
            j = len(placed)
            placed.append(box)
            region = images[i, 0, y : y + size, x : x + size]
            np.maximum(region, bank.patches[size][src], out=region)
            boxes[i, j], labels[i, j], sources[i, j], scales[i, j] = box, bank.labels[src], src, size
        counts[i] = len(placed)
    return Scenes(images, boxes, labels, counts, sources, scales, bank.classes)
