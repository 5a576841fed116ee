"""Every Open Inference Protocol RPC against a real server, and every malformed-request error."""

from __future__ import annotations

import struct

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from protos import grpc_service_pb2 as pb
from tests.serving.builders import LABELS

Tensor = pb.ModelInferRequest.InferInputTensor


def raw_request(model: str, **arrays: tuple[str, np.ndarray]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    for name, (datatype, array) in arrays.items():
        request.inputs.append(Tensor(name=name, datatype=datatype, shape=array.shape))
        request.raw_input_contents.append(array.tobytes())
    return request


def output(response: pb.ModelInferResponse, name: str) -> np.ndarray:
    types = {"FP32": np.float32, "INT64": np.int64, "UINT8": np.uint8}
    for index, tensor in enumerate(response.outputs):
        if tensor.name == name:
            raw = response.raw_output_contents[index]
            if tensor.datatype == "BYTES":
                return np.array(decode_bytes(raw), dtype=object).reshape(tensor.shape)
            return np.frombuffer(raw, dtype=types[tensor.datatype]).reshape(tensor.shape)
    raise KeyError(name)


def decode_bytes(raw: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return items


def expect_error(call, request, code: grpc.StatusCode, *fragments: str) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=10)
    assert caught.value.code() == code, caught.value.details()
    for fragment in fragments:
        assert fragment in caught.value.details()
    return caught.value.details()


# -- health and metadata -------------------------------------------------------------------------


def test_live_and_ready(stub):
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready


def test_model_ready(stub):
    assert stub.ModelReady(pb.ModelReadyRequest(name="doubler")).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="doubler", version="1")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="doubler", version="7")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="corrupt")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="no_such_model")).ready


def test_server_metadata(stub):
    metadata = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert metadata.name == "dnnzoo" and metadata.version
    assert {"classification", "model_repository", "statistics", "model_configuration"} <= set(metadata.extensions)
    assert "sequence" not in metadata.extensions and "system_shared_memory" not in metadata.extensions


def test_model_metadata_batched_has_leading_minus_one(stub):
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name="doubler"))
    assert (metadata.name, list(metadata.versions), metadata.platform) == ("doubler", ["1"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("x", "FP32", [-1, 4])]
    assert [(t.name, list(t.shape)) for t in metadata.outputs] == [("y", [-1, 4]), ("probabilities", [-1, 4])]


def test_model_metadata_unbatched_keeps_dims(stub):
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name="fixed", version="1"))
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("v", "INT64", [2, 2])]


def test_model_config_is_the_file_plus_providers_in_use(stub, served):
    config = stub.ModelConfig(pb.ModelConfigRequest(name="doubler")).config
    assert config.name == "doubler" and config.max_batch_size == 8
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert config.output[1].label_filename == "labels.txt"
    session = served.server.models.resolve("doubler").runtime.session
    assert config.parameters["dnnzoo.providers"].string_value == ",".join(session.get_providers())
    assert config.parameters["intra_op_thread_count"].string_value == "1"


@pytest.mark.parametrize("rpc", ["ModelMetadata", "ModelConfig"])
def test_unknown_model_or_version_is_not_found(stub, rpc):
    request = getattr(pb, f"{rpc}Request")
    expect_error(getattr(stub, rpc), request(name="no_such_model"), grpc.StatusCode.NOT_FOUND, "no_such_model")
    expect_error(getattr(stub, rpc), request(name="doubler", version="9"), grpc.StatusCode.NOT_FOUND, "9")
    expect_error(getattr(stub, rpc), request(name="doubler", version="../1"), grpc.StatusCode.NOT_FOUND)


def test_unavailable_model_is_unavailable_with_reason(stub):
    details = expect_error(stub.ModelMetadata, pb.ModelMetadataRequest(name="corrupt"), grpc.StatusCode.UNAVAILABLE)
    assert "cannot load" in details
    request = raw_request("corrupt", x=("FP32", np.zeros((1, 4), np.float32)))
    expect_error(stub.ModelInfer, request, grpc.StatusCode.UNAVAILABLE, "corrupt")


