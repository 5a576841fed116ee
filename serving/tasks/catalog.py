"""Finding a task's model in the repository, reading its facts, and running it on the data plane.

Every typed service goes through here: a model is looked up by name (NOT_FOUND when unknown), its
`dnnzoo.task` parameter must be the one the service needs (INVALID_ARGUMENT otherwise: the request
named the wrong model) and it must carry the parameters protos.contract's task table requires
(FAILED_PRECONDITION otherwise, with the reason `dnnzoo repo check` gives), a companion model (`NAME_neighbors`, `NAME_step`) is paired with its main
model only when both come from one export (UNAVAILABLE otherwise: the repository holds a mixed
set, which a re-export of both repairs), and inference is an ordinary data-plane request, so
dynamic batching, statistics and metrics are those of the Open Inference Protocol. Requests larger
than the model's max_batch_size are split into chunks that are admitted a few at a time
(`in_window`), so one big call cannot fill the model's queue ahead of everyone else's requests; the
first chunk that fails cancels the rest (queued ones leave the batcher unrun) and its error is the call's.

Operator caps on what one call may carry (`TaskLimits`, the serve flags of the same names) are
checked by the task functions before any work, with `Catalog.cap`: over a cap is TooLarge
(RESOURCE_EXHAUSTED), naming the flag an operator would raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from protos import contract

from serving.dataplane import DataPlane, ModelHandle
from serving.errors import InvalidInput, ModelNotReady, TooLarge, Unsupported
from serving.limits import shown
from serving.requests import InferInput, InferRequest, RequestedOutput

T = TypeVar("T")

# What the contract's fingerprints are called in a message. Older repositories lack them: such a
# pair is served as before.
FINGERPRINT_NAMES = {contract.VOCAB_HASH: "vocabulary hash", contract.EXPORT_ID: "export id"}
FINGERPRINT_CHARS = 64


def same_export(main: ModelHandle, companion: ModelHandle) -> None:
    """Refuse a companion from another export than its main model: a neighbour graph over an old
    vocabulary would answer ids that the main model's vocab.txt maps to other words, silently."""
    for key in contract.FINGERPRINTS:
        what = FINGERPRINT_NAMES[key]
        ours, theirs = main.parameter(key), companion.parameter(key)
        if ours and theirs and ours != theirs:
            raise ModelNotReady(
                f"model {shown(companion.name)} comes from another export than {shown(main.name)} "
                f"({what} {theirs[:FINGERPRINT_CHARS]} != {ours[:FINGERPRINT_CHARS]}); re-export both"
            )


MIN_WINDOW = 2  # chunks of one call queued or running at once, at least (more when the model has more instances)


async def in_window(jobs: Sequence[Callable[[], Awaitable[T]]], window: int) -> list[T]:
    """Run `jobs` in order, at most `window` at a time; results in order.

    The first failure cancels the jobs still running (a cancelled inference leaves its batcher
    queue) and is raised; later jobs never start. Plain tasks and `asyncio.wait`, so Python 3.10
    works (no TaskGroup).
    """
    results: list = [None] * len(jobs)
    running: dict[asyncio.Future, int] = {}
    started = 0
    try:
        while started < len(jobs) or running:
            while started < len(jobs) and len(running) < window:
                running[asyncio.ensure_future(jobs[started]())] = started
                started += 1
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=running.__getitem__):
                results[running.pop(task)] = task.result()  # the first failure leaves the loop here
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    return results


@dataclass(frozen=True)
class TaskLimits:
    """Server settings that bound what one typed request may ask for."""

    max_generate_count: int = 64
    max_forecast_horizon: int = 1000
    max_image_pixels: int = 4096 * 4096
    max_images: int = 256
    max_words: int = 1024
    max_word_pairs: int = 1024
    max_series: int = 256
    max_series_length: int = 100_000
    max_stream_values: int = 1000
    max_rows: int = 4096


