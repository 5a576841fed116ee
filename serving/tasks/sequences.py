"""Forecast (whole series) and forecast streams (one observation at a time, state kept per stream).

Forecast runs the sequence model on each series (`series` [N, T, 1] -> `next`, `next<H>`); series
of one length share a request, so the batcher may merge them. A horizon beyond the trained one H
is reached by feeding back: the H predicted values are appended to the series and the model runs
again, as often as needed; the reply says so, because errors then compound. Each round runs the
whole grown series again, so the model steps of a call (`feedback_steps`) are capped by the largest
one-pass call the operator allows: --max-series series of --max-series-length values.

A stream (`ForecastStream`) runs the companion `NAME_step` graph, whose recurrent state (`h`, `c`,
and `past` for a model with a linear path, shaped by `dnnzoo.state.shape.past`) is an explicit input and output: this object holds that state for one stream, starting from zeros,
and is simply dropped when the stream ends. Feeding a series value by value gives the same
forecasts as Forecast on every prefix (the export checks the step graph against the module).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from protos import contract

from serving.dataplane import ModelHandle
from serving.errors import InvalidInput, TooLarge, Unsupported
from serving.limits import FLOAT32_MAX
from serving.tasks.catalog import Catalog, in_window


@dataclass(frozen=True)
class Forecasts:
    model: str
    version: str
    forecasts: list[np.ndarray]
    horizon: int
    trained_horizon: int
    fed_back: bool


def _check_values(values, what: str) -> np.ndarray:
    """The values as the model's float32; one that is not finite there (1e300 becomes inf) is refused."""
    array = np.asarray(values, np.float64)
    bad = np.flatnonzero(~(np.abs(array) <= FLOAT32_MAX))
    if bad.size:
        raise InvalidInput(f"{what}: value {int(bad[0])} is {array[bad[0]]:g} (values must be finite and within float32's range)")
    return array.astype(np.float32)


def feedback_steps(lengths: Sequence[int], rounds: int, trained: int) -> int:
    """Model time steps of a Forecast: round r runs every series grown by r * trained fed-back values."""
    return rounds * sum(lengths) + len(lengths) * trained * rounds * (rounds - 1) // 2


async def forecast(catalog: Catalog, model: str, version: str, series: Sequence[Sequence[float]], horizon: int | None,
                   deadline: float | None = None) -> Forecasts:  # fmt: skip
    limits = catalog.limits
    catalog.cap("max_series", len(series), "Forecast", "series in one call")
    if horizon is not None:
        catalog.cap("max_forecast_horizon", horizon, "Forecast", "values ahead (horizon) in one call")
    lengths = [len(values) for values in series]
    for i, length in enumerate(lengths):
        catalog.cap("max_series_length", length, "Forecast", f"values in series {i}")
    handle = catalog.find(model, version, contract.SEQUENCE, "Forecast")
    trained = catalog.number(handle, contract.HORIZON, int)
    minimum = int(handle.parameter(contract.MIN_LENGTH, "1") or 1)
    wanted = trained if horizon is None else horizon
    if wanted < 1:
        raise InvalidInput(f"horizon must be at least 1, got {wanted}")
    if horizon is None:
        catalog.cap("max_forecast_horizon", wanted, "Forecast", "values ahead (the model's trained horizon) in one call")
    if not series:
        raise InvalidInput("Forecast: the request has no series")
    for i, length in enumerate(lengths):
        if length < minimum:
            raise InvalidInput(f"series {i} has {length} values; the model needs at least {minimum}")
    rounds = math.ceil(wanted / trained)
    steps, budget = feedback_steps(lengths, rounds, trained), limits.max_series * limits.max_series_length
    if steps > budget:
        raise TooLarge(
            f"Forecast: {len(lengths)} series fed back over {rounds} rounds (horizon {wanted}, trained {trained}) make "
            f"{steps} model steps; the server's cap is {budget} (--max-series x --max-series-length): ask for a shorter "
            "horizon, fewer or shorter series"
        )
    arrays = [_check_values(values, f"series {i}") for i, values in enumerate(series)]
    ahead = handle.parameter(contract.OUTPUT_AHEAD) or f"next{trained}"
    by_length: dict[int, list[int]] = {}
    for i, array in enumerate(arrays):
        by_length.setdefault(len(array), []).append(i)

    async def group(members: list[int]) -> list[np.ndarray]:
        current = np.stack([arrays[i] for i in members])[:, :, None]
        predicted = []
        for _ in range(rounds):
            values = await catalog.run(handle, {"series": current}, [ahead], deadline)
            step = np.asarray(values[ahead], np.float32)
            predicted.append(step)
            current = np.concatenate([current, step[:, :, None]], axis=1)
        return list(np.concatenate(predicted, axis=1)[:, :wanted])

    groups = list(by_length.values())
    results = await in_window([lambda members=members: group(members) for members in groups], catalog.window(handle))
    out: list[np.ndarray] = [np.empty(0)] * len(arrays)
    for members, rows in zip(groups, results):
        for i, row in zip(members, rows):
            out[i] = row
    return Forecasts(handle.name, handle.version, out, wanted, trained, wanted > trained)


