"""The pygrpc-native front: which methods it serves itself, what it hands to grpc.aio behind it,
how it is chosen, and how it drains on shutdown. The protocol itself is tested on both fronts by the
shared `served` fixture (tests/serving/conftest.py)."""

from __future__ import annotations

import struct
import time

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from dnnzoo.errors import UserError
from protos import grpc_service_pb2 as pb
from protos import grpc_service_pb2_grpc as pb_grpc
from serving.config import ServeConfig
from serving import native_front
from serving.native_front import HOLD_MS, POLL_AFTER_ANSWER_S, NativeFront
from serving.wake_latency import WakeLatency
from serving.server import use_native_front
from tests.serving.conftest import server_config, start_server, wait_until
from tests.serving.test_protocol import output, raw_request

INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def native(repository):
    running = start_server(server_config(repository, providers="cpu", grpc_front="native"))
    yield running
    running.stop()


def test_unary_methods_are_native_and_the_rest_goes_behind(native):
    served_natively = {method.path for method in native.server.front.methods}
    assert INFER in served_natively and "/dnnzoo.v1.ImageClassification/Classify" in served_natively
    assert "/inference.GRPCInferenceService/ModelStreamInfer" not in served_natively  # a bidi stream
    assert not any(path.startswith("/grpc.") for path in served_natively)  # health, reflection
    with grpc.insecure_channel(native.address) as channel:
        # Through the front to grpc.aio on its Unix socket, on the same public port.
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stream = stub.ModelStreamInfer(iter([raw_request("doubler", x=("FP32", np.ones((1, 4), np.float32)))]))
        answer = next(stream)
        assert answer.error_message == "" and output(answer.infer_response, "y").tolist() == [[2.0] * 4]
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        listed = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        assert "inference.GRPCInferenceService" in {s.name for s in listed.list_services_response.service}


