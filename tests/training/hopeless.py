"""A run that cannot beat its baselines (one step at a vanishing learning rate), for the families whose
validation split is carved from the embedded digits' training split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training import cli as train_cli
from training.data import images as image_data
from training.data import validation
from training.runs import read_metrics


@dataclass
class HopelessRun:
    code: int
    out: str  # the CLI's stdout
    err: str  # its stderr (the WARNING lines)
    final: dict  # metrics.json's final record
    records: dict[str, dict]  # its baseline records by name
    fit_part: image_data.ImageSet  # the images it trained on
    val: image_data.ImageSet  # its validation split, rebuilt here


def hopeless_run(family: str, val_fraction: float, out: Path, capsys) -> HopelessRun:
    code = train_cli.main([family, "--profile", "tiny", "--no-progress", "--steps", "1", "--lr", "1e-7", "--out", str(out)])
    captured = capsys.readouterr()
    final = read_metrics(out)["final"]
    train, _ = image_data.split(image_data.digits(), 0.2, 42)
    fit_part, val = validation.carve(train, val_fraction, 42)
    return HopelessRun(code, captured.out, captured.err, final, {r["baseline"]: r for r in final["baselines"]}, fit_part, val)
