"""A trivial baseline every run compares itself with on validation data, and says so when it loses.

A model that does not beat repeating the last value, predicting the majority class or the mean
image has learnt nothing useful, however low its loss looks. Each family computes its baselines'
figures; `compare` makes one record of it, `speak` prints a loud warning for a lost comparison, and
the records go into metrics.json's final record under BASELINES (export copies them into the
model's config.pbtxt as dnnzoo.baseline.* parameters).
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

from tqdm.auto import tqdm

BASELINES = "baselines"  # key of the records in metrics.json's "final"


def compare(baseline: str, metric: str, model_value: float, baseline_value: float, higher_is_better: bool = False,
            or_equal: bool = False) -> dict[str, Any]:  # fmt: skip
    """One record: the model's figure against the baseline's on the same (validation) data. With
    `or_equal` a tie counts as beating it (a strong reference such as gradient boosting, matched)."""
    beats = model_value > baseline_value if higher_is_better else model_value < baseline_value
    beats = beats or (or_equal and model_value == baseline_value)
    return {"baseline": baseline, "metric": metric, "model": float(model_value), "value": float(baseline_value),
            "higher_is_better": higher_is_better, "beats": bool(beats)}  # fmt: skip


def describe(record: dict[str, Any]) -> str:
    verb = "beats" if record["beats"] else "does NOT beat"
    return f"{record['metric']} {record['model']:.4g} {verb} the {record['baseline']} baseline ({record['value']:.4g})"


def speak(family: str, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Print every lost comparison as a WARNING on stderr (the progress bars' stream); returns the records."""
    records = list(records)
    for record in records:
        if not record["beats"]:
            tqdm.write(f"WARNING: {family}: {describe(record)}: train longer, or check the data and flags", file=sys.stderr)
    return records


def lost(final: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparisons in a metrics.json final record that the model lost."""
    return [r for r in final.get(BASELINES, []) if not r.get("beats", True)]
