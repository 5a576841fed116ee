"""`dnnzoo samples [DIR]`: sample inputs for the client commands, made from the data the models learnt from.

A new user has no digit picture, scene or series at hand; the README's first commands use these
files as they stand (`dnnzoo classify digit.png`, `dnnzoo detect scene.png …`, `dnnzoo forecast --csv
series.csv --column value`). Each is drawn from the family's own generator at a fixed seed, so the
same files come out every time, and pictures are scaled up (nearest neighbour) so a person can see
them; the server scales them back down as training did.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SCALE = 4  # a 28-pixel digit becomes 112 pixels, a 64-pixel scene 256
SEED = 2026
DIGIT_SHOWN = 7  # the class of digit.png


def _picture(pixels: np.ndarray, scale: int = SCALE) -> Image.Image:
    h, w = pixels.shape[-2:]
    return Image.fromarray(np.asarray(pixels, np.uint8).reshape(h, w)).resize((w * scale, h * scale), Image.NEAREST)


def write_samples(folder: Path) -> list[Path]:
    """Write digit.png, digits/0.png … 9.png, scene.png and series.csv into `folder`; the paths written."""
    from training.data import images, scenes, series

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "digits").mkdir(exist_ok=True)
    digits = images.digits()
    rng = np.random.default_rng(SEED)
    written = []
    for label in range(len(digits.classes)):
        index = int(rng.choice(np.flatnonzero(digits.labels == label)))
        path = folder / "digits" / f"{digits.classes[label]}.png"
        _picture(digits.images[index, 0]).save(path)
        written.append(path)
        if label == DIGIT_SHOWN:
            _picture(digits.images[index, 0]).save(folder / "digit.png")
            written.insert(0, folder / "digit.png")
    scene = scenes.generate(scenes.make_bank(digits, 14, 32), 1, seed=SEED, canvas=64).images[0, 0]
    _picture(scene).save(folder / "scene.png")
    written.append(folder / "scene.png")
    values = series.generate_time_series(1, series.WINDOW, seed=SEED)[0, :, 0]
    with (folder / "series.csv").open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["step", "value"])
        out.writerows([step, f"{value:.5f}"] for step, value in enumerate(values))
    written.append(folder / "series.csv")
    return written


def main(argv: list[str], prog: str = "dnnzoo samples") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Write sample inputs for the client commands "
                                "(digit.png, digits/N.png, scene.png, series.csv). Needs the training extra.")
    p.add_argument("folder", nargs="?", type=Path, default=Path("."), metavar="DIR", help="where to write them (default: here)")
    args = p.parse_args(argv)
    try:
        written = write_samples(args.folder)
    except ImportError as exc:  # a serving-only install has neither torch nor scikit-learn
        print(f"{prog}: needs the training extra (pip install 'dnnzoo[train]'): {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0
