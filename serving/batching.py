"""Dynamic batching with Triton's semantics, one batcher per loaded model version.

Requests wait in a FIFO queue. Each model instance (`instance_group.count`) is a thread that takes
the next batch itself as soon as it is free, runs it and answers it, as Triton's instance threads
do: the oldest request and every following request that fits beside it (same dtypes and same
non-batch dims, total rows <= max_batch_size), stopping at the first that does not: a request is
never overtaken. Two differences from Triton: when more than one instance is idle,
what is queued is spread over them (each batch takes its share of the rows, in order) instead of
all going to one, because on a CPU a batch stops gaining long before max_batch_size while an idle
instance is an idle core (two b32 requests: two b32 runs side by side, not one b64 run); and under
the adaptive plan (serving/plan.py) a large request that arrives while another runs and nothing
waits is split into a part per instance (`_parts`), answered once all its parts are, with or without
dynamic batching. Neither when a queue delay is configured, which asks for fuller batches. With a
delay configured an instance waits until the batch is full, reaches a preferred size, or the oldest
request has waited `max_queue_delay_microseconds`; with `dynamic_batching {}` it never waits.
Without dynamic batching no two requests share a batch.

A batch that fails is run again request by request on the same instance, so that only the request
that caused the failure fails (Triton fails the whole batch). An instance thread that dies (a bug)
answers its batch and the queue UNAVAILABLE and reports why (`on_failure`), so its model leaves READY.

The queue is bounded (`default_queue_policy.max_queue_size`, 0 = unbounded) and answers QueueFull
when full. A request whose deadline passed while queued gets DeadlineExceeded and is not run; a
cancelled request is dropped. A run is stopped by the run watch (serving/run_watch.py) once every
request in it has passed its deadline, or after `max_run_s`; one on a caller's thread after
`run_here_longest_s`, its request then queued for an instance. ONNX Runtime releases the GIL, so
instances run side by side.

Why threads and not the event loop: every hand-over between threads costs a wake-up, and on a
small busy CPU a wake-up costs 0.1-1 ms, as much as running a small model. Here a request
crosses one (from whoever enqueues it to an instance thread), and the answer is delivered by the
instance thread through the request's `done` callback: the native gRPC front encodes and sends it
right there, and asyncio callers (`submit`) get it through `call_soon_threadsafe`.
`benchmarks/bare_server.py` measures the same design with nothing else around it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from serving.errors import DeadlineExceeded, InvalidInput, ModelNotReady, QueueFull, RunStopped, VersionRetired
from serving.run_watch import RUN_WATCH
from serving.single_row_probe import SingleRowProbe

log = logging.getLogger(__name__)
SPLIT_LOG_SECONDS = 60.0  # at most one log line a minute about merged batches that failed and were split

Arrays = dict[str, np.ndarray]
RunFn = Callable[[Arrays, object], Arrays]  # (inputs, ONNX Runtime RunOptions of this run) -> outputs


@dataclass(frozen=True)
class BatchPolicy:
    """What `dynamic_batching`, `max_batch_size` and `instance_group` say about scheduling."""

    max_batch_size: int = 0  # 0: the model has no batch dimension; requests never merge
    dynamic: bool = False
    max_queue_delay_s: float = 0.0
    preferred_sizes: tuple[int, ...] = ()
    max_queue_size: int = 0  # 0: unbounded
    instances: int = 1  # instance threads: executions in flight at once for this model version
    # An idle model's lone request measured cheaper than this runs on the caller's thread. 5 ms, not 1:
    # on a slower 2-core machine the foreign CNN's batch-1 run took 1.26 ms, missed a 1 ms bar, and
    # paid the hand-over (b1c1 401 -> 460 items/s with 5 ms, b1c16 and b32c2 unchanged, peers.py).
    # What it costs: a call that arrives meanwhile waits up to this long to be dispatched.
    run_here_below_s: float = 0.005
    # ... and a run there that is still going after this long was misjudged (a request sized far
    # beyond those measured, or a graph that loops as often as an input says): it is stopped
    # (serving/run_watch.py), the model's estimate raised to what it took, and the request queued
    # for an instance thread, so that the caller's thread (the native front's dispatch thread, the
    # REST event loop) serves every other model's calls again. Ten times the bar: a preempted cheap
    # run comes nowhere near it; the thread is held at most this long plus the watch's tick.
    run_here_longest_s: float = 0.05
    # ... and after this many such runs a model version runs nothing in place again: a client that
    # alternates cheap requests (which bring the estimate back down) with misjudged ones would
    # otherwise hold the caller's thread again and again. So one model version can hold it at most
    # this many times (0.2 s in all), ever.
    run_here_strikes: int = 3
    # Any run still going after this long is stopped and its requests answered DEADLINE_EXCEEDED
    # (`serve --max-run-seconds`; 0: no bound), and so is one whose every request's deadline has
    # passed (their clients were answered at their deadlines; the run would hold its instance).
    max_run_s: float = 0.0
    # The adaptive plan (serving/plan.py): a batch that starts alone runs on the all-core session
    # unless the one-thread session is measured to run it in less than this. Below 0.3 ms a second
    # core can save at most ~0.15 ms, about what waking the pool and stopping its spinning cost: a
    # 784-1024-512-10 MLP (0.2 ms on one thread) answered 1,338 b1c1 requests/s on one thread and
    # 1,071 on both; the foreign CNN (0.64 ms on one thread) gains 13 % from both (peers.py, README).
    # Above the bar, a lone single-row batch still runs on one thread where the first lone single
    # rows in service found that faster than every core (`Batcher._one_thread_enough`, serving/
    # single_row_probe.py): an unseen LSTM's batch-1 run takes 0.34 ms on one thread and 0.46 ms on
    # both, and it answered 1,271 b1c1 requests/s against 1,070 (a transformer encoder: 1,123
    # against 1,003; peers.py, README).
    lone_on_one_thread_below_s: float = 0.0003
    # "Faster": in service, at most this fraction of the all-core time. At equal times one thread
    # still wins, since it leaves a core to the client and the front (the encoder at 0.87-0.9 answered
    # 990 b1c1 requests/s on one thread against 931 on both). Medians in service, one thread over
    # every core: the LSTM 0.78, the encoder 0.87; the CNNs 1.13 (3x64x64), 1.21 (MobileNet-style),
    # 1.54 (the foreign CNN)
    single_row_on_one_thread_below: float = 1.0
    # ... and a batch that starts alone within this long of two batches running side by side counts as
    # beside another: two clients whose batches end close together would otherwise take turns
    # starting "alone" on every core against the other's one-thread batch (3 threads on 2 cores;
    # a 3x64x64 CNN at b32c2: 2,526 items/s adaptive against 2,786 on a fixed 2x1 plan). It counts
    # from when two batches last ran at once, so from the end of a long one: counted from its start,
    # a 224x224 CNN's 60-110 ms batches outlived it (b32c2: 370 against 441 items/s, peers.py).
    side_by_side_memory_s: float = 0.05
    # ... and a request whose rows the divided session is measured to need at least this long for is
    # split into a part per instance, run side by side, where an instance would otherwise idle
    # (`Batcher._parts` says when; a model with a batch dimension, dynamic batching or not). Two b32
    # clients then keep both cores busy: each part runs at the one-thread session's efficiency (the
    # best on a CPU for the CNNs measured), and the next request's parts start as soon as an
    # instance is free, where two whole batches side by side left a core idle while each client
    # turned around. 2 ms: the second hand-over (~0.1 ms) costs
    # at most 5 %. Figures in the README (peers.py, b32c2).
    split_above_s: float = 0.002


class Timings(NamedTuple):
    """Nanoseconds a request spent in each phase (compute phases are its batch's)."""

    queue_ns: int
    compute_input_ns: int
    compute_infer_ns: int
    compute_output_ns: int
    batch_size: int


Result = tuple[Arrays, Timings]
Done = Callable[["Result | BaseException"], None]  # called once, on an instance thread, unless cancelled

_QUEUED, _TAKEN, _DROPPED = range(3)
_LONGEST_WAIT_S = 60.0  # a timed wait wakes at least this often (and never overflows the OS timer)
_COST_WEIGHT = 0.2  # of the newest execution in the running estimate of a row's cost
_COST_CLIP = 2.0  # an execution counts as at most this many times the estimate: on a busy machine a
# thread is often preempted mid-run, and those outliers say nothing about the model's own cost


class Ticket:
    """One queued request, or one part of a split request (`split`). `done` gets its own rows of
    the outputs, or the exception."""

    __slots__ = ("inputs", "rows", "signature", "enqueued_ns", "deadline", "done", "state", "split", "probe")

    def __init__(self, inputs: Arrays, rows: int, signature: tuple, deadline: float | None, done: Done,
                 split: Split | None = None) -> None:
        self.inputs, self.rows, self.signature = inputs, rows, signature
        self.enqueued_ns = time.monotonic_ns()
        self.deadline = deadline  # time.monotonic() by which it must have started, or None
        self.done = done
        self.state = _QUEUED
        self.split = split
        self.probe: bool | None = None  # a lone single row the in-service probe placed: on one thread?


class Split:
    """A request run as consecutive parts (one per instance, side by side): answered once, when
    every part has its outputs (joined in order), or with the first part's failure."""

    __slots__ = ("parts", "results", "left", "done")

    def __init__(self, done: Done, count: int) -> None:
        self.parts: list[Ticket] = []
        self.results: list[Result | None] = [None] * count
        self.left = count
        self.done: Done | None = done

    def part_done(self, index: int, result: Result | BaseException) -> None:
        """A part's `done`, on the instance thread that ran it (parts may finish at the same time)."""
        with _SPLITS_LOCK:
            if self.done is None:
                return
            if isinstance(result, BaseException):
                done, self.done = self.done, None
            else:
                self.results[index] = result
                self.left -= 1
                if self.left:
                    return
                done, self.done = self.done, None
        if isinstance(result, BaseException):
            done(result)
            return
        outputs = [values for values, _ in self.results]
        joined = {name: np.concatenate([values[name] for values in outputs], axis=0) for name in outputs[0]}
        timings = [t for _, t in self.results]
        done((joined, Timings(max(t.queue_ns for t in timings), max(t.compute_input_ns for t in timings),
                              max(t.compute_infer_ns for t in timings), max(t.compute_output_ns for t in timings),
                              sum(t.batch_size for t in timings))))


_SPLITS_LOCK = threading.Lock()  # a part's answer against its sibling's: held for a few field updates


class Batcher:
    """Queue + instance threads for one model version. `enqueue` (any thread, a callback) and
    `submit` (asyncio) are the ways in; `start` and `close` bracket its life."""

    def __init__(self, run: RunFn, policy: BatchPolicy, label: str = "model",
                 on_execution: Callable[[int, int, int, int], None] | None = None,
                 instance_runs: Sequence[RunFn] | None = None, side_by_side_run: RunFn | None = None,
                 side_by_side_row_ns: float | None = None, probe_single_rows: bool = False) -> None:
        self.run = run  # a caller running a batch on an instance's behalf uses this one
        self.instance_runs = instance_runs  # instance i's own run (its own session on its GPU), if given
        # the adaptive plan (serving/plan.py): a batch that starts while another runs or waits runs
        # here (a session with the cores divided), one that starts alone on `run` (every core)
        self.side_by_side_run = side_by_side_run
        self._divided_row_ns = side_by_side_row_ns  # running estimate of a row's cost on that session
        # whether a lone single row runs on the divided session whatever its cost: settled by the first
        # lone single rows in service (serving/single_row_probe.py, which places them meanwhile) where
        # `probe_single_rows` (a model whose requests all have one shape); every core elsewhere
        self._single_row_divided = False
        self._probe = SingleRowProbe() if side_by_side_run is not None and probe_single_rows else None
        self._side_by_side_ns = -(1 << 62)  # when batches last ran side by side (time.monotonic_ns)
        self.policy = policy
        self.label = label  # for messages: "model 'name' version v"
        self.on_execution = on_execution  # rows, input/infer/output ns; on an instance thread
        self._queue: deque[Ticket] = deque()
        self._changed = threading.Condition()
        self._idle = 0  # instance threads waiting for work
        self._failed_batches, self._failed_logged_at = 0, -SPLIT_LOG_SECONDS  # merged batches that failed, for the log
        self._running = 0  # batches executing (on instance threads, or on a caller's)
        self._unanswered = 0  # requests let in and not yet answered, where requests may be split
        # running estimate of what one element of the inputs costs to execute: elements, not rows, so
        # that a request to a model with variable dimensions (an image 100 times the size of those
        # measured) is not judged cheap by its one row
        self._element_ns: float | None = None
        self._strikes = 0  # runs in place stopped at `run_here_longest_s` (see `run_here_strikes`)
        self._taking = 0  # instance threads that still take work (they stop once closing with nothing queued)
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._hurry = False  # shutting down: run what is queued without waiting for batches to fill
        self.failure: str | None = None  # why this batcher stopped serving (an instance thread died)
        self.on_failure: Callable[[str], None] | None = None

    def start(self) -> None:
        """Start the instance threads; if one cannot start, stop those that did and raise."""
        for number in range(max(1, self.policy.instances)):
            run = self.instance_runs[number % len(self.instance_runs)] if self.instance_runs else None
            thread = threading.Thread(target=self._instance, args=(run,), name=f"dnnzoo {self.label} #{number}", daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # the process is out of threads
                with self._changed:
                    self._closing = True
                    self._changed.notify_all()
                raise ValueError(f"cannot start instance thread {number + 1} of {self.policy.instances}: {exc}") from None
            self._threads.append(thread)
            with self._changed:
                self._taking += 1

    def hurry(self) -> None:
        """Run what is queued (and what still comes) without waiting for batches to fill: shutdown."""
        with self._changed:
            self._hurry = True
            self._changed.notify_all()

    @property
    def queued(self) -> int:
        """Requests waiting (a split request's parts count once)."""
        with self._changed:
            return len({id(t.split or t) for t in self._queue if t.state == _QUEUED})

    def enqueue(self, inputs: Mapping[str, np.ndarray], deadline: float | None, done: Done,
                run_here: bool = False) -> Ticket:
        """Queue one request; `done` is called with its outputs and timings, or an exception.

        Raises (without calling `done`) when the model is closing, the queue is full, or the inputs
        disagree on the batch size. `deadline` is in `time.monotonic()` seconds."""
        rows, signature = self._shape_of(inputs)
        splits = self._may_split()
        ticket = Ticket(dict(inputs), rows, signature, deadline, self._counted(done) if splits else done)
        with self._changed:  # checked under the lock: `close` must not miss a request it let in
            if self.failure:
                raise ModelNotReady(f"{self.label} is out of service: {self.failure}")
            if self._closing or not self._threads:
                raise VersionRetired(f"{self.label} is unloading; retry")
            limit = self.policy.max_queue_size
            if limit and len(self._queue) >= limit:
                self._purge()
                if len({id(t.split or t) for t in self._queue}) >= limit:
                    raise QueueFull(f"{self.label}: queue is full ({limit} requests waiting); retry later")
            parts = self._parts(rows) if splits else 1
            self._unanswered += splits
            here = run_here and parts == 1 and not self._queue and not self._running and self._cheap(ticket.inputs)
            divided = here and (self._side_by_side_lately() or self._one_thread_enough(rows, ticket))
            if here:
                ticket.state = _TAKEN
                self._running += 1
            elif parts > 1:
                handle = _split(ticket, parts)
                self._queue.extend(handle.parts)
                self._changed.notify_all()
                return handle
            else:
                self._queue.append(ticket)
                self._changed.notify()
        if here:
            self._execute([ticket], self.side_by_side_run if divided else None, divided, here=True)
        return ticket

    def cancel(self, ticket: Ticket | Split) -> bool:
        """Drop a request that has not started; False when it already runs (its `done` will come)."""
        tickets = ticket.parts if isinstance(ticket, Split) else [ticket]
        with self._changed:
            if any(t.state != _QUEUED for t in tickets):
                return False
            for t in tickets:
                t.state = _DROPPED
            self._unanswered -= self._may_split()
            return True

    async def submit(self, inputs: Mapping[str, np.ndarray], deadline: float | None = None) -> Result:
        """`enqueue` for asyncio callers. Cancelling the awaiting task drops the request."""
        return await await_callback(lambda done: self.enqueue(inputs, deadline, done), self.cancel)

    async def close(self) -> None:
        """Stop taking requests, run everything already queued without waiting, then stop."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
            threads, self._threads = self._threads, []
        if threads:
            await asyncio.get_running_loop().run_in_executor(None, _join, threads)

    # -- on the instance threads ------------------------------------------------------------

    def _instance(self, run: RunFn | None) -> None:
        batch: list[Ticket] = []
        try:
            while True:
                batch, divided = self._take() or ([], False)
                if not batch:
                    return
                self._execute(batch, self.side_by_side_run if divided else run, divided)
        except BaseException as exc:  # noqa: BLE001 - a bug: take the model out of service, loudly
            log.critical("%s: an instance thread stopped: %r", self.label, exc, exc_info=exc)
            reason = f"an instance thread stopped ({type(exc).__name__}); see the server log"
            for ticket in batch:  # those already answered are skipped by _deliver
                _deliver(ticket, ModelNotReady(f"{self.label} is out of service: {reason}"))
            self._fail_all(reason)

    def _fail_all(self, reason: str) -> None:
        """Stop taking requests, answer every queued one UNAVAILABLE, and tell the owner why."""
        with self._changed:
            self.failure = self.failure or reason
            self._closing = True
            queued = [t for t in self._queue if t.state == _QUEUED]
            for ticket in queued:
                ticket.state = _DROPPED
            self._queue.clear()
            self._changed.notify_all()
        for ticket in queued:
            _deliver(ticket, ModelNotReady(f"{self.label} is out of service: {reason}"))
        if self.on_failure is not None:
            try:
                self.on_failure(reason)
            except Exception:  # noqa: BLE001
                log.exception("%s: reporting a failed instance failed", self.label)

    def _take(self) -> tuple[list[Ticket], bool] | None:
        """Wait for the next batch this instance should run, and whether it runs on the adaptive
        plan's divided session (another batch runs or waits beside it, or one thread is enough for
        it); None once closing with nothing left."""
        while True:
            with self._changed:
                got = self._next(self._expire())
                if got is None or got[0].state == _TAKEN:
                    if not got or self.side_by_side_run is None:
                        return got and (got, False)
                    if self._running > 1 or got[0].split or any(t.state == _QUEUED for t in self._queue):
                        self._side_by_side_ns = time.monotonic_ns()
                        return got, True
                    return got, self._side_by_side_lately() or self._one_thread_enough(sum(t.rows for t in got), got[0])
            for ticket in got:  # answered outside the lock: `done` may do real work
                _deliver(ticket, DeadlineExceeded(f"{self.label}: deadline passed while queued; not run"))

    def _next(self, expired: list[Ticket]) -> list[Ticket] | None:
        """Under the lock: a batch (taken), the expired requests to answer first, or None to stop."""
        self._idle += 1
        try:
            while not expired:
                batch, can_grow = self._head()
                if not batch:
                    if self._closing:
                        self._taking -= 1
                        return None
                    wait = None
                else:
                    wait = self._wait_for(batch) if can_grow and not (self._closing or self._hurry) else 0.0
                    if self._running >= max(1, self.policy.instances):
                        wait = None  # a caller runs a batch on an instance's behalf
                    elif wait <= 0:
                        self._running += 1
                        for ticket in batch:
                            self._queue.popleft()
                            ticket.state = _TAKEN
                        return batch
                self._changed.wait(None if wait is None else min(wait, _LONGEST_WAIT_S))
                expired = self._expire()
            return expired
        finally:
            self._idle -= 1

    def _side_by_side_lately(self) -> bool:
        return time.monotonic_ns() - self._side_by_side_ns < self.policy.side_by_side_memory_s * 1e9

    def _one_thread_enough(self, rows: int, first: Ticket) -> bool:
        """Under the lock: whether a lone batch of `rows` (`first` its first request) is better run on
        the divided session: it runs below `lone_on_one_thread_below_s` there, or it is a single row
        and the divided session runs one faster than every core (a model whose operators do
        not divide their work): as the in-service probe schedules it while that runs, then as it found."""
        estimate = self._divided_row_ns
        if self.side_by_side_run is None or estimate is None:
            return False
        if estimate * rows < self.policy.lone_on_one_thread_below_s * 1e9:
            return True
        if rows != 1:
            return False
        if self._probe is not None:
            first.probe = self._probe.one_thread_next()
            return first.probe
        return self._single_row_divided

    def _may_split(self) -> bool:
        """Whether this batcher may split requests (and so counts them until they are answered)."""
        return self.side_by_side_run is not None and self.policy.max_batch_size > 0 and not self.policy.max_queue_delay_s

    def _counted(self, done: Done) -> Done:
        def answered(result: Result | BaseException) -> None:
            with self._changed:
                self._unanswered -= 1
            done(result)
        return answered

    def _parts(self, rows: int) -> int:
        """Under the lock: how many parts a request of `rows` runs as (1: whole).

        Split only where an instance would otherwise idle while this request runs on another:
        something runs, nothing waits, and fewer requests are unanswered than there are instances.
        Where more are, merging them keeps every instance busy in larger batches, and a part never
        merges with its sibling: splitting b8 requests from 8 clients cost the foreign CNN 7 %
        (3,273 against 3,516 items/s). A request to an idle batcher runs whole on every core:
        there ONNX Runtime's own scheduling balances the cores, where two fixed parts wait for the
        slower one (the foreign CNN at b32c1: 3,345 items/s split, 3,563 whole). And only where
        `_may_split`: the model has a batch dimension (`max_batch_size` > 0 says its rows are
        independent items, as Triton's batching assumes, with or without dynamic batching), no queue
        delay is configured (that asks for fuller batches, not smaller ones), the adaptive plan has
        a divided session, and it is measured to need at least `split_above_s` for these rows."""
        estimate = self._divided_row_ns
        if (not self._running or self._queue or self._unanswered >= self.policy.instances
                or estimate is None or rows < 2 or estimate * rows < self.policy.split_above_s * 1e9):
            return 1
        return min(rows, max(1, self.policy.instances))

    def _cheap(self, inputs: Arrays) -> bool:
        """Whether `inputs` are measured to cost less than handing them to an instance thread would."""
        return (self._element_ns is not None and self._strikes < self.policy.run_here_strikes
                and self._element_ns * _elements(inputs) < self.policy.run_here_below_s * 1e9)

    def _wait_for(self, batch: list[Ticket]) -> float:
        """Seconds this batch may still wait to grow: the queue delay, cut short by a deadline."""
        wait = batch[0].enqueued_ns / 1e9 + self.policy.max_queue_delay_s - time.monotonic_ns() / 1e9
        deadlines = [t.deadline for t in self._queue if t.deadline is not None and t.state == _QUEUED]
        if deadlines:  # wake to answer a request whose deadline passes while it waits
            wait = min(wait, max(0.0, min(deadlines) - time.monotonic()) + 1e-4)
        return wait

    def _execute(self, batch: list[Ticket], run: RunFn | None = None, divided: bool = False, here: bool = False) -> None:
        """Run a taken batch, free its instance, then answer each request (on this thread; `here`:
        the caller's, see `run_here_longest_s`).

        If a merged batch fails, its requests are run again one by one, so that only the request
        that caused the failure fails (Triton fails the whole batch); one the run watch stopped is not."""
        started = time.monotonic_ns()
        try:
            outputs, input_ns, infer_ns, output_ns, elements = self._run_batch(batch, run, here)
        except _Overstayed:
            self._hand_over(batch[0], time.monotonic_ns() - started)
            return
        except Exception as exc:  # noqa: BLE001 - answered below, alone or request by request
            if len(batch) == 1 or isinstance(exc, RunStopped):
                self._free()
                for ticket in batch:
                    _deliver(ticket, exc)
                return
            self._failed_batches += 1
            now = time.monotonic()
            if now - self._failed_logged_at >= SPLIT_LOG_SECONDS:  # a client sending bad requests cannot flood the log
                log.info("%s: %d merged batch(es) failed since this was last logged (the last: %d requests, %s); each runs "
                         "again one request at a time", self.label, self._failed_batches, len(batch), type(exc).__name__)
                self._failed_batches, self._failed_logged_at = 0, now
            for ticket in batch:
                self._execute_alone(ticket, run)
            self._free()
            return
        self._finish(batch, started, outputs, input_ns, infer_ns, output_ns, elements, free=True, divided=divided)

    def _hand_over(self, ticket: Ticket, took_ns: int) -> None:
        """A run on the caller's thread overstayed and was stopped: queue its request for an
        instance thread, count a strike, and raise the model's estimate to what it took, so that
        requests like it are not run in place while the estimate comes back down run by run."""
        with self._changed:
            self._element_ns = max(self._element_ns or 0.0, took_ns / _elements(ticket.inputs))
            self._strikes += 1
            self._running -= 1
            ticket.probe = None  # a stopped run says nothing about either session's speed
            # closing with every instance thread stopped, or out of service: nobody would run it
            closed = not self._taking or self.failure is not None
            if not closed:
                ticket.state = _QUEUED
                self._queue.appendleft(ticket)
                self._changed.notify()
        last = " (the last time: nothing runs in place for it from now on)" if self._strikes == self.policy.run_here_strikes else ""
        log.warning("%s: a request run in place on the caller's thread took more than %g s; it was stopped and queued for an "
                    "instance thread%s", self.label, self.policy.run_here_longest_s, last)
        if closed:
            _deliver(ticket, ModelNotReady(f"{self.label} is out of service: {self.failure}") if self.failure
                     else VersionRetired(f"{self.label} is unloading; retry"))

    def _execute_alone(self, ticket: Ticket, run: RunFn | None) -> None:
        """One request of a failed batch, run by itself on this (still taken) instance."""
        started = time.monotonic_ns()
        try:
            outputs, input_ns, infer_ns, output_ns, elements = self._run_batch([ticket], run)
        except Exception as exc:  # noqa: BLE001 - this request's own failure
            _deliver(ticket, exc)
            return
        self._finish([ticket], started, outputs, input_ns, infer_ns, output_ns, elements, free=False)

    def _finish(self, batch: list[Ticket], started: int, outputs: list[Arrays], input_ns: int, infer_ns: int,
                output_ns: int, elements: int, free: bool, divided: bool = False) -> None:
        total = sum(ticket.rows for ticket in batch)
        if free:
            self._free((input_ns + infer_ns + output_ns) / elements, infer_ns / total if divided else None,
                       batch[0].probe if len(batch) == 1 else None, started, infer_ns)
        if self.on_execution is not None:
            try:
                self.on_execution(total, input_ns, infer_ns, output_ns)
            except Exception:  # noqa: BLE001 - bookkeeping must not cost the answers
                log.exception("%s: recording an execution failed", self.label)
        for ticket, values in zip(batch, outputs):
            _deliver(ticket, (values, Timings(started - ticket.enqueued_ns, input_ns, infer_ns, output_ns, total)))

    def _free(self, element_ns: float | None = None, divided_row_ns: float | None = None, probe: bool | None = None,
              started_ns: int = 0, infer_ns: int = 0) -> None:
        """An execution ended: count it out, learn its cost per element (and the divided session's
        per row, when it ran there), give the in-service probe its run (`probe`: the session it placed it on), wake
        an instance for the queue."""
        with self._changed:
            if self._running > 1:  # it ran beside another until now: that counts from its end, not its start
                self._side_by_side_ns = time.monotonic_ns()
            elif probe is not None and self._probe is not None and self._side_by_side_ns < started_ns:
                # it ran alone throughout (no batch beside it, ended or not): a fair sample
                self._settle(probe, infer_ns)
            self._running -= 1
            if element_ns is not None:
                self._element_ns = _learn(self._element_ns, element_ns)
            if divided_row_ns is not None:
                self._divided_row_ns = _learn(self._divided_row_ns, divided_row_ns)
            if self._queue:
                self._changed.notify()  # another idle instance may take what is left

    def _settle(self, one_thread: bool, infer_ns: int) -> None:
        """Under the lock: record a probed run; when the probe has its samples, its choice stands."""
        probe = self._probe
        probe.record(one_thread, infer_ns)
        if not probe.finished:
            return
        self._single_row_divided = probe.one_thread_wins(self.policy.single_row_on_one_thread_below)
        self._probe = None
        all_cores, one = probe.medians_ns()
        log.info("%s: a lone single row runs in %.0f us on every core and %.0f us on one thread in service "
                 "(medians of %d): %s", self.label, all_cores / 1e3, one / 1e3, len(probe.samples[0]),
                 "one thread from now on" if self._single_row_divided else "every core from now on")

    def _run_batch(self, batch: list[Ticket], run: RunFn | None,
                   here: bool = False) -> tuple[list[Arrays], int, int, int, int]:
        """Concatenate along dim 0, run under the run watch, slice each request's rows back out;
        also returns the inputs' elements."""
        t0 = time.monotonic_ns()
        if len(batch) == 1:
            merged = batch[0].inputs
        else:
            merged = {name: np.concatenate([t.inputs[name] for t in batch], axis=0) for name in batch[0].inputs}
        t1 = time.monotonic_ns()
        bounds = self._bounds(batch, t1 / 1e9, here)
        options = RUN_WATCH.begin(min(bounds.values()) if bounds else None)
        try:
            outputs = (run or self.run)(merged, options)
        except Exception:
            if RUN_WATCH.end(options):
                raise self._stopped(bounds) from None
            raise
        RUN_WATCH.end(options)
        t2 = time.monotonic_ns()
        if len(batch) == 1:
            split = [outputs]
        else:
            offsets = np.cumsum([0, *(t.rows for t in batch)])
            split = [{name: value[a:b] for name, value in outputs.items()} for a, b in zip(offsets[:-1], offsets[1:])]
        return split, t1 - t0, t2 - t1, time.monotonic_ns() - t2, _elements(merged)

    def _bounds(self, batch: list[Ticket], started: float, here: bool) -> dict[str, float]:
        """What ends a run starting at `started` (time.monotonic()), by cause: the caller's thread
        is wanted back, the server's bound, every request's deadline has passed."""
        bounds = {}
        if here:
            bounds["here"] = started + self.policy.run_here_longest_s
        if self.policy.max_run_s:
            bounds["bound"] = started + self.policy.max_run_s
        deadlines = [t.deadline for t in batch]
        if None not in deadlines:
            bounds["deadline"] = max(deadlines)
        return bounds

    def _stopped(self, bounds: dict[str, float]) -> Exception:
        """The exception for a run the watch stopped, by what was due first."""
        cause = min(bounds, key=bounds.get)
        if cause == "here":
            return _Overstayed()
        if cause == "bound":
            return RunStopped(f"{self.label}: the run took more than {self.policy.max_run_s:g} s (the server's "
                              "--max-run-seconds) and was stopped")
        return RunStopped(f"{self.label}: the deadline passed while the request ran; the run was stopped")

    # -- queue inspection (under the lock) -------------------------------------------------

    def _shape_of(self, inputs: Mapping[str, np.ndarray]) -> tuple[int, tuple]:
        if self.policy.max_batch_size <= 0:
            return 1, ()
        if len(inputs) == 1:  # the common case, without sets and sorting
            ((name, array),) = inputs.items()
            return array.shape[0], ((name, array.dtype, array.shape[1:]),)
        rows = {array.shape[0] for array in inputs.values()} if inputs else {1}
        if len(rows) != 1:
            raise InvalidInput(f"{self.label}: every input must have the same batch size (dim 0), got {sorted(rows)}")
        signature = tuple(sorted((name, array.dtype, array.shape[1:]) for name, array in inputs.items()))
        return rows.pop(), signature

    def _purge(self) -> None:
        if any(ticket.state != _QUEUED for ticket in self._queue):
            self._queue = deque(ticket for ticket in self._queue if ticket.state == _QUEUED)

    def _expire(self) -> list[Ticket]:
        """Take out requests whose deadline passed while queued; they are answered, never run."""
        now = time.monotonic()
        expired = [t for t in self._queue if t.deadline is not None and now >= t.deadline and t.state == _QUEUED]
        for ticket in expired:
            ticket.state = _DROPPED
        return expired

    def _head(self) -> tuple[list[Ticket], bool]:
        """The requests the next batch would take, and whether it could still grow by waiting."""
        self._purge()
        if not self._queue:
            return [], False
        first = self._queue[0]
        if not self.policy.dynamic or self.policy.max_batch_size <= 0:
            return [first], False
        batch, rows, blocked = [first], first.rows, False
        for ticket in list(self._queue)[1:]:
            if (ticket.signature != first.signature or rows + ticket.rows > self.policy.max_batch_size
                    or (ticket.split is not None and ticket.split is batch[-1].split)):
                blocked = True  # waiting cannot make this batch larger; a request's parts run apart
                break
            batch.append(ticket)
            rows += ticket.rows
        if self._idle > 1 and len(batch) > 1 and not self.policy.max_queue_delay_s:
            # Spread what is here over the idle instances rather than give it all to one: on a CPU a
            # batch stops paying well before max_batch_size, and an idle instance is an idle core.
            # Not with a queue delay: that config asks for fuller batches, not sooner ones.
            share, taken, count = -(-rows // self._idle), 0, 0
            while count < len(batch) and (count == 0 or taken + batch[count].rows <= share):
                taken += batch[count].rows
                count += 1
            if count < len(batch):
                return batch[:count], False
        return batch, not blocked and rows < self.policy.max_batch_size and rows not in self.policy.preferred_sizes


class _Overstayed(Exception):
    """A run on the caller's thread was stopped at `run_here_longest_s`: its request goes to an instance."""


def _elements(inputs: Arrays) -> int:
    """Elements of a request's (or a batch's) inputs, at least 1."""
    if len(inputs) == 1:
        return max(1, next(iter(inputs.values())).size)
    return max(1, sum(array.size for array in inputs.values()))


def _split(ticket: Ticket, count: int) -> Split:
    """`ticket`'s request as `count` consecutive parts of near-equal rows (views, not copies)."""
    split = Split(ticket.done, count)
    bounds = np.linspace(0, ticket.rows, count + 1).round().astype(int)
    for index, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        part = Ticket({name: array[a:b] for name, array in ticket.inputs.items()}, int(b - a), ticket.signature,
                      ticket.deadline, lambda result, index=index: split.part_done(index, result), split)
        part.enqueued_ns = ticket.enqueued_ns
        split.parts.append(part)
    return split


def _learn(estimate: float | None, measured: float) -> float:
    """A running estimate moved toward a new measurement (a preempted run counts as at most twice it)."""
    return measured if estimate is None else estimate + _COST_WEIGHT * (min(measured, _COST_CLIP * estimate) - estimate)


def _deliver(ticket: Ticket, result: Result | BaseException) -> None:
    """Call a request's `done` on this instance thread, once; a failing callback must not end the thread.

    The ticket lets go of its inputs and its Split here: a split request's parts and their Split
    refer to each other, so until the cyclic garbage collector ran, each answered request's
    payload stayed in memory (19 MB per batch-32 request of a 224x224 CNN, hundreds of them)."""
    done, ticket.done = ticket.done, None
    ticket.inputs, ticket.split = {}, None
    if done is None:
        return
    try:
        done(result)
    except Exception:  # noqa: BLE001
        log.exception("delivering an answer failed")


async def await_callback(start: Callable[[Callable[[object], None]], object], cancel: Callable[[object], object],
                         executor: Executor | None = None):
    """Await a result delivered to a callback on another thread: `start(done)` returns a handle,
    `cancel(handle)` runs if the awaiting task is cancelled. An exception delivered is raised.
    With `executor`, `start` itself runs there (it has real work to do). A result delivered on the
    loop's own thread (a request `start` ran in place) settles at once, without waking the loop."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    here = threading.get_ident()

    def done(result) -> None:
        if threading.get_ident() == here:
            _settle(future, result)
            return
        try:
            loop.call_soon_threadsafe(_settle, future, result)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    handle = start(done) if executor is None else await loop.run_in_executor(executor, start, done)
    try:
        return await future
    except asyncio.CancelledError:
        cancel(handle)
        raise


def _settle(future: asyncio.Future, result: Result | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join()
