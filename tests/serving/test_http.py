"""The HTTP/REST front (KServe v2 as Triton serves it) against a real server on free loopback ports:
every endpoint, JSON and binary inference with the same answers as gRPC, Triton's own HTTP client,
curl, compressed bodies, bearer tokens, repository control, and readiness while draining. Hostile
input, caps and slow clients are in test_http_hostile.py."""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import json_format

from protos import grpc_service_pb2 as pb
from protos import grpc_service_pb2_grpc as pb_grpc
from protos.model_config_pb2 import ModelConfig
from serving.errors import InvalidInput
from serving.http_codec import OutputChoice, encode_infer
from serving.requests import InferOutput, InferResponse
from tests.serving.builders import HEALTHY, LABELS
from tests.serving.conftest import server_config, start_server, wait_until
from tests.serving.rest_client import HEADER, X, Http, binary_body, http, json_infer, running, split_binary  # noqa: F401
from tests.serving.test_protocol import output, raw_request

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def grpc_stub(running):
    with grpc.insecure_channel(running.address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


# -- health, metadata, configuration, statistics ---------------------------------------------------------


def test_health(http):
    assert http.get("/v2/health/live")[0] == 200
    assert http.get("/v2/health/ready")[0] == 200
    assert http.get("/v2/models/doubler/ready")[0] == 200
    assert http.get("/v2/models/doubler/versions/1/ready")[0] == 200
    assert http.get("/v2/models/corrupt/ready")[0] == 400  # UNAVAILABLE: not ready
    assert http.get("/v2/models/no_such_model/ready")[0] == 400


def test_server_metadata_is_grpc_s(http, grpc_stub):
    status, headers, body = http.get("/v2")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    expected = grpc_stub.ServerMetadata(pb.ServerMetadataRequest())
    assert json.loads(body) == {"name": expected.name, "version": expected.version, "extensions": list(expected.extensions)}
    assert "binary_tensor_data" in expected.extensions and "classification" in expected.extensions


@pytest.mark.parametrize("path,version", [("/v2/models/doubler", ""), ("/v2/models/doubler/versions/1", "1")])
def test_model_metadata_is_grpc_s(http, grpc_stub, path, version):
    status, _, body = http.get(path)
    assert status == 200
    expected = grpc_stub.ModelMetadata(pb.ModelMetadataRequest(name="doubler", version=version))
    assert json_format.ParseDict(json.loads(body), pb.ModelMetadataResponse()) == expected
    assert json.loads(body)["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]  # numbers, not strings


def test_model_config_is_grpc_s_with_numbers(http, grpc_stub):
    status, _, body = http.get("/v2/models/doubler/config")
    assert status == 200
    config = json.loads(body)
    assert config["name"] == "doubler" and config["max_batch_size"] == 8 and config["input"][0]["dims"] == [4]
    expected = grpc_stub.ModelConfig(pb.ModelConfigRequest(name="doubler")).config
    assert json_format.ParseDict(config, ModelConfig()) == expected


def test_statistics_are_grpc_s_and_count_http_calls(http, grpc_stub):
    def success() -> int:
        stats = json.loads(http.get("/v2/models/doubler/stats")[2])["model_stats"]
        return stats[0]["inference_stats"]["success"]["count"]

    before = success()
    assert http.post("/v2/models/doubler/infer", json_infer("doubler", x=("FP32", X, X.tolist())))[0] == 200
    assert success() == before + 1
    for path, request in (("/v2/models/stats", pb.ModelStatisticsRequest()),
                          ("/v2/models/doubler/versions/1/stats", pb.ModelStatisticsRequest(name="doubler", version="1"))):
        document = json.loads(http.get(path)[2])
        assert json_format.ParseDict(document, pb.ModelStatisticsResponse()) == grpc_stub.ModelStatistics(request)
    assert "unknown model 'nope'" in http.error(404, http.get("/v2/models/nope/stats"))


def test_unknown_and_unavailable_models(http):
    assert "unknown model 'no_such_model'" in http.error(404, http.get("/v2/models/no_such_model"))
    assert "corrupt" in http.error(503, http.get("/v2/models/corrupt"))
    assert "Not Found" in http.error(404, http.get("/v2/nothing/here"))
    assert "Method Not Allowed" in http.error(405, http.get("/v2/models/doubler/infer"))
    long_name = "m" * 5000  # the message names it, cut short
    assert "characters" in http.error(404, http.get(f"/v2/models/{long_name}"))


# -- inference ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [X.tolist(), X.reshape(-1).tolist()], ids=["nested", "flat"])
def test_json_infer_is_grpc_s(http, grpc_stub, data):
    status, headers, body = http.post("/v2/models/doubler/infer", {"id": "r1", **json_infer("doubler", x=("FP32", X, data))})
    assert status == 200 and HEADER not in headers
    document = json.loads(body)
    expected = grpc_stub.ModelInfer(raw_request("doubler", x=("FP32", X)))
    assert document["model_name"] == "doubler" and document["model_version"] == "1" and document["id"] == "r1"
    for item in document["outputs"]:
        assert item["datatype"] == "FP32" and item["shape"] == [2, 4]
        np.testing.assert_array_equal(np.array(item["data"], np.float32).reshape(2, 4), output(expected, item["name"]))


def test_binary_infer_is_grpc_s(http, grpc_stub):
    document = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": X.nbytes}}],
                "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "probabilities"}]}
    body, headers = binary_body(document, X.tobytes())
    status, answer_headers, answer = http.post("/v2/models/doubler/infer", body=body, headers=headers)
    assert status == 200 and answer_headers["Content-Type"] == "application/octet-stream"
    header, parts = split_binary(answer_headers, answer)
    expected = grpc_stub.ModelInfer(raw_request("doubler", x=("FP32", X)))
    assert set(parts) == {"y"}  # binary_data_output is false by default: probabilities come as JSON
    np.testing.assert_array_equal(np.frombuffer(parts["y"], np.float32).reshape(2, 4), output(expected, "y"))
    probabilities = next(o for o in header["outputs"] if o["name"] == "probabilities")
    np.testing.assert_array_equal(np.array(probabilities["data"], np.float32).reshape(2, 4), output(expected, "probabilities"))


def test_binary_data_output_and_bytes_both_ways(http):
    words = [w.encode() for w in ("héllo", "", "wörld")]
    packed = b"".join(struct.pack("<I", len(w)) + w for w in words)
    document = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3, 1], "parameters": {"binary_data_size": len(packed)}}],
                "parameters": {"binary_data_output": True}}
    body, headers = binary_body(document, packed)
    status, answer_headers, answer = http.post("/v2/models/strings/infer", body=body, headers=headers)
    assert status == 200
    header, parts = split_binary(answer_headers, answer)
    assert parts["echo"] == packed and header["outputs"][0]["shape"] == [3, 1]
    as_json = http.post("/v2/models/strings/infer", json_infer("strings", text=("BYTES", np.zeros((3, 1)), [["héllo"], [""], ["wörld"]])))
    assert as_json[0] == 200 and json.loads(as_json[2])["outputs"][0]["data"] == ["héllo", "", "wörld"]