# -- inference ------------------------------------------------------------------------------------


def test_infer_raw_fp32_matches_onnxruntime(stub, repository):
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    response = stub.ModelInfer(raw_request("doubler", x=("FP32", x)))
    assert (response.model_name, response.model_version) == ("doubler", "1")
    assert [t.name for t in response.outputs] == ["y", "probabilities"]
    assert len(response.raw_output_contents) == 2
    session = ort.InferenceSession(str(repository / "doubler" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    y, p = session.run(["y", "probabilities"], {"x": x})
    np.testing.assert_array_equal(output(response, "y"), y)
    np.testing.assert_allclose(output(response, "probabilities"), p, rtol=1e-6)


def test_infer_typed_contents_and_requested_outputs_in_order(stub):
    request = pb.ModelInferRequest(model_name="doubler", id="req-7")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend([1, 2, 3, 4])
    request.outputs.add(name="probabilities")
    request.outputs.add(name="y")
    response = stub.ModelInfer(request)
    assert response.id == "req-7"
    assert [t.name for t in response.outputs] == ["probabilities", "y"]
    assert not response.outputs[1].HasField("contents")  # values travel raw only
    np.testing.assert_array_equal(output(response, "y"), [[2, 4, 6, 8]])


def test_infer_only_requested_output(stub):
    request = raw_request("doubler", x=("FP32", np.ones((1, 4), np.float32)))
    request.outputs.add(name="y")
    response = stub.ModelInfer(request)
    assert [t.name for t in response.outputs] == ["y"] and len(response.raw_output_contents) == 1


def test_classification_extension_uses_labels(stub):
    x = np.array([[0.0, 5.0, 1.0, 2.0], [9.0, 0.0, 0.0, 0.0]], np.float32)
    request = raw_request("doubler", x=("FP32", x))
    requested = request.outputs.add(name="probabilities")
    requested.parameters["classification"].int64_param = 2
    response = stub.ModelInfer(request)
    tensor = response.outputs[0]
    assert (tensor.datatype, list(tensor.shape)) == ("BYTES", [2, 2])
    rows = output(response, "probabilities")
    scores = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    first = rows[0, 0].decode().split(":")
    assert first[1:] == ["1", LABELS[1]] and float(first[0]) == pytest.approx(scores[0, 1], abs=1e-5)
    assert rows[0, 1].decode().split(":")[1:] == ["3", LABELS[3]]
    assert rows[1, 0].decode().split(":")[1:] == ["0", LABELS[0]]


def test_uint8_input(stub):
    images = np.array([[1, 2, 3], [250, 250, 250]], np.uint8)
    response = stub.ModelInfer(raw_request("pixels", images=("UINT8", images)))
    np.testing.assert_array_equal(output(response, "total"), [[6], [750]])


def test_uint8_typed_contents(stub):
    request = pb.ModelInferRequest(model_name="pixels")
    request.inputs.add(name="images", datatype="UINT8", shape=[1, 3]).contents.uint_contents.extend([7, 8, 9])
    np.testing.assert_array_equal(output(stub.ModelInfer(request), "total"), [[24]])


def test_int64_unbatched_typed_and_raw(stub):
    v = np.array([[1, -2], [3, 4]], np.int64)
    np.testing.assert_array_equal(output(stub.ModelInfer(raw_request("fixed", v=("INT64", v))), "tripled"), v * 3)
    request = pb.ModelInferRequest(model_name="fixed")
    request.inputs.add(name="v", datatype="INT64", shape=[2, 2]).contents.int64_contents.extend(v.ravel().tolist())
    np.testing.assert_array_equal(output(stub.ModelInfer(request), "tripled"), v * 3)


def test_bytes_length_prefixed_both_ways(stub):
    words = ["héllo", "", "wörld"]
    raw = b"".join(struct.pack("<I", len(w.encode())) + w.encode() for w in words)
    request = pb.ModelInferRequest(model_name="strings", raw_input_contents=[raw])
    request.inputs.add(name="text", datatype="BYTES", shape=[3, 1])
    response = stub.ModelInfer(request)
    assert response.outputs[0].datatype == "BYTES"
    assert [w.decode() for w in decode_bytes(response.raw_output_contents[0])] == words
    typed = pb.ModelInferRequest(model_name="strings")
    typed.inputs.add(name="text", datatype="BYTES", shape=[1, 1]).contents.bytes_contents.append(b"typed")
    assert decode_bytes(stub.ModelInfer(typed).raw_output_contents[0]) == [b"typed"]


def test_stream_answers_in_order_and_reports_errors_without_closing(stub):
    good = raw_request("doubler", x=("FP32", np.full((1, 4), 3, np.float32)))
    bad = raw_request("doubler", x=("FP32", np.zeros((1, 5), np.float32)))
    unknown = raw_request("no_such_model", x=("FP32", np.zeros((1, 4), np.float32)))
    replies = list(stub.ModelStreamInfer(iter([good, bad, unknown, good]), timeout=20))
    assert len(replies) == 4
    assert replies[0].error_message == "" and np.all(output(replies[0].infer_response, "y") == 6)
    assert "shape" in replies[1].error_message and "[-1,4]" in replies[1].error_message
    assert "no_such_model" in replies[2].error_message
    assert replies[3].error_message == "" and np.all(output(replies[3].infer_response, "y") == 6)


# -- malformed requests: INVALID_ARGUMENT naming the tensor and what was expected ------------------


def test_unknown_input_name(stub):
    request = raw_request("doubler", z=("FP32", np.zeros((1, 4), np.float32)))
    expect_error(stub.ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT, "'z'", "'x'")


def test_missing_input(stub):
    request = pb.ModelInferRequest(model_name="doubler")
    expect_error(stub.ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT, "missing input", "'x'", "FP32 [-1,4]")


def test_wrong_datatype(stub):
    request = raw_request("doubler", x=("FP64", np.zeros((1, 4), np.float64)))
    expect_error(stub.ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT, "'x'", "FP64", "expected FP32")


def test_shape_not_matching_config(stub):
    request = raw_request("doubler", x=("FP32", np.zeros((2, 3), np.float32)))
    expect_error(stub.ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT, "'x'", "[2,3]", "[-1,4]")
    request = raw_request("doubler", x=("FP32", np.zeros((4,), np.float32)))
    expect_error(stub.ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT, "'x'", "[-1,4]")


def test_raw_size_not_matching_shape(stub):
    request = pb.ModelInferRequest(model_name="doubler", raw_input_contents=[b"\0" * 12])
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    expect_error(stub.ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT, "'x'", "12 bytes", "16 bytes")


def test_mixed_raw_and_typed_contents(stub):
    request = raw_request("doubler", x=("FP32", np.zeros((1, 4), np.float32)))
    request.inputs[0].contents.fp32_contents.extend([0, 0, 0, 0])
    expect_error(stub.ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT, "'x'", "raw_input_contents")


def test_typed_count_not_matching_shape(stub):
    request = pb.ModelInferRequest(model_name="doubler")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1, 2])
    expect_error(stub.ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT, "'x'", "needs 4")


