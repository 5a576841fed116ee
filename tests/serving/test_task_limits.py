"""Operator caps on typed calls, and fair admission of one call's chunks, on a real server.

Caps: a server started with small caps refuses each typed call one item over its cap with
RESOURCE_EXHAUSTED and a message naming the serve flag, before any work (the refused calls carry
items that would fail later: garbage images, unknown words, NaNs), and serves a call exactly at the
cap. Fairness: on a slow model with small batches, one call's many chunks are admitted a few at a
time, so another client's small call finishes first; a failing chunk cancels the call's other
chunks, which then never run (the model's execution count says so).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from serving.client import Client
from serving.limits import MAX_MESSAGE_CHARS
from serving.tasks.catalog import in_window
from tests.serving.conftest import server_config, start_server, wait_until

TOO_LARGE = grpc.StatusCode.RESOURCE_EXHAUSTED
CAPS = dict(
    max_images=4, max_words=3, max_word_pairs=2, max_series=3, max_series_length=50, max_stream_values=5,
    max_generate_count=4, max_forecast_horizon=40,
)  # fmt: skip
TRAINED_HORIZON = 10  # waves_sequence's dnnzoo.horizon at the tiny profile


@pytest.fixture(scope="module")
def capped(tiny_exported):
    running = start_server(server_config(tiny_exported.repository, providers="cpu", **CAPS))
    with Client(running.address, timeout=60) as client:
        yield client
    running.stop()


@pytest.fixture(scope="module")
def words(tiny_exported) -> list[str]:
    vocabulary = (tiny_exported.repository / "pydoc_word2vec" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return vocabulary[:8]


def _refused(call) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        result = call()
        if not hasattr(result, "ByteSize"):  # a stream: its status arrives while reading it
            list(result)
    error = caught.value
    assert error.code() == TOO_LARGE, error.details()
    assert len(error.details()) <= MAX_MESSAGE_CHARS
    return error.details()


def _pixels(count: int, value: int = 7) -> list[np.ndarray]:
    return [np.full((28, 28), value, np.uint8) for _ in range(count)]


GARBAGE = b"not an image at all"


@pytest.mark.parametrize("service", ["classify", "detect", "encode", "reconstruct"])
def test_images_over_the_cap_are_refused_before_decoding(capped, service):
    method = getattr(capped, service)
    model = {"classify": "digits_classifier", "detect": "digits_detector"}.get(service, "digits_autoencoder")
    name = {"classify": "Classify", "detect": "Detect", "encode": "Encode", "reconstruct": "Reconstruct"}[service]
    message = _refused(lambda: method(model, [GARBAGE] * 5))
    assert message == f"{name}: 5 images in one call; the server's cap is 4 (--max-images)"
    reply = method(model, _pixels(4))
    assert len(getattr(reply, "results", None) or getattr(reply, "codes", None) or reply.reconstructions) == 4


def test_words_over_the_cap_are_refused_before_lookup(capped, words):
    message = _refused(lambda: capped.get_vectors("pydoc_word2vec", ["xyzzy"] * 4))
    assert message == "GetVectors: 4 words in one call; the server's cap is 3 (--max-words)"
    assert len(capped.get_vectors("pydoc_word2vec", words[:3]).vectors) == 3

    message = _refused(lambda: capped.most_similar("pydoc_word2vec", ["xyzzy", "plugh"], ["foo", "bar"]))
    assert "MostSimilar: 4 words (positive and negative) in one call" in message and "cap is 3 (--max-words)" in message
    assert len(capped.most_similar("pydoc_word2vec", words[:2], words[2:3], top_k=2).neighbors) == 2

    pairs = [("xyzzy", "plugh")] * 3
    message = _refused(lambda: capped.similarity("pydoc_word2vec", pairs))
    assert message == "Similarity: 3 word pairs in one call; the server's cap is 2 (--max-word-pairs)"
    assert len(capped.similarity("pydoc_word2vec", [(words[0], words[1]), (words[2], words[3])]).cosines) == 2


def test_series_caps(capped):
    nan = float("nan")
    message = _refused(lambda: capped.forecast("waves_sequence", [[nan]] * 4))
    assert message == "Forecast: 4 series in one call; the server's cap is 3 (--max-series)"
    message = _refused(lambda: capped.forecast("waves_sequence", [[0.1], [nan] * 51]))
    assert message == "Forecast: 51 values in series 1; the server's cap is 50 (--max-series-length)"
    message = _refused(lambda: capped.forecast("waves_sequence", [[nan]], horizon=41))
    assert "the server's cap is 40 (--max-forecast-horizon)" in message
    at_cap = capped.forecast("waves_sequence", [np.linspace(0, 1, 50).tolist()] * 3)  # 150 model steps: the budget
    assert len(at_cap.forecasts) == 3 and not at_cap.fed_back


def test_feeding_back_is_bounded_by_the_series_budget(capped):
    series = [np.linspace(0, 1, 50).tolist()]
    # horizon 20: two rounds of 50 and 60 steps = 110 <= 3 x 50; horizon 30: 50 + 60 + 70 = 180 > 150
    fed = capped.forecast("waves_sequence", series, horizon=2 * TRAINED_HORIZON)
    assert fed.fed_back and len(fed.forecasts[0].values) == 2 * TRAINED_HORIZON
    message = _refused(lambda: capped.forecast("waves_sequence", series, horizon=3 * TRAINED_HORIZON))
    assert "180 model steps; the server's cap is 150 (--max-series x --max-series-length)" in message


def test_stream_values_per_message(capped):
    message = _refused(lambda: capped.forecast_stream("waves_sequence", [[0.1, 0.2], [0.0] * 6]))
    assert message == "ForecastStream: 6 values in one message; the server's cap is 5 (--max-stream-values)"
    answers = list(capped.forecast_stream("waves_sequence", [[0.1] * 5, [0.2] * 5]))
    assert [a.observations for a in answers] == [5, 10]


def test_generate_count_and_latents(capped):
    message = _refused(lambda: capped.generate("digits_gan", 5))
    assert message == "Generate: 5 images in one call; the server's cap is 4 (--max-generate-count)"
    assert "(--max-generate-count)" in _refused(lambda: capped.generate("digits_gan", latents=[[0.0]] * 5))
    assert len(capped.generate("digits_gan", 4, seed=3).images) == 4


# -- fair admission of one call's chunks -------------------------------------------------------------

SLOW_CONFIG = """
name: "slow_classifier"
platform: "onnxruntime_onnx"
max_batch_size: 2
input [ { name: "images" data_type: TYPE_UINT8 dims: [ 1, 28, 28 ] } ]
output [ { name: "probabilities" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
parameters { key: "dnnzoo.task" value { string_value: "classification" } }
"""
BIG = 96  # images of the big call: 48 chunks of max_batch_size 2
FAILING = 255  # a pixel of this value makes the slow classifier fail (its Gather index is out of range)


def slow_classifier_graph(work: int = 512, rounds: int = 12):
    """images uint8 [N,1,28,28] -> probabilities [N,4]: some milliseconds of matrix products per
    execution (so that a call of many chunks takes a while), failing on any pixel of 255."""
    images = h.make_tensor_value_info("images", T.UINT8, ["N", 1, 28, 28])
    probabilities = h.make_tensor_value_info("probabilities", T.FLOAT, ["N", 4])
    rng = np.random.default_rng(0)
    weights = [
        nh.from_array((rng.standard_normal((28 * 28, 4)) * 0.01).astype(np.float32), "w"),
        nh.from_array((rng.standard_normal((work, work)) / work).astype(np.float32), "m"),
        nh.from_array(np.zeros(FAILING, np.float32), "table"),  # indices 0..254
        nh.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [
        h.make_node("Cast", ["images"], ["x"], to=T.FLOAT),
        h.make_node("Flatten", ["x"], ["flat"], axis=1),
        h.make_node("MatMul", ["flat", "w"], ["logits"]),
        h.make_node("ReduceMean", ["x"], ["mean"], keepdims=0),
        h.make_node("Mul", ["m", "mean"], ["a0"]),  # depends on the input: nothing to fold at load
        *[h.make_node("MatMul", [f"a{i}", "m"], [f"a{i + 1}"]) for i in range(rounds)],
        h.make_node("ReduceSum", [f"a{rounds}"], ["busy"], keepdims=0),
        h.make_node("ReduceMax", ["x"], ["brightest"], keepdims=0),
        h.make_node("Cast", ["brightest"], ["index"], to=T.INT64),
        h.make_node("Gather", ["table", "index"], ["picked"]),
        h.make_node("Add", ["busy", "picked"], ["noise"]),
        h.make_node("Mul", ["noise", "zero"], ["nothing"]),
        h.make_node("Add", ["logits", "nothing"], ["shifted"]),
        h.make_node("Softmax", ["shifted"], ["probabilities"], axis=1),
    ]
    return h.make_graph(nodes, "slow_classifier", [images], [probabilities], weights)


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow") / "repo"
    folder = root / "slow_classifier"
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(SLOW_CONFIG, encoding="utf-8")
    model = h.make_model(slow_classifier_graph(), opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(folder / "1" / "model.onnx"))
    running = start_server(server_config(root, providers="cpu", max_images=BIG))
    yield running
    running.stop()


def _executions(client: Client) -> int:
    return client.model_statistics("slow_classifier")[0].execution_count


def test_a_small_call_is_not_queued_behind_a_big_calls_chunks(slow_server):
    finished: list[str] = []
    with Client(slow_server.address, timeout=120) as big_client, Client(slow_server.address, timeout=120) as small_client:
        before = _executions(small_client)
        with ThreadPoolExecutor(2) as pool:
            big = pool.submit(big_client.classify, "slow_classifier", _pixels(BIG), 1)
            big.add_done_callback(lambda _: finished.append("big"))
            wait_until(lambda: _executions(small_client) > before, what="the big call's first chunk to run")
            small = pool.submit(small_client.classify, "slow_classifier", _pixels(1), 1)
            small.add_done_callback(lambda _: finished.append("small"))
            assert len(small.result().results) == 1 and len(big.result().results) == BIG
        assert _executions(small_client) - before == BIG // 2 + 1
    assert finished == ["small", "big"]  # queued behind all 48 chunks, the small call would finish last


def test_a_failing_chunk_cancels_the_calls_other_chunks(slow_server):
    images = _pixels(BIG)
    images[7][0, 0] = FAILING  # chunk 3 (images 6 and 7) fails; chunks 0-2 run before it
    with Client(slow_server.address, timeout=120) as client:
        before = _executions(client)
        with pytest.raises(grpc.RpcError) as caught:
            client.classify("slow_classifier", images, 1)
        assert caught.value.code() not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED)
        # One instance runs the queue in order: once this call is answered, nothing of the failed
        # call is left queued, and any chunk of it still queued would have run before.
        assert len(client.classify("slow_classifier", _pixels(1), 1).results) == 1
        ran = _executions(client) - before
    assert ran <= 3 + 1 + 1, f"{ran} executions: the chunks after the failing one ran"  # 3 chunks, the window's next, the last call


# -- the admission helper itself -----------------------------------------------------------------------


def test_in_window_keeps_order_and_at_most_window_jobs_at_once():
    running, most, release = 0, 0, None

    async def job(i: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return i * i

    async def main():
        nonlocal release
        release = asyncio.Event()
        task = asyncio.ensure_future(in_window([lambda i=i: job(i) for i in range(7)], 3))
        while running < 3:
            await asyncio.sleep(0)
        release.set()
        return await task

    assert asyncio.run(main()) == [i * i for i in range(7)]
    assert most == 3


def test_in_window_first_failure_cancels_running_jobs_and_starts_no_more():
    started, cancelled = [], []

    async def job(i: int):
        started.append(i)
        if i == 1:
            raise ValueError("chunk 1 failed")
        try:
            await asyncio.Event().wait()  # never set: only cancellation ends it
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    with pytest.raises(ValueError, match="chunk 1 failed"):
        asyncio.run(in_window([lambda i=i: job(i) for i in range(6)], 2))
    assert started == [0, 1] and cancelled == [0]


def test_in_window_cancelled_caller_cancels_its_jobs():
    cancelled = []

    async def job(i: int):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    async def main():
        task = asyncio.ensure_future(in_window([lambda i=i: job(i) for i in range(5)], 2))
        while len(asyncio.all_tasks()) < 4:  # main, the window, its two jobs
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert sorted(cancelled) == [0, 1]

