"""How far each family's quick profile clears its slow-test bars at several seeds, not just 42.

The slow tests check one seed (42). This trains the quick profile of every family at each seed the
way `dnnzoo train FAMILY --profile quick --seed N` does (training.cli.parse, then the family's
`train`), in `dnnzoo build`'s order so the GAN is judged by the classifier of the same seed, and
scores each run with the very bar its test asserts:

  tests/training/test_*.py           read metrics.json's "final": the same keys and thresholds here.
  tests/serving/test_tasks_quality.py  asks the served ONNX models; here the same figure comes from
                                     the torch checkpoint through the training code (detector: the
                                     test's scenes of the run's held-out digits, the checkpoint's
                                     NMS settings, training.detector_eval.detect and its mAP; word2vec: 3CosAdd of training.word2vec_eval, which
                                     picks the same top word as most_similar on unit vectors). The PNG
                                     digit accuracy (>= 0.9 on the seed-42 split) is not repeated: at
                                     another seed those digits are training images, and test_acc
                                     (>= 0.98 on that seed's own held-out split) is the stricter bar.

For a lower-is-better bar the "worst" column is the maximum, else the minimum; margin is how far
the worst seed clears the bar (negative: it fails). A row marked "reported" has no bar: it shows a
figure beside them (the GAN's Fréchet distance to held-out digits and its real-vs-real floor). A run folder that already holds checkpoint.pt
and metrics.json is scored, not retrained (as `dnnzoo build` does), so --runs DIR resumes.

    python benchmarks/seeds.py [--seeds 42 7 1234] [--families classifier gan ...] [--runs DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dnnzoo.openmp import passive_wait

passive_wait()  # before torch loads
from training.families import BUILD_ORDER  # noqa: E402
from training import cli as train_cli  # noqa: E402
from training.runs import read_metrics  # noqa: E402


@dataclass(frozen=True)
class Bar:
    family: str
    metric: str
    threshold: float | None  # None: a figure reported beside the bars, with no bar of its own
    higher: bool  # True: value >= threshold passes (strict when `strict`); False: value <= threshold
    value: Callable[[dict, Path], float]  # (final metrics, run folder) -> the figure
    source: str
    strict: bool = False

    def passes(self, v: float) -> bool:
        if self.threshold is None:
            return True
        if self.higher:
            return v > self.threshold if self.strict else v >= self.threshold
        return v < self.threshold if self.strict else v <= self.threshold

    def shown(self) -> str:
        if self.threshold is None:
            return "reported"
        op = (">" if self.strict else ">=") if self.higher else ("<" if self.strict else "<=")
        return f"{op} {self.threshold:.4g}"


def _final(key: str) -> Callable[[dict, Path], float]:
    return lambda final, _run: float(final[key])


def detector_held_out_scores(run: Path) -> dict:
    """test_served_detector_reaches_map50_of_0_90_on_held_out_digits on the torch model: mAP@0.5 (with
    precision and recall) on the test's scenes of the run's held-out digits, with the NMS settings the
    export ships (detections scoring above the served threshold only, as the service returns them)."""
    from tests.serving.test_tasks_quality import HELD_OUT_SCENES, HELD_OUT_SEED
    from training import checkpoint
    from training import detector as det
    from training import detector_eval

    ckpt = checkpoint.load(run, family="detector")
    model = det.build_model(**ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    extra = ckpt["extra"]
    scenes = det.held_out_scenes(extra, HELD_OUT_SCENES, HELD_OUT_SEED)
    found, _ = detector_eval.detect(model, det.scene_tensors(scenes)[0], extra["score_threshold"], extra["iou_threshold"], extra["max_detections"])
    return detector_eval.scored_detections(found, scenes, extra["score_threshold"])


def detector_held_out_map50(_final: dict, run: Path) -> float:
    return detector_held_out_scores(run)["map"]


ANALOGIES = (("list", "lists", "tuple", "tuples"), ("integer", "integers", "string", "strings"))  # test_analogy_from_the_training_corpus


def _word2vec_unit(run: Path):
    """(word -> id, unit rows of the vectors export serves) of a word2vec run."""
    from training import checkpoint, word2vec, word2vec_eval

    ckpt = checkpoint.load(run, family="word2vec")
    model = word2vec.build_model(**ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    index = {w: i for i, w in enumerate(ckpt["extra"]["vocab"])}
    return index, word2vec_eval.unit_rows(model.vectors.detach().numpy())


def word2vec_analogies(_final: dict, run: Path) -> float:
    """Fraction of the serving test's two analogies whose top answer is the expected word (3CosAdd)."""
    from training import word2vec_eval
    from training.data.text import Analogy

    index, unit = _word2vec_unit(run)
    questions = [Analogy("serving test", q) for q in ANALOGIES]
    scored = word2vec_eval.analogy_accuracy(index, unit, questions)
    return scored["accuracy"] * scored["answered"] / len(questions)  # an unknown word counts as a miss