def test_unknown_method_is_unimplemented_through_the_front(native):
    with grpc.insecure_channel(native.address) as channel:
        missing = channel.unary_unary("/inference.GRPCInferenceService/NoSuchMethod")
        with pytest.raises(grpc.RpcError) as caught:
            missing(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_malformed_message_is_refused_and_the_server_keeps_serving(native):
    with grpc.insecure_channel(native.address) as channel:
        infer = channel.unary_unary(INFER)  # bytes in, bytes out
        with pytest.raises(grpc.RpcError) as caught:
            infer(b"\xff\xff\xff", timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "parse" in caught.value.details()
        good = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            raw_request("doubler", x=("FP32", np.ones((1, 4), np.float32))), timeout=10)
        assert output(good, "y").tolist() == [[2.0] * 4]


def test_choice_of_front():
    assert use_native_front(ServeConfig(grpc_front="auto"))  # installed with the base dependencies
    assert not use_native_front(ServeConfig(grpc_front="grpcio"))
    assert not use_native_front(ServeConfig(grpc_front="auto", tls_cert="cert.pem", tls_key="key.pem"))
    with pytest.raises(UserError, match="--grpc-front"):
        ServeConfig(grpc_front="rust").check()


def test_native_front_with_tls_is_refused(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    with pytest.raises(UserError, match="no TLS"):
        ServeConfig(grpc_front="native", tls_cert=cert, tls_key=key).check()


@pytest.mark.parametrize("attempt", range(5))  # the answers race the port closing: give a regression chances
def test_stop_finishes_queued_requests_and_refuses_new_ones(repository, attempt):
    running = start_server(server_config(repository, providers="cpu", grpc_front="native"))
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            inputs = [np.full((1, 2), i, np.float32) for i in (1, 2)]
            # 'held' waits a minute for a full batch: both sit in its queue until shutdown runs them
            futures = [stub.ModelInfer.future(raw_request("held", x=("FP32", x)), timeout=60) for x in inputs]
            wait_until(lambda: running.server.models.resolve("held").batcher.queued == 2, what="two queued")

            running.call(running.server.stop(20))  # runs the queue, answers, then closes the port
            for x, future in zip(inputs, futures):  # answered, not cut off by the port closing
                np.testing.assert_array_equal(output(future.result(), "y"), x + 1)
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(raw_request("doubler", x=("FP32", np.ones((1, 4), np.float32))), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        running.loop.call_soon_threadsafe(running.loop.stop)
        running.thread.join(10)


def test_concurrent_calls_reach_the_batcher_together(repository):
    """Calls that arrive together merge: the dispatch thread queues a batch of calls before an
    instance thread, which needs the GIL it holds meanwhile, can take the first alone."""
    running = start_server(server_config(repository, providers="cpu", grpc_front="native"))
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            inputs = [np.full((1, 4), i, np.float32) for i in range(16)]
            for _ in range(20):  # arrival times are up to the OS; a few rounds make a merge certain
                futures = [stub.ModelInfer.future(raw_request("doubler", x=("FP32", x)), timeout=30) for x in inputs]
                for x, future in zip(inputs, futures):
                    np.testing.assert_array_equal(output(future.result(), "y"), x * 2)
                if max(b.batch_size for b in _stats(stub, "doubler").batch_stats) > 1:
                    break
            assert max(b.batch_size for b in _stats(stub, "doubler").batch_stats) > 1
    finally:
        running.stop()


class PollCounter:
    """The real front, counting the dispatch thread's asks that do not wait (timeout 0)."""

    def __init__(self, front) -> None:
        self.front, self.polls = front, 0

    def recv_batch_details(self, max_events, timeout_ms=None):
        self.polls += timeout_ms == 0
        return self.front.recv_batch_details(max_events, timeout_ms)

    def __getattr__(self, name):
        return getattr(self.front, name)


def test_dispatch_thread_does_not_poll_after_a_long_wait_or_while_a_call_is_open(native, monkeypatch):
    """The two limits of the dispatch thread's polling (POLL_AFTER_ANSWER_S), on the real server:
    a client that pauses costs no polling, and neither does a call answered while another is open."""
    front = native.server.front
    counter = PollCounter(front._front)
    front._front = counter
    try:
        with grpc.insecure_channel(native.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            x = np.arange(4, dtype=np.float32).reshape(1, 4)
            np.testing.assert_array_equal(output(stub.ModelInfer(raw_request("doubler", x=("FP32", x)), timeout=10), "y"), x * 2)
            time.sleep(20 * POLL_AFTER_ANSWER_S)  # a client that pauses: the thread's wait outlasts the window
            counter.polls = 0
            # answered on the dispatch thread (an idle, cheap model); its last wait was long: no polling
            np.testing.assert_array_equal(output(stub.ModelInfer(raw_request("doubler", x=("FP32", x)), timeout=10), "y"), x * 2)
            time.sleep(20 * POLL_AFTER_ANSWER_S)
            assert counter.polls == 0

            waiting = stub.ModelInfer.future(raw_request("held", x=("FP32", np.ones((1, 2), np.float32))), timeout=30)
            wait_until(lambda: native.server.models.resolve("held").batcher.queued == 1, what="one queued")
            # a window that any turnaround fits in, so only the open call can keep the thread from polling
            monkeypatch.setattr(native_front, "POLL_AFTER_ANSWER_S", 0.5)
            counter.polls = 0
            for _ in range(3):
                np.testing.assert_array_equal(output(stub.ModelInfer(raw_request("doubler", x=("FP32", x)), timeout=10), "y"), x * 2)
            assert counter.polls == 0
            monkeypatch.undo()
            waiting.cancel()
            wait_until(lambda: native.server.models.resolve("held").batcher.queued == 0, what="the held call dropped")
    finally:
        front._front = counter.front


class ScriptedFront:
    """pygrpc-native's front as `_next_events` sees it: asks without waiting answer from `polls`
    (then nothing), asks with a timeout from `timed` (then nothing: the timeout passed), a waiting
    ask answers one call after `blocking_s`."""

    def __init__(self, polls=(), blocking_s: float = 0.0, timed=()) -> None:
        self.polls, self.blocking_s, self.asked, self.timed = list(polls), blocking_s, [], list(timed)

    def recv_batch_details(self, max_events, timeout_ms=None):
        self.asked.append(timeout_ms)
        if timeout_ms == 0:
            return self.polls.pop(0) if self.polls else []
        if timeout_ms is not None:
            return self.timed.pop(0) if self.timed else []
        time.sleep(self.blocking_s)
        return ["a call"]


def next_events(scripted: ScriptedFront, all_answered: bool, last_wait_s: float = 0.0, wake: WakeLatency | None = None):
    front = NativeFront.__new__(NativeFront)  # only the fields `_next_events` uses
    front._front, front._last_wait_s, front._wake = scripted, last_wait_s, wake or WakeLatency(enabled=False)
    return front._next_events(all_answered), front._last_wait_s


def test_while_the_cores_are_held_awake_a_quiet_wait_lets_them_go_then_sleeps(tmp_path):
    """serving/wake_latency.py: held from a call's arrival until HOLD_MS pass without another."""
    device = tmp_path / "cpu_dma_latency"
    device.touch()
    wake = WakeLatency(device=str(device))
    wake.hold()
    scripted = ScriptedFront(timed=[["a call"]])  # a call within the hold: still held
    assert next_events(scripted, all_answered=False, wake=wake)[0] == ["a call"]
    assert scripted.asked == [HOLD_MS] and wake.held
    scripted = ScriptedFront()  # none: let go, then wait without a bound
    assert next_events(scripted, all_answered=False, wake=wake)[0] == ["a call"]
    assert scripted.asked == [HOLD_MS, None] and not wake.held
    assert [v for (v,) in struct.iter_unpack("i", device.read_bytes())] == [2_000_000_000, 0, 2_000_000_000]


def test_polling_finds_a_call_that_comes_within_the_window():
    scripted = ScriptedFront(polls=[[], [], ["a call"]])
    events, last_wait_s = next_events(scripted, all_answered=True)
    assert events == ["a call"] and scripted.asked == [0, 0, 0] and last_wait_s < POLL_AFTER_ANSWER_S


def test_polling_ends_with_the_window_and_a_long_wait_stops_the_next_poll():
    scripted = ScriptedFront(blocking_s=3 * POLL_AFTER_ANSWER_S)
    events, last_wait_s = next_events(scripted, all_answered=True)
    assert events == ["a call"] and scripted.asked[0] == 0 and scripted.asked[-1] is None
    assert last_wait_s >= 3 * POLL_AFTER_ANSWER_S
    scripted.asked.clear()
    assert next_events(scripted, all_answered=True, last_wait_s=last_wait_s)[0] == ["a call"]
    assert scripted.asked == [None]  # waited at once


def test_no_polling_unless_the_thread_answered_calls_itself():
    scripted = ScriptedFront(polls=[["a call"]])
    assert next_events(scripted, all_answered=False)[0] == ["a call"] and scripted.asked == [None]


def test_a_front_closed_while_polling_ends_the_wait():
    scripted = ScriptedFront(polls=[[], None])
    assert next_events(scripted, all_answered=True)[0] is None and scripted.asked == [0, 0]


def _stats(stub, model: str) -> pb.ModelStatistics:
    return stub.ModelStatistics(pb.ModelStatisticsRequest(name=model), timeout=10).model_stats[0]


def test_large_raw_inputs_are_read_in_place_and_large_typed_ones_parsed_off_the_dispatch_thread(tmp_path, monkeypatch):
    """A request's raw inputs are split off its payload (serving.wire), so one of any size is parsed
    on the dispatch thread; a large typed one, or one with many strings to convert, still goes to the
    decoder thread. All are answered right, and a wrong one among them fails alone."""
    from serving.codec import encode_bytes
    from serving.limits import INLINE_PAYLOAD_BYTES
    from tests.serving.builders import doubler_graph, write_model

    width = INLINE_PAYLOAD_BYTES // 4 + 1000  # one row is over the inline limit
    write_model(tmp_path, "wide", graph=lambda: doubler_graph(width), config=f"""
name: "wide"
platform: "onnxruntime_onnx"
max_batch_size: 2
input [ {{ name: "x" data_type: TYPE_FP32 dims: [ {width} ] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ {width} ] }} ]
""")
    def strings_graph():  # text [N, L] -> echo [N, L]
        from onnx import TensorProto as T
        from onnx import helper as h

        text, echo = (h.make_tensor_value_info(name, T.STRING, ["N", "L"]) for name in ("text", "echo"))
        return h.make_graph([h.make_node("Identity", ["text"], ["echo"])], "echo", [text], [echo])

    write_model(tmp_path, "echo", graph=strings_graph, config="""
name: "echo"
platform: "onnxruntime_onnx"
max_batch_size: 1
input [ { name: "text" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "echo" data_type: TYPE_STRING dims: [ -1 ] } ]
""")
    handed_off = []
    decode_later = NativeFront._decode_later
    monkeypatch.setattr(NativeFront, "_decode_later", lambda self, *args: (handed_off.append(args[1]), decode_later(self, *args)))
    running = start_server(server_config(tmp_path, providers="cpu", grpc_front="native"))
    try:
        rng = np.random.default_rng(0)
        with grpc.insecure_channel(running.address, options=[("grpc.max_send_message_length", 64 << 20),
                                                              ("grpc.max_receive_message_length", 64 << 20)]) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            for rows in (1, 2):
                x = rng.standard_normal((rows, width)).astype(np.float32)
                answer = stub.ModelInfer(raw_request("wide", x=("FP32", x)), timeout=30)
                np.testing.assert_array_equal(output(answer, "y"), x * 2)
            assert handed_off == []  # raw: parsed where it arrived
            typed = pb.ModelInferRequest(model_name="wide")
            tensor = typed.inputs.add(name="x", datatype="FP32", shape=[1, width])
            tensor.contents.fp32_contents.extend(x[0].tolist())
            answer = stub.ModelInfer(typed, timeout=30)
            np.testing.assert_array_equal(output(answer, "y"), x[:1] * 2)
            assert len(handed_off) == 1  # typed contents take time to convert: off the dispatch thread
            words = np.array([[b"w%d" % i for i in range(INLINE_PAYLOAD_BYTES // 6)]], dtype=object)
            strings = pb.ModelInferRequest(model_name="echo")
            strings.inputs.add(name="text", datatype="BYTES", shape=list(words.shape))
            strings.raw_input_contents.append(encode_bytes(words))
            answer = stub.ModelInfer(strings, timeout=30)
            assert output(answer, "echo").tolist() == words.tolist()
            assert len(handed_off) == 2  # raw, but a Python object per string: off the dispatch thread too
            short = raw_request("wide", x=("FP32", x[:1]))
            short.raw_input_contents[0] = short.raw_input_contents[0][:-4]  # one value short
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(short, timeout=30)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "raw content" in caught.value.details()
            answer = stub.ModelInfer(raw_request("wide", x=("FP32", x[:1])), timeout=30)
            np.testing.assert_array_equal(output(answer, "y"), x[:1] * 2)
    finally:
        running.stop()
