"""The execution plan: a config's instance count and intra-op threads win; what it leaves out spans the cores."""

from __future__ import annotations

import pytest
from protos import config_text, contract

from serving import plan
from serving.plan import DEFAULT_INSTANCES, plan_for


def _config(text: str = ""):
    return config_text.parse_config('name: "m" platform: "onnxruntime_onnx" max_batch_size: 8 ' + text)


def _threads(n: int) -> str:
    return f'parameters {{ key: "intra_op_thread_count" value {{ string_value: "{n}" }} }}'


@pytest.mark.parametrize("text, cores, instances, threads, side_by_side", [
    ("", 2, DEFAULT_INSTANCES, 2, 1),                         # a plain config: adapts (alone: every core)
    ("", 8, DEFAULT_INSTANCES, 8, 4),                         # side by side: the cores divided
    ("", 1, DEFAULT_INSTANCES, 1, None),                      # one core: nothing to divide, one session
    ("instance_group [{ kind: KIND_AUTO }]", 4, DEFAULT_INSTANCES, 4, 2),  # a group without a count
    ("instance_group [{ count: 4 }]", 8, 4, 2, None),         # the cores divided among the instances given
    ("instance_group [{ count: 3 }]", 2, 3, 1, None),         # never fewer than one thread
    (_threads(1), 8, DEFAULT_INSTANCES, 1, None),             # threads given: the default instances
    ("instance_group [{ count: 1 }] " + _threads(3), 8, 1, 3, None),  # both given: exactly those (Triton)
    (_threads(0), 4, DEFAULT_INSTANCES, 4, None),             # 0 is ONNX Runtime's "one per core"
])  # fmt: skip
def test_a_configs_choices_win_and_the_rest_adapts(text, cores, instances, threads, side_by_side):
    chosen = plan_for(_config(text), cores)
    assert (chosen.instances, chosen.intra_op_threads, chosen.side_by_side_threads) == (instances, threads, side_by_side)


@pytest.mark.parametrize("text, gpus, instances", [
    ("instance_group [{ kind: KIND_GPU count: 2 gpus: [ 0, 1 ] }]", 0, 4),   # Triton: count on each GPU listed
    ("instance_group [{ kind: KIND_GPU count: 3 }]", 2, 6),                  # none listed: on each visible GPU
    ("instance_group [{ kind: KIND_GPU count: 3 }]", 0, 3),                  # none visible: the count, on the CPU
    ("instance_group [{ kind: KIND_GPU count: 1 gpus: [ 0 ] }, { kind: KIND_CPU count: 2 }]", 1, 3),
])  # fmt: skip
def test_gpu_groups_count_their_instances_per_gpu(text, gpus, instances):
    assert plan_for(_config(text), 8, gpus=gpus).instances == instances


def test_a_bad_thread_count_names_the_parameter():
    with pytest.raises(ValueError, match="intra_op_thread_count"):
        plan_for(_config('parameters { key: "intra_op_thread_count" value { string_value: "many" } }'), 2)


def test_a_plain_config_is_served_with_the_adaptive_plan_and_reports_it(stub, served):
    """No count, no threads: every core for a batch alone (spinning within a run), a second session
    with the cores divided for batches side by side (none on one core), reported in ModelConfig."""
    from protos import grpc_service_pb2 as pb

    from serving import sessions

    config = stub.ModelConfig(pb.ModelConfigRequest(name="merger")).config  # no instance_group, no threads
    loaded = served.server.models.resolve("merger")
    expected = plan_for(loaded.spec.config)
    assert [group.count for group in config.instance_group] == [DEFAULT_INSTANCES]
    assert config.parameters["intra_op_thread_count"].string_value == str(plan.usable_cores())
    assert loaded.runtime.intra_op_threads == plan.usable_cores() == expected.intra_op_threads
    if expected.side_by_side_threads is None:  # one usable core: nothing to divide
        assert loaded.side_by_side is None and contract.SIDE_BY_SIDE_THREADS not in config.parameters
    else:
        side = loaded.side_by_side.session.get_session_options().intra_op_num_threads
        assert side == expected.side_by_side_threads < expected.intra_op_threads
        assert config.parameters[contract.SIDE_BY_SIDE_THREADS].string_value == str(side)
        assert loaded.side_by_side.warm_run_ns > 0 and loaded.runtime.warm_run_ns > 0  # timed at load, both
        assert loaded.batcher._probe is not None  # its requests have one shape: lone single rows settle their session
        spins = [loaded.runtime.session.get_session_options().get_session_config_entry(key)
                 for key in ("session.intra_op.allow_spinning", "session.force_spinning_stop")]
        assert spins == ["1", "1"]  # it runs batches alone: its workers spin, within a run only
        placement = sessions.pool_placement(expected.intra_op_threads)  # its workers pinned, its caller held apart
        assert loaded.runtime.session.get_session_options().get_session_config_entry(sessions.AFFINITIES) == placement.workers
        assert loaded.runtime.caller_cores == placement.caller and loaded.side_by_side.caller_cores is None
    assert loaded.batcher.side_by_side_run == (loaded.side_by_side and loaded.side_by_side.run)
    doubler = served.server.models.resolve("doubler")  # a count given: the config's plan, one session
    assert doubler.side_by_side is None and doubler.batcher.side_by_side_run is None
    assert doubler.runtime.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert doubler.runtime.caller_cores is None  # the config's plan: nothing pinned (Triton's semantics)