def word2vec_analogies_over_neighbours(_final: dict, run: Path) -> float:
    """test_analogies_beat_answering_with_a_neighbour_of_b_or_c: analogies right by 3CosAdd minus the most
    right by answering with the nearest neighbour of b alone or of c alone (question words excluded)."""
    from training import word2vec_eval

    index, unit = _word2vec_unit(run)

    def neighbour(word: str, excluded: set[str]) -> int:
        top = word2vec_eval.nearest(unit, [index[word]], 4)[0]
        return next(int(i) for i in top if i not in {index[w] for w in excluded})

    offset = word2vec_analogies(_final, run) * len(ANALOGIES)
    of_b = sum(neighbour(b, {a, c}) == index[d] for a, b, c, d in ANALOGIES)
    of_c = sum(neighbour(c, {a, b}) == index[d] for a, b, c, d in ANALOGIES)
    return offset - max(of_b, of_c)


def pca_ratio(final: dict, _run: Path) -> float:
    return float(final["test_mse"]) / float(final["pca_mse"])


def frechet_baseline_ratio(final: dict, _run: Path) -> float:
    """The GAN's Fréchet distance over the best trivial baseline's (untrained generator, per-pixel Gaussian)."""
    return float(final["frechet"]) / min(float(v) for v in final["baseline_frechet"].values())


def tabular_margin(final: dict, _run: Path) -> float:
    """The network's test accuracy over the better of gradient boosting and the one-hot linear model."""
    from training.tabular import best_reference

    return float(final["test_acc"]) - best_reference(final)[1]


TRAINING = "tests/training/test_{}.py"
SERVING = "tests/serving/test_tasks_quality.py (torch stand-in)"
BARS = (
    Bar("classifier", "test_acc", 0.98, True, _final("test_acc"), TRAINING.format("classifier")),
    Bar("autoencoder", "test_mse/pca_mse", 1.0, False, pca_ratio, TRAINING.format("autoencoder"), strict=True),
    Bar("detector", "map50", 0.90, True, _final("map50"), TRAINING.format("detector")),
    Bar("detector", "map50 served test (held-out)", 0.90, True, detector_held_out_map50, SERVING),
    Bar("sequence", "test_mse_next", 0.0029, False, _final("test_mse_next"), TRAINING.format("sequence")),
    Bar("sequence", "test_mse_10", 0.0060, False, _final("test_mse_10"), TRAINING.format("sequence")),
    Bar("word2vec", "pairs_coverage", 1.0, True, _final("pairs_coverage"), TRAINING.format("word2vec")),
    Bar("word2vec", "pairs_top10_mutual", 0.40, True, _final("pairs_top10_mutual"), TRAINING.format("word2vec")),
    Bar("word2vec", "pairs_top20_either", 0.60, True, _final("pairs_top20_either"), TRAINING.format("word2vec")),
    Bar("word2vec", "analogies top-1 (2)", 1.0, True, word2vec_analogies, SERVING),
    Bar("word2vec", "analogies right − neighbour-of-b/c right", 0, True, word2vec_analogies_over_neighbours, SERVING, strict=True),
    Bar("gan", "mean_top_prob", 0.80, True, _final("mean_top_prob"), TRAINING.format("gan")),
    Bar("gan", "class_entropy", 0.85 * math.log(10), True, _final("class_entropy"), TRAINING.format("gan")),
    Bar("gan", "frechet/best baseline", 1.0, False, frechet_baseline_ratio, TRAINING.format("gan"), strict=True),
    Bar("tabular", "test_acc − best of HGB/linear", 0, True, tabular_margin, TRAINING.format("tabular")),
    Bar("gan", "frechet (held-out digits)", None, False, _final("frechet"), "reported: training.gan_judge"),
    Bar("gan", "frechet real-vs-real floor", None, False, _final("frechet_real_floor"), "reported: training.gan_judge"),
)

# What the seed changes in each family's data (the model's initialisation and batch order follow it everywhere).
DATA_SEED = {
    "classifier": "train/test split (images.split(seed))",
    "autoencoder": "train/test split, hence the PCA baseline too",
    "detector": "train/val/test digit split, training/val/test scenes (seed, +10000, +20000)",
    "sequence": "the generated series (series.book_series(seed)), hence their 70/20/10 split",
    "word2vec": "none to change: the embedded corpus and pairs are fixed; subsampling/negatives follow it",
    "tabular": "train/validation/test split of the penguins' rows (stratified by species)",
    "gan": "train/test split as the classifier's (it trains on the training part, the Fréchet judge uses the held-out part); judge latents follow it",
}


