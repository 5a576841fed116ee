"""Resumable runs: the fit loop's whole state in the run folder after every round, and the checks around it.

`resume.pt` holds what a killed run needs to continue exactly where it stopped: weights, optimiser,
schedule, early-stopping state, gradient scaler, epoch and step, the history so far, every RNG state
(torch, CUDA, numpy, Python, the data order's generator, per rank) and the config. Like checkpoint.pt
it is plain tensors, numbers, strings, lists and dicts, so `torch.load(weights_only=True)` reads it and
no pickle runs; it is written to a temporary file and renamed, so a kill mid-write leaves the previous
round intact. `config.json` records what the run was asked for (config and family options, without the
flags that only say how to run it) so a resume with different flags is refused instead of mixing two runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnnzoo.errors import UserError
from training import checkpoint

STATE = "resume.pt"
CONFIG = "config.json"
FORMAT = 1
# TrainConfig fields that say how to run, not what to train: they may differ between a run and its resume.
RUNTIME = ("out", "resume", "force", "progress", "threads", "device", "nproc")
METRICS = "metrics.json"  # written last, atomically (training.runs): its presence is what marks a run finished
_RUN_FILES = (STATE, CONFIG, checkpoint.FILENAME, METRICS)


# ---- the run folder ---------------------------------------------------------------------------------------

def prepare(config):
    """Before anything is written: point --resume at its folder, or refuse to overwrite a run without --force."""
    if config.resume is not None:
        folder = Path(config.resume)
        if config.out is not None and Path(config.out).resolve() != folder.resolve():
            raise UserError(f"--out {config.out} and --resume {config.resume} name different run folders: give --resume alone")
        if not (folder / STATE).is_file():
            raise UserError(f"--resume {folder}: no {STATE} there, so there is no round to continue from (was it written by this version of dnnzoo train?)")
        if config.force:
            raise UserError("--resume continues a run and --force starts it over: give one")
        return dataclasses.replace(config, out=folder)
    folder = Path(config.run_dir())
    present = [name for name in _RUN_FILES if (folder / name).exists()]
    if present and not config.force:
        raise UserError(f"{folder} already holds a run ({', '.join(present)}): pass --resume {folder} to continue it, "
                        f"--force to overwrite it, or --out for another folder")
    return config


def identity(config: dict, options: dict) -> dict[str, Any]:
    """What a run was asked for (plain data): the config without RUNTIME fields, and the family's options."""
    return {**{k: v for k, v in config.items() if k not in RUNTIME}, "options": options}


def finished(folder: Path) -> bool:
    """Whether `folder` holds a run that trained to its end (`dnnzoo build` does not train it again)."""
    return (Path(folder) / METRICS).is_file() and (Path(folder) / checkpoint.FILENAME).is_file()


def record(folder: Path, asked: dict) -> None:
    """Start a run afresh in `folder`: write config.json and drop a previous run's round state and its
    finish mark, so that a fresh run killed early is never taken for the finished one it replaces."""
    (Path(folder) / STATE).unlink(missing_ok=True)
    (Path(folder) / METRICS).unlink(missing_ok=True)
    write_atomic(Path(folder) / CONFIG, json.dumps(asked, indent=2).encode())


def differing(stored: dict, asked: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(stored) | set(asked)):
        a, b = stored.get(key), asked.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += differing(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key} ({a!r} in the run, {b!r} now)")
    return keys


class ConfigChanged(UserError):
    """A resume asked with other settings than the run's; `keys` names each difference with both values."""

    def __init__(self, message: str, keys: list[str]):
        super().__init__(message)
        self.keys = keys


def check_same(folder: Path, asked: dict) -> None:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise UserError(f"--resume {folder}: no {CONFIG} there, so its config cannot be compared")
    changed_keys = differing(json.loads(path.read_text()), json.loads(json.dumps(asked)))
    if changed_keys:
        raise ConfigChanged(f"--resume {folder}: this run was started with other settings; give the same flags as the run "
                            f"(differing: {'; '.join(changed_keys)})", changed_keys)


# ---- the loop's state -------------------------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    """Every global RNG the loop and its families draw from, as tensors and plain numbers."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss_next},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))


def loader_state(batches: Any) -> dict[str, Any]:
    """The data order's own state: a `generator` (DataLoader, training.sequence.Batches) and an `epoch` counter
    (training.detector.SceneBatches), whichever the batches object has."""
    generator, epoch = getattr(batches, "generator", None), getattr(batches, "epoch", None)
    return {"generator": generator.get_state() if isinstance(generator, torch.Generator) else None,
            "epoch": epoch if isinstance(epoch, int) else None}


def set_loader_state(batches: Any, state: dict[str, Any]) -> None:
    if state["generator"] is not None:
        batches.generator.set_state(state["generator"])
    if state["epoch"] is not None:
        batches.epoch = state["epoch"]


def save(folder: Path, state: dict[str, Any]) -> None:
    path = Path(folder) / STATE
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load(folder: Path) -> dict[str, Any]:
    path = Path(folder) / STATE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} does not load with weights_only=True ({first})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a dnnzoo round state (format {FORMAT} expected)")
    return state


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file and a rename, so a kill mid-write leaves the previous file or none."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
