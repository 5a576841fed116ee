"""GPU providers are asked for only where the CUDA driver finds a GPU: on a machine without one, the
first model load prints one plain log line and nothing from ONNX Runtime's failed CUDA start."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from serving import gpu
from tests.serving.conftest import PROJECT

pytestmark = pytest.mark.skipif(gpu.present(), reason="this machine has a GPU: the CUDA provider is meant to start")


def test_a_server_without_a_gpu_says_so_once_and_ort_stays_quiet(repository):
    environment = dict(os.environ, PYTHONPATH=str(PROJECT), DNNZOO_PROVIDERS="auto")
    command = [sys.executable, "-m", "dnnzoo", "serve", "--repository", str(repository), "--host", "127.0.0.1",
               "--port", "0", "--http-port", "-1", "--metrics-port", "-1"]
    process = subprocess.Popen(command, cwd=PROJECT, env=environment, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in process.stderr:
            lines.append(line)
            if "(gRPC)" in line:
                break
    finally:
        process.terminate()
        process.wait(30)
    text = "".join(lines)
    assert "(gRPC)" in text, text[-2000:]
    assert sum("no NVIDIA GPU found" in line for line in lines) == 1, text[-2000:]
    assert "CUDAExecutionProvider" not in text and ":onnxruntime:" not in text, text[-2000:]  # ORT's own log lines


def test_provider_choice_without_a_gpu_is_the_cpu_alone():
    from protos.model_config_pb2 import ModelConfig
    from serving.repository import ModelSpec
    from serving.sessions import CPU, ProviderChoice

    spec = ModelSpec(config=ModelConfig(name="m"), inputs=(), outputs=())
    assert ProviderChoice("auto").wanted(spec) == [CPU]
    assert ProviderChoice("tensorrt").wanted(spec) == [CPU]


def test_a_model_asking_for_gpus_serves_on_the_cpu_and_says_why_in_one_line(tmp_path, caplog):
    import logging

    import numpy as np

    from serving.client import Client
    from tests.serving.builders import write_model
    from tests.serving.conftest import server_config, start_server
    from tests.serving.test_isolation import TABLE, ids, lookup_config, lookup_graph

    groups = "dynamic_batching { }\ninstance_group [ { kind: KIND_GPU count: 1 gpus: [ 0, 1 ] } ]"
    write_model(tmp_path / "repo", "ongpu", graph=lookup_graph, config=lookup_config("ongpu", groups))
    caplog.set_level(logging.INFO, logger="serving")
    running = start_server(server_config(tmp_path / "repo"))
    try:
        with Client(running.address, timeout=10) as client:
            np.testing.assert_array_equal(client.infer("ongpu", ids(1, 2))["vectors"][:, 0], TABLE[[1, 2]])
        loaded = running.server.models.resolve("ongpu")
    finally:
        running.stop()
    lines = [r.getMessage() for r in caplog.records if "instance_group asks for" in r.getMessage()]
    assert len(lines) == 1 and "KIND_GPU gpus [0, 1] count 1" in lines[0] and "its 2 instances run on CPUExecutionProvider" in lines[0]
    assert loaded.batcher.policy.instances == 2  # Triton's count: one on each GPU listed
    assert loaded.runtime.providers == ("CPUExecutionProvider",) and all(s is loaded.runtime for s in loaded.instances)
