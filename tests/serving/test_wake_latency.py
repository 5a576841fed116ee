"""Idle cores kept polling while calls arrive close together (serving/wake_latency.py): what is
written to the PM QoS device, by each front, and nothing where it cannot be opened or is turned off.

The device is replaced by a plain file, which keeps every value written in order (the real device
keeps the latest; Linux withdraws the request when the file is closed)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from serving import wake_latency
from serving.client import Client
from serving.wake_latency import WakeLatency
from tests.serving.builders import write_model
from tests.serving.conftest import server_config, start_server, wait_until
from tests.serving.rest_client import Http

AWAKE, DEFAULT = 0, 2_000_000_000


def written(path) -> list[int]:
    data = path.read_bytes()
    return [value for (value,) in struct.iter_unpack("i", data)]


def test_hold_and_release_write_the_bounds_and_an_unusable_device_changes_nothing(tmp_path):
    device = tmp_path / "cpu_dma_latency"
    device.touch()
    wake = WakeLatency(device=str(device))
    assert wake.active and written(device) == [DEFAULT]  # opened: no constraint yet
    wake.hold()
    wake.hold()  # already held: nothing written
    wake.release()
    wake.release()
    assert written(device) == [DEFAULT, AWAKE, DEFAULT]
    wake.close()
    assert not wake.active
    wake.hold()  # closed: inert
    assert written(device) == [DEFAULT, AWAKE, DEFAULT]

    missing = WakeLatency(device=str(tmp_path / "absent"))
    missing.hold()
    assert not missing.active and not missing.held
    assert not (tmp_path / "absent").exists()
    off = WakeLatency(enabled=False, device=str(device))
    off.hold()
    assert not off.active and written(device) == [DEFAULT, AWAKE, DEFAULT]


@pytest.mark.parametrize("idle_cores", ["poll", "halt"])
def test_both_fronts_hold_the_cores_awake_while_calls_come_and_let_go_after(tmp_path, monkeypatch, idle_cores):
    device = tmp_path / "cpu_dma_latency"
    device.touch()
    monkeypatch.setattr(wake_latency, "DEVICE", str(device))
    root = tmp_path / "repo"
    write_model(root, "doubler")
    running = start_server(server_config(root, grpc_front="native", idle_cores=idle_cores))
    try:
        with Client(running.address, timeout=10) as client:
            for _ in range(20):
                np.testing.assert_array_equal(client.infer("doubler", {"x": np.ones((1, 4), np.float32)})["y"], np.full((1, 4), 2))
        http = Http(running.server.http_port)
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]}]}
        for _ in range(5):
            assert json.loads(http.post("/v2/models/doubler/infer", body)[2])["outputs"][0]["data"] == [2, 2, 2, 2]
        if idle_cores == "halt":
            assert written(device) == []
            return
        # each front opened its own request, held it while calls came, and let it go after them
        wait_until(lambda: written(device).count(AWAKE) >= 2 and written(device).count(DEFAULT) == written(device).count(AWAKE) + 2,
                   what="both fronts' requests released", timeout=10)
        values = written(device)
        assert values[:2] == [DEFAULT, DEFAULT] and set(values) == {AWAKE, DEFAULT}
        assert values.count(AWAKE) < 25  # held across calls that came close together, not taken per call
    finally:
        running.stop()
