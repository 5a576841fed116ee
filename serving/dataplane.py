"""The transport-free data plane: everything a protocol front end asks of the server.

Servicers (the Open Inference Protocol one now, typed task services later) decode their wire
format into `serving.requests` types, call a method here, and encode what comes back. Validation,
batching and statistics (which the metrics read) all happen behind this one path, so every front end
gets them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from protos import contract
from protos.model_config_pb2 import ModelConfig

from serving.batching import Ticket, await_callback
from serving.classification import classify
from serving.errors import ModelNotFound, ModelNotReady, ServingError, TooLarge, VersionRetired
from serving.limits import RequestLimits, shown
from serving.models import READY, LoadedVersion, ModelManager
from serving.repository import ModelSpec
from serving.requests import InferOutput, InferRequest, InferResponse
from serving.statistics import VersionStatistics
from serving.validation import check_inputs, check_outputs

SERVER_NAME = "dnnzoo"
# Only what this server really implements (Triton's extension names).
EXTENSIONS = ("classification", "model_configuration", "model_repository", "statistics", "binary_tensor_data")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


@dataclass(frozen=True)
class ModelHandle:
    """A resolved model version as the typed task services see it: its config and its identity."""

    name: str
    version: str
    spec: ModelSpec
    fingerprint: tuple  # changes whenever the files behind this version change
    requested: str = ""  # the version the client asked for ("" = latest): what inference asks for too

    def parameter(self, key: str, default: str | None = None) -> str | None:
        parameters = self.spec.config.parameters
        return parameters[key].string_value if key in parameters else default


@dataclass(frozen=True)
class IndexEntry:
    name: str
    version: str
    state: str
    reason: str


class DataPlane:
    def __init__(self, models: ModelManager, version: str,
                 limits: RequestLimits = RequestLimits()) -> None:
        self.models = models
        self.limits = limits  # what one inference request may hold: the codec and validation check it
        self.held = HeldBytes(limits.max_queued_bytes)  # what every accepted request holds, together
        # Python work that grows with a request (parsing and decoding a large one) runs here, one at
        # a time: it holds the GIL, and one at a time leaves the rest of it to small requests and
        # the event loop. Answers are encoded on the instance thread that ran them.
        self.heavy = ThreadPoolExecutor(1, thread_name_prefix="dnnzoo-heavy")
        self.version = version
        self.accepting = False  # true once started, false again when shutting down

    # -- health --------------------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.accepting

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.accepting and self.models.ready(name, version)

    # -- metadata --------------------------------------------------------------------------------

    def server_metadata(self) -> tuple[str, str, tuple[str, ...]]:
        return SERVER_NAME, self.version, EXTENSIONS

    def model_metadata(self, name: str, version: str = "") -> ModelInfo:
        loaded = self.models.resolve(name, version)
        spec = loaded.spec
        entry = self.models.entries[name]
        versions = [str(v) for v in sorted(entry.versions)] if not version else [str(loaded.version)]

        def info(tensors) -> list[TensorInfo]:
            return [TensorInfo(t.name, t.datatype.name, spec.full_shape(t)) for t in tensors]

        return ModelInfo(name, versions, contract.PLATFORM, info(spec.inputs), info(spec.outputs))

    def model_config(self, name: str, version: str = "") -> ModelConfig:
        """The effective config: the file's, plus what the server chose (providers, threads)."""
        loaded = self.models.resolve(name, version)
        config = ModelConfig()
        config.CopyFrom(loaded.spec.config)
        if not config.platform and not config.backend:
            config.platform = contract.PLATFORM
        runtime = loaded.runtime
        config.parameters[contract.PROVIDERS].string_value = ",".join(runtime.providers)
        config.parameters["intra_op_thread_count"].string_value = str(runtime.intra_op_threads)
        if not sum(group.count for group in config.instance_group):  # the plan's instance threads, filled in
            group = config.instance_group[0] if config.instance_group else config.instance_group.add()
            group.count = loaded.spec.batch_policy().instances
        config.parameters["inter_op_thread_count"].string_value = str(runtime.inter_op_threads)
        if loaded.side_by_side is not None:
            config.parameters[contract.SIDE_BY_SIDE_THREADS].string_value = str(loaded.side_by_side.intra_op_threads)
        return config

    def handle(self, name: str, version: str = "") -> ModelHandle:
        loaded = self.models.resolve(name, version)
        return ModelHandle(loaded.name, str(loaded.version), loaded.spec, loaded.fingerprint, version)

    def side_file(self, handle: ModelHandle, file_name: str) -> str:
        """A text side file of the model (its vocabulary, its labels); unreadable -> UNAVAILABLE."""
        try:
            return self.models.repository.side_file(handle.name, file_name)
        except ValueError as exc:
            raise ModelNotReady(f"model {handle.name!r} cannot serve: {exc}") from None

    def statistics(self, name: str = "", version: str = "") -> list[VersionStatistics]:
        if not name:
            return [v.stats for v in self.models.loaded()]
        if name not in self.models.entries:
            raise ModelNotFound(f"unknown model {shown(name)}")
        if version:
            return [self.models.resolve(name, version).stats]
        return [v.stats for v in self.models.loaded() if v.name == name]

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        rows = []
        for name, entry in sorted(self.models.entries.items()):
            if entry.versions:
                warning = entry.spec.warning if entry.spec is not None else ""  # config fields not applied
                rows += [IndexEntry(name, str(v), READY, warning) for v in sorted(entry.versions)]
            if not ready_only:
                rows += [IndexEntry(name, str(v), "UNAVAILABLE", why) for v, why in sorted(entry.version_errors.items())]
                if not entry.versions:
                    rows.append(IndexEntry(name, "", entry.state, entry.reason))
        return rows

    async def load(self, name: str, override: ModelConfig | None = None) -> None:
        await self.models.load(name, override)

    async def unload(self, name: str) -> None:
        await self.models.unload(name)

    # -- inference ------------------------------------------------------------------------------

    async def infer(self, request: InferRequest, deadline: float | None = None, run_here: bool = False) -> InferResponse:
        """Run one request through its model's batcher. `deadline` is in `time.monotonic()` seconds;
        `run_here`: the caller has no other request waiting, so an idle, cheap model may run it on the
        event loop's thread (`start`), sparing two thread hand-overs."""
        return await await_callback(lambda done: self.start(request, deadline, done, run_here), Call.cancel)

    async def infer_off_loop(self, decode: Callable[[], InferRequest], deadline: float | None = None) -> InferResponse:
        """`infer` for a large request (REST's big bodies): decoding (`decode()`), validation and
        queueing run on the heavy worker thread, so that the event loop keeps serving everyone else."""
        return await await_callback(lambda done: self.start(decode(), deadline, done), Call.cancel, self.heavy)

    def start(self, request: InferRequest, deadline: float | None, done: Callable[[object], None],
              run_here: bool = False) -> Call:
        """Validate and queue one request; `done` gets its InferResponse, or the exception, on the
        model's instance thread (or on this one, with `run_here`, when the model is idle and cheap).
        What is wrong with the request itself raises here instead."""
        if request.timeout_us:
            own = time.monotonic() + request.timeout_us / 1e6
            deadline = own if deadline is None else min(deadline, own)
        for attempt in range(3):
            loaded = self.models.resolve(request.model, request.version)
            try:
                return self._start(loaded, request, deadline, done, run_here)
            except VersionRetired:  # replaced between resolving and queueing: the new one serves it
                if attempt == 2:
                    raise

    def _start(self, loaded: LoadedVersion, request: InferRequest, deadline: float | None,
               done: Callable[[object], None], run_here: bool) -> Call:
        started = time.monotonic_ns()
        stats = loaded.stats
        try:
            inputs = loaded.runtime.prepare(check_inputs(loaded.spec, request, self.limits))
            wanted = check_outputs(loaded.spec, request.outputs)
            held = self.held.take(_held_bytes(inputs))
        except Exception as exc:
            _failed(stats, started, exc)
            raise

        def finished(result) -> None:
            self.held.give_back(held)
            if not isinstance(result, BaseException):
                try:
                    values, timings = result
                    response = InferResponse(loaded.name, stats.version, request.id, _outputs(loaded.spec, values, wanted))
                except Exception as exc:  # noqa: BLE001 - answered like any other failure
                    result = exc
                else:
                    stats.record_success(time.monotonic_ns() - started, timings)
                    done(response)
                    return
            _failed(stats, started, result, admitted=True)
            done(result)

        stats.admit()
        try:
            ticket = loaded.batcher.enqueue(inputs, deadline, finished, run_here)
        except VersionRetired:
            stats.release()  # not a failure: the caller queues it at the version now serving
            self.held.give_back(held)
            raise
        except Exception as exc:
            self.held.give_back(held)
            _failed(stats, started, exc, admitted=True)
            raise
        return Call(self, loaded, ticket, started, held)


