"""The book's two transfer-learning experiments on the digits, side by side.

A classifier for digits 5–9 gets only a few labels per class. It is trained
  1. from scratch;
  2. reusing the lower layers of a classifier trained on digits 0–4 (all their labels), frozen, with a
     new head; then the same net unfrozen and fine-tuned at a lower learning rate;
  3. reusing the encoder of the stacked autoencoder trained without labels on every digit's training
     images (unsupervised pretraining), frozen, then unfrozen.
The dense (`mlp`) rows share one architecture (the autoencoder's encoder plus a head), so only the
starting weights differ; the ResNet rows repeat experiment 2 with convolutional layers.
Every run goes through the families' programmatic `train(config, options)`; test images are the
held-out 20 % of digits 5–9, never seen by any stage (the autoencoder trains on the training split).

    python benchmarks/transfer.py [--labels-per-class 10] [--seed 42] [--keep DIR] [--no-resnet]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dnnzoo.openmp import passive_wait

passive_wait()  # before torch loads
from training import autoencoder, classifier  # noqa: E402
from training.config import TrainConfig  # noqa: E402

LOW, HIGH = ("0", "1", "2", "3", "4"), ("5", "6", "7", "8", "9")


def run_classifier(folder: Path, name: str, seed: int, threads: int | None, options: classifier.Options, **config) -> dict:
    cfg = TrainConfig(family="classifier", profile="quick", out=folder / name, seed=seed, threads=threads, progress=False, **config)
    return classifier.train(cfg, options)["final"]


def experiments(folder: Path, labels: int, seed: int, threads: int | None, resnet: bool) -> list[tuple[str, str, str, float]]:
    """Train every stage; returns (method, arch, what is frozen, held-out accuracy on 5–9) rows."""
    rows = []
    few_base = dict(epochs=80, batch_size=16, schedule="constant", lr=2e-3)
    tune_base = dict(epochs=40, batch_size=16, schedule="constant", lr=3e-4)
    few_options = lambda arch: classifier.Options(arch=arch, classes=HIGH, labels_per_class=labels)  # noqa: E731

    ae = TrainConfig(family="autoencoder", profile="quick", out=folder / "ae", seed=seed, threads=threads, progress=False, epochs=30)
    ae_final = autoencoder.train(ae, autoencoder.Options())
    print(f"autoencoder (all digits, no labels): test MSE {ae_final['final']['test_mse']:.4f} vs PCA {ae_final['final']['pca_mse']:.4f}", flush=True)

    # The dense rows use the autoencoder's own activation and no batch norm, so all of them are one architecture.
    archs = [("mlp", ("encoder.0", "encoder.1"), dict(activation="selu", batch_norm=False))]
    archs += [("resnet", ("stem", "stages.0", "stages.1"), {})] if resnet else []
    for arch, lower, same in archs:
        few, tune = {**few_base, **same}, {**tune_base, **same}
        low = run_classifier(folder, f"{arch}-0to4", seed, threads, classifier.Options(arch=arch, classes=LOW), epochs=15, **same)
        print(f"{arch} on 0–4 (all labels): test accuracy {low['test_acc']:.4f}", flush=True)
        scratch = run_classifier(folder, f"{arch}-scratch", seed, threads, few_options(arch), **few)
        rows.append(("from scratch", arch, "—", scratch["test_acc"]))
        frozen = run_classifier(folder, f"{arch}-reuse", seed, threads, few_options(arch), init_from=folder / f"{arch}-0to4", freeze=lower, **few)
        rows.append(("reuse 0–4 classifier, lower layers frozen", arch, " ".join(lower), frozen["test_acc"]))
        thawed = run_classifier(folder, f"{arch}-reuse-tuned", seed, threads, few_options(arch), init_from=folder / f"{arch}-reuse", **tune)
        rows.append(("  … then unfrozen, fine-tuned", arch, "—", thawed["test_acc"]))
        if arch == "mlp":
            pre = run_classifier(folder, "mlp-ae", seed, threads, few_options("mlp"), init_from=folder / "ae", freeze=("encoder",), **few)
            rows.append(("reuse autoencoder encoder, frozen", "mlp", "encoder", pre["test_acc"]))
            pre_tuned = run_classifier(folder, "mlp-ae-tuned", seed, threads, few_options("mlp"), init_from=folder / "mlp-ae", **tune)
            rows.append(("  … then unfrozen, fine-tuned", "mlp", "—", pre_tuned["test_acc"]))
    return rows


def table(rows: list[tuple[str, str, str, float]], labels: int) -> str:
    width = max(len(r[0]) for r in rows)
    lines = [f"digits 5–9 from {labels} labels per class — held-out test accuracy", "",
             f"{'method':<{width}}  {'arch':<6}  {'frozen':<26}  accuracy", f"{'-' * width}  {'-' * 6}  {'-' * 26}  --------"]
    lines += [f"{m:<{width}}  {a:<6}  {f:<26}  {acc:8.4f}" for m, a, f, acc in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--labels-per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, help="torch threads (default: PyTorch's choice)")
    parser.add_argument("--keep", type=Path, help="keep the run folders here instead of a temporary folder")
    parser.add_argument("--no-resnet", dest="resnet", action="store_false", help="only the dense (mlp) experiments")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dnnzoo-transfer-") as tmp:
        folder = args.keep or Path(tmp)
        rows = experiments(folder, args.labels_per_class, args.seed, args.threads, args.resnet)
    print()
    print(table(rows, args.labels_per_class))
    print(f"\n({time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
