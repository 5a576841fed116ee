"""Model control modes: poll-mode hot reload under load, explicit load/unload, broken models."""

from __future__ import annotations

import shutil
import threading

import grpc
import numpy as np
import pytest
from google.protobuf import json_format

from protos import grpc_service_pb2 as pb
from protos import grpc_service_pb2_grpc as pb_grpc
from tests.serving.builders import CONFIGS, add_version_atomically, build_repository, doubler_graph, write_model
from tests.serving.conftest import start_server, server_config, wait_until
from tests.serving.test_protocol import expect_error, output, raw_request


def index(stub) -> dict[tuple[str, str], pb.RepositoryIndexResponse.ModelIndex]:
    return {(m.name, m.version): m for m in stub.RepositoryIndex(pb.RepositoryIndexRequest()).models}


class Load:
    """Clients calling `doubler` (latest version) in a loop until stopped; counts answers by version."""

    def __init__(self, stub, clients: int = 4) -> None:
        self.stub, self.stop = stub, threading.Event()
        self.versions: dict[str, int] = {}
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]

    def run(self) -> None:
        x = np.ones((1, 4), np.float32)
        while not self.stop.is_set():
            try:
                response = self.stub.ModelInfer(raw_request("doubler", x=("FP32", x)), timeout=30)
                y = float(output(response, "y")[0, 0])
                with self.lock:
                    key = f"{response.model_version}:{y:g}"
                    self.versions[key] = self.versions.get(key, 0) + 1
            except grpc.RpcError as exc:
                with self.lock:
                    self.failures.append(f"{exc.code()}: {exc.details()}")

    def count(self, key: str) -> int:
        with self.lock:
            return self.versions.get(key, 0)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def test_poll_mode_hot_reload_under_load_without_failures(tmp_path):
    repo = tmp_path / "repo"
    write_model(repo, "doubler")
    running = start_server(server_config(repo, model_control_mode="poll", poll_seconds=0.1, providers="cpu"))
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            with Load(stub) as load:
                wait_until(lambda: load.count("1:2") >= 20, what="traffic on version 1")
                add_version_atomically(repo / "doubler", 2, doubler_graph(factor=3.0))
                wait_until(lambda: ("doubler", "2") in index(stub) and ("doubler", "1") not in index(stub),
                           what="version 2 loaded and version 1 unloaded (latest 1)")
                wait_until(lambda: load.count("2:3") >= 20, what="traffic on version 2")
                # a new model appears beside it, and a broken one does not disturb anything
                write_model(repo, "pixels")
                (repo / "broken" / "1").mkdir(parents=True)
                (repo / "broken" / "config.pbtxt").write_text("name: 'broken'\nmax_batch_size: oops\n")
                wait_until(lambda: index(stub).get(("pixels", "1")) is not None, what="new model loaded")
                wait_until(lambda: ("broken", "") in index(stub), what="broken model listed")
                assert index(stub)[("broken", "")].state == "UNAVAILABLE"
                # removing a model folder unloads it
                shutil.rmtree(repo / "pixels")
                wait_until(lambda: not any(name == "pixels" for name, _ in index(stub)), what="model removed")
            assert load.failures == []
            assert load.count("1:2") >= 20 and load.count("2:3") >= 20
            assert stub.ModelReady(pb.ModelReadyRequest(name="doubler", version="2")).ready
    finally:
        running.stop()


def test_poll_mode_config_edit_reloads(tmp_path):
    repo = tmp_path / "repo"
    write_model(repo, "doubler")
    running = start_server(server_config(repo, model_control_mode="poll", poll_seconds=0.1, providers="cpu"))
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ModelConfig(pb.ModelConfigRequest(name="doubler")).config.max_batch_size == 8
            (repo / "doubler" / "config.pbtxt").write_text(CONFIGS["doubler"].replace("max_batch_size: 8", "max_batch_size: 2"))
            wait_until(lambda: stub.ModelConfig(pb.ModelConfigRequest(name="doubler")).config.max_batch_size == 2,
                       what="config reloaded")
            expect_error(stub.ModelInfer, raw_request("doubler", x=("FP32", np.zeros((3, 4), np.float32))),
                         grpc.StatusCode.INVALID_ARGUMENT, "max_batch_size 2")
    finally:
        running.stop()


@pytest.fixture(scope="module")
def explicit(tmp_path_factory):
    repo = build_repository(tmp_path_factory.mktemp("explicit") / "repo")
    running = start_server(server_config(repo, model_control_mode="explicit", load_model=["doubler"], providers="cpu"))
    with grpc.insecure_channel(running.address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)
    running.stop()