def ensure_run(family: str, seed: int, runs: Path, profile: str = "quick") -> tuple[Path, float | None]:
    """The run of `family` at `seed`, trained as `dnnzoo train` would when it is not there yet."""
    run = runs / f"seed-{seed}" / f"{family}-{profile}"
    if (run / "checkpoint.pt").is_file() and (run / "metrics.json").is_file():
        return run, None
    argv = ["--profile", profile, "--seed", str(seed), "--out", str(run), "--no-progress"]
    if family == "gan":  # `dnnzoo build` judges the GAN with the classifier it has just trained
        argv += ["--judge", str(runs / f"seed-{seed}" / f"classifier-{profile}")]
    trainer, config, options = train_cli.parse(family, argv, "dnnzoo train")
    started = time.perf_counter()
    trainer.train(config, options)
    return run, time.perf_counter() - started


def table(results: dict[tuple[str, str], dict[int, float]], seeds: list[int], bars: list[Bar]) -> str:
    head = ["family", "metric", "bar"] + [f"seed {s}" for s in seeds] + ["mean", "worst", "margin", ""]
    rows = [head]
    for bar in bars:
        values = results.get((bar.family, bar.metric), {})
        cells = [bar.family, bar.metric, bar.shown()] + [f"{values[s] + 0.0:.4g}" if s in values else "-" for s in seeds]
        got = [values[s] for s in seeds if s in values]
        if got:
            worst = min(got) if bar.higher else max(got)
            if bar.threshold is None:
                margin, verdict = "-", ""
            else:
                margin = f"{worst - bar.threshold if bar.higher else bar.threshold - worst:+.4g}"
                verdict = ("PASS" if all(bar.passes(v) for v in got) else "FAIL") + ("" if len(got) == len(seeds) else " (partial)")
            cells += [f"{statistics.fmean(got):.4g}", f"{worst + 0.0:.4g}", margin, verdict]
        else:
            cells += ["-", "-", "-", "not run"]
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 1234])
    parser.add_argument("--families", nargs="+", choices=BUILD_ORDER, default=list(BUILD_ORDER))
    parser.add_argument("--runs", type=Path, help="folder for the run folders seed-N/FAMILY-quick (default a temporary folder, removed)")
    parser.add_argument("--profile", choices=("tiny", "quick"), default="quick", help="the bars are the quick profile's; tiny only checks this script")
    args = parser.parse_args(argv)
    families = [f for f in BUILD_ORDER if f in args.families]
    if "gan" in families and "classifier" not in families:
        families.insert(0, "classifier")  # the GAN's judge; its rows are still printed only when asked for
        print("note: training the classifier too, to judge the GAN", flush=True)
    bars = [b for b in BARS if b.family in args.families]
    temp = None if args.runs else tempfile.TemporaryDirectory(prefix="dnnzoo-seeds-")
    runs = args.runs or Path(temp.name)
    results: dict[tuple[str, str], dict[int, float]] = {}
    seconds: dict[tuple[str, int], float | None] = {}
    started = time.perf_counter()
    try:
        for seed in args.seeds:
            for family in families:
                print(f"[{time.perf_counter() - started:6.0f}s] seed {seed}: {family} ...", flush=True)
                run, took = ensure_run(family, seed, runs, args.profile)
                seconds[family, seed] = took
                final = read_metrics(run)["final"]
                for bar in (b for b in bars if b.family == family):
                    results.setdefault((bar.family, bar.metric), {})[seed] = bar.value(final, run)
                print(f"[{time.perf_counter() - started:6.0f}s] seed {seed}: {family} "
                      + (f"trained in {took:.0f}s" if took is not None else "already trained"), flush=True)
    except KeyboardInterrupt:
        print("interrupted: the table holds the runs that finished", file=sys.stderr)
    finally:
        print()
        print(table(results, args.seeds, bars))
        print()
        for family in args.families:
            print(f"data seed, {family}: {DATA_SEED[family]}")
        trained = sum(t for t in seconds.values() if t)
        print(f"\ntraining {trained:.0f}s, total {time.perf_counter() - started:.0f}s; runs in {runs}" + (" (removed)" if temp else ""))
        if args.runs:
            (runs / "seeds.json").write_text(json.dumps(
                {"seeds": args.seeds, "results": [{"family": f, "metric": m, "values": {str(s): v for s, v in vs.items()}} for (f, m), vs in results.items()],
                 "train_seconds": {f"{f}@{s}": t for (f, s), t in seconds.items()}}, indent=2))
        if temp:
            temp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