def test_bytes_that_are_not_text_only_travel_in_binary():
    response = InferResponse("m", "1", "", [InferOutput("raw", "BYTES", np.array([b"\xff\x00"], dtype=object))])
    with pytest.raises(InvalidInput, match="binary_data"):
        encode_infer(response, OutputChoice())
    body, length = encode_infer(response, OutputChoice(binary_default=True))
    assert body[length:] == struct.pack("<I", 2) + b"\xff\x00"


def test_classification_is_grpc_s(http, grpc_stub):
    document = {**json_infer("doubler", x=("FP32", X, X.tolist())),
                "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}]}
    status, _, body = http.post("/v2/models/doubler/infer", document)
    assert status == 200
    item = json.loads(body)["outputs"][0]
    request = raw_request("doubler", x=("FP32", X))
    request.outputs.add(name="probabilities").parameters["classification"].int64_param = 2
    expected = output(grpc_stub.ModelInfer(request), "probabilities")
    assert item["datatype"] == "BYTES" and item["shape"] == [2, 2]
    assert [v.encode() for v in item["data"]] == list(expected.reshape(-1))
    assert item["data"][0].endswith(":" + LABELS[3])


def test_integer_inputs_and_versions(http):
    pixels = np.array([[1, 2, 3], [250, 0, 4]], dtype=np.uint8)
    status, _, body = http.post("/v2/models/pixels/versions/1/infer", json_infer("pixels", images=("UINT8", pixels, pixels.tolist())))
    assert status == 200 and json.loads(body)["outputs"][0]["data"] == [6.0, 254.0]
    v = np.array([[1, -2], [3, 4]], dtype=np.int64)
    status, _, body = http.post("/v2/models/fixed/infer", json_infer("fixed", v=("INT64", v, v.tolist())))
    assert status == 200 and json.loads(body)["outputs"][0]["data"] == [3, -6, 9, 12]
    assert "version" in http.error(404, http.post("/v2/models/fixed/versions/7/infer", json_infer("fixed", v=("INT64", v, v.tolist()))))


def test_large_body_is_decoded_off_the_loop_with_the_same_answer(http):
    document = json_infer("doubler", x=("FP32", X, X.tolist()))
    small = http.post("/v2/models/doubler/infer", document)
    padded = json.dumps(document).encode() + b" " * 400_000  # above the inline size: parsed on a worker thread
    large = http.post("/v2/models/doubler/infer", body=padded)
    assert small[0] == large[0] == 200 and json.loads(small[2]) == json.loads(large[2])


def test_model_errors_are_mapped(http):
    bad_shape = json_infer("doubler", x=("FP32", X[:, :3], X[:, :3].tolist()))
    assert "'x'" in http.error(400, http.post("/v2/models/doubler/infer", bad_shape))
    out_of_range = json_infer("lookup", ids=("INT64", np.array([[500]]), [[500]]))
    assert "range" in http.error(400, http.post("/v2/models/lookup/infer", out_of_range))
    unknown_output = {**json_infer("doubler", x=("FP32", X, X.tolist())), "outputs": [{"name": "nope"}]}
    assert "nope" in http.error(400, http.post("/v2/models/doubler/infer", unknown_output))
    too_many = json_infer("lookup", ids=("INT64", np.zeros((1, 5000)), [[0] * 5000]))
    assert "dnnzoo.max_request_elements" in http.error(413, http.post("/v2/models/lookup/infer", too_many))


# -- Triton's own HTTP client, and curl ---------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("geventhttpclient") is None, reason="tritonclient[http] not installed")
def test_tritonclient_http_drives_every_model(running, grpc_stub):
    script = Path(__file__).with_name("tritonclient_http_check.py")
    result = subprocess.run([sys.executable, str(script), f"127.0.0.1:{running.server.http_port}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["live"] and summary["ready"] and "statistics" in summary["extensions"]
    assert set(summary["models"]) == set(HEALTHY)
    for name, model in summary["models"].items():
        assert model["ready"] and model["config_name"] == name and model["success"] >= 2, name
        assert model["binary"] == model["json"], name
        request = pb.ModelInferRequest(model_name=name)  # the same inputs over gRPC: the same answers
        for input_name, spec in model["inputs"].items():
            shape = spec["shape"]
            if spec["datatype"] == "BYTES":
                raw = (struct.pack("<I", 1) + b"a") * int(np.prod(shape))
            else:
                dtype = {"FP32": np.float32, "UINT8": np.uint8, "INT64": np.int64}[spec["datatype"]]
                raw = (np.arange(int(np.prod(shape))).reshape(shape) % 3 + 1).astype(dtype).tobytes()
            request.inputs.add(name=input_name, datatype=spec["datatype"], shape=shape)
            request.raw_input_contents.append(raw)
        expected = grpc_stub.ModelInfer(request)
        for output_name, answer in model["binary"].items():
            values = output(expected, output_name)
            assert answer["shape"] == list(values.shape)
            plain = [v.decode() for v in values.reshape(-1)] if values.dtype == object else values.reshape(-1).tolist()
            assert answer["values"] == plain, (name, output_name)
    assert summary["compressed"]["gzip"] == summary["compressed"]["deflate"] == summary["models"]["doubler"]["binary"]
    assert len(summary["classification"]) == 16 and summary["classification"][0].count(":") == 2
    assert summary["unknown"] == {"status": "404", "message": "unknown model 'no_such_model'"}


def test_curl_with_a_json_file(http, tmp_path):
    path = tmp_path / "request.json"
    path.write_text(json.dumps(json_infer("doubler", x=("FP32", X, X.tolist()))))
    if shutil.which("curl"):
        result = subprocess.run(["curl", "-s", "-d", f"@{path}", f"{http.base}/v2/models/doubler/infer"],
                                capture_output=True, timeout=30, check=True)
        answer = json.loads(result.stdout)
    else:  # the same bytes, as curl would send them (a form content type, which the server ignores)
        answer = json.loads(http.post("/v2/models/doubler/infer", body=path.read_bytes(),
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})[2])
    y = next(o for o in answer["outputs"] if o["name"] == "y")
    assert y["data"] == (X * 2).reshape(-1).tolist()


# -- compressed bodies and size caps ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding,compress", [("gzip", gzip.compress), ("deflate", zlib.compress),
                                                ("deflate", lambda b: zlib.compress(b, wbits=-15))],
                         ids=["gzip", "deflate", "raw-deflate"])
