"""Fixtures: a model repository of tiny ONNX models, and a real server on a free loopback port.

The server runs on its own event loop in a background thread, so tests use ordinary blocking gRPC
clients against it exactly as an outside client would.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from protos import grpc_service_pb2_grpc as pb_grpc
from serving.config import ServeConfig
from tests.serving.builders import build_repository


@dataclass
class RunningServer:
    server: object  # serving.server.Server
    port: int
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def call(self, coroutine, timeout: float = 30.0):
        """Run a coroutine on the server's loop (to inspect or drive it) and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self, grace: float = 5.0) -> None:
        self.call(self.server.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_server(config: ServeConfig) -> RunningServer:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-server", daemon=True)
    thread.start()
    from serving.server import create_server

    server, port = asyncio.run_coroutine_threadsafe(create_server(config), loop).result(60)
    return RunningServer(server, port, loop, thread)


PROJECT = Path(__file__).resolve().parents[2]


def spawn_server(repository, *flags: str, **env: str) -> tuple[subprocess.Popen, int, int | None]:
    """`dnnzoo serve` in a process of its own on free loopback ports, as an operator starts it:
    (process, gRPC port, metrics port or None). Its stderr stays open for the test to read."""
    environment = dict(os.environ, PYTHONPATH=str(PROJECT), DNNZOO_PROVIDERS="cpu", **env)
    command = [sys.executable, "-m", "dnnzoo", "serve", "--repository", str(repository), "--host", "127.0.0.1",
               "--port", "0", "--http-port", "0", *flags]
    process = subprocess.Popen(command, cwd=PROJECT, env=environment, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        match = re.search(r"on 127\.0\.0\.1:(\d+) \(gRPC\) and port (\S+) \(metrics\)", line)
        if match:
            metrics = int(match.group(2)) if match.group(2).isdigit() else None
            return process, int(match.group(1)), metrics
    process.kill()
    process.wait()
    raise AssertionError("the server did not report its port")


def wait_until(condition: Callable[[], object], timeout: float = 20.0, what: str = "condition"):
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def server_config(repository, **overrides) -> ServeConfig:
    values = dict(repository=repository, host="127.0.0.1", port=0, metrics_port=0, http_port=0, poll_seconds=0.2)
    values.update(overrides)
    return ServeConfig(**values).check()


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    return build_repository(tmp_path_factory.mktemp("serving") / "repo")


FRONTS = ("native", "grpcio")  # every test of the shared server runs against both gRPC fronts


def on_front(repository, front: str, **overrides):
    """A module fixture's body: the server on `front` (checked to be the one asked for), stopped after."""
    running = start_server(server_config(repository, grpc_front=front, **overrides))
    assert (running.server.front is not None) == (front == "native")
    yield running
    running.stop()


@pytest.fixture(scope="module", params=FRONTS)
def served(repository, request):
    yield from on_front(repository, request.param)


@pytest.fixture(scope="module")
def channel(served):
    with grpc.insecure_channel(served.address) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel):
    return pb_grpc.GRPCInferenceServiceStub(channel)


# The typed task services' fixtures (a repository exported from tiny training runs, its server, a
# client), defined once here so every tests/serving/test_tasks*.py module shares one session copy.
from tests.serving.task_fixtures import task_client, task_server, tiny_exported  # noqa: E402, F401
