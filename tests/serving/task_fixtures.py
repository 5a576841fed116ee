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


@pytest.fixture(scope="session")
def tiny_exported(tmp_path_factory) -> Exported:
    from tests.conftest import shared_build

    runs, repository, _ = shared_build(tmp_path_factory, "tiny")
    return Exported(runs, repository)


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