def test_typed_values_in_a_second_contents_field_are_refused_not_ignored(stub):
    request = pb.ModelInferRequest(model_name="doubler")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend([1, 2, 3, 4])
    tensor.contents.int_contents.extend([5])
    expect_error(stub.ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT, "'x'", "contents.fp32_contents",
                 "contents.int_contents is set too")


def test_batch_above_max_batch_size(stub):
    request = raw_request("doubler", x=("FP32", np.zeros((9, 4), np.float32)))
    expect_error(stub.ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT, "'x'", "9", "max_batch_size 8")


def test_unknown_output_and_bad_bytes(stub):
    request = raw_request("doubler", x=("FP32", np.zeros((1, 4), np.float32)))
    request.outputs.add(name="nope")
    expect_error(stub.ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT, "'nope'", "probabilities")
    request = pb.ModelInferRequest(model_name="strings", raw_input_contents=[b"\xff\0\0\0ab"])
    request.inputs.add(name="text", datatype="BYTES", shape=[1, 1])
    expect_error(stub.ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT, "'text'", "BYTES")


def test_unknown_datatype_string(stub):
    request = pb.ModelInferRequest(model_name="doubler", raw_input_contents=[b"\0" * 16])
    request.inputs.add(name="x", datatype="FLOAT", shape=[1, 4])
    expect_error(stub.ModelInfer, request, grpc.StatusCode.INVALID_ARGUMENT, "'x'", "FLOAT")


