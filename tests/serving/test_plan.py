"""The execution plan: a config's instance count and intra-op threads win; what it leaves out spans the cores."""

from __future__ import annotations

import pytest
from protos import config_text

from serving import plan
from serving.plan import DEFAULT_INSTANCES, plan_for


def _config(text: str = ""):
    return config_text.parse_config('name: "m" platform: "onnxruntime_onnx" max_batch_size: 8 ' + text)


def _threads(n: int) -> str:
    return f'parameters {{ key: "intra_op_thread_count" value {{ string_value: "{n}" }} }}'


@pytest.mark.parametrize("text, cores, instances, threads", [
    ("", 2, DEFAULT_INSTANCES, 2),                            # a plain config: every core for every run
    ("", 8, DEFAULT_INSTANCES, 8),
    ("instance_group [{ count: 4 }]", 8, 4, 2),               # the cores divided among the instances given
    ("instance_group [{ count: 3 }]", 2, 3, 1),               # never fewer than one thread
    (_threads(1), 8, DEFAULT_INSTANCES, 1),                   # threads given: the default instances
    ("instance_group [{ count: 1 }] " + _threads(3), 8, 1, 3),  # both given: exactly those (Triton semantics)
    (_threads(0), 4, DEFAULT_INSTANCES, 4),                   # 0 is ONNX Runtime's "one per core"
])  # fmt: skip
def test_a_configs_choices_win_and_the_rest_spans_the_cores(text, cores, instances, threads):
    chosen = plan_for(_config(text), cores)
    assert (chosen.instances, chosen.intra_op_threads) == (instances, threads)


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


def test_usable_cores_follow_a_cgroup_quota(tmp_path, monkeypatch):
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(plan, "_CGROUP_CPU_MAX", cpu_max)
    monkeypatch.setattr(plan.os, "sched_getaffinity", lambda pid: set(range(16)))
    cpu_max.write_text("max 100000\n")
    assert plan.usable_cores() == 16
    cpu_max.write_text("250000 100000\n")  # a limit of 2.5 CPUs
    assert plan.usable_cores() == 3
    cpu_max.write_text("50000 100000\n")
    assert plan.usable_cores() == 1


def test_a_plain_config_is_served_with_the_plan_and_reports_it(stub, served):
    from protos import grpc_service_pb2 as pb

    config = stub.ModelConfig(pb.ModelConfigRequest(name="merger")).config  # no instance_group, no threads
    assert [group.count for group in config.instance_group] == [DEFAULT_INSTANCES]
    assert config.parameters["intra_op_thread_count"].string_value == str(plan.usable_cores())
    runtime = served.server.models.resolve("merger").runtime
    assert runtime.intra_op_threads == plan.usable_cores()
