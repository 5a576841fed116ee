"""Every Triton ModelConfig field is honoured, refused, or accepted with a warning: the one table.

A user who pastes a Triton config must not get different behaviour without a word. `review`
walks the fields a config sets (protobuf's ListFields, so only what the text names, nested messages
included) and sorts each into the table's three kinds: HONOURED (nothing to say), REFUSED (the
model does not load, with the reason) and IGNORED (it loads; a warning is logged once per config and
shown in the model's RepositoryIndex reason). A field missing from the table is treated as ignored,
so a newer proto's field is never silently dropped. The README's table is written from this one.
"""

from __future__ import annotations

from dataclasses import dataclass

from protos import contract
from protos.model_config_pb2 import ModelConfig

from serving.gpu_options import CUDA_PARAMETERS, IO_BINDING
from serving.limits import ORT_SESSION_ENTRIES

HONOURED, REFUSED, IGNORED = "honoured", "refused", "ignored"

# Field path (nested with "."; repeated and map fields by their own name) -> (kind, why/what).
FIELDS: dict[str, tuple[str, str]] = {
    "name": (HONOURED, "must equal the folder name"),
    "platform": (HONOURED, "onnxruntime_onnx only; anything else is refused"),
    "backend": (HONOURED, "onnxruntime only; anything else is refused"),
    "runtime": (IGNORED, "the ONNX Runtime in this process always runs the model"),
    "version_policy": (HONOURED, "latest / all / specific, as Triton"),
    "max_batch_size": (HONOURED, "dimension 0 is the batch when > 0"),
    "input": (HONOURED, "name, data_type, dims, reshape, optional"),
    "input.name": (HONOURED, ""),
    "input.data_type": (HONOURED, ""),
    "input.dims": (HONOURED, ""),
    "input.reshape": (HONOURED, ""),
    "input.optional": (HONOURED, "a request may leave the input out"),
    "input.format": (IGNORED, "a layout hint; the graph's shape decides"),
    "input.is_shape_tensor": (REFUSED, "shape tensors are a TensorRT-backend feature"),
    "input.allow_ragged_batch": (REFUSED, "ragged batches need batch_input, which the batcher does not synthesise"),
    "input.is_non_linear_format_io": (REFUSED, "non-linear I/O formats are a TensorRT-backend feature"),
    "output": (HONOURED, "name, data_type, dims, reshape, label_filename"),
    "output.name": (HONOURED, ""),
    "output.data_type": (HONOURED, ""),
    "output.dims": (HONOURED, ""),
    "output.reshape": (HONOURED, ""),
    "output.label_filename": (HONOURED, "the classification extension's labels"),
    "output.is_shape_tensor": (REFUSED, "shape tensors are a TensorRT-backend feature"),
    "output.is_non_linear_format_io": (REFUSED, "non-linear I/O formats are a TensorRT-backend feature"),
    "batch_input": (REFUSED, "the batcher does not synthesise batch inputs"),
    "batch_output": (REFUSED, "the batcher does not scatter batch outputs"),
    "optimization": (HONOURED, "graph.level; the other parts as listed"),
    "optimization.graph": (HONOURED, "ONNX Runtime's graph optimisation level"),
    "optimization.graph.level": (HONOURED, "-1 basic, 1 extended, 2 disabled, else all"),
    "optimization.priority": (IGNORED, "no model priorities: every model's instances run as threads alike"),
    "optimization.cuda": (IGNORED, "CUDA graphs and streams are not configured"),
    "optimization.execution_accelerators": (HONOURED, "gpu tensorrt/cuda parameters become provider options (serving.gpu_options); cpu ones as listed"),
    "optimization.execution_accelerators.gpu_execution_accelerator": (HONOURED, "tensorrt and cuda; other names are refused at load"),
    "optimization.execution_accelerators.cpu_execution_accelerator": (IGNORED, "no OpenVINO provider here: the CPU provider runs"),
    "optimization.input_pinned_memory": (IGNORED, "inputs are ordinary host memory"),
    "optimization.output_pinned_memory": (IGNORED, "outputs are ordinary host memory"),
    "optimization.gather_kernel_buffer_threshold": (IGNORED, "no gather kernel: requests are concatenated on the host"),
    "optimization.eager_batching": (IGNORED, "the batcher's own rules decide when a batch starts"),
    "dynamic_batching": (HONOURED, "merge along dimension 0; split a large request only under the adaptive plan"),
    "dynamic_batching.preferred_batch_size": (HONOURED, ""),
    "dynamic_batching.max_queue_delay_microseconds": (HONOURED, ""),
    "dynamic_batching.preserve_ordering": (IGNORED, "each unary call gets its own response, in whatever order batches finish"),
    "dynamic_batching.priority_levels": (IGNORED, "one queue per model, no priorities"),
    "dynamic_batching.default_priority_level": (IGNORED, "one queue per model, no priorities"),
    "dynamic_batching.priority_queue_policy": (IGNORED, "one queue per model, no priorities"),
    "dynamic_batching.default_queue_policy": (HONOURED, "max_queue_size; the timeouts as listed"),
    "dynamic_batching.default_queue_policy.max_queue_size": (HONOURED, "a full queue answers RESOURCE_EXHAUSTED"),
    "dynamic_batching.default_queue_policy.timeout_action": (IGNORED, "a request's own timeout parameter or deadline rejects it"),
    "dynamic_batching.default_queue_policy.default_timeout_microseconds": (IGNORED, "a request's own timeout parameter or deadline applies"),
    "dynamic_batching.default_queue_policy.allow_timeout_override": (IGNORED, "a request's timeout parameter is always honoured"),
    "sequence_batching": (REFUSED, "stateful models stream through the typed ForecastStream service instead"),
    "ensemble_scheduling": (REFUSED, "ensembles are not served; companions are separate models"),
    "instance_group": (HONOURED, "kind and count; the rest as listed"),
    "instance_group.name": (HONOURED, "a label"),
    "instance_group.kind": (HONOURED, "KIND_CPU: CPU only; KIND_GPU/KIND_AUTO: the provider preference"),
    "instance_group.count": (HONOURED, "instance threads (per GPU for KIND_GPU)"),
    "instance_group.gpus": (HONOURED, "count instances on each GPU listed (every visible GPU when none is), each its own session with that device_id"),
    "instance_group.rate_limiter": (IGNORED, "no rate limiter"),
    "instance_group.secondary_devices": (IGNORED, "no secondary devices"),
    "instance_group.profile": (IGNORED, "TensorRT optimisation profiles are not selected"),
    "instance_group.passive": (IGNORED, "every instance is scheduled"),
    "instance_group.host_policy": (IGNORED, "no host policies"),
    "default_model_filename": (HONOURED, "a plain file name in the version folder"),
    "cc_model_filenames": (IGNORED, "one model file for every device"),
    "metric_tags": (IGNORED, "metrics carry model and version labels only"),
    "parameters": (HONOURED, "thread counts, execution_mode, CUDA provider options, allowed ONNX Runtime entries, dnnzoo.*"),
    "model_warmup": (HONOURED, "zero, random or warmup/ file data, count times, before the version is READY"),
    "model_operations": (REFUSED, "custom operator libraries would load native code from the repository"),
    "model_transaction_policy": (HONOURED, "decoupled: false only (one response per request)"),
    "model_transaction_policy.decoupled": (REFUSED, "decoupled models (several responses per request) are not served"),
    "model_repository_agents": (REFUSED, "repository agents (e.g. checksum) are not run, so their checks would not happen"),
    "response_cache": (IGNORED, "no response cache"),
    "model_metrics": (IGNORED, "metric histograms are not configurable"),
}

