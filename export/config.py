"""The ModelConfig message (Triton's config.pbtxt) for one exported model.

Deliberate choices:
- `instance_group { kind: KIND_AUTO }` with no count and no `intra_op_thread_count`: the server's
  execution plan (serving/plan.py) picks both from the cores it may use, on whatever machine serves
  the model; KIND_AUTO maps to its provider preference (TensorRT, CUDA, CPU). KIND_CPU is available
  with `--instance-kind cpu`. Measured with benchmarks/peers.py (2-core CPU, interleaved, one run):
  the plan's 2 instances sharing a 2-thread pool beat 1×2 and 2×1 at b1c1, b1c16 and b32c2.
- `dynamic_batching` only for models that batch (max_batch_size > 0): there is nothing to merge
  along dimension 0 otherwise. No queue delay (Triton's own default): requests that arrive while an
  instance is busy still merge, and a lone request does not wait. Measured on the 2-core CPU with
  the quick classifier (benchmarks/serving_throughput.py): 500 us cost a lone request about 1.5 ms
  (measured when batches were cut on the event loop, whose timers have 1 ms granularity) and won no throughput with 16 clients, because
  there the protocol work, not ONNX Runtime, is the bottleneck. Raise it per model where the model
  is the bottleneck and gains from batching (a GPU).
- Everything dnnzoo knows about a model goes into `parameters` as strings under `dnnzoo.` keys,
  which Triton ignores.
"""

from __future__ import annotations

from protos import config_text, contract
from protos.model_config_pb2 import ModelConfig, ModelInstanceGroup

from export import options
from export.spec import ExportSpec

QUEUE_DELAY_US = 0
MAX_QUEUE_SIZE = 1024
INSTANCE_KINDS = {kind: ModelInstanceGroup.Kind.Value(f"KIND_{kind.upper()}") for kind in options.INSTANCE_KINDS}


def model_config(name: str, spec: ExportSpec, parameters: dict[str, str], instance_kind: str = "auto") -> ModelConfig:
    config = ModelConfig(name=name, platform=contract.PLATFORM, max_batch_size=spec.max_batch_size)
    for tensor in spec.inputs:
        config.input.add(name=tensor.name, data_type=tensor.datatype.config, dims=tensor.dims)
    for tensor in spec.outputs:
        out = config.output.add(name=tensor.name, data_type=tensor.datatype.config, dims=tensor.dims)
        if tensor.label_filename:
            out.label_filename = tensor.label_filename
    if spec.max_batch_size > 0:
        config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
        config.dynamic_batching.default_queue_policy.max_queue_size = MAX_QUEUE_SIZE
    config.instance_group.add(kind=INSTANCE_KINDS[instance_kind])  # count: the server's plan
    config.version_policy.latest.num_versions = 1
    for key in sorted(parameters):
        config.parameters[key].string_value = str(parameters[key])
    return config


def config_text_of(config: ModelConfig) -> str:
    return config_text.format_config(config)
