"""Forecast a time series with an LSTM (or GRU / simple RNN): the next value and the next 10.

One recurrent stack feeds one linear head of HORIZON outputs; output 0 is the next value, so the
same numbers answer both questions. Training uses the book's sequence-to-sequence target: at every
time step the head predicts the 10 values that follow it (masked where the series ends), which gives
the network a loss signal at every step instead of once per series, and is what brings the 10-ahead
error below the book's best. Inference reads only the last step.

The module is export-ready: `forward(series [N, T, 1]) -> (next [N, 1], next10 [N, 10])` for whole
windows, and `step(x [N, 1], h, c) -> (next, next10, h, c)` for streaming, one value at a time, with
the recurrent state as explicit tensors [N, layers, hidden] (batch first, so a server can batch
them). Normalisation (mean/std of the training values) lives in buffers inside the module. With
`residual` the head forecasts the change from the last value (the default for a user's CSV, whose
level wanders; the book's stationary waves are forecast better as levels).

Each run compares itself on validation with the last value, an AR(p) and, where the training values
have an evident period, the seasonal naive forecast (training.series_baselines), and says so when it
loses (training.baselines).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dnnzoo.errors import UserError
from training import baselines
from training import device as devices
from training import plots
from training import series_baselines
from training.config import TrainConfig, apply_profile
from training.data import series as series_data
from training.fit import fit
from training.initialization import initialize
from training.runs import Run
from training.transfer import freeze, init_from

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass
class Options:
    cell: str | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    window: int | None = None
    series: int | None = None
    column: str | None = None
    seq2seq: bool | None = None
    residual: bool | None = None
    ar_order: int | None = None


PROFILES = {
    "tiny": {"steps": 14, "batch_size": 64, "lr": 1e-2, "optimizer": "adam", "schedule": "1cycle", "threads": 1,
             "cell": "lstm", "hidden_size": 8, "num_layers": 1, "window": 20, "series": 300, "seq2seq": True, "clip_norm": 1.0},
    "quick": {"steps": 770, "early_stopping": 5, "batch_size": 128, "lr": 2e-2, "optimizer": "adam", "schedule": "1cycle", "threads": 1,
              "cell": "lstm", "hidden_size": 32, "num_layers": 2, "window": 50, "series": 10_000, "seq2seq": True, "clip_norm": 1.0},
    "full": {"steps": 13_140, "batch_size": 64, "lr": 5e-3, "optimizer": "adam", "schedule": "1cycle",
             "cell": "lstm", "hidden_size": 128, "num_layers": 2, "window": 50, "series": 10_000, "seq2seq": True, "clip_norm": 1.0},
}


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--cell", choices=tuple(CELLS), help="recurrent cell (default lstm)")
    group.add_argument("--hidden-size", type=int, help="units per recurrent layer")
    group.add_argument("--num-layers", type=int, help="stacked recurrent layers")
    group.add_argument("--window", type=int, help="input steps per training window (default 50, as in the book)")
    group.add_argument("--series", type=int, help="how many generated series (default 10000); ignored with --data")
    group.add_argument("--column", help="the CSV column to forecast (with --data FILE.csv)")
    group.add_argument("--seq2seq", action=argparse.BooleanOptionalAction, default=None,
                       help="train on the next 10 values at every time step (default) or only at the last one")
    group.add_argument("--residual", action=argparse.BooleanOptionalAction, default=None,
                       help="forecast the change from the last value instead of the value itself "
                            "(default: on with --data, where a level that wanders is better forecast as a change; off for the book's waves)")
    group.add_argument("--ar-order", type=int,
                       help="p of a linear path from the last p inputs to the forecast, trained with the network "
                            "(which then learns a correction to a line); 0 for none (default with --data: the AR baseline's order, "
                            "chosen by AIC on the training values; 0 for the book's waves)")


class SequencePredictor(nn.Module):
    """A recurrent stack and a linear head; see the module docstring for the two entry points."""

    def __init__(self, cell: str = "lstm", hidden_size: int = 32, num_layers: int = 2, horizon: int = series_data.HORIZON,
                 dropout: float = 0.0, mean: float = 0.0, std: float = 1.0, residual: bool = False, ar_order: int = 0):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; choose from {', '.join(CELLS)}")
        self.cell, self.hidden_size, self.num_layers, self.horizon = cell, hidden_size, num_layers, horizon
        self.residual = residual
        self.rnn = CELLS[cell](1, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, horizon)
        self.ar_order = ar_order
        self.ar = nn.Linear(ar_order, horizon) if ar_order else None
        if self.ar is not None:  # starts as the head's baseline (the last value, or the mean) and learns the line
            nn.init.zeros_(self.ar.weight)
            nn.init.zeros_(self.ar.bias)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def _values(self, head: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Head outputs (normalised units) -> values: a change from `last` (residual) or a level."""
        return head * self.std + (last if self.residual else self.mean)

    def _linear(self, z: torch.Tensor) -> torch.Tensor | float:
        """Normalised [N, T, 1] -> the linear path's [N, T, horizon]: a line through the last `ar_order`
        inputs at every step (zeros, the training mean, stand in for values before the first)."""
        if self.ar is None:
            return 0.0
        padded = nn.functional.pad(z[..., 0], (self.ar_order - 1, 0))
        return self.ar(padded.unfold(1, self.ar_order, 1))

    def _recur(self, z: torch.Tensor) -> torch.Tensor:
        """The recurrent stack's outputs, in FP32 even under --precision's autocast: oneDNN has no
        reduced-precision LSTM on a CPU without bf16 units, nor cuDNN a bf16 one in every version, and
        the stack is small; the head still runs at the autocast dtype."""
        if torch.is_autocast_enabled(z.device.type):
            with torch.autocast(z.device.type, enabled=False):
                return self.rnn(z.float())[0]
        return self.rnn(z)[0]

    def forecasts(self, series: torch.Tensor) -> torch.Tensor:
        """[N, T, 1] -> the next `horizon` values after every step, [N, T, horizon] (the training target)."""
        z = (series - self.mean) / self.std
        hidden = self._recur(z)
        return self._values(self.head(hidden) + self._linear(z), series)

    def forward(self, series: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = (series - self.mean) / self.std
        hidden = self._recur(z)
        head = self.head(hidden[:, -1])
        if self.ar is not None:  # the last step's line only (ONNX has no Unfold): the last p inputs, mean-padded
            head = head + self.ar(nn.functional.pad(z[..., 0], (self.ar_order - 1, 0))[:, -self.ar_order :])
        ahead = self._values(head, series[:, -1])
        return ahead[:, :1], ahead

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero h and c, [batch, layers, hidden]: the state before the first value of a stream."""
        zeros = torch.zeros(batch, self.num_layers, self.hidden_size, device=self.mean.device)
        return zeros, zeros.clone()

    def step(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None, past: torch.Tensor | None = None):
        """One value per stream: x [N, 1], h and c [N, layers, hidden], past [N, ar_order] -> (next, next10, h, c, past).

        Feeding a series one value at a time from `initial_state` (and zero `past`) gives the same
        predictions as `forward` on the prefix seen so far. GRU and simple RNN cells have no cell state:
        for them `c` is ignored and returned as given, so every cell streams with the same signature.
        `past` holds the linear path's last `ar_order` normalised inputs (oldest first); without that
        path (`ar_order` 0) it is ignored and returned as given.
        """
        z = ((x - self.mean) / self.std).unsqueeze(1)
        h0 = h.transpose(0, 1).contiguous()
        if self.cell == "lstm":
            out, (h1, c1) = self.rnn(z, (h0, c.transpose(0, 1).contiguous()))
            c = c1.transpose(0, 1)
        else:
            out, h1 = self.rnn(z, h0)
        head = self.head(out[:, -1])
        if self.ar is not None:
            past = torch.cat([past[:, 1:], z[:, 0]], dim=1)
            head = head + self.ar(past)
        ahead = self._values(head, x)
        return ahead[:, :1], ahead, h1.transpose(0, 1), c, past


def build_model(**model_args) -> SequencePredictor:
    return SequencePredictor(**model_args)


def targets(series: np.ndarray, window: int, horizon: int, seq2seq: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs [N, window, 1], targets and mask [N, window, horizon]: the values after each input step.

    Target (t, k) is value t+1+k; it is masked out where that runs past the series end and, without
    seq2seq, everywhere but the last input step.
    """
    length = series.shape[1]
    offsets = np.arange(window)[:, None] + 1 + np.arange(horizon)[None, :]
    mask = offsets < length
    if not seq2seq:
        mask[:-1] = False
    y = series[:, np.minimum(offsets, length - 1), 0]
    m = np.broadcast_to(mask, y.shape).astype(np.float32)
    return series[:, :window], y.astype(np.float32), np.ascontiguousarray(m)


class Batches:
    """Shuffled mini-batches of equal-shape tensors, reshuffled each epoch from a seeded generator."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, generator: torch.Generator):
        self.tensors, self.batch_size, self.generator = tensors, batch_size, generator

    def __len__(self) -> int:
        return math.ceil(len(self.tensors[0]) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.tensors[0]), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield tuple(t[index] for t in self.tensors)


def masked_mse(model: SequencePredictor, batch) -> torch.Tensor:
    """MSE over the unmasked targets, in normalised units so the learning rate does not depend on the data's scale."""
    x, y, m = batch
    error = (model.forecasts(x) - y) / model.std
    return (error.square() * m).sum() / m.sum()


@torch.no_grad()
def evaluate(model: SequencePredictor, next_split: series_data.Split, ahead_split: series_data.Split, window: int,
             device: torch.device, chunk: int = 4096) -> dict[str, float]:
    """1-step MSE on the next-value windows and 10-ahead MSE (mean over the 10) on the horizon windows."""
    model.eval()

    def predict(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outs = [model(torch.from_numpy(series[i : i + chunk, :window]).to(device)) for i in range(0, len(series), chunk)]
        return torch.cat([o[0] for o in outs]).cpu().numpy(), torch.cat([o[1] for o in outs]).cpu().numpy()

    nxt, _ = predict(next_split.series)
    _, ahead = predict(ahead_split.series)
    mse_next = float(np.mean((nxt[:, 0] - next_split.series[:, window, 0]) ** 2))
    mse_ahead = float(np.mean((ahead - ahead_split.series[:, window:, 0]) ** 2))
    return {"mse_next": mse_next, "mse_10": mse_ahead}


def load_data(config: TrainConfig, options: Options) -> series_data.SeriesData:
    if config.data is not None:
        return series_data.csv_series(Path(config.data), options.column, options.window)
    return series_data.book_series(options.series, options.window, seed=config.seed)


def forecast_plot(model: SequencePredictor, split: series_data.Split, window: int, path: Path, device: torch.device, count: int = 4) -> Path:
    """A few validation series: inputs, the true next 10 and the forecast."""
    plt = plots._pyplot()
    with torch.no_grad():
        _, ahead = model(torch.from_numpy(split.series[:count, :window]).to(device))
    ahead = ahead.cpu().numpy()
    count = min(count, len(ahead))
    fig, axes = plt.subplots(1, count, figsize=(4 * count, 3), squeeze=False)
    steps = split.series.shape[1]
    for i, ax in enumerate(axes[0]):
        ax.plot(range(window), split.series[i, :window, 0], ".-", color="tab:blue", label="input")
        ax.plot(range(window, steps), split.series[i, window:, 0], "o", color="tab:green", label="actual")
        ax.plot(range(window, window + len(ahead[i])), ahead[i], "x-", color="tab:red", label="forecast")
        ax.grid(alpha=0.3)
        ax.set_xlabel("t")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def train(config: TrainConfig, options: Options) -> dict:
    config, options = apply_profile(config, options, PROFILES[config.profile])
    if config.dropout and options.num_layers < 2:
        raise UserError(f"--dropout acts between recurrent layers: it needs --num-layers 2 or more (this run has {options.num_layers})")
    if options.residual is None:  # measured: README, "Sunspots"
        options = dataclasses.replace(options, residual=config.data is not None)
    if options.ar_order is not None and not 0 <= options.ar_order <= options.window:
        raise UserError(f"--ar-order must be between 0 (no linear path) and --window ({options.window}), got {options.ar_order}")
    generator = devices.seed_everything(config.seed)
    devices.set_threads(config.threads)
    device = devices.pick(config.device)
    data = load_data(config, options)
    window, horizon = data.window, series_data.HORIZON

    train_series = [data.ahead_train.series]
    if config.data is None:  # the book's 51-step set is a separate draw; a CSV's next-value windows repeat the others
        train_series.append(data.next_train.series)
    parts = [targets(s, window, horizon, options.seq2seq) for s in train_series]
    x, y, m = (torch.from_numpy(np.concatenate(p)) for p in zip(*parts))
    values = data.train_values()
    mean, std = float(values.mean()), float(values.std()) or 1.0
    ar = series_baselines.fit_ar(data.train_runs, window)  # the AR baseline; its order (AIC, training values) sizes the linear path
    if options.ar_order is None:  # measured: README, "Sunspots"
        options = dataclasses.replace(options, ar_order=ar.order if config.data is not None else 0)

    model_args = {"cell": options.cell, "hidden_size": options.hidden_size, "num_layers": options.num_layers,
                  "horizon": horizon, "dropout": config.dropout or 0.0, "mean": mean, "std": std, "residual": options.residual,
                  "ar_order": options.ar_order or 0}
    model = build_model(**model_args)
    initialize(model.head, None, config.init, config.init_distribution)
    if config.init_from:
        init_from(model, config.init_from, ("sequence",))
    freeze(model, config.freeze)
    model.to(device)

    run = Run(config, options)
    batches = Batches((x, y, m), config.batch_size, generator)

    def evaluate_epoch(model: nn.Module) -> dict[str, float]:
        scores = evaluate(model, data.next_valid, data.ahead_valid, window, device)
        return {"val_mse_next": scores["mse_next"], "val_mse_10": scores["mse_10"],
                "val_loss": scores["mse_next"] + scores["mse_10"]}

    started = time.perf_counter()
    history = fit(model, batches, config, masked_mse, evaluate_epoch, device)
    train_seconds = time.perf_counter() - started

    valid = evaluate(model, data.next_valid, data.ahead_valid, window, device)
    test = evaluate(model, data.next_test, data.ahead_test, window, device)
    period = series_baselines.season(data.train_runs, window)
    records = [baselines.compare(name, f"val_{metric}", valid[metric], value)
               for name, figures in series_baselines.scores(data, horizon, ar, period).items() for metric, value in figures.items()]
    final = {
        "val_mse_next": valid["mse_next"], "val_mse_10": valid["mse_10"],
        "test_mse_next": test["mse_next"], "test_mse_10": test["mse_10"],
        "ar_order": ar.order,
        "season": period,
        "train_seconds": round(train_seconds, 2),
        "parameters": sum(p.numel() for p in model.parameters()),
        baselines.BASELINES: baselines.speak("sequence", records),
    }
    extra = {"window": window, "horizon": horizon, "cell": options.cell, "normalization": {"mean": mean, "std": std},
             "state_shape": [options.num_layers, options.hidden_size], "has_cell_state": options.cell == "lstm",
             "data": data.source, "metrics": {k: final[k] for k in ("val_mse_next", "val_mse_10")}}
    run.save_checkpoint(model_args, model.state_dict(), extra)
    plots.curves(history, run.file("curves.png"), keys=["loss", "val_mse_next", "val_mse_10"], title=f"sequence ({options.cell})")
    forecast_plot(model, data.ahead_valid, window, run.file("forecasts.png"), device)
    return run.save_metrics(history, final)