@dataclass(frozen=True)
class StreamAnswer:
    observations: int
    next: float
    ahead: np.ndarray


@dataclass
class ForecastStream:
    """One stream's state on the step graph; create with `open_stream`, then `push` observations."""

    catalog: Catalog
    model: str  # the name the client used (the sequence model, or its step model)
    step: ModelHandle
    state_inputs: list[str]
    state_outputs: list[str]
    ahead_output: str
    state: dict[str, np.ndarray] = field(default_factory=dict)
    observations: int = 0

    async def push(self, values: Sequence[float], deadline: float | None = None) -> StreamAnswer:
        if not len(values):
            raise InvalidInput("ForecastStream: a message must carry at least one value")
        self.catalog.cap("max_stream_values", len(values), "ForecastStream", "values in one message")
        array = _check_values(values, f"observation {self.observations}")
        outputs = ["next", self.ahead_output, *self.state_outputs]
        result = None
        for value in array:
            inputs = {"value": np.array([[value]], np.float32), **self.state}
            result = await self.catalog.run(self.step, inputs, outputs, deadline)
            self.state = {name: result[out] for name, out in zip(self.state_inputs, self.state_outputs)}
            self.observations += 1
        return StreamAnswer(self.observations, float(result["next"][0, 0]), np.asarray(result[self.ahead_output][0]))


def open_stream(catalog: Catalog, model: str, version: str) -> ForecastStream:
    """A stream on the step graph of `model` (a sequence model, or its `_step` companion itself)."""
    if not model:
        raise InvalidInput("ForecastStream: the first message must name the model")
    handle = catalog.plane.handle(model, version)
    if handle.parameter(contract.TASK) == contract.SEQUENCE_STEP:
        step = catalog.find(model, version, contract.SEQUENCE_STEP, "ForecastStream")
    else:
        main = catalog.find(model, version, contract.SEQUENCE, "ForecastStream")
        step = catalog.companion(main, "step", contract.SEQUENCE_STEP, "ForecastStream")
    inputs = [n for n in (step.parameter(contract.STATE_INPUTS) or "").split(",") if n]
    outputs = [n for n in (step.parameter(contract.STATE_OUTPUTS) or "").split(",") if n]
    shape = tuple(int(d) for d in (step.parameter(contract.STATE_SHAPE) or "").split(",") if d)
    if not inputs or len(inputs) != len(outputs) or not shape:
        raise Unsupported(f"model {step.name!r} does not describe its recurrent state (dnnzoo.state.*)")
    trained = catalog.number(step, contract.HORIZON, int)
    shapes = {name: tuple(int(d) for d in (step.parameter(contract.state_shape_key(name)) or "").split(",") if d) or shape for name in inputs}
    state = {name: np.zeros((1, *shapes[name]), np.float32) for name in inputs}
    ahead = step.parameter(contract.OUTPUT_AHEAD) or f"next{trained}"
    return ForecastStream(catalog, model, step, inputs, outputs, ahead, state)