def test_unknown_model_infer_is_not_found(stub):
    expect_error(stub.ModelInfer, raw_request("ghost"), grpc.StatusCode.NOT_FOUND, "ghost")


def test_internal_errors_do_not_leak(stub, served, caplog):
    loaded = served.server.models.resolve("pixels")
    original = loaded.runtime.run

    def explode(inputs, options):
        raise RuntimeError("secret stack detail /etc/passwd")

    loaded.batcher.run = explode
    try:
        request = raw_request("pixels", images=("UINT8", np.zeros((1, 3), np.uint8)))
        details = expect_error(stub.ModelInfer, request, grpc.StatusCode.INTERNAL)
    finally:
        loaded.batcher.run = original
    assert "secret" not in details and "Traceback" not in details
    assert any("secret stack detail" in (r.exc_text or "") for r in caplog.records)


# -- statistics and the repository ----------------------------------------------------------------


def test_statistics_count_phases(stub):
    before = stub.ModelStatistics(pb.ModelStatisticsRequest(name="pixels", version="1")).model_stats[0]
    stub.ModelInfer(raw_request("pixels", images=("UINT8", np.ones((3, 3), np.uint8))))
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(raw_request("pixels", images=("UINT8", np.zeros((1, 5), np.uint8))))
    after = stub.ModelStatistics(pb.ModelStatisticsRequest(name="pixels", version="1")).model_stats[0]
    stats, old = after.inference_stats, before.inference_stats
    assert (after.name, after.version) == ("pixels", "1")
    assert stats.success.count == old.success.count + 1 and stats.success.ns > old.success.ns
    assert stats.fail.count == old.fail.count + 1
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert getattr(stats, phase).count == stats.success.count
    assert after.inference_count == before.inference_count + 3
    assert after.execution_count == before.execution_count + 1
    assert after.last_inference > 0
    assert 3 in {b.batch_size for b in after.batch_stats}


def test_statistics_for_all_models_and_errors(stub):
    names = {s.name for s in stub.ModelStatistics(pb.ModelStatisticsRequest()).model_stats}
    assert {"doubler", "pixels", "fixed", "strings"} <= names and "corrupt" not in names
    expect_error(stub.ModelStatistics, pb.ModelStatisticsRequest(name="ghost"), grpc.StatusCode.NOT_FOUND)


def test_repository_index_lists_broken_models_with_reasons(stub):
    index = {m.name: m for m in stub.RepositoryIndex(pb.RepositoryIndexRequest()).models}
    assert index["doubler"].state == "READY" and index["doubler"].version == "1"
    assert index["corrupt"].state == "UNAVAILABLE" and "cannot load" in index["corrupt"].reason
    assert index["badconfig"].state == "UNAVAILABLE" and "no_such_field" in index["badconfig"].reason
    ready = {m.name for m in stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True)).models}
    assert "doubler" in ready and "corrupt" not in ready and "badconfig" not in ready


def test_load_and_unload_refused_outside_explicit_mode(stub):
    expect_error(stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="doubler"),
                 grpc.StatusCode.FAILED_PRECONDITION, "explicit")
    expect_error(stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name="doubler"),
                 grpc.StatusCode.FAILED_PRECONDITION, "explicit")
    assert stub.ModelReady(pb.ModelReadyRequest(name="doubler")).ready
