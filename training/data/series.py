"""Time series for the sequence family: the book's generated waves, or one column of a CSV file.

The default data is chapter 15's, built exactly as the book does, so that its published figures
(naive last-value MSE 0.0202 for the next value, 0.257 for the next 10) hold on the same rows and
can be compared with ours; `--seed` draws another set of series from the same recipe. A user's CSV
column is split in time order (train, then validation, then test) and cut into overlapping windows:
a training window lies inside the training stretch, a validation or test window takes its targets
from its own stretch and its inputs from the values just before them (the known past), so no value
the model is scored on was ever a training input or target.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnnzoo.errors import UserError

WINDOW = 50
HORIZON = 10
N_SERIES = 10_000
TRAIN_ROWS, VALID_ROWS = 7000, 9000  # rows [:7000] train, [7000:9000] validation, [9000:] test


def generate_time_series(n: int, steps: int, seed: int | None = 42) -> np.ndarray:
    """The book's series: two sines of random frequency and phase plus uniform noise, float32 [n, steps, 1].

    With `seed` given, numpy's global generator is re-seeded first, as the book does before each
    dataset (so the 51-step and 60-step sets share frequencies and phases). None draws from the
    current global state.
    """
    if seed is not None:
        np.random.seed(seed)
    freq1, freq2, offsets1, offsets2 = np.random.rand(4, n, 1)
    time = np.linspace(0, 1, steps)
    series = 0.5 * np.sin((time - offsets1) * (freq1 * 10 + 10))
    series += 0.2 * np.sin((time - offsets2) * (freq2 * 20 + 20))
    series += 0.1 * (np.random.rand(n, steps) - 0.5)
    return series[..., np.newaxis].astype(np.float32)


@dataclass
class Split:
    """Windows of one split. `series` is [N, window + ahead, 1]: inputs first, targets after."""

    series: np.ndarray

    def __len__(self) -> int:
        return len(self.series)


@dataclass
class SeriesData:
    """`next_*` hold window+1 steps (target: the next value); `ahead_*` hold window+HORIZON steps."""

    next_train: Split
    next_valid: Split
    next_test: Split
    ahead_train: Split
    ahead_valid: Split
    ahead_test: Split
    window: int
    source: str
    train_runs: tuple[np.ndarray, ...]  # the training values as contiguous runs, each [N, L] (for fitting baselines)

    def train_values(self) -> np.ndarray:
        return np.concatenate([run.ravel() for run in self.train_runs])


def book_series(n: int = N_SERIES, window: int = WINDOW, seed: int = 42) -> SeriesData:
    """The book's two datasets with its 70/20/10 row split (scaled to `n` rows for small runs).

    Seed 42 gives the book's rows; any other seed draws new series (and so a new split) the same way.
    """
    train_end, valid_end = round(n * TRAIN_ROWS / N_SERIES), round(n * VALID_ROWS / N_SERIES)
    one = generate_time_series(n, window + 1, seed)
    ten = generate_time_series(n, window + HORIZON, seed)
    parts = lambda s: (Split(s[:train_end]), Split(s[train_end:valid_end]), Split(s[valid_end:]))  # noqa: E731
    return SeriesData(*parts(one), *parts(ten), window=window, source=f"generated (Géron, chapter 15), seed {seed}",
                      train_runs=(one[:train_end, :, 0], ten[:train_end, :, 0]))


def read_column(path: Path, column: str) -> np.ndarray:
    """One numeric column of a CSV file with a header row, as float32."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--data {path}: no such file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise UserError(f"{path}: empty CSV file (a header row naming the columns is expected)")
            names = [h.strip() for h in header]
            if column not in names:
                raise UserError(f"{path}: no column {column!r}; the columns are: {', '.join(names)}")
            index = names.index(column)
            values = []
            for line, row in enumerate(reader, start=2):
                if not row or all(not cell.strip() for cell in row):
                    continue
                cell = row[index].strip() if index < len(row) else ""
                try:
                    value = float(cell)
                except ValueError:
                    raise UserError(f"{path}, line {line}: column {column!r} holds {cell!r}, not a number") from None
                if not math.isfinite(value):
                    raise UserError(f"{path}, line {line}: column {column!r} holds {cell!r}, not a finite number")
                values.append(value)
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text CSV file") from None
    return np.asarray(values, dtype=np.float32)


def windows(values: np.ndarray, length: int) -> np.ndarray:
    """Every run of `length` consecutive values (stride 1), as [N, length, 1]."""
    count = len(values) - length + 1
    index = np.arange(length)[None, :] + np.arange(count)[:, None]
    return values[index][..., None]


def csv_series(path: Path, column: str | None, window: int = WINDOW) -> SeriesData:
    """Windows cut from one CSV column, split 70/20/10 in time order.

    Training windows lie inside the first 70 %; a validation (test) window's targets lie in the next
    20 % (the last 10 %) and its inputs are the `window` values before them, which may be earlier
    stretches' values: the past is known when forecasting, the targets never were training data.
    """
    if not column:
        raise UserError(f"--data {path}: name the CSV column to forecast with --column NAME")
    values = read_column(path, column)
    length = window + HORIZON
    minimum = max(3 * length, 10 * HORIZON)  # training windows enough to learn from; HORIZON targets in the test stretch
    if len(values) < minimum:
        raise UserError(
            f"{path}: column {column!r} has {len(values)} values; at least {minimum} are needed "
            f"for windows of {window} inputs + {HORIZON} targets in train/validation/test splits (try a smaller --window)"
        )
    train_end, valid_end = int(len(values) * 0.7), int(len(values) * 0.9)
    stretches = ((0, train_end), (train_end, valid_end), (valid_end, len(values)))

    def cut(start: int, end: int, size: int) -> Split:
        """Windows of `size` values whose targets (all but the first `window`) lie in [start, end)."""
        return Split(windows(values[max(0, start - window) : end], size))

    nxt = [cut(a, b, window + 1) for a, b in stretches]
    ahead = [cut(a, b, length) for a, b in stretches]
    return SeriesData(*nxt, *ahead, window=window, source=f"{path}:{column}", train_runs=(values[None, :train_end],))