def _failed(stats: VersionStatistics, started: int, why: BaseException | str, admitted: bool = False) -> None:
    """Count a failed request, by the error's name (an unexpected one is Internal)."""
    if isinstance(why, BaseException):
        why = type(why).__name__ if isinstance(why, ServingError) else "Internal"
    stats.record_failure(time.monotonic_ns() - started, why, admitted)


@dataclass(frozen=True)
class Call:
    """A request `DataPlane.start` queued. `cancel` drops it unless it already runs, in which case
    its answer still comes (and counts as a success)."""

    plane: DataPlane
    loaded: LoadedVersion
    ticket: Ticket
    started: int
    held: int = 0

    def cancel(self) -> bool:
        if not self.loaded.batcher.cancel(self.ticket):
            return False
        self.plane.held.give_back(self.held)
        _failed(self.loaded.stats, self.started, "CANCELLED", admitted=True)
        return True


class HeldBytes:
    """The input bytes of every request accepted and not yet answered, across all models, against a
    cap (`--max-queued-mb`): a greedy client with many large concurrent requests gets
    RESOURCE_EXHAUSTED instead of growing the server's memory until the pod is killed."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.total = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> int:
        with self._lock:
            if self.total + size > self.cap:
                raise TooLarge(
                    f"the server holds {self.total >> 20} MiB of accepted requests and this one needs "
                    f"{max(1, size >> 20)} MiB more; the cap is {self.cap >> 20} MiB (--max-queued-mb); retry later"
                )
            self.total += size
        return size

    def give_back(self, size: int) -> None:
        with self._lock:
            self.total -= size


def _held_bytes(inputs: dict[str, np.ndarray]) -> int:
    """Memory a request's inputs hold; a BYTES element is Python objects (its bytes, its text and a
    slot in each array), counted as 128 bytes."""
    return sum(a.size * 128 if a.dtype == object else a.nbytes for a in inputs.values())


def _outputs(spec: ModelSpec, values, wanted) -> list[InferOutput]:
    by_name = {t.name: t for t in spec.outputs}
    result = []
    for output in wanted:
        tensor, value = by_name[output.name], values[output.name]
        if output.classification > 0:
            text = classify(value, output.classification, tensor.labels, spec.max_batch_size > 0, output.name)
            result.append(InferOutput(output.name, "BYTES", text))
        else:
            result.append(InferOutput(output.name, tensor.datatype.name, value))
    return result
