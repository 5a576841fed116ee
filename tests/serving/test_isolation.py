"""Hardening: one bad request, model folder or server part costs nothing to anyone else.

Each test starts the real server on a repository of small ONNX models (some deliberately broken) and
attacks it with a real gRPC client: a request that ONNX Runtime refuses inside a merged batch, one bad
client beside six good ones, corrupt and absurd model folders, load overrides outside the allow list,
an instance thread that dies, a dispatch thread that fails, and shutdown with calls in flight.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from serving.client import Client
from tests.serving.builders import write_model
from tests.serving.conftest import server_config, spawn_server, start_server, wait_until

VOCABULARY = 10
WIDTH = 2
TABLE = np.arange(VOCABULARY * WIDTH, dtype=np.float32).reshape(VOCABULARY, WIDTH)


def lookup_graph():
    """ids [N,1] INT64 -> vectors [N,1,2]: a Gather that ONNX Runtime refuses for an id out of range."""
    ids = h.make_tensor_value_info("ids", T.INT64, ["N", 1])
    vectors = h.make_tensor_value_info("vectors", T.FLOAT, ["N", 1, WIDTH])
    table = h.make_tensor("table", T.FLOAT, list(TABLE.shape), TABLE.reshape(-1).tolist())
    return h.make_graph([h.make_node("Gather", ["table", "ids"], ["vectors"], axis=0)], "lookup", [ids], [vectors], [table])


def lookup_config(name: str, batching: str) -> str:
    return f"""
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ {{ name: "ids" data_type: TYPE_INT64 dims: [ 1 ] }} ]
output [ {{ name: "vectors" data_type: TYPE_FP32 dims: [ 1, {WIDTH} ] }} ]
{batching}
"""


# "full_only": a batch runs only once it holds max_batch_size rows, so four requests surely merge.
MODELS = {
    "full_only": "dynamic_batching { max_queue_delay_microseconds: 60000000 }",
    "lookup": "dynamic_batching { max_queue_delay_microseconds: 2000 }\ninstance_group [ { count: 2 } ]",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("isolation") / "repo"
    for name, batching in MODELS.items():
        write_model(root, name, graph=lookup_graph, config=lookup_config(name, batching))
    running = start_server(server_config(root, grpc_front="native"))
    yield running
    running.stop()


def ids(*values: int) -> dict[str, np.ndarray]:
    return {"ids": np.array(values, np.int64).reshape(-1, 1)}


def attempt(call):
    try:
        return call()
    except grpc.RpcError as error:
        return error


def test_a_request_that_fails_in_a_merged_batch_fails_alone(server):
    requests = [ids(1), ids(2), ids(10**9), ids(3)]
    with Client(server.address, timeout=30) as client, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda r: attempt(lambda: client.infer("full_only", r)), requests))
        stats = client.model_statistics("full_only")[0]
    bad = answers[2]
    assert isinstance(bad, grpc.RpcError) and bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "full_only" in bad.details() and len(bad.details()) < 1024
    for request, answer in zip(requests[:2] + requests[3:], answers[:2] + answers[3:]):
        assert not isinstance(answer, grpc.RpcError), answer
        np.testing.assert_array_equal(answer["vectors"][:, 0], TABLE[request["ids"][:, 0]])
    # The four really were one batch first: the re-runs are single-row executions, none of four rows.
    assert {b.batch_size for b in stats.batch_stats} == {1}
    assert stats.inference_stats.fail.count == 1 and stats.inference_stats.success.count == 3


def test_one_bad_client_beside_six_good_ones_costs_the_good_ones_nothing(server):
    stop = threading.Event()
    bad_sent = [0]

    def bad_client():
        with Client(server.address, timeout=30) as client:
            while not stop.is_set():
                error = attempt(lambda: client.infer("lookup", ids(5, 10**9)))
                assert isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.INVALID_ARGUMENT
                bad_sent[0] += 1

    def good_client(seed: int):
        rng = np.random.default_rng(seed)
        failures = 0
        with Client(server.address, timeout=30) as client:
            for _ in range(60):
                chosen = rng.integers(0, VOCABULARY, size=int(rng.integers(1, 4)))
                answer = attempt(lambda: client.infer("lookup", ids(*chosen)))
                if isinstance(answer, grpc.RpcError) or not np.array_equal(answer["vectors"][:, 0], TABLE[chosen]):
                    failures += 1
        return failures

    with ThreadPoolExecutor(8) as pool:
        bad = [pool.submit(bad_client) for _ in range(2)]
        good = [pool.submit(good_client, seed) for seed in range(6)]
        failures = [f.result(120) for f in good]
        stop.set()
        for f in bad:
            f.result(30)
    assert failures == [0] * 6
    assert bad_sent[0] > 0


def test_a_mismatched_shape_fails_alone_too(server):
    """A request whose ids tensor has a wrong inner dim is refused before queueing (validation)."""
    with Client(server.address, timeout=10) as client:
        error = attempt(lambda: client.infer("lookup", {"ids": np.zeros((1, 2), np.int64)}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- model folders ------------------------------------------------------------------------------

HEALTHY = lookup_config("healthy", "dynamic_batching { }")
BAD_FOLDERS = {
    # name: (config text or bytes, the words its RepositoryIndex reason must contain)
    "not_utf8": (b'name: "not_utf8"\n\xff\xfe\x00 garbage', "UTF-8"),
    "absurd_delay": (lookup_config("absurd_delay", "dynamic_batching { max_queue_delay_microseconds: 99999999999999 }"),
                     "max_queue_delay_microseconds"),
    "many_instances": (lookup_config("many_instances", "instance_group [ { count: 1000000 } ]"), "instance_group"),
    "many_threads": (lookup_config("many_threads", 'parameters { key: "intra_op_thread_count" value { string_value: "100000" } }'),
                     "intra_op_thread_count"),
    "file_writing_entry": (lookup_config("file_writing_entry",
                                         'parameters { key: "session.optimized_model_external_initializers_file_name" '
                                         'value { string_value: "/tmp/x" } }'), "not one this server passes on"),
    "huge_dims": (lookup_config("huge_dims", "").replace("dims: [ 1 ] }", "dims: [ 100000, 100000 ] }", 1), "elements"),
}


@pytest.fixture(scope="module")
def mixed_repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders") / "repo"
    write_model(root, "healthy", graph=lookup_graph, config=HEALTHY)
    for name, (config, _) in BAD_FOLDERS.items():
        folder = write_model(root, name, graph=lookup_graph, config="")
        data = config if isinstance(config, bytes) else config.encode()
        (folder / "config.pbtxt").write_bytes(data)
    labels = write_model(root, "bad_labels", graph=lookup_graph,
                         config=HEALTHY.replace('"healthy"', '"bad_labels"').replace("[ 1, 2 ] }", '[ 1, 2 ] label_filename: "labels.txt" }'))
    (labels / "labels.txt").write_bytes(b"\xff\xff\xff\n")
    not_onnx = write_model(root, "not_onnx", graph=lookup_graph, config=HEALTHY.replace('"healthy"', '"not_onnx"'))
    (not_onnx / "1" / "model.onnx").write_bytes(b"\x08\x07garbage" * 100)
    return root


@pytest.mark.parametrize("mode", ["none", "poll"])
def test_bad_folders_are_their_models_problem_only(mixed_repository, mode):
    running = start_server(server_config(mixed_repository, model_control_mode=mode))
    try:
        with Client(running.address, timeout=10) as client:
            np.testing.assert_array_equal(client.infer("healthy", ids(3))["vectors"][:, 0], TABLE[[3]])
            index = {row.name: row for row in client.repository_index()}
            for name, (_, words) in BAD_FOLDERS.items():
                assert index[name].state == "UNAVAILABLE", name
                assert words in index[name].reason, (name, index[name].reason)
                assert str(mixed_repository) not in index[name].reason
                assert len(index[name].reason) < 1024
                assert not client.model_ready(name)
            for name in ("bad_labels", "not_onnx"):
                assert index[name].state == "UNAVAILABLE", name
                assert str(mixed_repository) not in index[name].reason
            error = attempt(lambda: client.infer("absurd_delay", ids(1)))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            if mode == "poll":  # polling goes on with the rest: a new healthy model appears
                write_model(mixed_repository, "late", graph=lookup_graph, config=HEALTHY.replace('"healthy"', '"late"'))
                try:
                    wait_until(lambda: client.model_ready("late"), what="the new model to load")
                finally:
                    import shutil

                    shutil.rmtree(mixed_repository / "late")
    finally:
        running.stop()


# -- the control plane ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def explicit(tmp_path_factory):
    root = tmp_path_factory.mktemp("explicit") / "repo"
    write_model(root, "lookup", graph=lookup_graph, config=lookup_config("lookup", "dynamic_batching { }"))
    running = start_server(server_config(root, model_control_mode="explicit", load_model=["lookup"]))
    yield running
    running.stop()


@pytest.mark.parametrize("override, words", [
    ('{"parameters": {"session.save_model_format": {"string_value": "ORT"}}}', "cannot be set at load"),
    ('{"instance_group": [{"count": 100000}]}', "instance_group"),
    ('{"dynamic_batching": {"max_queue_delay_microseconds": "99999999999"}}', "max_queue_delay_microseconds"),
    ('{"parameters": {"intra_op_thread_count": {"string_value": "-3"}}}', "intra_op_thread_count"),
    ('{"parameters": {"intra_op_thread_count": {"string_value": "\u00b2"}}}', "'intra_op_thread_count' must be a whole number 0.."),
    ('{"model_warmup": [{"name": "w"}]}', "cannot be overridden"),
])
def test_load_overrides_outside_the_allow_list_are_refused(explicit, override, words):
    from protos import grpc_service_pb2 as pb
    from protos import grpc_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(explicit.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.RepositoryModelLoadRequest(model_name="lookup")
        request.parameters["config"].string_param = override
        with pytest.raises(grpc.RpcError) as error:
            stub.RepositoryModelLoad(request, timeout=30)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in error.value.details()
        # The model loaded before is untouched and serves.
        assert pb_grpc.GRPCInferenceServiceStub(channel).ModelReady(pb.ModelReadyRequest(name="lookup")).ready


# -- failures inside the server -------------------------------------------------------------------

def test_an_instance_thread_that_dies_takes_its_model_out_of_ready(tmp_path):
    root = tmp_path / "repo"
    for name in ("victim", "bystander"):
        write_model(root, name, graph=lookup_graph, config=lookup_config(name, "dynamic_batching { }"))
    running = start_server(server_config(root))
    try:
        victim = running.server.models.resolve("victim")

        def broken(_inputs, _options):  # a bug that escapes every `except Exception`
            raise KeyboardInterrupt("simulated fault in an instance thread")

        victim.batcher.run = broken
        if victim.batcher.side_by_side_run is not None:  # the adaptive plan's other session: a cheap lone batch runs there
            victim.batcher.side_by_side_run = broken
        with Client(running.address, timeout=10) as client:
            error = attempt(lambda: client.infer("victim", ids(1)))
            assert error.code() == grpc.StatusCode.UNAVAILABLE and "instance thread stopped" in error.details()
            wait_until(lambda: not client.model_ready("victim"), what="the victim to leave READY")
            row = next(r for r in client.repository_index() if r.name == "victim")
            assert row.state == "UNAVAILABLE" and "instance thread stopped" in row.reason
            assert attempt(lambda: client.infer("victim", ids(1))).code() == grpc.StatusCode.UNAVAILABLE
            np.testing.assert_array_equal(client.infer("bystander", ids(4))["vectors"][:, 0], TABLE[[4]])
    finally:
        running.stop()


def test_a_failed_dispatch_thread_stops_the_server_with_a_failure(tmp_path):
    root = tmp_path / "repo"
    write_model(root, "lookup", graph=lookup_graph, config=lookup_config("lookup", "dynamic_batching { }"))
    running = start_server(server_config(root, grpc_front="native"))
    server = running.server

    class Broken(dict):
        def get(self, *_):
            raise RuntimeError("simulated fault on the dispatch thread")

    server.front._direct = Broken(server.front._direct)
    with Client(running.address, timeout=5) as client:
        attempt(lambda: client.infer("lookup", ids(1)))
    running.call(server.wait_stopped(), timeout=30)
    assert server.failure and "dispatch thread" in server.failure
    assert not server.plane.ready()
    running.loop.call_soon_threadsafe(running.loop.stop)
    running.thread.join(10)


# -- shutdown -----------------------------------------------------------------------------------

def test_shutdown_finishes_open_streams_and_refuses_new_calls_after_the_delay(tiny_exported):
    running = start_server(server_config(tiny_exported.repository, providers="cpu", grpc_front="native"))
    values: queue.Queue = queue.Queue()
    answers = []

    def observations():
        while (item := values.get(timeout=30)) is not None:
            yield item

    with Client(running.address, timeout=60) as client, Client(running.address, timeout=10) as other:
        stream = client.forecast_stream("waves_sequence", observations())
        reader = threading.Thread(target=lambda: answers.extend(stream), daemon=True)
        reader.start()
        for value in (0.1, 0.2, 0.3):
            values.put(value)
        wait_until(lambda: len(answers) == 3, what="the first answers")
        stopping = asyncio_run_later(running, running.server.stop(grace=20, drain_delay=1.5))
        wait_until(lambda: other.health() == "NOT_SERVING", what="health to turn NOT_SERVING")
        # During the drain delay new calls are still served ...
        assert other.forecast("waves_sequence", [[0.1] * 30]).forecasts
        # ... and the open stream, which needs the model after shutdown began, is answered to the end.
        for value in (0.4, 0.5, 0.6, 0.7):
            values.put(value)
        wait_until(lambda: len(answers) == 7, what="the answers after shutdown began")
        values.put(None)
        reader.join(30)
        assert [a.observations for a in answers] == list(range(1, 8))
        wait_until(lambda: isinstance(attempt(lambda: other.forecast("waves_sequence", [[0.1] * 30])), grpc.RpcError),
                   what="new calls to be refused after the delay")
        stopping.result(60)
    running.loop.call_soon_threadsafe(running.loop.stop)
    running.thread.join(10)


def asyncio_run_later(running, coroutine):
    import asyncio

    return asyncio.run_coroutine_threadsafe(coroutine, running.loop)


def test_requests_that_onnx_runtime_refuses_do_not_flood_the_server_log(tmp_path):
    """ONNX Runtime logs an ERROR line for every failed run unless told not to: a bad client could
    fill the disk, or a full stderr pipe could stall the instance thread that writes it."""
    root = tmp_path / "repo"
    write_model(root, "lookup", graph=lookup_graph, config=lookup_config("lookup", "dynamic_batching { }"))
    process, port, _ = spawn_server(root, "--metrics-port", "-1", "--drain-delay-seconds", "0")
    try:
        with Client(f"127.0.0.1:{port}", timeout=10) as client:
            for _ in range(50):
                assert attempt(lambda: client.infer("lookup", ids(10**9))).code() == grpc.StatusCode.INVALID_ARGUMENT
            np.testing.assert_array_equal(client.infer("lookup", ids(2))["vectors"][:, 0], TABLE[[2]])
        process.terminate()
        assert process.wait(timeout=30) == 0
        rest = process.stderr.read()
        assert "Gather" not in rest and len(rest.splitlines()) < 10, rest[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("front", ["native", "grpcio"])
def test_a_message_that_cannot_be_parsed_is_invalid_argument_on_both_fronts(tmp_path, front, caplog):
    root = tmp_path / "repo"
    write_model(root, "lookup", graph=lookup_graph, config=lookup_config("lookup", "dynamic_batching { }"))
    running = start_server(server_config(root, grpc_front=front))
    garbage = b"\xff\xff\xff\xff not a protobuf message"
    try:
        with grpc.insecure_channel(running.address) as channel:
            unary = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            with pytest.raises(grpc.RpcError) as error:
                unary(garbage, timeout=10)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
            with pytest.raises(grpc.RpcError) as error:
                list(stream(iter([garbage]), timeout=10))
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with Client(running.address, timeout=10) as client:  # and the server serves on
            np.testing.assert_array_equal(client.infer("lookup", ids(1))["vectors"][:, 0], TABLE[[1]])
    finally:
        running.stop()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def steps_graph():
    """steps [1] INT64, x [1,4] -> y = x through a Loop of `steps` identity steps: a run as long as
    the request says, as a graph whose loop count comes from an input runs."""
    body = h.make_graph(
        [h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Identity", ["v_in"], ["v_out"])], "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
         h.make_tensor_value_info("v_in", T.FLOAT, [1, 4])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("v_out", T.FLOAT, [1, 4])])
    scalar, true = h.make_tensor("scalar", T.INT64, [0], []), h.make_tensor("true", T.BOOL, [], [True])
    return h.make_graph([h.make_node("Reshape", ["steps", "scalar"], ["count"]),
                         h.make_node("Loop", ["count", "true", "x"], ["y"], body=body)], "steps",
                        [h.make_tensor_value_info("steps", T.INT64, [1]), h.make_tensor_value_info("x", T.FLOAT, [1, 4])],
                        [h.make_tensor_value_info("y", T.FLOAT, [1, 4])], [scalar, true])


STEPS_CONFIG = """name: "steps"
platform: "onnxruntime_onnx"
input [ { name: "steps" data_type: TYPE_INT64 dims: [ 1 ] }, { name: "x" data_type: TYPE_FP32 dims: [ 1, 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1, 4 ] } ]
"""


def steps(count: int) -> dict[str, np.ndarray]:
    return {"steps": np.array([count], np.int64), "x": np.arange(4, dtype=np.float32).reshape(1, 4)}


@pytest.mark.parametrize("front", ["native", "grpcio"])
def test_a_request_whose_run_never_ends_holds_nobody_and_is_stopped(tmp_path, front):
    """A loop count of 10**13 from the request: its run would never end. Before the run watch, on
    the native front it ran on the dispatch thread and no model answered again."""
    from tests.serving.rest_client import Http

    root = tmp_path / "repo"
    write_model(root, "lookup", graph=lookup_graph, config=lookup_config("lookup", "dynamic_batching { }"))
    write_model(root, "steps", graph=steps_graph, config=STEPS_CONFIG)
    running = start_server(server_config(root, grpc_front=front, max_run_seconds=2.0))
    try:
        with Client(running.address, timeout=10) as client, ThreadPoolExecutor(4) as pool:
            for _ in range(3):  # measured cheap: on the native front, later ones run on the dispatch thread
                np.testing.assert_array_equal(client.infer("steps", steps(10))["y"], steps(0)["x"])
            endless = [pool.submit(attempt, lambda: client.infer("steps", steps(10**13), timeout=1)) for _ in range(3)]
            for value in range(6):  # every other model answers meanwhile
                np.testing.assert_array_equal(client.infer("lookup", ids(value))["vectors"][:, 0], TABLE[[value]])
            for future in endless:  # more than the model's instances...
                assert future.result().code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # ... and each run was stopped once its deadline passed: the model answers again
            np.testing.assert_array_equal(client.infer("steps", steps(10))["y"], steps(0)["x"])
            error = attempt(lambda: client.infer("steps", steps(10**13), timeout=30))  # no deadline: the server's bound
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "--max-run-seconds" in error.details()
            body = {"inputs": [{"name": "steps", "datatype": "INT64", "shape": [1], "data": [10**13]},
                               {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0, 1, 2, 3]}]}
            assert "2 s" in Http(running.server.http_port).error(504, Http(running.server.http_port).post("/v2/models/steps/infer", body))
            np.testing.assert_array_equal(client.infer("steps", steps(10))["y"], steps(0)["x"])
    finally:
        running.stop()


def test_a_greedy_client_meets_the_held_bytes_cap_and_everything_is_given_back(tmp_path):
    """Requests queued at a model that waits for full batches hold their inputs; past
    --max-queued-mb the next one is RESOURCE_EXHAUSTED, and once they are answered the budget is free."""
    root = tmp_path / "repo"
    write_model(root, "full_only", graph=lookup_graph, config=lookup_config("full_only", MODELS["full_only"]))
    write_model(root, "lookup", graph=lookup_graph, config=lookup_config("lookup", "dynamic_batching { }"))
    running = start_server(server_config(root, max_queued_mb=1))
    big = ids(*([1] * 4))  # 4 rows of int64: 32 bytes, far under the cap
    try:
        plane = running.server.plane
        with Client(running.address, timeout=30) as client, ThreadPoolExecutor(4) as pool:
            plane.held.take((1 << 20) - 40)  # as if other requests held all but 40 bytes
            waiting = [pool.submit(client.infer, "full_only", ids(1)) for _ in range(2)]  # 8 bytes each
            wait_until(lambda: plane.held.total == (1 << 20) - 24, what="two requests to be held")
            error = attempt(lambda: client.infer("lookup", big))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-queued-mb" in error.details()
            plane.held.give_back((1 << 20) - 40)
            more = [pool.submit(client.infer, "full_only", ids(1)) for _ in range(2)]  # fills the batch of 4
            for future in waiting + more:
                np.testing.assert_array_equal(future.result(30)["vectors"][:, 0], TABLE[[1]])
            np.testing.assert_array_equal(client.infer("lookup", big)["vectors"][:, 0], TABLE[[1, 1, 1, 1]])
        assert plane.held.total == 0
    finally:
        running.stop()
