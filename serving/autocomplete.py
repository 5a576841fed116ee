"""A configuration completed from the graph, as Triton does by default for ONNX models.

A Triton user can drop `NAME/1/model.onnx` into a repository without a config.pbtxt, or write a
config with only a name and a platform, and the ONNX Runtime backend fills in the rest. The same
happens here, when the config is missing or lists neither inputs nor outputs:

- name from the folder, platform `onnxruntime_onnx`;
- every input and output of the graph, with its type and shape (a named or unknown dimension is -1;
  a scalar per item is dims [1] with an empty reshape, Triton's spelling);
- batching: with no config file, when every input and output has a variable first dimension, that
  dimension is the batch: `max_batch_size` = DEFAULT_MAX_BATCH_SIZE and the dynamic batcher on.
  Triton's default is 4 (`--backend-config=default-max-batch-size`); 32 here, because a client's
  batch above it would be refused, and 32 is the batch size load tests and the peers table use.
  A config that exists keeps its own max_batch_size (0 means the model does not batch).

The graph is read with ONNX Runtime (no `onnx` package in the serving install), once per model file:
the answer is kept per file and its size and modification time, so polling does not reload it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from protos import contract
from protos.config_text import from_onnx
from protos.model_config_pb2 import ModelConfig

from serving.limits import without_paths

DEFAULT_MAX_BATCH_SIZE = 32
Graph = tuple[tuple[tuple[str, int, tuple[int, ...]], ...], tuple[tuple[str, int, tuple[int, ...]], ...]]


def needed(config: ModelConfig) -> bool:
    """Whether a config leaves its tensors to the graph (none listed)."""
    return not config.input and not config.output


def complete(config: ModelConfig, model_file: Path, has_file: bool) -> ModelConfig:
    """`config` with platform, inputs, outputs and (for a missing file) batching taken from `model_file`.

    ValueError, in words and without paths, when the graph cannot be read or described."""
    stat = model_file.stat()
    inputs, outputs = _graph(str(model_file), stat.st_mtime_ns, stat.st_size)
    completed = ModelConfig()
    completed.CopyFrom(config)
    if not completed.platform and not completed.backend:
        completed.platform = contract.PLATFORM
    tensors = (*inputs, *outputs)
    batches = not has_file and all(shape and shape[0] == -1 for _, _, shape in tensors)
    if batches:
        completed.max_batch_size = DEFAULT_MAX_BATCH_SIZE
        if not completed.HasField("dynamic_batching") and completed.WhichOneof("scheduling_choice") is None:
            completed.dynamic_batching.SetInParent()
    lead = 1 if completed.max_batch_size > 0 else 0
    for target, described in ((completed.input, inputs), (completed.output, outputs)):
        for name, data_type, shape in described:
            # a batching config over a graph with no variable first dimension is completed all the
            # same, and then refused at load by the one shape rule (contract.shape_problems)
            tensor = target.add(name=name, data_type=data_type, dims=list(shape[lead:]) or [1])
            if not shape[lead:]:  # a scalar per item: stated as [1], reshaped to () for the graph, as Triton does
                tensor.reshape.SetInParent()
    return completed


@lru_cache(maxsize=256)
def _graph(path: str, mtime_ns: int, size: int) -> Graph:
    """The graph's inputs and outputs: (name, config data_type, shape with -1 for a variable dim)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises several types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"no inputs and outputs in the config, and the graph cannot be read to "
                         f"complete them: {without_paths(first)[:200]}") from None

    def described(args) -> tuple:
        rows = []
        for arg in args:
            try:
                data_type = from_onnx(arg.type).config
            except ValueError:
                raise ValueError(f"the graph's {arg.name!r} has type {arg.type}, which a config cannot state") from None
            shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in (arg.shape or ()))
            rows.append((arg.name, data_type, shape))
        return tuple(rows)

    return described(session.get_inputs()), described(session.get_outputs())
