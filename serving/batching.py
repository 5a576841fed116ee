"""Dynamic batching with Triton's semantics, one batcher per loaded model version.

Requests wait in a FIFO queue. When an execution slot is free (one per model instance), the batcher
takes the oldest request and every following request that fits beside it (same dtypes and same
non-batch dims, total rows <= max_batch_size), stopping at the first that does not: a request is
never split and never overtaken. One difference from Triton: when more than one instance is idle,
what is queued is spread over them (each batch takes its share of the rows, in order) instead of
all going to one, because on a CPU a batch stops gaining long before max_batch_size while an idle
instance is an idle core (two b32 requests: two b32 runs side by side, not one b64 run). With a
delay configured it waits until the batch is full, reaches a preferred size, or the oldest request
has waited `max_queue_delay_microseconds`; with `dynamic_batching {}` it never waits. Without
dynamic batching each request runs alone.

The queue is bounded (`default_queue_policy.max_queue_size`, 0 = unbounded) and answers QueueFull
when full. A request whose deadline passed while queued gets DeadlineExceeded and is not run; a
cancelled request (its future cancelled by gRPC) is dropped. ONNX Runtime releases the GIL, so the
batch runs in a thread pool and the event loop keeps accepting requests meanwhile.

A request is never launched from `submit` itself: it is queued and the scheduler task takes it
in a later loop iteration, so requests that arrive together (the native gRPC front hands them over
in batches) are all queued before the first batch is cut, and merge. When a batch holds every
request the model has in hand and its measured cost is below `inline_below_s`, it runs on the
event loop thread: handing it to a worker thread and back costs about as much as running a small
model (0.3-0.5 ms on a small, busy CPU), and the loop has nothing else of this model's to do
meanwhile. Under concurrent load batches go to the pool, where they overlap with the loop's own
protocol work. The first execution always goes to the pool, since nothing has been measured yet.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from serving.errors import DeadlineExceeded, InvalidInput, ModelNotReady, QueueFull

Arrays = dict[str, np.ndarray]
RunFn = Callable[[Arrays], Arrays]


@dataclass(frozen=True)
class BatchPolicy:
    """What `dynamic_batching`, `max_batch_size` and `instance_group` say about scheduling."""

    max_batch_size: int = 0  # 0: the model has no batch dimension; requests never merge
    dynamic: bool = False
    max_queue_delay_s: float = 0.0
    preferred_sizes: tuple[int, ...] = ()
    max_queue_size: int = 0  # 0: unbounded
    instances: int = 1  # executions in flight at once for this model version
    inline_below_s: float = 0.001  # a lone batch measured to cost less runs on the loop thread; 0: never


class Timings(NamedTuple):
    """Nanoseconds a request spent in each phase (compute phases are its batch's).

    A NamedTuple rather than a dataclass: one is built per request, on the event loop thread."""

    queue_ns: int
    compute_input_ns: int
    compute_infer_ns: int
    compute_output_ns: int
    batch_size: int


@dataclass
class _Pending:
    inputs: Arrays
    rows: int
    signature: tuple
    future: asyncio.Future
    enqueued_ns: int
    deadline: float | None  # loop.time() by which it must have started, or None


@dataclass
class _Executed:
    outputs: list[Arrays]
    input_ns: int
    infer_ns: int
    output_ns: int


_COST_WEIGHT = 0.2  # of the newest execution in the running estimate of a row's cost
_COST_CLIP = 2.0  # an execution counts as at most this many times the estimate: on a busy machine a
# thread is often preempted mid-run, and those outliers say nothing about the model's own cost


@dataclass
class Batcher:
    """Queue + scheduler for one model version; `submit` is the only way in."""

    run: RunFn
    policy: BatchPolicy
    executor: Executor
    label: str = "model"  # for messages: "'name' version v"
    on_execution: Callable[[int, int, int, int], None] | None = None  # rows, input/infer/output ns
    _queue: deque[_Pending] = field(default_factory=deque, init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _free: int = field(default=0, init=False)  # instances not executing now
    _running: set[asyncio.Future] = field(default_factory=set, init=False)  # executions in the pool
    _row_ns: float | None = field(default=None, init=False)  # running estimate of one row's cost
    _in_hand: int = field(default=0, init=False)  # requests submitted and not yet answered
    _task: asyncio.Task | None = field(default=None, init=False)
    _closing: bool = field(default=False, init=False)

    def start(self) -> None:
        self._free = max(1, self.policy.instances)
        self._task = asyncio.get_running_loop().create_task(self._schedule(), name=f"batcher {self.label}")

    @property
    def queued(self) -> int:
        return sum(1 for item in self._queue if not item.future.done())

    async def submit(self, inputs: Mapping[str, np.ndarray], deadline: float | None = None) -> tuple[Arrays, Timings]:
        """Queue one request; return its outputs (its own rows only) and where its time went.

        `deadline` is in `loop.time()` units. Cancelling the awaiting task drops the request.
        """
        if self._closing or self._task is None:
            raise ModelNotReady(f"{self.label} is unloading; retry")
        policy = self.policy
        if policy.max_queue_size and len(self._queue) >= policy.max_queue_size:
            self._purge_done()
            if len(self._queue) >= policy.max_queue_size:
                raise QueueFull(f"{self.label}: queue is full ({policy.max_queue_size} requests waiting); retry later")
        rows, signature = self._shape_of(inputs)
        loop = asyncio.get_running_loop()
        item = _Pending(dict(inputs), rows, signature, loop.create_future(), time.monotonic_ns(), deadline)
        self._in_hand += 1
        self._queue.append(item)
        self._wake.set()
        try:
            return await item.future
        finally:
            self._in_hand -= 1

    async def close(self) -> None:
        """Stop taking requests, run everything already queued without waiting, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.shield(self._task)
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    # -- scheduling -------------------------------------------------------------------------

    def _shape_of(self, inputs: Mapping[str, np.ndarray]) -> tuple[int, tuple]:
        if self.policy.max_batch_size <= 0:
            return 1, ()
        rows = {array.shape[0] for array in inputs.values()} if inputs else {1}
        if len(rows) != 1:
            raise InvalidInput(f"{self.label}: every input must have the same batch size (dim 0), got {sorted(rows)}")
        signature = tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in inputs.items()))
        return rows.pop(), signature

    def _purge_done(self) -> None:
        self._queue = deque(item for item in self._queue if not item.future.done())

    def _expire(self, now: float) -> None:
        """Answer requests whose deadline passed while queued; they are never run."""
        for item in self._queue:
            if item.deadline is not None and now >= item.deadline and not item.future.done():
                item.future.set_exception(DeadlineExceeded(f"{self.label}: deadline passed while queued; not run"))

    def _head(self) -> tuple[list[_Pending], bool]:
        """The requests the next batch would take, and whether it could still grow by waiting."""
        self._expire(asyncio.get_running_loop().time())
        self._purge_done()
        if not self._queue:
            return [], False
        first = self._queue[0]
        if not self.policy.dynamic or self.policy.max_batch_size <= 0:
            return [first], False
        batch, rows, blocked = [first], first.rows, False
        for item in list(self._queue)[1:]:
            if item.signature != first.signature or rows + item.rows > self.policy.max_batch_size:
                blocked = True  # waiting cannot make this batch larger
                break
            batch.append(item)
            rows += item.rows
        if self._free > 1 and len(batch) > 1:
            # Spread what is here over the idle instances rather than give it all to one: on a CPU a
            # batch stops paying well before max_batch_size, and an idle instance is an idle core.
            share, taken, count = -(-rows // self._free), 0, 0
            while count < len(batch) and (count == 0 or taken + batch[count].rows <= share):
                taken += batch[count].rows
                count += 1
            if count < len(batch):
                return batch[:count], False
        return batch, not blocked and rows < self.policy.max_batch_size and rows not in self.policy.preferred_sizes

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch, _ = self._head()
            if not batch or not self._free:
                if not batch and self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()  # set by submit, close and every finished execution
                continue
            while True:
                batch, can_grow = self._head()
                if not batch or not can_grow or self._closing:
                    break
                wait = batch[0].enqueued_ns / 1e9 + self.policy.max_queue_delay_s - time.monotonic_ns() / 1e9
                if wait <= 0:
                    break
                deadlines = [item.deadline for item in self._queue if item.deadline is not None]
                if deadlines:  # wake to answer a request whose deadline passes while it waits
                    wait = min(wait, max(0.0, min(deadlines) - loop.time()) + 1e-4)
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
            if not batch:
                continue
            for _ in batch:
                self._queue.popleft()
            self._launch(batch)

    def _launch(self, batch: list[_Pending]) -> None:
        """Take an instance and run `batch`: inline when it is known to be cheap, else in the pool."""
        self._free -= 1
        started = time.monotonic_ns()
        requests, rows = [item.inputs for item in batch], [item.rows for item in batch]
        total = sum(rows)
        alone = len(batch) == self._in_hand and self._free == max(1, self.policy.instances) - 1
        if alone and self._row_ns is not None and self._row_ns * total < self.policy.inline_below_s * 1e9:
            try:
                result: _Executed | BaseException = self._run_batch(requests, rows)
            except Exception as exc:  # noqa: BLE001 - delivered to every request of the batch
                result = exc
            self._finish(batch, started, total, result)
            return
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        self._running.add(finished)

        def deliver(result: _Executed | BaseException) -> None:
            self._running.discard(finished)
            finished.set_result(None)
            self._finish(batch, started, total, result)

        def work() -> None:
            try:
                result: _Executed | BaseException = self._run_batch(requests, rows)
            except BaseException as exc:  # noqa: BLE001 - the loop thread frees the instance either way
                result = exc
            try:
                loop.call_soon_threadsafe(deliver, result)
            except RuntimeError:  # the loop is gone: nobody is waiting any more
                pass

        try:
            self.executor.submit(work)
        except RuntimeError as exc:  # the pool was shut down
            deliver(exc)

    def _finish(self, batch: list[_Pending], started: int, rows: int, result: _Executed | BaseException) -> None:
        """On the loop thread: free the instance, then answer every request still waiting."""
        self._free += 1
        self._wake.set()
        if isinstance(result, BaseException):
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(result)
            return
        cost = (result.input_ns + result.infer_ns + result.output_ns) / rows
        if self._row_ns is None:
            self._row_ns = cost
        else:
            self._row_ns += _COST_WEIGHT * (min(cost, _COST_CLIP * self._row_ns) - self._row_ns)
        if self.on_execution is not None:
            self.on_execution(rows, result.input_ns, result.infer_ns, result.output_ns)
        for item, outputs in zip(batch, result.outputs):
            if not item.future.done():
                item.future.set_result(
                    (outputs, Timings(started - item.enqueued_ns, result.input_ns, result.infer_ns, result.output_ns, rows))
                )

    def _run_batch(self, requests: list[Arrays], rows: list[int]) -> _Executed:
        """In a worker thread: concatenate along dim 0, run, slice each request's rows back out."""
        t0 = time.monotonic_ns()
        if len(requests) == 1:
            merged = requests[0]
        else:
            merged = {name: np.concatenate([r[name] for r in requests], axis=0) for name in requests[0]}
        t1 = time.monotonic_ns()
        outputs = self.run(merged)
        t2 = time.monotonic_ns()
        if len(requests) == 1:
            split = [outputs]
        else:
            offsets = np.cumsum([0, *rows])
            split = [{name: value[a:b] for name, value in outputs.items()} for a, b in zip(offsets[:-1], offsets[1:])]
        t3 = time.monotonic_ns()
        return _Executed(split, t1 - t0, t2 - t1, t3 - t2)
