"""The quality table of benchmarks/full_profile.sh: each family's full-profile figures against issue 16's targets.

The GAN's target is relative: the classifier's mean top-class probability on its generated digits is
to be at least 0.95× the same figure on real held-out digits, which this computes with the run's own
judge (the full classifier) on that classifier's test split.

    python benchmarks/full_profile_table.py RUNS_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# (family, metric key in metrics.json's "final", target, higher is better)
TARGETS = (
    ("classifier", "test_acc", 0.992, True),
    ("detector", "map50", 0.985, True),
    ("sequence", "test_mse_next", 0.0020, False),
    ("sequence", "test_mse_10", 0.0020, False),
    ("autoencoder", "test_mse", "reported", False),
    ("gan", "mean_top_prob", "0.95x real", True),
)
GAN_SHARE = 0.95


def real_confidence(classifier_run: Path) -> float:
    """The judge's mean top-class probability on the real digits of its own test split."""
    import torch

    from training import checkpoint, classifier
    from training.config import TrainConfig

    ckpt = checkpoint.load(classifier_run, family="classifier")
    model = classifier.build_model(**ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    saved = json.loads((classifier_run / "metrics.json").read_text())
    config = TrainConfig(family="classifier", seed=saved["config"]["seed"])
    options = classifier.Options(val_fraction=saved["options"]["val_fraction"])
    _, _, test = classifier.prepare_data(config, options)
    images = torch.from_numpy(test.images.astype("float32") / 255.0)
    return float(classifier.predict(model, images, torch.device("cpu")).softmax(1).max(1).values.mean())


def main(runs: Path) -> int:
    rows = ["| family | metric | target | full profile | met | steps | seconds |", "|---|---|---|---|---|---|---|"]
    for family, key, target, higher in TARGETS:
        path = runs / family / "metrics.json"
        if not path.is_file():
            rows.append(f"| {family} | {key} | {target} | timed out or failed | - | - | - |")
            continue
        record = json.loads(path.read_text())
        final = record["final"]
        value = final.get(key)
        bar = target
        if family == "gan" and (runs / "classifier" / "checkpoint.pt").is_file():
            bar = GAN_SHARE * real_confidence(runs / "classifier")
        met = "-" if not isinstance(bar, float) or value is None else ("yes" if (value >= bar if higher else value <= bar) else "NO")
        shown = f"{'≥' if higher else '≤'} {bar:.4g}" if isinstance(bar, float) else str(bar)
        steps = final.get("steps", record["history"][-1].get("step", "-") if record.get("history") else "-")
        rows.append(f"| {family} | {key} | {shown} | {value if value is None else f'{value:.4g}'} | {met} | {steps} | {record.get('seconds', '-')} |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    raise SystemExit(main(Path(sys.argv[1])))
