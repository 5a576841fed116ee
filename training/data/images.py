"""Grayscale digit-like images as uint8 [N, 1, 28, 28] arrays, from the embedded digits or user files.

Every source ends the same way, and serving converts a request image the same way: to 8-bit
grayscale ("L"), then resized to 28×28 with PIL's bilinear filter. scikit-learn's 8×8 digits
(values 0–16) are first scaled to 0–255. Ink is bright on a dark background, as in MNIST.
"""

from __future__ import annotations

import gzip
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dnnzoo.errors import UserError

SIZE = 28
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


@dataclass
class ImageSet:
    images: np.ndarray  # uint8 [N, 1, SIZE, SIZE]
    labels: np.ndarray  # int64 [N]
    classes: list[str]  # class index -> name


def to_model_input(image: Image.Image, size: int = SIZE) -> np.ndarray:
    """The one conversion from any picture to a model input: grayscale, bilinear resize, uint8 [H, W]."""
    return np.asarray(image.convert("L").resize((size, size), Image.BILINEAR), dtype=np.uint8)


def digits() -> ImageSet:
    """scikit-learn's bundled 8×8 digits (1,797 images), resized to 28×28."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = np.clip(bunch.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    images = np.stack([to_model_input(Image.fromarray(img)) for img in small])[:, None]
    return ImageSet(images, bunch.target.astype(np.int64), [str(i) for i in range(10)])


def _open_maybe_gz(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format): magic 0x0000 then type 0x08 (uint8), ndim, big-endian dims."""
    data = _open_maybe_gz(path)
    if len(data) < 4:
        raise UserError(f"{path}: too short to be an IDX file")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
        raise UserError(f"{path}: wrong IDX magic number 0x{data[:4].hex()} (expected 0x00000801 for labels or 0x00000803 for images)")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UserError(f"{path}: IDX header says {dims} but the file holds {body.size} values")
    return body.reshape(dims)


def _idx_pair(path: Path) -> tuple[Path, Path]:
    """Find the images and labels IDX files given one of them or the folder holding them."""
    candidates = sorted(path.glob("*idx*")) if path.is_dir() else [path]
    images = [p for p in candidates if "idx3" in p.name]
    if path.is_dir() and not images:
        raise UserError(f"{path}: no *-idx3-ubyte images file here")
    image_file = images[0]
    label_name = image_file.name.replace("idx3", "idx1").replace("images", "labels")
    label_file = image_file.with_name(label_name)
    if not label_file.exists():
        raise UserError(f"{image_file}: its labels file {label_name} is missing")
    return image_file, label_file


def read_idx_set(path: Path) -> ImageSet:
    image_file, label_file = _idx_pair(path)
    raw = read_idx(image_file)
    labels = read_idx(label_file).astype(np.int64)
    if raw.ndim != 3 or labels.ndim != 1 or len(raw) != len(labels):
        raise UserError(f"{image_file}: images {raw.shape} and labels {labels.shape} do not pair up")
    if raw.shape[1:] != (SIZE, SIZE):
        raw = np.stack([to_model_input(Image.fromarray(img)) for img in raw])
    n_classes = int(labels.max()) + 1
    return ImageSet(raw[:, None].copy(), labels, [str(i) for i in range(n_classes)])


def read_image_folder(root: Path) -> ImageSet:
    """root/<class>/<image>: one sub-folder per class, sorted by name, as torchvision's ImageFolder."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"{root}: no class sub-folders (expected {root}/<class>/<image files>)")
    images, labels = [], []
    for index, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as img:
                    images.append(to_model_input(img))
            except (UnidentifiedImageError, OSError) as exc:
                raise UserError(f"{file}: not a readable image ({exc})") from None
            labels.append(index)
    if not images:
        raise UserError(f"{root}: the class folders hold no image files")
    return ImageSet(np.stack(images)[:, None], np.asarray(labels, dtype=np.int64), classes)


def load(data: Path | None) -> ImageSet:
    """The embedded digits when `data` is None, else an IDX file/folder or an ImageFolder."""
    if data is None:
        return digits()
    data = Path(data)
    if not data.exists():
        raise UserError(f"--data {data}: no such file or folder")
    if data.is_file() or any(data.glob("*idx*")):
        return read_idx_set(data)
    return read_image_folder(data)


def split(images: ImageSet, test_fraction: float = 0.2, seed: int = 42) -> tuple[ImageSet, ImageSet]:
    """A stratified split: each class keeps its share in both parts."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(images.labels))
    stratify = images.labels if np.bincount(images.labels).min() >= 2 else None
    held, classes = math.ceil(test_fraction * len(idx)), len(np.unique(images.labels))
    if stratify is not None and min(held, len(idx) - held) < classes:
        raise UserError(f"{len(idx)} images of {classes} classes are too few to hold out {test_fraction:.0%} stratified "
                        f"(each part needs an image of every class): give at least {math.ceil(classes / min(test_fraction, 1 - test_fraction))} images")
    train_idx, test_idx = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=stratify)
    pick = lambda ix: ImageSet(images.images[ix], images.labels[ix], images.classes)  # noqa: E731
    return pick(train_idx), pick(test_idx)
