"""A model version's execution plan: how many instance threads run it, and how many intra-op threads
each ONNX Runtime run may use.

Triton's semantics first: a config's `instance_group` count and its `intra_op_thread_count`
parameter win when given (a KIND_GPU group's count is per GPU it lists, or per visible GPU). What a config leaves out is chosen from the cores this process may use
(the physical cores of its CPU affinity, and a cgroup CPU quota such as a Kubernetes limit; serving/cores.py):

- neither given (a plain config): the plan adapts to what is queued. DEFAULT_INSTANCES instance
  threads; a batch that starts alone (no other batch running, nothing else queued) runs on a session
  whose intra-op pool has a thread per usable core, so a lone request or a lone large batch uses
  every core; a batch that starts beside another runs on a second session with the cores divided
  among the instances (`side_by_side_threads`), so busy instances split the cores instead of
  fighting over one pool. Measured on the foreign CNN (2 cores): one all-core pool shared by two
  batches lost 10 % at batch 32 x 2 clients against a one-thread session per batch, which in turn
  lost 26 % for a lone batch-1 request; this plan takes the better of the two in each case. The
  batcher refines "alone" (serving/batching.py): a lone batch the divided session runs in under
  0.3 ms runs there, as does a lone single row where the divided session ran one clearly faster
  than the all-core one at load (an LSTM, an encoder), and batches count as side by side for 50 ms after
  they were; and a request
  the divided session needs 2 ms or more for that arrives while another runs (nothing waiting,
  fewer requests unanswered than instances) is split into a part per instance, so that two
  clients of large batches keep every core busy. With
  one usable core, or a model too large to hold twice (ADAPTIVE_MAX_BYTES), one session serves both;
- only the count given: the cores divided among the instances (at least one thread each);
- only the threads given: DEFAULT_INSTANCES instances.

An `instance_group` without a count (e.g. `[{ kind: KIND_AUTO }]`, as dnnzoo's export writes it)
leaves the count to the plan. Triton would start one instance there.
"""

from __future__ import annotations

from dataclasses import dataclass

from protos.model_config_pb2 import ModelConfig

from serving import gpu
from serving.cores import usable_cores
from serving.gpu_options import group_devices

DEFAULT_INSTANCES = 2
ADAPTIVE_MAX_BYTES = 1 << 30  # a model larger than this opens one session, not two (memory)


@dataclass(frozen=True)
class ExecutionPlan:
    instances: int  # instance threads: batches in flight at once
    intra_op_threads: int  # threads of the session's intra-op pool (the running thread included)
    inter_op_threads: int
    # intra-op threads of a batch that starts while another runs or waits (a second session);
    # None: every batch runs on the one session
    side_by_side_threads: int | None = None


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
    if count is None and threads is None:
        divided = max(1, cores // DEFAULT_INSTANCES)
        return ExecutionPlan(DEFAULT_INSTANCES, cores, inter, divided if divided < cores else None)
    instances = count or DEFAULT_INSTANCES
    if threads is None:
        threads = max(1, cores // instances)
    return ExecutionPlan(instances, threads, inter)
