"""The ModelConfig message (Triton's config.pbtxt) for one exported model.

Deliberate choices:
- `instance_group { kind: KIND_AUTO count: 2 }`: Triton places the instances on each GPU when there
  is one and on the CPU otherwise; dnnzoo's server maps KIND_AUTO to its provider preference
  (TensorRT, CUDA, CPU). KIND_CPU is available with `--instance-kind cpu`. Two instances let one
  batch be prepared and answered while another runs (Triton's ONNX Runtime backend also defaults
  to two CPU instances); in dnnzoo they share one session, whose `run` is thread-safe. Measured on
  the 2-core CPU (benchmarks/serving_throughput.py, batch 32 at concurrency 2): 0.67–0.82 of
  in-process throughput with one instance, 0.90–1.01 with two.
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

from protos import config_text
from protos.model_config_pb2 import ModelConfig, ModelInstanceGroup

from export.spec import ModelSpec, TensorSpec

PLATFORM = "onnxruntime_onnx"
QUEUE_DELAY_US = 0
MAX_QUEUE_SIZE = 1024
INSTANCE_COUNT = 2
INSTANCE_KINDS = {"auto": ModelInstanceGroup.KIND_AUTO, "cpu": ModelInstanceGroup.KIND_CPU, "gpu": ModelInstanceGroup.KIND_GPU}


def _datatype(tensor: TensorSpec) -> int:
    return config_text.from_numpy(tensor.dtype).config


def model_config(name: str, spec: ModelSpec, parameters: dict[str, str], instance_kind: str = "auto") -> ModelConfig:
    config = ModelConfig(name=name, platform=PLATFORM, max_batch_size=spec.max_batch_size)
    for tensor in spec.inputs:
        config.input.add(name=tensor.name, data_type=_datatype(tensor), dims=tensor.dims)
    for tensor in spec.outputs:
        out = config.output.add(name=tensor.name, data_type=_datatype(tensor), dims=tensor.dims)
        if tensor.label_filename:
            out.label_filename = tensor.label_filename
    if spec.max_batch_size > 0:
        config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
        config.dynamic_batching.default_queue_policy.max_queue_size = MAX_QUEUE_SIZE
    config.instance_group.add(kind=INSTANCE_KINDS[instance_kind], count=INSTANCE_COUNT)
    config.version_policy.latest.num_versions = 1
    for key in sorted(parameters):
        config.parameters[key].string_value = str(parameters[key])
    return config


def config_text_of(config: ModelConfig) -> str:
    return config_text.format_config(config)
