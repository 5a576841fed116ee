"""Bearer tokens on a real server, on both gRPC fronts: who may infer, who may load and unload, what
stays open, and that our client, our CLI and Triton's client send the token."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from onnx import TensorProto as T
from onnx import helper as h
from PIL import Image

from dnnzoo.errors import UserError
from protos import dnnzoo_tasks_pb2 as tasks
from protos import dnnzoo_tasks_pb2_grpc as tasks_grpc
from protos import grpc_service_pb2 as pb
from protos import grpc_service_pb2_grpc as pb_grpc
from serving.auth import Guard
from serving.client import Client
from tests.serving.builders import build_repository, write_model
from tests.serving.conftest import FRONTS, on_front, server_config
from tests.serving.test_protocol import output, raw_request

ROOT = Path(__file__).resolve().parents[2]
INFERENCE, ADMIN = "inference-secret-7f3a", "admin-secret-91c2"
UNAUTHENTICATED, DENIED = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
CLASSIFIER = "tiny_classifier"
CLASSIFIER_CONFIG = f"""
name: "{CLASSIFIER}"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ {{ name: "images" data_type: TYPE_UINT8 dims: [ 1, 4, 4 ] }} ]
output [ {{ name: "probabilities" data_type: TYPE_FP32 dims: [ 3 ] label_filename: "labels.txt" }} ]
parameters {{ key: "dnnzoo.task" value {{ string_value: "classification" }} }}
"""


def classifier_graph():
    """images uint8 [N,1,4,4] -> softmax over (brightness, 0, -brightness): white images are "bright"."""
    x = h.make_tensor_value_info("images", T.UINT8, ["N", 1, 4, 4])
    y = h.make_tensor_value_info("probabilities", T.FLOAT, ["N", 3])
    weights = np.zeros((16, 3), np.float32)
    weights[:, 0], weights[:, 2] = 4 / (255 * 16), -4 / (255 * 16)
    initializers = [h.make_tensor("shape", T.INT64, [2], [-1, 16]), h.make_tensor("w", T.FLOAT, [16, 3], weights.ravel())]
    nodes = [
        h.make_node("Cast", ["images"], ["f"], to=T.FLOAT),
        h.make_node("Reshape", ["f", "shape"], ["flat"]),
        h.make_node("MatMul", ["flat", "w"], ["logits"]),
        h.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    return h.make_graph(nodes, "tiny_classifier", [x], [y], initializers)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def white_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 255).save(buffer, format="PNG")
    return buffer.getvalue()


def refused(call, request, metadata=None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        result = call(request, metadata=metadata, timeout=10)
        if not hasattr(result, "ByteSize"):  # a stream: the status arrives while reading it
            list(result)
    details = caught.value.details()
    assert INFERENCE not in details and ADMIN not in details and len(details) < 200
    return caught.value


@pytest.fixture(scope="module")
def token_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tokens")
    inference, admin = folder / "inference.token", folder / "admin.token"
    inference.write_text(INFERENCE + "\n")  # as `echo` writes it: the newline is not part of the token
    admin.write_text(ADMIN + "\n")
    return inference, admin


@pytest.fixture(scope="module")
def guarded_repository(tmp_path_factory) -> Path:
    root = build_repository(tmp_path_factory.mktemp("auth") / "repo")
    folder = write_model(root, CLASSIFIER, graph=classifier_graph, config=CLASSIFIER_CONFIG)
    (folder / "labels.txt").write_text("bright\ngrey\ndark\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module", params=FRONTS)
def guarded(guarded_repository, token_files, request):
    inference, admin = token_files
    yield from on_front(guarded_repository, request.param, auth_token_file=inference, admin_token_file=admin,
                        model_control_mode="explicit", load_model=["doubler", CLASSIFIER], providers="cpu")


@pytest.fixture(scope="module")
def channel(guarded):
    with grpc.insecure_channel(guarded.address) as channel:
        yield channel


@pytest.fixture(scope="module")
def oip(channel):
    return pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def classification(channel):
    return tasks_grpc.ImageClassificationStub(channel)


def infer_request() -> pb.ModelInferRequest:
    return raw_request("doubler", x=("FP32", np.full((1, 4), 3, np.float32)))


def classify_request() -> tasks.ClassifyRequest:
    return tasks.ClassifyRequest(model=CLASSIFIER, images=[tasks.Image(encoded=white_png())], top_k=1)


def guarded_calls(oip, classification):
    """(name, method, request) of one call per guarded kind: unary native, unary typed, stream, control."""
    return [
        ("ModelInfer", oip.ModelInfer, infer_request()),
        ("ModelMetadata", oip.ModelMetadata, pb.ModelMetadataRequest(name="doubler")),
        ("ModelReady", oip.ModelReady, pb.ModelReadyRequest(name="doubler")),
        ("Classify", classification.Classify, classify_request()),
        ("ModelStreamInfer", lambda request, **kw: oip.ModelStreamInfer(iter([request]), **kw), infer_request()),
        ("RepositoryIndex", oip.RepositoryIndex, pb.RepositoryIndexRequest()),
        ("RepositoryModelLoad", oip.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="pixels")),
        ("RepositoryModelUnload", oip.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name="doubler")),
    ]


def test_calls_without_a_token_are_unauthenticated(oip, classification):
    for name, call, request in guarded_calls(oip, classification):
        error = refused(call, request)
        assert error.code() == UNAUTHENTICATED, (name, error.details())
        assert "Bearer" in error.details(), name  # says what to send
    error = refused(oip.ModelInfer, infer_request(), [("authorization", f"Basic {INFERENCE}")])
    assert error.code() == UNAUTHENTICATED  # only the Bearer scheme counts


def test_a_wrong_token_is_unauthenticated_and_never_echoed(oip, classification):
    for name, call, request in guarded_calls(oip, classification):
        error = refused(call, request, bearer("guess-" + INFERENCE))
        assert error.code() == UNAUTHENTICATED, (name, error.details())
        assert "guess" not in error.details()
    error = refused(oip.ModelInfer, infer_request(), bearer(INFERENCE[:-1]))  # a prefix is not the token
    assert error.code() == UNAUTHENTICATED


def test_the_inference_token_opens_inference_metadata_and_typed_calls(oip, classification):
    response = oip.ModelInfer(infer_request(), metadata=bearer(INFERENCE), timeout=10)
    np.testing.assert_array_equal(output(response, "y"), np.full((1, 4), 6, np.float32))
    metadata = oip.ModelMetadata(pb.ModelMetadataRequest(name="doubler"), metadata=bearer(INFERENCE), timeout=10)
    assert metadata.name == "doubler" and [t.name for t in metadata.inputs] == ["x"]
    reply = classification.Classify(classify_request(), metadata=[("authorization", f"bearer {INFERENCE}")], timeout=10)
    best = reply.results[0].classes[0]
    assert best.label == "bright" and best.score > 0.9
    streamed = list(oip.ModelStreamInfer(iter([infer_request()]), metadata=bearer(INFERENCE), timeout=10))
    assert streamed[0].error_message == ""
    np.testing.assert_array_equal(output(streamed[0].infer_response, "y"), np.full((1, 4), 6, np.float32))
    # the admin token is good for inference too
    response = oip.ModelInfer(infer_request(), metadata=bearer(ADMIN), timeout=10)
    np.testing.assert_array_equal(output(response, "y"), np.full((1, 4), 6, np.float32))


def test_repository_control_needs_the_admin_token(oip):
    ready = lambda: oip.ModelReady(pb.ModelReadyRequest(name="pixels"), metadata=bearer(INFERENCE), timeout=10).ready  # noqa: E731
    load, unload = pb.RepositoryModelLoadRequest(model_name="pixels"), pb.RepositoryModelUnloadRequest(model_name="pixels")
    for call, request in ((oip.RepositoryModelLoad, load), (oip.RepositoryModelUnload, unload),
                          (oip.RepositoryIndex, pb.RepositoryIndexRequest())):
        error = refused(call, request, bearer(INFERENCE))
        assert error.code() == DENIED and "admin token" in error.details()
    assert not ready()
    oip.RepositoryModelLoad(load, metadata=bearer(ADMIN), timeout=30)
    assert ready()
    names = {m.name for m in oip.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=bearer(ADMIN), timeout=10).models}
    assert {"doubler", "pixels", CLASSIFIER} <= names
    oip.RepositoryModelUnload(unload, metadata=bearer(ADMIN), timeout=30)
    assert not ready()


def test_health_reflection_live_and_ready_stay_open(channel, oip):
    assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    assert oip.ServerLive(pb.ServerLiveRequest(), timeout=10).live
    assert oip.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    answers = list(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request]), timeout=10))
    assert "inference.GRPCInferenceService" in {s.name for s in answers[0].list_services_response.service}


def test_our_client_sends_its_token_or_DNNZOO_TOKEN(guarded, monkeypatch):
    x = {"x": np.ones((1, 4), np.float32)}
    with Client(guarded.address, timeout=10, token=INFERENCE) as client:
        np.testing.assert_array_equal(client.infer("doubler", x)["y"], 2 * x["x"])
        assert client.classify(CLASSIFIER, [white_png()], top_k=1).results[0].classes[0].label == "bright"
    monkeypatch.setenv("DNNZOO_TOKEN", INFERENCE)
    with Client(guarded.address, timeout=10) as client:
        assert client.model_metadata("doubler").name == "doubler"
    with Client(guarded.address, timeout=10, token="") as client:  # "" sends none, whatever the environment says
        with pytest.raises(grpc.RpcError) as caught:
            client.model_metadata("doubler")
        assert caught.value.code() == UNAUTHENTICATED
        assert client.health() == "SERVING"


def dnnzoo(*args: str, token: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DNNZOO_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if token is not None:
        env["DNNZOO_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "dnnzoo", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_cli_sends_DNNZOO_TOKEN(guarded, tmp_path):
    image = tmp_path / "white.png"
    image.write_bytes(white_png())
    command = ("classify", str(image), "--model", CLASSIFIER, "--top-k", "1", "--server", guarded.address, "--json")
    done = dnnzoo(*command, token=INFERENCE)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["classes"][0]["label"] == "bright"
    done = dnnzoo(*command, token=None)
    assert done.returncode == 1 and "UNAUTHENTICATED" in done.stderr
    done = dnnzoo(*command, token="guess")
    assert done.returncode == 1 and "UNAUTHENTICATED" in done.stderr and "guess" not in done.stderr
    done = dnnzoo("health", "--server", guarded.address, token=None)  # probes need no token
    assert done.returncode == 0 and done.stdout.strip() == "SERVING", done.stderr


@pytest.mark.skipif(importlib.util.find_spec("tritonclient") is None, reason="tritonclient not installed")
def test_tritonclient_passes_the_token_as_a_header(guarded):
    script = Path(__file__).with_name("tritonclient_auth_check.py")
    result = subprocess.run([sys.executable, str(script), guarded.address, INFERENCE, ADMIN],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["live"] == "OK"
    assert summary["metadata_without_token"] == summary["infer_without_token"] == "UNAUTHENTICATED"
    assert summary["metadata"] == "OK" and summary["y"] == [[6.0] * 4]
    assert summary["stream_error"] is None and summary["stream_y"] == [[6.0] * 4]
    assert summary["index_with_inference_token"] == "PERMISSION_DENIED"
    assert summary["index_with_admin_token"] == "OK"


# -- token files and the rules, without a server --------------------------------------------------


def test_a_bad_token_file_stops_the_server_at_start(guarded_repository, tmp_path):
    from serving.server import create_server

    empty, spaced = tmp_path / "empty.token", tmp_path / "spaced.token"
    empty.write_text("\n")
    spaced.write_text("two words\n")
    for path, message in ((empty, "empty"), (spaced, "printable ASCII")):
        config = server_config(guarded_repository, auth_token_file=path)
        with pytest.raises(UserError, match=message) as caught:
            asyncio.run(create_server(config))
        assert "--auth-token-file" in str(caught.value)


def test_one_token_alone():
    live, infer, load = ("/inference.GRPCInferenceService/" + m for m in ("ServerLive", "ModelInfer", "RepositoryModelLoad"))
    only_inference = Guard(inference=b"user")
    assert only_inference.refusal(infer, bearer("user")) is None
    assert only_inference.refusal(load, bearer("user")) is None  # control falls back to the one token: never open
    assert only_inference.refusal(load, ())[0] == UNAUTHENTICATED
    assert only_inference.refusal("/dnnzoo.v1.SomeFutureService/Call", ())[0] == UNAUTHENTICATED  # guarded by default
    only_admin = Guard(admin=b"root")
    assert only_admin.refusal(infer, ()) is None  # inference stays open
    assert only_admin.refusal(load, ())[0] == UNAUTHENTICATED
    assert only_admin.refusal(load, bearer("root")) is None
    for guard in (only_inference, only_admin):
        assert guard.refusal(live, ()) is None
        assert guard.refusal("/grpc.health.v1.Health/Check", ()) is None
        assert guard.refusal("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", ()) is None
