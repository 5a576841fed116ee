"""Yearly sunspots as a new user would try them: does the sequence model beat the last value and an AR(9)?

Issue 17's example: statsmodels' 309 yearly sunspot numbers (1700-2008). The first 80 % go into a
CSV that `dnnzoo train sequence --data FILE --column SUNACTIVITY --window 20` trains on (its own
70/20/10 time split of that file: train, validation for early stopping, test); the last 20 % are
never seen by the model. Each of their values is then forecast one step ahead from the 20 values
before it (the known past), by the trained checkpoint, by repeating the last value, and by AR(9) and
AR(p, AIC) lines fitted by least squares on the first 80 %. The table gives the mean absolute error.

    python benchmarks/sunspots.py [--seeds 42 7 1234] [-- extra `dnnzoo train sequence` flags]

Needs statsmodels (the `dev` extra) for the data only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dnnzoo.openmp import passive_wait

passive_wait()  # before torch loads
from training import checkpoint, sequence, series_baselines  # noqa: E402
from training import cli as train_cli  # noqa: E402
from training.runs import read_metrics  # noqa: E402

WINDOW = 20
HOLDOUT = 0.2
AR_ORDER = 9  # the order in statsmodels' sunspots example and in issue 17


def sunspots() -> np.ndarray:
    from statsmodels.datasets import sunspots as dataset  # statsmodels.api needs a scipy it may not match

    return dataset.load_pandas().data["SUNACTIVITY"].to_numpy(dtype=np.float64)


def fit_ar(values: np.ndarray, order: int) -> series_baselines.AR:
    """AR(order) by least squares on one run of values (intercept included)."""
    x, y = series_baselines.lagged_rows((values[None, :],), order)
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    return series_baselines.AR(float(beta[0]), beta[1:])


def one_step_inputs(values: np.ndarray, start: int) -> np.ndarray:
    """[len - start, WINDOW]: the WINDOW values before each value from `start` on."""
    return np.stack([values[t - WINDOW : t] for t in range(start, len(values))])


def model_forecasts(run: Path, inputs: np.ndarray) -> np.ndarray:
    ckpt = checkpoint.load(run, family="sequence")
    model = sequence.build_model(**ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
    with torch.no_grad():
        nxt, _ = model.eval()(torch.from_numpy(inputs[..., None].astype(np.float32)))
    return nxt[:, 0].numpy().astype(np.float64)


def train(csv: Path, out: Path, seed: int, extra: list[str]) -> float:
    argv = ["--data", str(csv), "--column", "SUNACTIVITY", "--window", str(WINDOW), "--seed", str(seed), "--out", str(out), "--no-progress", *extra]
    trainer, config, options = train_cli.parse("sequence", argv, "dnnzoo train")
    started = time.perf_counter()
    trainer.train(config, options)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 1234])
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    torch.set_num_threads(1)

    values = sunspots()
    start = len(values) - round(HOLDOUT * len(values))
    inputs, actual = one_step_inputs(values, start), values[start:]
    mae = lambda forecast: float(np.mean(np.abs(forecast - actual)))  # noqa: E731
    chosen = series_baselines.fit_ar((values[None, :start],), WINDOW)
    rows = {"last value": mae(inputs[:, -1]), f"AR({AR_ORDER})": mae(fit_ar(values[:start], AR_ORDER).forecast(inputs, 1)[:, 0]),
            f"AR({chosen.order}), order by AIC (up to {WINDOW}) on the same {start} values": mae(chosen.forecast(inputs, 1)[:, 0])}
    model_mae: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="dnnzoo-sunspots-") as tmp:
        csv = Path(tmp) / "sunspots.csv"
        csv.write_text("YEAR,SUNACTIVITY\n" + "".join(f"{1700 + i},{v}\n" for i, v in enumerate(values[:start])))
        for seed in args.seeds:
            run = Path(tmp) / f"seed-{seed}"
            took = train(csv, run, seed, extra)
            final = read_metrics(run)["final"]
            model_mae[seed] = mae(model_forecasts(run, inputs))
            steps = read_metrics(run)["history"][-1]["step"]
            lost = [r["baseline"] + " " + r["metric"] for r in final.get("baselines", []) if not r["beats"]]
            print(f"seed {seed}: {took:.1f}s, {steps} steps, val MSE next {final['val_mse_next']:.0f}, "
                  f"held-out MAE {model_mae[seed]:.1f}" + (f"; lost to: {', '.join(lost)}" if lost else ""), flush=True)
    print(f"\nOne-step MAE on the last {len(actual)} yearly values ({1700 + start}-{1700 + len(values) - 1}), "
          f"trained on the {start} before them; model flags: {' '.join(extra) or '(quick profile)'}\n")
    print("| forecast | MAE |\n|---|---|")
    got = list(model_mae.values())
    print(f"| sequence model, seeds {', '.join(map(str, model_mae))} | {statistics.fmean(got):.1f} (min {min(got):.1f}, max {max(got):.1f}) |")
    for name, value in rows.items():
        print(f"| {name} | {value:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
