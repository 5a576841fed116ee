"""ONNX Runtime sessions: providers, thread settings, a check against the config, and warm-up.

On the CPU one session per loaded model version; `InferenceSession.run` is thread-safe, so the
batcher may run `instance_group.count` batches on it at once. Providers follow `--providers` and the config's
instance_group kind, in the order TensorRT, CUDA, CPU. onnxruntime-gpu lists CUDA and TensorRT as
available even where they cannot start, so the providers a session really got are read back from
`session.get_providers()`, logged when they differ from the ones asked for, and reported. Where
the CUDA driver finds no GPU (`serving.gpu`) they are not asked for at all: one plain log line
instead of ONNX Runtime's failed CUDA start and its warning.

Devices: each KIND_GPU instance gets its own session on its own GPU, as Triton places them
(`open_instances`); instances without a GPU share one session. Sessions run with plain `run`: it
already copies each input to the device once and each output back once, into a host buffer that
the returned array wraps. `parameters { key: "io_binding" value { string_value: "true" } }` runs a
GPU session through an IOBinding instead (outputs allocated on the device, copied once to the
host): the same copies, kept for `benchmarks/io_binding.py` to measure on a GPU. On the CPU an
IOBinding cost 1.2-2x the time of `run` per call here (small models, batch 1), so it is never used there.

Threads: the execution plan (serving/plan.py) sizes the session's intra-op pool, from the config's
`intra_op_thread_count` when given (as Triton's ONNX Runtime backend reads it, with
`inter_op_thread_count` and `execution_mode`), else from the usable cores; a plain config's plan
adds a second session with the cores divided among the instances (`open_side_by_side`). Pools never
spin between runs: an idle worker sleeps instead of taking a core from the gRPC front or another
model. The adaptive plan's all-core session, which runs only batches that start alone, lets its
workers spin while a run lasts (`session.force_spinning_stop`): on the foreign CNN at b1c1 that
gave 894 against 787 items/s, with b1c16 and b32c2 unchanged (peers.py, a `dnnzoo:spin` variant).
Where one pool is shared by batches side by side, spinning lost 8-16 % (README). That session's
workers are pinned one to a core and its caller is held off their cores while a run lasts
(`pool_placement`): after a client's pause the run keeps its second core.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from protos import contract

from serving import cores, gpu, gpu_options
from serving.errors import InvalidInput, ModelRunFailed, ServingError, TooLarge
from serving.limits import ORT_SESSION_ENTRIES, WARM_UP_SECONDS, shown, without_paths
from serving.plan import ADAPTIVE_MAX_BYTES, int_parameter, plan_for
from serving.repository import ModelSpec, TensorSpec
from serving.run_watch import RUN_WATCH

log = logging.getLogger(__name__)

TENSORRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
PREFERENCES = {
    "auto": (TENSORRT, CUDA, CPU),
    "tensorrt": (TENSORRT, CUDA, CPU),
    "cuda": (CUDA, CPU),
    "cpu": (CPU,),
}
GPU_PROVIDERS = (TENSORRT, CUDA)
KIND_GPU, KIND_CPU = 1, 2  # ModelInstanceGroup.Kind values
# ONNX Runtime writes an ERROR line to stderr for every run that fails; those failures are the
# client's (answered INVALID_ARGUMENT), so a bad client could flood the log, and a full stderr pipe
# would stall the instance thread writing it. Runs log nothing; the failure goes to the client.
AFFINITIES = "session.intra_op_thread_affinities"
ORT_CONFIG_VALUE_CHARS = 1024  # the longest session config value ONNX Runtime takes
# Zeros warm up a model (without model_warmup samples in its config) and time the plan's sessions.
# A model with variable dimensions gets the first of these sizes that runs: 1 fails a convolution
# without padding, or a pooling, of a CNN exported with a dynamic height and width, which Triton
# (no warm-up by default) would serve.
WARM_UP_SIZES = (1, 8, 32, 224)
WARM_UP_MAX_ELEMENTS = 1 << 22  # larger sizes are not tried where an input of zeros would pass this (16 MB of FP32)
_RUN_OPTIONS = ort.RunOptions()
_RUN_OPTIONS.log_severity_level = 4
# onnxruntime 1.31's `run_with_iobinding` looks up the run's `gpu_graph_id` and, when it is unset,
# pays ~0.1 ms for the exception its lookup raises (measured here: more than a whole run of the small
# autoencoder). Set to 0, the id ONNX Runtime assumes when none is given, the lookup costs ~2 us.
BOUND_RUN_OPTIONS = ort.RunOptions()
BOUND_RUN_OPTIONS.log_severity_level = 4
BOUND_RUN_OPTIONS.add_run_config_entry("gpu_graph_id", "0")
# Warm batch-1 runs timed on each adaptive session at load (the fastest counts): at least the first,
# more while they fit the second, so that a cheap model's two sessions are compared on enough runs
# (the batcher's single-row choice, serving/batching.py) and a costly one loads no slower.
WARM_TIMED_RUNS = (3, 15)
WARM_TIMING_BUDGET_S = 0.05
_ALLOCATION_MARKERS = ("bad_alloc", "Failed to allocate", "out of memory", "OUT_OF_MEMORY")


@dataclass
class LoadedSession:
    """A session plus what it actually runs on; `run` takes and returns client-shaped arrays."""

    session: ort.InferenceSession
    spec: ModelSpec
    providers: tuple[str, ...]
    intra_op_threads: int
    inter_op_threads: int
    device: int | None = None  # the GPU this session runs on (None: the provider's default, or the CPU)
    bind_outputs: bool = False  # run through an IOBinding, outputs left on the GPU and copied once
    warm_run_ns: int | None = None  # the fastest of a few warm batch-1 runs (the adaptive plan's sessions)
    warm_up_size: int | None = None  # the variable dimensions' size of zeros that ran (`warm_up_size`)
    caller_cores: frozenset[int] | None = None  # cores a run's caller is held to (`pool_placement`)

    def prepare(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Before queueing: ONNX Runtime string tensors hold UTF-8 text, so BYTES become str here
        (one bad request must fail alone, not inside a batch with others)."""
        for tensor in self.spec.inputs:
            if tensor.datatype.name == "BYTES" and tensor.name in inputs:
                inputs[tensor.name] = _as_text(inputs[tensor.name], tensor.name)
        return inputs

    def __post_init__(self) -> None:
        # Looked up once: `run` is on every request's path.
        self._output_names = [t.name for t in self.spec.outputs]
        self._reshaped = any(t.reshape is not None for t in (*self.spec.inputs, *self.spec.outputs))

    def run(self, inputs: dict[str, np.ndarray], options: ort.RunOptions = _RUN_OPTIONS) -> dict[str, np.ndarray]:
        """`inputs` hold only the model's own inputs (validation made sure); `options`: the run's
        own, whose terminate flag a timer may set (the run watch's, a warm-up's)."""
        batched = self.spec.max_batch_size
        if self._reshaped:
            inputs = {t.name: _to_model_shape(inputs[t.name], t, batched) for t in self.spec.inputs if t.name in inputs}
        try:
            if self.caller_cores is not None:
                values = self._run_held(inputs, options)
            elif self.bind_outputs:
                values = self._run_bound(inputs, options)
            else:
                values = self.session.run(self._output_names, inputs, options)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types; the input is the cause
            raise run_failure(self.spec.name, exc) from None
        if not self._reshaped:
            return dict(zip(self._output_names, values))
        return {t.name: _to_client_shape(v, t, batched) for t, v in zip(self.spec.outputs, values)}

    def _run_held(self, inputs: dict[str, np.ndarray], options: ort.RunOptions) -> list[np.ndarray]:
        """A run whose calling thread stays off its pinned workers' cores while it lasts, then gets
        its own affinity back (three system calls, ~1.5 us)."""
        own = os.sched_getaffinity(0)  # pid 0: this thread only
        try:
            os.sched_setaffinity(0, self.caller_cores)
        except OSError:  # those cores were taken from the process since (a changed cpuset): run unheld
            return self.session.run(self._output_names, inputs, options)
        try:
            return self.session.run(self._output_names, inputs, options)
        finally:
            os.sched_setaffinity(0, own)

    def _run_bound(self, inputs: dict[str, np.ndarray], options: ort.RunOptions) -> list[np.ndarray]:
        """A run through an IOBinding: inputs bound from host memory (ONNX Runtime copies them to the
        device as it binds), outputs allocated on the session's device, then copied once into new
        host arrays (`copy_outputs_to_cpu`); on the CPU they are wrapped, not copied (that call
        would copy them). A binding per run: several instance threads may run one session at once."""
        binding = self.session.io_binding()
        for name, array in inputs.items():
            binding.bind_cpu_input(name, array)
        on_gpu = self.providers[0] in GPU_PROVIDERS
        for name in self._output_names:
            binding.bind_output(name, "cuda" if on_gpu else "cpu", self.device or 0)
        if options is _RUN_OPTIONS:
            options = BOUND_RUN_OPTIONS
        else:  # a run's own (the run watch's): it needs the graph id too
            options.add_run_config_entry("gpu_graph_id", "0")
        self.session.run_with_iobinding(binding, options)
        if on_gpu:
            return binding.copy_outputs_to_cpu()
        return [value.numpy() for value in binding.get_outputs()]