def test_compressed_request_bodies(http, encoding, compress):
    body = json.dumps(json_infer("doubler", x=("FP32", X, X.tolist()))).encode()
    status, _, answer = http.post("/v2/models/doubler/infer", body=compress(body), headers={"Content-Encoding": encoding})
    assert status == 200 and json.loads(answer)["outputs"][0]["data"] == (X * 2).reshape(-1).tolist()


def test_compressed_response_when_asked(http):
    body = json.dumps(json_infer("doubler", x=("FP32", X, X.tolist()))).encode()
    status, headers, answer = http.post("/v2/models/doubler/infer", body=body, headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(answer))["outputs"][0]["data"] == (X * 2).reshape(-1).tolist()


# -- bearer tokens, repository control, readiness during drain, turning it off --------------------------------


@pytest.fixture(scope="module")
def guarded(repository, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokens")
    (folder / "inference").write_text("infer-secret\n")
    (folder / "admin").write_text("admin-secret\n")
    server = start_server(server_config(repository, auth_token_file=folder / "inference", admin_token_file=folder / "admin",
                                        model_control_mode="explicit", load_model=["doubler", "fixed"]))
    yield server
    server.stop()


def test_bearer_tokens_as_on_grpc(guarded):
    http = Http(guarded.server.http_port)
    request = json_infer("doubler", x=("FP32", X, X.tolist()))
    inference, admin = {"Authorization": "Bearer infer-secret"}, {"Authorization": "bearer admin-secret"}
    assert http.get("/v2/health/live")[0] == http.get("/v2/health/ready")[0] == 200  # probes need no token
    status, headers, body = http.post("/v2/models/doubler/infer", request)
    assert "Bearer" in http.error(401, (status, headers, body)) and headers["WWW-Authenticate"] == "Bearer"
    assert "not valid" in http.error(401, http.post("/v2/models/doubler/infer", request, headers={"Authorization": "Bearer guess"}))
    assert http.post("/v2/models/doubler/infer", request, headers=inference)[0] == 200
    assert http.post("/v2/models/doubler/infer", request, headers=admin)[0] == 200
    assert http.get("/v2/models/doubler", **inference)[0] == 200
    assert http.error(401, http.get("/v2/models/doubler"))
    assert "admin" in http.error(403, http.post("/v2/repository/index", {}, headers=inference))
    assert http.post("/v2/repository/index", {}, headers=admin)[0] == 200


def test_repository_control(guarded):
    http, admin = Http(guarded.server.http_port), {"Authorization": "Bearer admin-secret"}
    index = json.loads(http.post("/v2/repository/index", body=b"", headers=admin)[2])
    assert {"name": "doubler", "version": "1", "state": "READY"} in index
    ready = json.loads(http.post("/v2/repository/index", {"ready": True}, headers=admin)[2])
    assert {row["name"] for row in ready} == {"doubler", "fixed"}
    assert http.post("/v2/repository/models/fixed/unload", {"parameters": {"unload_dependents": False}}, headers=admin)[0] == 200
    wait_until(lambda: http.get("/v2/models/fixed/ready", Authorization="Bearer admin-secret")[0] == 400, what="fixed unloaded")
    assert http.post("/v2/repository/models/pixels/load", body=b"", headers=admin)[0] == 200
    assert http.get("/v2/models/pixels/ready", Authorization="Bearer admin-secret")[0] == 200
    override = {"name": "fixed", "platform": "onnxruntime_onnx", "max_batch_size": 0,
                "input": [{"name": "v", "data_type": "TYPE_INT64", "dims": [2, 2]}],
                "output": [{"name": "tripled", "data_type": "TYPE_INT64", "dims": [2, 2]}]}
    answer = http.post("/v2/repository/models/fixed/load", {"parameters": {"config": json.dumps(override)}}, headers=admin)
    assert answer[0] == 200 and http.get("/v2/models/fixed/ready", Authorization="Bearer admin-secret")[0] == 200
    assert "config" in http.error(400, http.post("/v2/repository/models/fixed/load", {"parameters": {"config": "{not json"}}, headers=admin))
    assert "file:" in http.error(400, http.post("/v2/repository/models/fixed/load", {"parameters": {"file:1/model.onnx": "AAAA"}}, headers=admin))
    assert "load parameter" in http.error(400, http.post("/v2/repository/models/fixed/load", {"parameters": {"config": [1]}}, headers=admin))
    assert "no_such" in http.error(404, http.post("/v2/repository/models/no_such/load", {}, headers=admin))
    # a load that fails is 400, as Triton answers it; the model loaded before keeps serving
    override["output"][0]["dims"] = [3]
    failed = http.error(400, http.post("/v2/repository/models/fixed/load", {"parameters": {"config": json.dumps(override)}}, headers=admin))
    assert "failed to load 'fixed'" in failed and "still serving" in failed
    assert http.get("/v2/models/fixed/ready", Authorization="Bearer admin-secret")[0] == 200


def test_load_outside_explicit_mode_is_refused(http):
    assert "explicit" in http.error(400, http.post("/v2/repository/models/doubler/unload", {}))


def test_readiness_goes_down_at_once_on_drain_and_port_off(repository):
    server = start_server(server_config(repository, model_control_mode="explicit", load_model=["doubler"]))
    http = Http(server.server.http_port)
    assert http.get("/v2/health/ready")[0] == 200
    # SIGTERM's order: not ready at once, while calls are still accepted for the drain delay
    stopping = asyncio.run_coroutine_threadsafe(server.server.stop(5.0, drain_delay=3.0), server.loop)
    wait_until(lambda: http.get("/v2/health/ready")[0] == 400, what="not ready while draining")
    assert http.post("/v2/models/doubler/infer", json_infer("doubler", x=("FP32", X, X.tolist())))[0] == 200
    stopping.result(30)
    server.loop.call_soon_threadsafe(server.loop.stop)
    server.thread.join(10)
    off = start_server(server_config(repository, http_port=-1, model_control_mode="explicit", load_model=["doubler"]))
    assert off.server.http is None and off.server.http_port is None
    off.stop()
