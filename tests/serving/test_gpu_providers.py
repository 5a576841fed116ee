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