def run_failure(model: str, exc: BaseException) -> ServingError:
    """What an ONNX Runtime failure during `run` means for the client: too little memory for this
    request (RESOURCE_EXHAUSTED), else an input the graph cannot take (INVALID_ARGUMENT)."""
    first = _first_line(exc)
    if any(marker in first for marker in _ALLOCATION_MARKERS):
        return TooLarge(f"model {model!r} could not allocate memory for this request; send a smaller one")
    return ModelRunFailed(f"model {model!r} could not run this input: {first}")


def _as_text(array: np.ndarray, name: str) -> np.ndarray:
    out = np.empty(array.shape, dtype=object)
    flat_in, flat_out = array.reshape(-1), out.reshape(-1)
    for i, item in enumerate(flat_in):
        try:
            flat_out[i] = item.decode("utf-8") if isinstance(item, (bytes, bytearray)) else str(item)
        except UnicodeDecodeError:
            raise InvalidInput(f"input {shown(name)}: element {i} is not UTF-8 text, which ONNX Runtime strings need") from None
    return out
def _text(item) -> str:
    return item.decode("utf-8") if isinstance(item, (bytes, bytearray)) else str(item)


def _to_model_shape(array: np.ndarray, tensor: TensorSpec, max_batch_size: int) -> np.ndarray:
    if tensor.reshape is None:
        return array
    lead = (array.shape[0],) if max_batch_size > 0 else ()
    return array.reshape(lead + tensor.reshape)


