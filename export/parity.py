"""Parity: the exported graph must compute what the PyTorch module computes.

`check` takes two callables (numpy inputs -> named numpy outputs) rather than a module and a
session, so a test can hand it any pair; it raises `ParityError` naming the output, the case and the
index of the largest difference, and the pipeline writes nothing when it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dnnzoo.errors import UserError
from export.spec import Arrays, Comparator

FLOAT_TOLERANCE = 1e-4
# uint8 images come from rounding a float; a difference of 1e-7 can move a value across .5.
INTEGER_TOLERANCE = {np.dtype(np.uint8): 1}


class ParityError(UserError):
    """The exported graph and the PyTorch module disagree beyond tolerance."""


@dataclass
class Report:
    max_abs_diff: float  # largest difference over every float output and case
    cases: int


def _shape_label(case: Arrays) -> str:
    return ", ".join(f"{k} {list(v.shape)}" for k, v in case.items())


def compare_arrays(expected: Arrays, actual: Arrays, tolerance: float = FLOAT_TOLERANCE) -> tuple[float, str | None]:
    """(largest float difference, None) when all outputs agree, else (…, description of the worst)."""
    worst = 0.0
    for name, want in expected.items():
        if name not in actual:
            return worst, f"output {name!r} missing from the exported graph"
        got = np.asarray(actual[name])
        if got.shape != want.shape:
            return worst, f"output {name!r} has shape {list(got.shape)}, expected {list(want.shape)}"
        if got.dtype != want.dtype:
            return worst, f"output {name!r} has type {got.dtype}, expected {want.dtype}"
        if want.size == 0:
            continue
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        if want.dtype.kind == "f":  # NaN in both places agrees; NaN in one is the largest difference
            diff = np.where(np.isnan(want) & np.isnan(got), 0.0, np.nan_to_num(diff, nan=np.inf))
        index = np.unravel_index(int(np.argmax(diff)), diff.shape)
        largest = float(diff[index])
        limit = tolerance if want.dtype.kind == "f" else INTEGER_TOLERANCE.get(want.dtype, 0)
        if want.dtype.kind == "f":
            worst = max(worst, largest)
        if largest > limit:
            return worst, (f"output {name!r} differs by {largest:.3g} at index {tuple(int(i) for i in index)} "
                           f"(expected {want[index]!r}, got {got[index]!r}; tolerance {limit:g})")  # fmt: skip
    return worst, None


def check(model: str, reference: Callable[[Arrays], Arrays], candidate: Callable[[Arrays], Arrays],
          cases: list[Arrays], compare: Comparator | None = None) -> Report:  # fmt: skip
    """Run both callables on every case; raise ParityError at the first disagreement."""
    worst = 0.0
    for case in cases:
        expected, actual = reference(case), candidate(case)
        largest, problem = (compare or compare_arrays)(expected, actual)
        worst = max(worst, largest)
        if problem:
            raise ParityError(f"parity check failed for {model} on inputs {_shape_label(case)}: {problem}; nothing written")
    return Report(worst, len(cases))