def test_explicit_mode_loads_only_named_models(explicit):
    rows = index(explicit)
    assert rows[("doubler", "1")].state == "READY"
    assert rows[("pixels", "")].state == "UNAVAILABLE" and "not loaded" in rows[("pixels", "")].reason
    assert not explicit.ModelReady(pb.ModelReadyRequest(name="pixels")).ready


def test_explicit_load_and_unload(explicit):
    explicit.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="pixels"), timeout=30)
    assert explicit.ModelReady(pb.ModelReadyRequest(name="pixels")).ready
    response = explicit.ModelInfer(raw_request("pixels", images=("UINT8", np.ones((1, 3), np.uint8))))
    np.testing.assert_array_equal(output(response, "total"), [[3]])
    explicit.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="pixels"), timeout=30)
    assert not explicit.ModelReady(pb.ModelReadyRequest(name="pixels")).ready
    expect_error(explicit.ModelInfer, raw_request("pixels", images=("UINT8", np.ones((1, 3), np.uint8))),
                 grpc.StatusCode.UNAVAILABLE, "unloaded")


def test_explicit_load_errors(explicit):
    expect_error(explicit.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="corrupt"),
                 grpc.StatusCode.INVALID_ARGUMENT, "cannot load")
    assert "cannot load" in index(explicit)[("corrupt", "")].reason
    expect_error(explicit.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="../doubler"),
                 grpc.StatusCode.NOT_FOUND)
    expect_error(explicit.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name="ghost"),
                 grpc.StatusCode.NOT_FOUND)
    request = pb.RepositoryModelLoadRequest(model_name="doubler")
    request.parameters["config"].string_param = '{"input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}]}'  # no outputs
    expect_error(explicit.RepositoryModelLoad, request, grpc.StatusCode.INVALID_ARGUMENT, "inputs and outputs", "still serving")
    config = json_format.MessageToDict(explicit.ModelConfig(pb.ModelConfigRequest(name="doubler")).config)
    for change, words in [
        ({"version_policy": {"specific": {"versions": [5]}}}, "version 5 named by version_policy has no folder"),
        ({"parameters": {"dnnzoo.max_request_elements": {"string_value": "-1"}}}, "not a positive whole number"),
        ({"parameters": {"dnnzoo.input.x.range": {"string_value": "a,b"}}}, "not 'LOW,HIGH'"),
    ]:  # refused whole at load; the version loaded before keeps serving
        request.parameters["config"].string_param = json_format.MessageToJson(json_format.ParseDict({**config, **change}, pb.ModelConfigResponse().config))
        expect_error(explicit.RepositoryModelLoad, request, grpc.StatusCode.INVALID_ARGUMENT, words, "still serving")
        response = explicit.ModelInfer(raw_request("doubler", x=("FP32", np.ones((1, 4), np.float32))), timeout=30)
        np.testing.assert_array_equal(output(response, "y"), np.full((1, 4), 2, np.float32))
    request.parameters["config"].string_param = "{not json"
    expect_error(explicit.RepositoryModelLoad, request, grpc.StatusCode.INVALID_ARGUMENT, "JSON")
    request.parameters["config"].string_param = '{"name": "pixels"}'
    expect_error(explicit.RepositoryModelLoad, request, grpc.StatusCode.INVALID_ARGUMENT, "'pixels'")
    request = pb.RepositoryModelLoadRequest(model_name="doubler")
    request.parameters["file:1/model.onnx"].bytes_param = b"onnx bytes"
    expect_error(explicit.RepositoryModelLoad, request, grpc.StatusCode.FAILED_PRECONDITION, "file:")
    assert explicit.ModelReady(pb.ModelReadyRequest(name="doubler")).ready


def test_explicit_load_with_a_config_override_then_without(explicit):
    config = explicit.ModelConfig(pb.ModelConfigRequest(name="doubler")).config
    assert config.max_batch_size == 8
    config.max_batch_size = 2
    request = pb.RepositoryModelLoadRequest(model_name="doubler")
    request.parameters["config"].string_param = json_format.MessageToJson(config)  # as tritonclient sends it
    explicit.RepositoryModelLoad(request, timeout=30)
    assert explicit.ModelConfig(pb.ModelConfigRequest(name="doubler")).config.max_batch_size == 2
    x = np.ones((3, 4), np.float32)
    expect_error(explicit.ModelInfer, raw_request("doubler", x=("FP32", x)), grpc.StatusCode.INVALID_ARGUMENT, "batch")
    explicit.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="doubler"), timeout=30)  # the file again
    assert explicit.ModelConfig(pb.ModelConfigRequest(name="doubler")).config.max_batch_size == 8
    np.testing.assert_array_equal(output(explicit.ModelInfer(raw_request("doubler", x=("FP32", x))), "y"), x * 2)