@dataclass
class Catalog:
    plane: DataPlane
    limits: TaskLimits = field(default_factory=TaskLimits)
    _cache: dict[tuple[str, str], tuple[tuple, object]] = field(default_factory=dict, init=False)

    def cap(self, limit: str, count: int, service: str, what: str) -> None:
        """TooLarge when `count` is over the operator's cap `limit` (a TaskLimits field; its serve
        flag is --limit): e.g. "Classify: 300 images in one call; the server's cap is 256 (--max-images)"."""
        allowed = getattr(self.limits, limit)
        if count > allowed:
            raise TooLarge(f"{service}: {count} {what}; the server's cap is {allowed} (--{limit.replace('_', '-')})")

    def window(self, handle: ModelHandle) -> int:
        """How many chunks of one call may be queued or running at once on this model. Once per model
        version: the plan reads the cgroup and sysfs files (~0.1 ms), too slow for every call."""
        return self.cached(handle, "window", lambda: max(MIN_WINDOW, handle.spec.batch_policy().instances))

    def find(self, name: str, version: str, task: str, service: str) -> ModelHandle:
        if not name:
            raise InvalidInput(f"{service}: the request names no model")
        handle = self.plane.handle(name, version)
        actual = handle.parameter(contract.TASK, "")
        if actual != task:
            what = f"a {actual!r} model" if actual else "a model without a dnnzoo.task parameter"
            raise InvalidInput(f"model {name!r} is {what}; {service} needs a {task!r} model")
        problems = self.cached(handle, "contract", lambda: contract.task_problems(task, contract.parameters_of(handle.spec.config)))
        if problems:
            raise Unsupported(f"model {name!r} cannot serve {service}: {'; '.join(problems)}")
        return handle

    def companion(self, handle: ModelHandle, key: str, task: str, service: str) -> ModelHandle:
        """The companion model export recorded under `dnnzoo.companion.<key>` (e.g. NAME_neighbors),
        from the same export as `handle` (see `same_export`)."""
        name = handle.parameter(contract.companion_key(key))
        if not name:
            raise Unsupported(f"model {handle.name!r} has no companion {key!r} model (dnnzoo.companion.{key}), which {service} needs")
        companion = self.find(name, "", task, service)
        same_export(handle, companion)
        return companion

    def number(self, handle: ModelHandle, key: str, kind: type = int):
        """A numeric `dnnzoo.` parameter the service needs; missing or unreadable -> FAILED_PRECONDITION."""
        text = handle.parameter(key)
        try:
            return kind(text)
        except (TypeError, ValueError):
            raise Unsupported(f"model {handle.name!r} has no usable parameter {key!r} (got {text!r})") from None

    def cached(self, handle: ModelHandle, what: str, build: Callable[[], T]) -> T:
        """`build()` once per model version (a vocabulary, a label list), kept until the files change."""
        key = (handle.name, what)
        stamp = (handle.version, handle.fingerprint)
        cached = self._cache.get(key)
        if cached is None or cached[0] != stamp:
            cached = (stamp, build())
            self._cache[key] = cached
        return cached[1]

    def lines(self, handle: ModelHandle, file_name: str) -> tuple[str, ...]:
        """A side file's lines (vocabulary, labels), read once per model version."""
        return self.cached(handle, f"file:{file_name}", lambda: tuple(self.plane.side_file(handle, file_name).splitlines()))

    def labels(self, handle: ModelHandle, output: str, count: int) -> tuple[str, ...]:
        """Class names: the output's label_filename, else `dnnzoo.labels_file`, else the class ids."""
        tensor = next((t for t in handle.spec.outputs if t.name == output), None)
        labels = tensor.labels if tensor is not None else ()
        if not labels and handle.parameter(contract.LABELS_FILE_KEY):
            labels = self.lines(handle, handle.parameter(contract.LABELS_FILE_KEY))
        if len(labels) < count:
            labels = tuple(labels) + tuple(str(i) for i in range(len(labels), count))
        return tuple(labels)

    async def run(self, handle: ModelHandle, inputs: dict[str, np.ndarray], outputs: list[str] | None = None,
                  deadline: float | None = None) -> dict[str, np.ndarray]:  # fmt: skip
        """Run the model on numpy inputs (batch first when it batches); outputs by name.

        `deadline` is in `time.monotonic()` seconds (the RPC's), as for the Open Inference Protocol.
        """
        spec = handle.spec
        tensors = {t.name: t for t in spec.inputs}
        arrays = {name: np.ascontiguousarray(value, dtype=tensors[name].datatype.numpy) for name, value in inputs.items()}
        wanted = [RequestedOutput(name) for name in outputs] if outputs else []
        if spec.max_batch_size <= 0:
            chunks = [arrays]
        else:
            rows = len(next(iter(arrays.values())))
            step = spec.max_batch_size
            chunks = [{k: v[i : i + step] for k, v in arrays.items()} for i in range(0, rows, step)]

        async def one(chunk: dict[str, np.ndarray]):
            request = InferRequest(
                handle.name,
                [InferInput(name, tensors[name].datatype.name, value) for name, value in chunk.items()],
                version=handle.requested,
                outputs=list(wanted),
            )
            response = await self.plane.infer(request, deadline)
            return {out.name: out.data for out in response.outputs}

        if len(chunks) == 1:
            return await one(chunks[0])
        results = await in_window([lambda chunk=chunk: one(chunk) for chunk in chunks], self.window(handle))
        return {name: np.concatenate([r[name] for r in results]) for name in results[0]}