def _to_client_shape(array: np.ndarray, tensor: TensorSpec, max_batch_size: int) -> np.ndarray:
    if tensor.reshape is None or -1 in tensor.dims:
        return array
    lead = (array.shape[0],) if max_batch_size > 0 else ()
    return array.reshape(lead + tensor.dims)


@dataclass
class ProviderChoice:
    """`--providers` plus what this process has learnt: a provider that failed to start once (no
    GPU, missing CUDA libraries) is not asked for again, so the fallback is paid and logged once."""

    choice: str = "auto"
    failed: set[str] = field(default_factory=set)
    _gpu_checked: bool = False

    def wanted(self, spec: ModelSpec) -> list[str]:
        """Providers to ask for, best first: the flag, narrowed by instance_group kind and the build."""
        order = list(PREFERENCES[self.choice])
        if {group.kind for group in spec.config.instance_group} == {KIND_CPU}:
            order = [CPU]
        available = ort.get_available_providers()
        order = [p for p in order if p in available and p not in self.failed]
        if not self._gpu_checked and any(p in GPU_PROVIDERS for p in order):
            self._gpu_checked = True
            if not gpu.present():  # said once, in one line, instead of ONNX Runtime's failed CUDA start
                log.info("no NVIDIA GPU found (no CUDA driver or no device): models run on %s", CPU)
                self.failed.update(GPU_PROVIDERS)
        return [p for p in order if p not in self.failed] or [CPU]

    def why_not_gpu(self) -> str:
        """Why a model asking for GPUs runs on the CPU, in words for its log line."""
        if self.choice == "cpu":
            return "--providers is cpu"
        if not any(p in ort.get_available_providers() for p in GPU_PROVIDERS):
            return "this ONNX Runtime build has no GPU provider"
        if not gpu.present():
            return "this machine has no usable GPU"
        return "the GPU providers could not start earlier in this process"

    def learn(self, wanted: list[str], used: tuple[str, ...]) -> None:
        for provider in wanted:
            if provider == used[0]:
                break
            self.failed.add(provider)


