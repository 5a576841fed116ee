"""A run folder: config.json, resume.pt (training.resume), checkpoint.pt, metrics.json and PNG plots, written as training proceeds."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from training import checkpoint, distributed, resume
from training.config import TrainConfig


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


class Run:
    def __init__(self, config: TrainConfig, options: Any = None):
        self.config = config
        self.options = options
        self.path = Path(config.run_dir())
        if distributed.is_leader():
            self.path.mkdir(parents=True, exist_ok=True)
            asked = resume.identity(_plain(config), _plain(options) if options is not None else {})
            if config.resume is not None:
                resume.check_same(self.path, asked)
            else:
                resume.record(self.path, asked)
        else:  # rank 0 alone writes the run folder; the others write into a scratch folder that vanishes
            self._scratch = tempfile.TemporaryDirectory(prefix="dnnzoo-rank-")
            self.path = Path(self._scratch.name)
        self.started = time.perf_counter()

    def file(self, name: str) -> Path:
        return self.path / name

    def save_checkpoint(self, model_args: dict, state_dict: dict, extra: dict | None = None) -> Path:
        return checkpoint.save(self.path, self.config.family, model_args, state_dict, extra)

    def save_metrics(self, history: list[dict], final: dict[str, Any]) -> dict[str, Any]:
        """Write metrics.json: the config, per-epoch history, final evaluation, wall time."""
        record = {
            "family": self.config.family,
            "profile": self.config.profile,
            "config": _plain(self.config),
            "options": _plain(self.options) if self.options is not None else {},
            "history": _plain(history),
            "final": _plain(final),
            "seconds": round(time.perf_counter() - self.started, 2),
            "processes": distributed.world().size,
        }
        resume.write_atomic(self.file(resume.METRICS), json.dumps(record, indent=2).encode())
        return record


def read_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "metrics.json").read_text())
