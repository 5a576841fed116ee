"""Session fixtures of the typed task tests: a repository exported from tiny training runs of every
family, the real server on it (free loopback port), and a client.

Imported by tests/serving/conftest.py so each fixture is built once per session however many task
test modules use it. Training needs torch; the server and client never import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from serving.client import Client


@dataclass
class Exported:
    runs: Path
    repository: Path


def export_profile(root: Path, profile: str) -> Exported:
    """Train every family at `profile` and export the default repository under `root` (`dnnzoo build`'s code)."""
    import torch

    from export.build import build

    torch.set_num_threads(1)
    runs, repository = root / "runs", root / "repository"
    build(profile, repository, runs, opset=17, force=False, instance_kind="auto", progress=False, out=lambda _: None)
    return Exported(runs, repository)


@pytest.fixture(scope="session")
def tiny_exported(tmp_path_factory) -> Exported:
    return export_profile(tmp_path_factory.mktemp("tasks-tiny"), "tiny")


@pytest.fixture(scope="session")
def task_server(tiny_exported):
    from tests.serving.conftest import server_config, start_server

    running = start_server(server_config(tiny_exported.repository, providers="cpu", max_forecast_horizon=100))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def task_client(task_server):
    with Client(task_server.address, timeout=30) as client:
        yield client