# Messages honoured with every field they hold.
HONOURED_WHOLE = ("version_policy", "input.reshape", "output.reshape", "model_warmup",
                  "optimization.execution_accelerators.gpu_execution_accelerator")
# `parameters` keys read here besides dnnzoo.* and the allowed ONNX Runtime session entries; any
# other key is warned about.
READ_PARAMETERS = ("intra_op_thread_count", "inter_op_thread_count", "execution_mode", IO_BINDING, *CUDA_PARAMETERS)


@dataclass(frozen=True)
class Review:
    refused: tuple[str, ...]  # "field: reason"
    ignored: tuple[str, ...]  # "field: what happens instead"

    def warning(self) -> str:
        """One line for the log and the RepositoryIndex reason ("" when nothing is ignored)."""
        if not self.ignored:
            return ""
        return "config fields accepted but not applied: " + "; ".join(self.ignored)


def _walk(message, prefix: str = ""):
    """(path, value) of every field the message sets, recursing into nested messages and repeated ones."""
    for descriptor, value in message.ListFields():
        path = f"{prefix}{descriptor.name}"
        yield path, value
        if descriptor.message_type is None or descriptor.message_type.GetOptions().map_entry:
            continue
        items = value if descriptor.is_repeated else [value]
        for item in items:
            yield from _walk(item, path + ".")


def _settles(path: str) -> tuple[str, str] | None:
    """The table entry deciding `path`: its own, else the nearest listed ancestor's if that is not
    HONOURED (an ignored message ignores its fields); None for a sub-field of an honoured message
    that the table does not list (treated as ignored)."""
    if path in FIELDS:
        return FIELDS[path]
    parent = path.rpartition(".")[0]
    while parent:
        if parent in HONOURED_WHOLE:
            return FIELDS[parent]
        if parent in FIELDS and FIELDS[parent][0] != HONOURED:
            return FIELDS[parent]
        parent = parent.rpartition(".")[0]
    return None


def review(config: ModelConfig) -> Review:
    refused, ignored = {}, {}
    for path, value in _walk(config):
        entry = _settles(path)
        kind, why = entry if entry is not None else (IGNORED, "this server does not read it")
        if path == "model_transaction_policy.decoupled" and not value:
            continue
        shown = path if path in FIELDS or entry is None else next(p for p in _ancestors(path) if p in FIELDS)
        if kind == REFUSED:
            refused.setdefault(shown, f"{shown}: {why}")
        elif kind == IGNORED:
            ignored.setdefault(shown, f"{shown} ({why})")
    for key in sorted(config.parameters):
        if not (key.startswith(contract.PREFIX) or key in READ_PARAMETERS or key in ORT_SESSION_ENTRIES):
            ignored.setdefault(f"parameters.{key}", f"parameters[{key[:80]!r}] (not read by this server)")
    return Review(tuple(refused.values()), tuple(ignored.values()))


def _ancestors(path: str):
    while path:
        yield path
        path = path.rpartition(".")[0]


def markdown_table() -> str:
    """The README's table, from FIELDS."""
    lines = ["| field | handling | note |", "|---|---|---|"]
    lines += [f"| `{path}` | {kind} | {why} |" for path, (kind, why) in FIELDS.items()]
    return "\n".join(lines)
