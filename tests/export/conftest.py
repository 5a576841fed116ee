"""One tiny-profile run of every family and the repository built from them (tests.conftest.shared_build:
the same build the serving tests use)."""

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
    from tests.conftest import shared_build

    return Built(*shared_build(tmp_path_factory, "tiny"))


@pytest.fixture
def run_of(built):
    """The tiny run folder of a family."""
    return lambda family: built.runs / f"{family}-tiny"