def test_a_model_too_large_to_hold_twice_keeps_one_session(tmp_path, monkeypatch):
    """The adaptive plan's second session holds the weights once more: not for a model over the limit
    (its file and what lies beside it, where ONNX external data lives)."""
    from types import SimpleNamespace

    from serving import sessions

    monkeypatch.setattr(plan, "usable_cores", lambda: 4)
    model = tmp_path / "1" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(b"m" * 100)
    (model.parent / "weights.bin").write_bytes(b"w" * 100)
    spec = SimpleNamespace(config=_config())
    monkeypatch.setattr(sessions, "ADAPTIVE_MAX_BYTES", 200)
    assert sessions.side_by_side_threads(model, spec) == 2
    monkeypatch.setattr(sessions, "ADAPTIVE_MAX_BYTES", 199)
    assert sessions.side_by_side_threads(model, spec) is None


def test_an_all_core_pool_pins_a_worker_to_each_core_but_the_callers(monkeypatch, tmp_path):
    """As ONNX Runtime places the workers of a pool whose size it picks itself: worker i on the
    (i+1)-th core this process may use (ORT numbers processors from 1); the caller keeps the rest."""
    from serving import sessions

    monkeypatch.setattr(sessions.os, "sched_getaffinity", lambda pid: {7, 4, 5, 6})
    no_topology = tmp_path / "none"  # each CPU a core of its own
    assert sessions.pool_placement(4, no_topology) == sessions.PoolPlacement("6;7;8", frozenset({4}))
    assert sessions.pool_placement(3, no_topology) == sessions.PoolPlacement("6;7", frozenset({4, 7}))
    assert sessions.pool_placement(1, no_topology) is None  # no worker to pin
    assert sessions.pool_placement(5, no_topology) is None  # more threads than cores: no core of its own each


def test_on_an_smt_host_each_worker_gets_a_whole_core_and_the_caller_none_of_theirs(monkeypatch, tmp_path):
    """8 logical CPUs on 4 cores, siblings numbered n and n+4 (as Linux numbers Intel's): a worker on
    its caller's sibling would share the caller's execution units."""
    from serving import sessions
    from tests.serving.test_cores import smt_topology

    topology = smt_topology(tmp_path, physical=4)
    monkeypatch.setattr(sessions.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert sessions.pool_placement(4, topology) == sessions.PoolPlacement("2,6;3,7;4,8", frozenset({0, 4}))
    assert sessions.pool_placement(2, topology) == sessions.PoolPlacement("2,6", frozenset({0, 4, 2, 6, 3, 7}))
    assert sessions.pool_placement(5, topology) is None  # 5 threads, 4 cores


def test_a_held_run_keeps_only_its_caller_off_the_workers_cores_and_gives_its_affinity_back(tmp_path):
    """A run on an all-core session holds the calling thread (not the process) to the caller's cores
    while it lasts, and gives the thread its affinity back after it, after a failed run too."""
    import os
    import threading
    from dataclasses import replace

    import numpy as np

    from serving.errors import ServingError
    from serving.repository import Repository
    from serving.sessions import ProviderChoice, open_session
    from tests.serving.builders import write_model

    write_model(tmp_path, "doubler")
    source = Repository(tmp_path).read("doubler")
    plain = open_session(source.versions[1], source.spec, ProviderChoice("cpu"), "doubler")
    cores = os.sched_getaffinity(0)
    caller = frozenset({min(cores)})
    main = threading.get_native_id()
    during = []

    class Noting:  # the real session; notes both threads' affinities as each run starts
        def run(self, *args):
            during.append((os.sched_getaffinity(0), os.sched_getaffinity(main)))
            return plain.session.run(*args)

    held = replace(plain, session=Noting(), caller_cores=caller)
    after = []

    def calls() -> None:
        x = np.ones((2, 4), np.float32)
        np.testing.assert_array_equal(held.run({"x": x})["y"], x * 2)
        after.append(os.sched_getaffinity(0))
        try:
            held.run({"x": np.ones((2, 4), np.float64)})  # the wrong type: ONNX Runtime refuses it
        except ServingError:
            after.append(os.sched_getaffinity(0))

    thread = threading.Thread(target=calls)
    thread.start()
    thread.join()
    assert during == [(caller, cores), (caller, cores)]  # this thread held, the main thread untouched
    assert after == [cores, cores]
    gone = replace(plain, caller_cores=frozenset({4000}))  # cores the process no longer has: run unheld
    np.testing.assert_array_equal(gone.run({"x": np.ones((1, 4), np.float32)})["y"], np.full((1, 4), 2.0))
    assert os.sched_getaffinity(0) == cores
