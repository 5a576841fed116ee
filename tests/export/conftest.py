"""One tiny-profile run of every family and the repository built from them, shared by the export tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Built:
    runs: Path
    repository: Path
    steps: list


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    import torch

    from export.build import build

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    runs, repository = root / "runs", root / "repository"
    steps = build("tiny", repository, runs, opset=17, force=False, instance_kind="auto", progress=False, out=lambda _: None)
    return Built(runs, repository, steps)


@pytest.fixture
def run_of(built):
    """The tiny run folder of a family."""
    return lambda family: built.runs / f"{family}-tiny"