def session_options(spec: ModelSpec, threads: int | None = None, spin: bool = False,
                    placement: PoolPlacement | None = None) -> ort.SessionOptions:
    """Options from the config and the plan; `threads` replaces the plan's intra-op threads, `spin`
    lets the pool's workers spin while a run lasts (never between runs), `placement` pins them; the
    config's entries win."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # provider fallbacks are logged by us, once, in plain words
    plan = plan_for(spec.config)
    options.intra_op_num_threads = threads or plan.intra_op_threads
    options.inter_op_num_threads = plan.inter_op_threads
    mode = int_parameter(spec.config, "execution_mode") or 0
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if mode == 1 else ort.ExecutionMode.ORT_SEQUENTIAL
    entries = {"session.intra_op.allow_spinning": "1" if spin else "0", "session.inter_op.allow_spinning": "0"}
    if spin:
        entries["session.force_spinning_stop"] = "1"  # workers sleep as soon as each run ends
    if placement is not None:
        entries[AFFINITIES] = placement.workers
    for key, value in spec.config.parameters.items():
        if key in ORT_SESSION_ENTRIES:
            entries[key] = value.string_value
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    level = spec.config.optimization.graph.level if spec.config.HasField("optimization") else 0
    options.graph_optimization_level = {
        -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }.get(level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    return options


@dataclass(frozen=True)
class PoolPlacement:
    """Where an all-core pool's threads run: each worker pinned to a core of its own (ONNX Runtime's
    affinity string), and the thread that calls `run` held to the cores left (`LoadedSession.run`)."""

    workers: str
    caller: frozenset[int]


def pool_placement(threads: int, topology: Path = cores.SYSFS_CPUS) -> PoolPlacement | None:
    """The all-core session's placement: worker i on the (i+1)-th physical core this process may use
    (on every logical CPU of that core), as ONNX Runtime places its workers when it picks the thread
    count itself, and the caller on the CPUs of the cores left (the first, and any the plan does not use).

    Why: unpinned, a worker woken after a pause of 2 ms or more was often put on the caller's core,
    and the run lost its second core. Pinning only the workers is not enough in a server: the
    thread that calls `run` (the gRPC front's dispatch thread, an instance thread) floats, and runs
    whose caller sat on the worker's core took 0.85 ms p50 and 2.6 ms on average, against 0.56-0.58
    ms with the caller held (the foreign CNN, batch 1, 10 ms pauses; README). Whole cores, not
    logical CPUs: a worker on its caller's SMT sibling would share the caller's execution units.
    None where there is no worker to pin, too few cores, or more CPUs than ONNX Runtime's
    1,024-character config value can list."""
    groups = cores.core_groups(topology)
    if threads < 2 or threads > len(groups):
        return None
    workers = groups[1:threads]
    text = ";".join(",".join(str(cpu + 1) for cpu in group) for group in workers)  # ORT numbers CPUs from 1
    if len(text) > ORT_CONFIG_VALUE_CHARS:
        return None
    taken = {cpu for group in workers for cpu in group}
    return PoolPlacement(text, frozenset(cpu for group in groups for cpu in group) - taken)


def open_instances(path: Path, spec: ModelSpec, providers: ProviderChoice, label: str) -> list[LoadedSession]:
    """A session for each of the plan's instances, as Triton places them: every KIND_GPU instance its
    own session on its own GPU (`device_id`); the instances without a GPU share one session, as on
    the CPU, where one session serves every instance thread. A model asking for GPUs where none is
    used says so in one log line and serves on the CPU."""
    wanted = providers.wanted(spec)
    instances = plan_for(spec.config).instances
    on_gpu = wanted[0] in GPU_PROVIDERS
    adaptive = not on_gpu and side_by_side_threads(path, spec) is not None
    asked = gpu_options.gpu_groups(spec.config)
    if asked and not on_gpu:
        log.warning("%s: instance_group asks for %s, but %s: its %d instances run on %s",
                    label, "; ".join(asked), providers.why_not_gpu(), instances, ", ".join(wanted))
    shared: LoadedSession | None = None
    fallback: LoadedSession | None = None  # a GPU instance that got no GPU: the others share it
    out = []
    for number, place in enumerate(gpu_options.placements(spec.config, instances, gpu.count(), on_gpu)):
        if place.device is None:
            shared = shared or open_session(path, spec, providers, label, [CPU] if place.cpu_only else wanted,
                                            spin=adaptive)
            out.append(shared)
        elif fallback is not None:
            out.append(fallback)
        else:
            instance = f"{label} instance {number + 1} (GPU {place.device})"
            loaded = open_session(path, spec, providers, instance, providers.wanted(spec), place.device)
            if loaded.providers[0] not in GPU_PROVIDERS:
                fallback = loaded
            out.append(loaded)
    return out


def open_side_by_side(path: Path, spec: ModelSpec, providers: ProviderChoice, label: str,
                      instances: list[LoadedSession]) -> LoadedSession | None:
    """The adaptive plan's second session (serving/plan.py): the one batches run on when they start
    beside another, with the cores divided among the instances. None where the plan has none, where
    the instances are on GPUs (each has its own session already), or where the model is too large
    to hold twice."""
    threads = side_by_side_threads(path, spec)
    if not threads or any(s.device is not None or s is not instances[0] for s in instances):
        return None
    loaded = open_session(path, spec, providers, f"{label} (batches side by side)", list(instances[0].providers),
                          threads=threads)
    if loaded.warm_up_size is None:  # no zeros run (the config's own samples warmed it): nothing to time
        return loaded
    inputs = loaded.prepare(warm_up_inputs(spec, loaded.warm_up_size))
    sessions = (loaded, instances[0])  # the divided session and the all-core one, timed turn about
    timings: tuple[list[int], list[int]] = ([], [])
    least, most = WARM_TIMED_RUNS
    end = time.perf_counter() + WARM_TIMING_BUDGET_S
    while len(timings[0]) < least or (len(timings[0]) < most and time.perf_counter() < end):
        for session, times in zip(sessions, timings):  # what a lone batch costs on each: the batcher's first estimates
            started = time.perf_counter_ns()
            session.run(dict(inputs))
            times.append(time.perf_counter_ns() - started)
    for session, times in zip(sessions, timings):
        session.warm_run_ns = min(times)
    shape = f" with variable dimensions of {loaded.warm_up_size}" if has_variable_dims(spec) else ""
    log.info("%s: a warm batch-1 run%s takes %.0f us on %d thread(s), %.0f us on %d (fastest of %d)", label, shape,
             loaded.warm_run_ns / 1e3, threads, instances[0].warm_run_ns / 1e3, instances[0].intra_op_threads,
             len(timings[0]))
    return loaded


def side_by_side_threads(path: Path, spec: ModelSpec) -> int | None:
    """The plan's threads for batches side by side, None where one session serves every batch: the
    plan does not adapt, or the model (its file and the files beside it, where ONNX external data
    lives) is too large to hold twice."""
    threads = plan_for(spec.config).side_by_side_threads
    if threads and sum(entry.stat().st_size for entry in path.parent.iterdir() if entry.is_file()) > ADAPTIVE_MAX_BYTES:
        return None
    return threads


def open_session(path: Path, spec: ModelSpec, providers: ProviderChoice, label: str,
                 wanted: list[str] | None = None, device: int | None = None,
                 threads: int | None = None, spin: bool = False) -> LoadedSession:
    """Create, check and warm up one session; ValueError with a readable reason if any step fails.
    `threads` and `spin` as in session_options."""
    placement = pool_placement(threads or plan_for(spec.config).intra_op_threads) if spin else None
    options = session_options(spec, threads, spin, placement)
    wanted = wanted or providers.wanted(spec)
    model_dir = path.parent.parent if path.parent.name.isdigit() else path.parent.parent.parent  # NAME/1/model.onnx[/model.onnx]
    try:
        gpu_options.accelerators(spec.config)
        provider_options = gpu_options.provider_options(wanted, spec.config, model_dir, device)
        bind = gpu_options.io_binding(spec.config)
    except ValueError as exc:
        raise ValueError(f"GPU settings: {exc}") from None
    try:
        session = ort.InferenceSession(str(path), options, providers=wanted, provider_options=provider_options)
    except Exception as exc:  # noqa: BLE001 - ORT raises several types for a bad file
        raise ValueError(f"ONNX Runtime cannot load {path.parent.name}/{path.name}: {_first_line(exc)}") from None
    used = tuple(session.get_providers())
    providers.learn(wanted, used)
    if used[0] != wanted[0]:
        log.warning("%s: asked for %s, running on %s (the others could not start)", label, ", ".join(wanted), ", ".join(used))
    else:
        log.info("%s: running on %s", label, ", ".join(used))
    check_graph(session, spec)
    bind = bind and used[0] in GPU_PROVIDERS and not any(t.datatype.name == "BYTES" for t in (*spec.inputs, *spec.outputs))
    device = device if used[0] in GPU_PROVIDERS else None  # a GPU session that fell back runs on the CPU
    loaded = LoadedSession(session, spec, used, options.intra_op_num_threads, options.inter_op_num_threads, device, bind,
                           caller_cores=placement.caller if placement and used[0] == CPU else None)
    try:
        runs = gpu_options.warmup_runs(spec.config, model_dir)
    except (ValueError, OSError) as exc:
        raise ValueError(f"model_warmup: {_first_line(exc)}") from None
    try:
        for run in runs:
            for _ in range(run.count):
                warm_run(loaded, loaded.prepare(dict(run.inputs)))
    except WarmUpTooLong:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"warm-up inference failed: {_first_line(exc)}") from None
    loaded.warm_up_size = warm_up_size(loaded, required=not runs)
    return loaded


class WarmUpTooLong(ValueError):
    """A warm-up run stopped by its timer: the model is refused, and no other warm-up is tried."""


def warm_run(loaded: LoadedSession, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One warm-up run, stopped by the run watch after WARM_UP_SECONDS: a graph that never ends (a
    Loop of 10^15 steps) would otherwise hold the model manager, and with it polling, loads and
    shutdown, for ever."""
    options = RUN_WATCH.begin(time.monotonic() + WARM_UP_SECONDS)
    try:
        return loaded.run(inputs, options)
    except ServingError:
        if RUN_WATCH.end(options):
            raise WarmUpTooLong(f"a warm-up run took more than {WARM_UP_SECONDS:g} s and was stopped") from None
        raise
    finally:
        RUN_WATCH.end(options)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return without_paths(text[0])[:300] if text else type(exc).__name__


def check_graph(session: ort.InferenceSession, spec: ModelSpec) -> None:
    """Every configured tensor exists in the graph with the same element type, and its dims fit the
    graph's shape (`contract.shape_problems`, which `dnnzoo repo check` applies too)."""
    graph = {arg.name: arg for arg in (*session.get_inputs(), *session.get_outputs())}
    for kind, tensors in (("input", spec.inputs), ("output", spec.outputs)):
        for tensor in tensors:
            arg = graph.get(tensor.name)
            if arg is None:
                raise ValueError(f"config {kind} {tensor.name!r} is not in the ONNX graph (graph has {sorted(graph)})")
            if arg.type != tensor.datatype.onnxruntime:
                raise ValueError(
                    f"{kind} {tensor.name!r}: config says {tensor.datatype.config_name}, the graph has {arg.type}"
                )
            dims = tensor.reshape if tensor.reshape is not None else tensor.dims
            graph_shape = None if arg.shape is None else [d if isinstance(d, int) and d > 0 else -1 for d in arg.shape]
            problems = contract.shape_problems(kind, tensor.name, graph_shape, dims, spec.max_batch_size)
            if problems:
                raise ValueError(problems[0])


def has_variable_dims(spec: ModelSpec) -> bool:
    """Whether an input has a dimension besides the batch that each request sets (-1 in the config)."""
    return any(d == -1 for tensor in spec.inputs for d in tensor.dims)


def warm_up_size(loaded: LoadedSession, required: bool) -> int | None:
    """Run zeros on the session (batch 1) and return the size of variable dimensions that ran: 1, or
    for a model with variable dimensions the first of WARM_UP_SIZES that runs. Where none runs:
    ValueError naming the sizes tried if `required` (the config has no warm-up samples), else None."""
    tried, failure = [], None
    for size in WARM_UP_SIZES if has_variable_dims(loaded.spec) else (1,):
        inputs = warm_up_inputs(loaded.spec, size)
        if size > 1 and any(array.size > WARM_UP_MAX_ELEMENTS for array in inputs.values()):
            break
        tried.append(str(size))
        try:
            warm_run(loaded, loaded.prepare(inputs))
            return size
        except WarmUpTooLong:
            raise
        except Exception as exc:  # noqa: BLE001
            failure = exc
    if not required:
        return None
    if not has_variable_dims(loaded.spec):
        raise ValueError(f"warm-up inference failed: {_first_line(failure)}")
    raise ValueError(f"warm-up inference failed on zeros with the variable dimensions set to each of "
                     f"{', '.join(tried)} (last: {_first_line(failure)}); give config.pbtxt a model_warmup "
                     "sample the model takes")


def warm_up_inputs(spec: ModelSpec, size: int = 1) -> dict[str, np.ndarray]:
    """Zeros of the configured shapes (batch 1, variable dims `size`): enough to build every kernel."""
    inputs = {}
    for tensor in spec.inputs:
        shape = (1,) * (spec.max_batch_size > 0) + tuple(size if d == -1 else d for d in tensor.dims)
        if tensor.datatype.name == "BYTES":
            inputs[tensor.name] = np.full(shape, "", dtype=object)
        else:
            inputs[tensor.name] = np.zeros(shape, dtype=tensor.datatype.numpy)
    return inputs
