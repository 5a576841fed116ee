"""Triton's GPU settings as ONNX Runtime provider options, written as pure functions of a config.

What Triton's ONNX Runtime backend reads, and what it becomes here:

- `optimization.execution_accelerators.gpu_execution_accelerator { name: "tensorrt" }` with its
  string parameters -> TensorrtExecutionProvider options: `precision_mode` FP16/INT8 ->
  `trt_fp16_enable` / `trt_int8_enable`, `max_workspace_size_bytes` -> `trt_max_workspace_size`,
  and every `trt_*` key passed through as is; the engine cache stays off unless asked for (as in
  Triton: a repository is often mounted read-only), and when on it lives in the model's folder
  (`trt_cache/`, or the last part of the path given), never elsewhere on the host;
  `{ name: "cuda" }` parameters -> CUDAExecutionProvider options.
- `instance_group { kind: KIND_GPU gpus: [...] count: N }` -> N instances on each listed GPU (on
  every visible GPU when none is listed), as Triton places them; each GPU instance opens its own
  session with that `device_id` (serving.sessions).
- `parameters` keys of the CUDA provider as the backend names them (`cudnn_conv_algo_search`,
  `gpu_mem_limit`, `arena_extend_strategy`, `do_copy_in_default_stream`) -> CUDA options.
- `parameters { key: "io_binding" }` (dnnzoo's; Triton's backend always binds) -> "true": a GPU
  session runs through an IOBinding with its outputs on the device; default: plain `run`.
- `model_warmup` -> the warm-up batches (zero, random or file data) instead of one zero batch.

Nothing here opens a session, so every mapping is tested on a CPU-only machine; the session code
applies them where a GPU provider is asked for. Unknown accelerator names and keys are ValueErrors
(the model does not load) rather than silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from protos.config_text import from_config
from protos.model_config_pb2 import ModelConfig, ModelInstanceGroup

from serving import files

TENSORRT, CUDA = "TensorrtExecutionProvider", "CUDAExecutionProvider"
ENGINE_CACHE_FOLDER = "trt_cache"
PRECISION_MODES = {"FP32": {}, "FP16": {"trt_fp16_enable": "True"}, "INT8": {"trt_int8_enable": "True", "trt_fp16_enable": "True"}}
TENSORRT_RENAMED = {"max_workspace_size_bytes": "trt_max_workspace_size", "int8_calibration_table_name": "trt_int8_calibration_table_name",
                    "int8_use_native_calibration_table": "trt_int8_use_native_calibration_table"}  # fmt: skip
CUDA_PARAMETERS = ("cudnn_conv_algo_search", "gpu_mem_limit", "arena_extend_strategy", "do_copy_in_default_stream")
IO_BINDING = "io_binding"  # parameters key: "true" runs GPU sessions through an IOBinding (serving.sessions)
CUDA_ACCELERATOR_KEYS = ("cudnn_conv_use_max_workspace", "use_ep_level_unified_stream", "use_tf32", "enable_cuda_graph")
WARMUP_FOLDER = "warmup"
MAX_WARMUP_RUNS = 64


def tensorrt_options(config: ModelConfig, model_dir: Path) -> dict[str, str]:
    options: dict[str, str] = {}
    for accelerator in config.optimization.execution_accelerators.gpu_execution_accelerator:
        if accelerator.name != "tensorrt":
            continue
        for key, value in accelerator.parameters.items():
            if key == "precision_mode":
                if value.upper() not in PRECISION_MODES:
                    raise ValueError(f"tensorrt precision_mode {value[:20]!r}: choose FP32, FP16 or INT8")
                options.update(PRECISION_MODES[value.upper()])
            elif key in TENSORRT_RENAMED:
                options[TENSORRT_RENAMED[key]] = value
            elif key.startswith("trt_"):
                options[key] = value
            else:
                raise ValueError(f"tensorrt accelerator parameter {key[:60]!r} is not one ONNX Runtime's TensorRT provider takes")
    if options.get("trt_engine_cache_enable", "").lower() in ("1", "true"):
        folder = Path(options.get("trt_engine_cache_path", ENGINE_CACHE_FOLDER)).name or ENGINE_CACHE_FOLDER
        options["trt_engine_cache_path"] = str(Path(model_dir) / folder)  # inside the model folder only
    return options


def cuda_options(config: ModelConfig) -> dict[str, str]:
    options = {key: config.parameters[key].string_value for key in CUDA_PARAMETERS if key in config.parameters}
    for accelerator in config.optimization.execution_accelerators.gpu_execution_accelerator:
        if accelerator.name != "cuda":
            continue
        for key, value in accelerator.parameters.items():
            if key not in CUDA_ACCELERATOR_KEYS:
                raise ValueError(f"cuda accelerator parameter {key[:60]!r}: choose from {', '.join(CUDA_ACCELERATOR_KEYS)}")
            options[key] = value
    return options


def accelerators(config: ModelConfig) -> list[str]:
    """The GPU accelerators a config names, checked: tensorrt and cuda only."""
    names = [a.name for a in config.optimization.execution_accelerators.gpu_execution_accelerator]
    unknown = [n for n in names if n not in ("tensorrt", "cuda")]
    if unknown:
        raise ValueError(f"gpu_execution_accelerator {unknown[0][:40]!r}: ONNX Runtime here offers tensorrt and cuda")
    return names


def group_devices(group: ModelInstanceGroup, visible: int) -> list[int | None]:
    """The devices one instance_group places `count` instances on, each: its `gpus` for KIND_GPU, or
    every visible GPU when it lists none (as Triton); [None] otherwise (the CPU, or no GPU to use)."""
    if group.kind == ModelInstanceGroup.KIND_GPU:
        gpus = [int(gpu) for gpu in group.gpus] or list(range(visible))
        if gpus:
            return gpus
    return [None]


def device_ids(config: ModelConfig, visible: int = 0) -> list[int | None]:
    """One entry per instance the groups ask for: the GPU it runs on (None: the provider's default or the CPU)."""
    return [device for group in config.instance_group for device in group_devices(group, visible) for _ in range(group.count or 1)]


def instance_devices(config: ModelConfig, instances: int, visible: int) -> list[int | None]:
    """The device of each of the plan's `instances` instance threads. When the config gives counts the
    plan counts them the same way (serving.plan), so this is `device_ids`; a config without counts
    gets the plan's number of instances, placed over the groups' devices in turn."""
    devices = device_ids(config, visible) or [None]
    return [devices[i % len(devices)] for i in range(instances)]


@dataclass(frozen=True)
class Placement:
    """Where one instance runs: its own session on GPU `device`, or (None) the version's shared session."""

    device: int | None
    cpu_only: bool = False  # the shared session asks for the CPU provider alone (KIND_CPU beside GPU groups)


def placements(config: ModelConfig, instances: int, visible: int, on_gpu: bool) -> list[Placement]:
    """Each instance's placement. Off the GPU (a CPU build, no GPU, `--providers cpu`) every instance
    shares one session, as before; on it, each KIND_GPU instance gets its own session on its GPU."""
    if not on_gpu:
        return [Placement(None)] * instances
    devices = instance_devices(config, instances, visible)
    shared_kinds = {group.kind for group in config.instance_group if None in group_devices(group, visible)}
    cpu_only = shared_kinds == {ModelInstanceGroup.KIND_CPU}
    return [Placement(device, cpu_only and device is None) for device in devices]


def gpu_groups(config: ModelConfig) -> list[str]:
    """The KIND_GPU groups of a config, as text for a log line ("KIND_GPU gpus [0, 1] count 2")."""
    return [f"KIND_GPU gpus {list(group.gpus)} count {group.count or 1}" if group.gpus else f"KIND_GPU count {group.count or 1}"
            for group in config.instance_group if group.kind == ModelInstanceGroup.KIND_GPU]


def provider_options(providers: list[str], config: ModelConfig, model_dir: Path, device_id: int | None) -> list[dict[str, str]]:
    """Options for each of `providers` (ONNX Runtime's names, best first), in that order."""
    out = []
    for provider in providers:
        if provider == TENSORRT:
            options = tensorrt_options(config, model_dir)
        elif provider == CUDA:
            options = cuda_options(config)
        else:
            out.append({})
            continue
        if device_id is not None:
            options["device_id"] = str(device_id)
        out.append(options)
    return out


def io_binding(config: ModelConfig) -> bool:
    """Whether a GPU session binds its outputs on the device (default no: see serving.sessions);
    ValueError on a value that is not a yes or a no."""
    entry = config.parameters.get(IO_BINDING)
    value = entry.string_value.strip().lower() if entry is not None else ""
    if value in ("true", "1", "on", "yes"):
        return True
    if value in ("", "false", "0", "off", "no"):
        return False
    raise ValueError(f"parameter {IO_BINDING!r} must be true or false, got {value[:20]!r}")


@dataclass(frozen=True)
class WarmupRun:
    name: str
    inputs: dict[str, np.ndarray]
    count: int


def warmup_runs(config: ModelConfig, model_dir: Path, seed: int = 0) -> list[WarmupRun]:
    """The config's model_warmup samples as input batches (Triton's zero_data, random_data and
    input_data_file, the last a raw little-endian file in the model's `warmup/` folder)."""
    runs = []
    rng = np.random.default_rng(seed)
    for sample in config.model_warmup:
        batch = (sample.batch_size or 1,) if config.max_batch_size > 0 else ()
        if config.max_batch_size and batch[0] > config.max_batch_size:
            raise ValueError(f"model_warmup {sample.name!r}: batch_size {batch[0]} is above max_batch_size {config.max_batch_size}")
        inputs = {}
        for name, spec in sample.inputs.items():
            datatype = from_config(spec.data_type)
            shape = batch + tuple(int(d) for d in spec.dims)
            kind = spec.WhichOneof("input_data_type")
            if datatype.numpy is None:
                inputs[name] = np.full(shape, "", dtype=object)
            elif kind == "random_data":
                inputs[name] = rng.integers(0, 2, shape).astype(datatype.numpy) if datatype.numpy.kind in "iub" else rng.random(shape).astype(datatype.numpy)
            elif kind == "input_data_file":
                inputs[name] = _from_file(model_dir, spec.input_data_file, datatype.numpy, shape, len(batch), sample.name)
            else:
                inputs[name] = np.zeros(shape, datatype.numpy)
        runs.append(WarmupRun(sample.name, inputs, min(max(1, sample.count), MAX_WARMUP_RUNS)))
    return runs


def _from_file(model_dir: Path, file_name: str, dtype: np.dtype, shape: tuple[int, ...], lead: int, sample: str) -> np.ndarray:
    """One item from the file, repeated along the batch dimension."""
    if not file_name or "/" in file_name or "\\" in file_name or file_name in (".", ".."):
        raise ValueError(f"model_warmup {sample!r}: input_data_file {file_name[:60]!r} must be a plain file name in {WARMUP_FOLDER}/")
    item_shape = shape[lead:]
    one = np.dtype(dtype).itemsize * int(np.prod(item_shape, dtype=np.int64))
    path = Path(model_dir) / WARMUP_FOLDER / file_name
    try:
        data = files.read_bytes(path, Path(model_dir).parent, files.MAX_WARMUP_BYTES)
    except OSError as exc:
        raise ValueError(f"model_warmup {sample!r}: cannot read {file_name}: {exc.strerror or type(exc).__name__}") from None
    if len(data) < one:
        raise ValueError(f"model_warmup {sample!r}: {file_name} holds {len(data)} bytes, one item needs {one}")
    item = np.frombuffer(data[:one], dtype=np.dtype(dtype).newbyteorder("<")).reshape(item_shape)
    return np.ascontiguousarray(np.broadcast_to(item, shape)).astype(dtype)
