"""Requests that claim more than they carry, or carry more than the operator allows, on a real server
(both gRPC fronts): refused before anything is allocated, with the honest status and a short message."""

from __future__ import annotations

import logging
import time

import grpc
import numpy as np
import pytest

from protos import grpc_service_pb2 as pb
from protos import grpc_service_pb2_grpc as pb_grpc
from serving.limits import MAX_MESSAGE_CHARS
from serving.status import client_message
from tests.serving.builders import LOOKUP_MAX_ELEMENTS, LOOKUP_RANGE
from tests.serving.conftest import FRONTS, server_config, start_server
from tests.serving.test_protocol import expect_error, output, raw_request

INVALID, TOO_LARGE = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED


def peak_rss_mb() -> float:
    """This process's peak resident memory since the last `reset_peak_rss` (the server runs in it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current VmRSS (Linux 4.0+)


def test_a_huge_bytes_shape_with_no_payload_is_refused_before_anything_is_allocated(stub):
    request = pb.ModelInferRequest(model_name="strings", raw_input_contents=[b""])
    request.inputs.add(name="text", datatype="BYTES", shape=[300_000_000])
    assert len(request.SerializeToString()) < 40
    stub.ServerLive(pb.ServerLiveRequest())  # the server's own startup is not counted
    reset_peak_rss()
    before = peak_rss_mb()
    started = time.monotonic()
    details = expect_error(stub.ModelInfer, request, INVALID, "'text'")
    elapsed = time.monotonic() - started
    grown = peak_rss_mb() - before
    assert grown < 50, f"peak RSS grew by {grown:.0f} MB for a {len(request.SerializeToString())}-byte request"
    assert elapsed < 3.0, details  # was 6.9 s (and 2.4 GB) when the array came first
    assert "300000000" in details and "hold at most 0" in details


def test_a_huge_typed_shape_is_refused_before_anything_is_converted(stub):
    request = pb.ModelInferRequest(model_name="doubler")
    request.inputs.add(name="x", datatype="FP32", shape=[1 << 40, 1 << 40, 4]).contents.fp32_contents.extend([1.0])
    expect_error(stub.ModelInfer, request, INVALID, "'x'", "1 values", "needs more than")


def test_half_a_million_dimensions_are_invalid_not_internal(stub):
    request = pb.ModelInferRequest(model_name="doubler", raw_input_contents=[b"\0" * 16])
    request.inputs.add(name="x", datatype="FP32", shape=[1] * 500_000)
    details = expect_error(stub.ModelInfer, request, INVALID, "'x'", "500000 dimensions", "at most 16")
    assert len(details) <= MAX_MESSAGE_CHARS
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live


@pytest.mark.parametrize("dims", [[-1, 4], [1, -5]])
def test_negative_dimensions_are_invalid(stub, dims):
    request = pb.ModelInferRequest(model_name="doubler", raw_input_contents=[b"\0" * 16])
    request.inputs.add(name="x", datatype="FP32", shape=dims)
    expect_error(stub.ModelInfer, request, INVALID, "'x'", "negative dimension")


def test_long_client_names_give_short_messages(stub):
    details = expect_error(stub.ModelInfer, raw_request("m" * 10_000), grpc.StatusCode.NOT_FOUND, "10000 characters")
    assert len(details) <= MAX_MESSAGE_CHARS
    versioned = raw_request("doubler", x=("FP32", np.ones((1, 4), np.float32)))
    versioned.model_version = "7" * 10_000  # int() of it would raise: it is refused as a name
    details = expect_error(stub.ModelInfer, versioned, grpc.StatusCode.NOT_FOUND, "10000 characters")
    assert len(details) <= MAX_MESSAGE_CHARS
    named = raw_request("doubler", **{"x" * 10_000: ("FP32", np.ones((1, 4), np.float32))})
    details = expect_error(stub.ModelInfer, named, INVALID, "has no input", "10000 characters")
    assert len(details) <= MAX_MESSAGE_CHARS


def test_minus_one_dims_are_capped_by_the_models_own_limit(stub):
    fits = raw_request("lookup", ids=("INT64", np.ones((1, LOOKUP_MAX_ELEMENTS), np.int64)))
    assert output(stub.ModelInfer(fits, timeout=10), "same").shape == (1, LOOKUP_MAX_ELEMENTS)
    over = raw_request("lookup", ids=("INT64", np.ones((2, LOOKUP_MAX_ELEMENTS // 2 + 1), np.int64)))
    expect_error(stub.ModelInfer, over, TOO_LARGE, "'ids'", str(LOOKUP_MAX_ELEMENTS), "dnnzoo.max_request_elements")


def test_ids_outside_the_declared_range_are_invalid(stub):
    low, high = LOOKUP_RANGE
    inside = np.array([[low, high, 5]], np.int64)
    assert output(stub.ModelInfer(raw_request("lookup", ids=("INT64", inside)), timeout=10), "same").tolist() == inside.tolist()
    for bad in (high + 1, low - 1, -(1 << 62)):
        ids = np.array([[low, 7, bad, high + 50]], np.int64)
        expect_error(stub.ModelInfer, raw_request("lookup", ids=("INT64", ids)), INVALID,
                     "'ids'", f"value {bad} at flat index 2", f"[{low}, {high}]", "dnnzoo.input.ids.range")


def test_typed_values_that_do_not_fit_the_datatype_are_invalid(stub):
    request = pb.ModelInferRequest(model_name="pixels")
    request.inputs.add(name="images", datatype="UINT8", shape=[1, 3]).contents.uint_contents.extend([1, 300, 2])
    expect_error(stub.ModelInfer, request, INVALID, "'images'", "out of range for UINT8")


def test_repeated_inputs_and_too_many_tensors_are_invalid(stub):
    one = np.ones((1, 4), np.float32)
    request = raw_request("doubler", x=("FP32", one))
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(one.tobytes())
    expect_error(stub.ModelInfer, request, INVALID, "'x'", "more than once")
    many = raw_request("doubler", x=("FP32", one))
    for i in range(65):
        many.outputs.add(name=f"out{i}")
    expect_error(stub.ModelInfer, many, INVALID, "65 outputs", "at most 64")


def test_client_mistakes_are_not_logged_as_errors(stub, caplog):
    caplog.set_level(logging.DEBUG, logger="serving")
    request = pb.ModelInferRequest(model_name="strings", raw_input_contents=[b""])
    request.inputs.add(name="text", datatype="BYTES", shape=[3])
    expect_error(stub.ModelInfer, request, INVALID)
    expect_error(stub.ModelInfer, raw_request("ghost"), grpc.StatusCode.NOT_FOUND)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]


def test_messages_lose_absolute_paths_and_are_cut():
    shown = client_message("cannot read /home/someone/repo/model/1/model.onnx: no such file")
    assert shown == "cannot read model.onnx: no such file"
    assert client_message("cannot open '~/repo/x/config.pbtxt'") == "cannot open 'config.pbtxt'"
    assert client_message("see http://host/a/b and 3/4") == "see http://host/a/b and 3/4"
    assert len(client_message("y" * 50_000)) == MAX_MESSAGE_CHARS


def test_a_model_that_cannot_load_does_not_show_the_servers_folders(stub, repository):
    details = expect_error(stub.ModelInfer, raw_request("corrupt"), grpc.StatusCode.UNAVAILABLE, "corrupt")
    assert str(repository) not in details and "/1/" not in details


# -- the serve flags' caps -----------------------------------------------------------------------


@pytest.fixture(scope="module", params=FRONTS)
def capped(repository, request):
    running = start_server(server_config(repository, grpc_front=request.param, metrics_port=-1,
                                         max_request_elements=1000, max_string_elements=10))
    with grpc.insecure_channel(running.address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)
    running.stop()


def test_the_servers_element_cap_applies_below_the_models(capped):
    request = raw_request("lookup", ids=("INT64", np.ones((4, 300), np.int64)))  # 1,200 > 1,000 < 4,096
    expect_error(capped.ModelInfer, request, TOO_LARGE, "'ids'", "1000 elements", "--max-request-elements")
    typed = pb.ModelInferRequest(model_name="lookup")
    typed.inputs.add(name="ids", datatype="INT64", shape=[1, 1001]).contents.int64_contents.extend([1] * 1001)
    expect_error(capped.ModelInfer, typed, TOO_LARGE, "'ids'", "--max-request-elements")
    fits = raw_request("lookup", ids=("INT64", np.ones((4, 250), np.int64)))
    assert output(capped.ModelInfer(fits, timeout=10), "same").shape == (4, 250)


def test_the_servers_string_cap(capped):
    strings = np.array([[b"a"]] * 11, dtype=object)
    request = pb.ModelInferRequest(model_name="strings", raw_input_contents=[b"\1\0\0\0a" * 11])
    request.inputs.add(name="text", datatype="BYTES", shape=list(strings.shape))
    expect_error(capped.ModelInfer, request, TOO_LARGE, "'text'", "10 BYTES elements", "--max-string-elements")
    request = pb.ModelInferRequest(model_name="strings", raw_input_contents=[b"\1\0\0\0a" * 8])
    request.inputs.add(name="text", datatype="BYTES", shape=[8, 1])
    assert output(capped.ModelInfer(request, timeout=10), "echo").tolist() == [[b"a"]] * 8
