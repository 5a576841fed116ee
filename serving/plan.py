"""A model version's execution plan: how many instance threads run it, and how many intra-op threads
each ONNX Runtime run may use.

Triton's semantics first: a config's `instance_group` count and its `intra_op_thread_count`
parameter win when given (a KIND_GPU group's count is per GPU it lists, or per visible GPU). What a config leaves out is chosen from the cores this process may use
(its CPU affinity, and a cgroup CPU quota such as a Kubernetes limit):

- neither given (a plain config): DEFAULT_INSTANCES instance threads share one session whose
  intra-op pool has a thread per usable core. A lone request or a large batch runs on every core;
  two batches in flight share the pool (each run's own thread works, and takes the pool's workers
  that are free), so the cores are never oversubscribed by more than the second instance's thread,
  and one instance can prepare and answer a batch while the other runs;
- only the count given: the cores divided among the instances (at least one thread each);
- only the threads given: DEFAULT_INSTANCES instances.

An `instance_group` without a count (e.g. `[{ kind: KIND_AUTO }]`, as dnnzoo's export writes it)
leaves the count to the plan. Triton would start one instance there.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from protos.model_config_pb2 import ModelConfig

from serving import gpu
from serving.gpu_options import group_devices

DEFAULT_INSTANCES = 2
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class ExecutionPlan:
    instances: int  # instance threads: batches in flight at once
    intra_op_threads: int  # threads of the session's intra-op pool (the running thread included)
    inter_op_threads: int


def usable_cores() -> int:
    """Cores this process may run on: its affinity, lowered by a cgroup v2 CPU quota when one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = _CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def int_parameter(config: ModelConfig, key: str) -> int | None:
    """A config parameter holding an integer, None when absent or empty; ValueError naming it otherwise."""
    entry = config.parameters.get(key)
    if entry is None or entry.string_value == "":
        return None
    try:
        return int(entry.string_value)
    except ValueError:
        raise ValueError(f"parameter {key!r} must be an integer, got {entry.string_value!r}") from None


def plan_for(config: ModelConfig, cores: int | None = None, gpus: int | None = None) -> ExecutionPlan:
    """The plan for a model with this config on `cores` cores (default: usable_cores()) and `gpus`
    visible GPUs (default: serving.gpu.count())."""
    cores = cores or usable_cores()
    visible = gpu.count() if gpus is None else gpus
    # Triton's instance count: `count` on each device a group lists (groups without a count: the plan's)
    count = sum(group.count * len(group_devices(group, visible)) for group in config.instance_group) or None
    threads = int_parameter(config, "intra_op_thread_count")
    inter = int_parameter(config, "inter_op_thread_count") or 1
    if threads is not None and threads <= 0:  # ONNX Runtime's "0 = its own choice": one per core
        threads = cores
    instances = count or DEFAULT_INSTANCES
    if threads is None:
        threads = max(1, cores // count) if count else cores
    return ExecutionPlan(instances, threads, inter)
