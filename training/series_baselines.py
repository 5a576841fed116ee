"""The forecasts a sequence model must beat: repeat the last value (or the last season), and a linear autoregression.

An LSTM that loses to the last value has learnt nothing; one that loses to AR(p), a least-squares
line through the previous p values, has not earned its cost. Where the training values repeat with
an evident period P, the seasonal naive forecast (the value P steps earlier) is a third. All are
scored on the same windows as the model: the next value, and the next HORIZON values (AR iterated
on its own forecasts). The AR order and the period come from the training values only, so no
validation or test value shapes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.series import SeriesData, Split


EVIDENT = 0.5  # least autocorrelation at the period for a season to count as evident


def last_value(inputs: np.ndarray, horizon: int) -> np.ndarray:
    """[N, window] -> [N, horizon]: the last input repeated."""
    return np.repeat(inputs[:, -1:], horizon, axis=1)


def seasonal_naive(inputs: np.ndarray, period: int, horizon: int) -> np.ndarray:
    """[N, window >= period] -> [N, horizon]: the value `period` steps earlier (the last season repeated)."""
    season = inputs[:, -period:]
    return season[:, np.arange(horizon) % period]


def autocorrelation(runs: tuple[np.ndarray, ...], max_lag: int) -> np.ndarray:
    """ACF at lags 0..max_lag of the runs' values, about their common mean (runs shorter than a lag add nothing to it)."""
    values = np.concatenate([np.asarray(r, dtype=np.float64).ravel() for r in runs])
    mean, var = values.mean(), values.var() or 1.0
    acf = [1.0]
    for lag in range(1, max_lag + 1):
        pairs = [(np.asarray(r, dtype=np.float64)[:, lag:] - mean) * (np.asarray(r, dtype=np.float64)[:, :-lag] - mean) for r in runs if r.shape[1] > lag]
        count = sum(p.size for p in pairs)
        acf.append(sum(float(p.sum()) for p in pairs) / count / var if count else 0.0)
    return np.asarray(acf)


def season(runs: tuple[np.ndarray, ...], max_period: int) -> int | None:
    """The lag of the highest autocorrelation peak after the ACF first turns negative, if it reaches EVIDENT."""
    acf = autocorrelation(runs, max_period + 1)
    negative = np.flatnonzero(acf < 0)
    if not len(negative):
        return None
    peaks = [lag for lag in range(int(negative[0]) + 1, max_period + 1) if acf[lag] >= acf[lag - 1] and acf[lag] >= acf[lag + 1]]
    best = max(peaks, key=lambda lag: acf[lag], default=None)
    return best if best is not None and acf[best] >= EVIDENT else None


@dataclass(frozen=True)
class AR:
    """x_t = intercept + Σ_k coef[k]·x_{t-1-k}: `coef[0]` weighs the most recent value."""

    intercept: float
    coef: np.ndarray

    @property
    def order(self) -> int:
        return len(self.coef)

    def forecast(self, inputs: np.ndarray, horizon: int) -> np.ndarray:
        """[N, window >= order] -> [N, horizon], each step fed back as the most recent value."""
        history = np.asarray(inputs, dtype=np.float64)[:, ::-1][:, : self.order].copy()  # most recent first
        out = np.empty((len(history), horizon))
        for k in range(horizon):
            out[:, k] = self.intercept + history @ self.coef
            history = np.concatenate([out[:, k : k + 1], history[:, :-1]], axis=1)
        return out


def lagged_rows(runs: tuple[np.ndarray, ...], max_order: int) -> tuple[np.ndarray, np.ndarray]:
    """Design rows [1, x_{t-1} … x_{t-max_order}] and targets x_t for every t >= max_order of every run."""
    rows, targets = [], []
    for run in runs:
        run = np.asarray(run, dtype=np.float64)
        if run.shape[1] <= max_order:
            continue
        view = np.lib.stride_tricks.sliding_window_view(run, max_order + 1, axis=1)  # [N, L - p, p + 1]
        view = view.reshape(-1, max_order + 1)
        rows.append(np.concatenate([np.ones((len(view), 1)), view[:, -2::-1]], axis=1))
        targets.append(view[:, -1])
    return np.concatenate(rows), np.concatenate(targets)


def fit_ar(runs: tuple[np.ndarray, ...], max_order: int) -> AR:
    """The AR(p), 1 <= p <= max_order, of least AIC on the training runs (same rows for every p)."""
    max_order = max(1, min(max_order, max(r.shape[1] for r in runs) - 1))
    x, y = lagged_rows(runs, max_order)
    gram, moment, n, total = x.T @ x, x.T @ y, len(y), float(y @ y)
    best = None
    for p in range(1, max_order + 1):
        g, m = gram[: p + 1, : p + 1], moment[: p + 1]
        beta = np.linalg.lstsq(g, m, rcond=None)[0]
        rss = total - 2 * beta @ m + beta @ g @ beta  # Σ(y - xβ)² from the normal equations' sums
        aic = n * np.log(max(rss, 1e-300) / n) + 2 * (p + 1)
        if best is None or aic < best[0]:
            best = (aic, beta)
    beta = best[1]
    return AR(float(beta[0]), beta[1:])


def mse(forecast: np.ndarray, split: Split, window: int) -> float:
    actual = split.series[:, window : window + forecast.shape[1], 0]
    return float(np.mean((forecast - actual) ** 2))


def scores(data: SeriesData, horizon: int, ar: AR, period: int | None = None, valid: bool = True) -> dict[str, dict[str, float]]:
    """{baseline: {"mse_next", "mse_10"}} on the validation (or test) windows, as `sequence.evaluate` scores the model."""
    nxt, ahead = (data.next_valid, data.ahead_valid) if valid else (data.next_test, data.ahead_test)
    w = data.window
    inputs_next, inputs_ahead = nxt.series[:, :w, 0], ahead.series[:, :w, 0]
    out = {
        "last_value": {"mse_next": mse(last_value(inputs_next, 1), nxt, w), "mse_10": mse(last_value(inputs_ahead, horizon), ahead, w)},
        "ar": {"mse_next": mse(ar.forecast(inputs_next, 1), nxt, w), "mse_10": mse(ar.forecast(inputs_ahead, horizon), ahead, w)},
    }
    if period is not None:
        out["seasonal_naive"] = {"mse_next": mse(seasonal_naive(inputs_next, period, 1), nxt, w),
                                 "mse_10": mse(seasonal_naive(inputs_ahead, period, horizon), ahead, w)}
    return out
