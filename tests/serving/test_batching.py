"""Dynamic batching: unit tests of the batcher with a controllable model, then through the server."""

from __future__ import annotations

import asyncio
import collections
import gc
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from protos import grpc_service_pb2 as pb
from serving.batching import Batcher, BatchPolicy
from serving.errors import DeadlineExceeded, QueueFull, VersionRetired
from tests.serving.conftest import wait_until
from tests.serving.test_protocol import output, raw_request


class GatedModel:
    """y = x + 1, recording each batch it runs; blocks while `gate` is clear."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[np.ndarray] = []
        self.started = 0

    def __call__(self, inputs, options=None):
        self.started += 1
        self.gate.wait(10)
        self.batches.append(inputs["x"].copy())
        return {"y": inputs["x"] + 1}


async def until(condition, what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def run_batcher(policy: BatchPolicy, scenario) -> GatedModel:
    model = GatedModel()

    async def main():
        batcher = Batcher(model, policy, "test")
        batcher.start()
        try:
            await scenario(batcher, model)
        finally:
            model.gate.set()
            await batcher.close()

    asyncio.run(main())
    return model


def rows(value: float, n: int = 1) -> dict:
    return {"x": np.full((n, 2), value, np.float32)}


def test_requests_merge_up_to_max_batch_and_results_are_their_own():
    async def scenario(batcher, model):
        results = await asyncio.gather(*(batcher.submit(rows(i)) for i in range(4)))
        for i, (outputs, timings) in enumerate(results):
            np.testing.assert_array_equal(outputs["y"], np.full((1, 2), i + 1))
            assert timings.batch_size == 4

    model = run_batcher(BatchPolicy(max_batch_size=4, dynamic=True, max_queue_delay_s=30), scenario)
    assert [len(b) for b in model.batches] == [4]


def test_a_request_is_never_split_nor_overtaken():
    async def scenario(batcher, model):
        first = asyncio.ensure_future(batcher.submit(rows(1, 3)))
        await until(lambda: batcher.queued == 1, "first queued")
        second = asyncio.ensure_future(batcher.submit(rows(2, 2)))  # 3 + 2 > 4: the 3 runs alone now
        await first
        third = asyncio.ensure_future(batcher.submit(rows(3, 2)))
        (y2, _), (y3, _) = await asyncio.gather(second, third)
        assert y2["y"].shape == (2, 2) and y3["y"].shape == (2, 2)

    model = run_batcher(BatchPolicy(max_batch_size=4, dynamic=True, max_queue_delay_s=30), scenario)
    assert [len(b) for b in model.batches] == [3, 4]


def test_without_delay_requests_run_as_soon_as_a_slot_is_free():
    async def scenario(batcher, model):
        model.gate.clear()
        running = asyncio.ensure_future(batcher.submit(rows(0)))
        await until(lambda: model.started == 1, "first running")
        queued = [asyncio.ensure_future(batcher.submit(rows(i))) for i in range(1, 4)]
        await until(lambda: batcher.queued == 3, "three queued")
        model.gate.set()
        await asyncio.gather(running, *queued)

    model = run_batcher(BatchPolicy(max_batch_size=8, dynamic=True, max_queue_delay_s=0), scenario)
    assert [len(b) for b in model.batches] == [1, 3]


def test_idle_instances_share_what_is_queued_in_order():
    async def arrive_at_once(batcher, model, requests: list[dict]) -> list:
        """Queue `requests` while both idle instances wait for the lock, so they see them all at once."""
        await until(lambda: batcher._idle == 2, "both instances idle")
        model.gate.clear()  # each instance keeps its batch until both have taken theirs
        started = model.started
        with batcher._changed:
            waiting = [asyncio.ensure_future(batcher.submit(r)) for r in requests]
            await until(lambda: len(batcher._queue) == len(requests), "all queued")
        await until(lambda: model.started == started + 2, "both instances running")
        model.gate.set()
        return await asyncio.gather(*waiting)

    async def scenario(batcher, model):
        for i, (outputs, timings) in enumerate(await arrive_at_once(batcher, model, [rows(i) for i in range(6)])):
            np.testing.assert_array_equal(outputs["y"], np.full((1, 2), i + 1))
            assert timings.batch_size == 3
        big = await arrive_at_once(batcher, model, [rows(10, 4), rows(20, 4)])
        assert [timings.batch_size for _, timings in big] == [4, 4]  # two runs side by side, not one of 8

    model = run_batcher(BatchPolicy(max_batch_size=8, dynamic=True, max_queue_delay_s=0, instances=2), scenario)
    assert [len(b) for b in model.batches] == [3, 3, 4, 4]
    assert sorted(batch[:, 0].tolist() for batch in model.batches[:2]) == [[0, 1, 2], [3, 4, 5]]


def test_each_instance_is_a_thread_that_runs_and_answers():
    threads, answered = set(), []

    async def scenario(batcher, model):
        model.gate.clear()
        before = model.started
        first = [asyncio.ensure_future(batcher.submit(rows(i))) for i in range(2)]
        await until(lambda: model.started == before + 2, "both instances running at once")
        model.gate.set()
        await asyncio.gather(*first)

    def recording(inputs, options=None):
        threads.add(threading.get_ident())
        return GatedModel.__call__(model, inputs, options)

    model = GatedModel()

    async def main():
        batcher = Batcher(recording, BatchPolicy(max_batch_size=1, dynamic=True, instances=2), "test")
        batcher.start()
        done = threading.Event()
        batcher.enqueue(rows(5), None, lambda result: (answered.append(threading.get_ident()), done.set()))
        await asyncio.get_running_loop().run_in_executor(None, done.wait, 10)
        try:
            await scenario(batcher, model)
        finally:
            model.gate.set()
            await batcher.close()

    asyncio.run(main())
    assert len(threads) == 2 and threading.get_ident() not in threads
    assert answered[0] in threads  # the callback ran on the instance thread that ran the batch


def test_each_instance_runs_its_own_session_when_it_has_one():
    """GPU instances each hold a session on their own device: instance i runs batches on its own."""
    both_running = threading.Barrier(2, timeout=10)  # passes only with one request on each instance

    def session(tag: float):
        def run(inputs, options=None):
            both_running.wait()
            return {"y": np.full_like(inputs["x"], tag)}
        return run

    async def main():
        policy = BatchPolicy(max_batch_size=1, dynamic=True, instances=2)
        batcher = Batcher(session(-1.0), policy, "test", instance_runs=[session(10.0), session(20.0)])
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(rows(i)) for i in range(2)))
        finally:
            await batcher.close()

    answers = asyncio.run(main())
    assert sorted(float(outputs["y"][0, 0]) for outputs, _ in answers) == [10.0, 20.0]


@pytest.mark.parametrize("one_thread_ns, memory_s, lone_on, then_on", [
    (None, 0.0, "all cores", "all cores"),
    (1e9, 0.0, "all cores", "all cores"),
    (1e3, 0.0, "divided", "divided"),
    (None, 60.0, "all cores", "divided"),  # alone again, but just after batches ran side by side
])  # fmt: skip
def test_the_adaptive_plan_runs_a_lone_batch_on_every_core_unless_one_thread_is_enough(one_thread_ns, memory_s,
                                                                                      lone_on, then_on):
    """serving/plan.py's default: a batch that starts beside another runs on the divided session; one
    that starts alone runs on the all-core session, unless the divided one is measured to run it
    below `lone_on_one_thread_below_s` (here: unknown, 1 s and 1 us per row, and a 0.3 ms bar), or
    batches ran side by side less than `side_by_side_memory_s` ago."""
    first_running, release = threading.Event(), threading.Event()
    used = []

    def session(tag: str, cost_s: float):
        def run(inputs, options=None):
            used.append((tag, float(inputs["x"][0, 0])))
            if not first_running.is_set():
                first_running.set()
                release.wait(10)
            time.sleep(cost_s)
            return {"y": inputs["x"] + 1}
        return run

    async def main():
        policy = BatchPolicy(max_batch_size=4, dynamic=True, instances=2, side_by_side_memory_s=memory_s)
        divided_cost_s = 0.0 if one_thread_ns == 1e3 else 0.002  # what the divided runs teach it: 0 or 2 ms
        batcher = Batcher(session("all cores", 0.0), policy, "test", side_by_side_run=session("divided", divided_cost_s),
                          side_by_side_row_ns=one_thread_ns)
        batcher.start()
        try:
            lone = asyncio.ensure_future(batcher.submit(rows(1)))
            await asyncio.get_running_loop().run_in_executor(None, first_running.wait, 10)
            await batcher.submit(rows(2))  # starts while the first still runs
            release.set()
            await lone
            await batcher.submit(rows(3))  # alone again
        finally:
            await batcher.close()

    asyncio.run(main())
    assert used == [(lone_on, 1.0), ("divided", 2.0), (then_on, 3.0)]


@pytest.mark.parametrize("every_core_ms, one_thread_ms, settled_on", [
    (4.0, 1.0, "divided"),  # an LSTM's kind: a second thread only adds its wake-up
    (1.0, 4.0, "all cores"),  # a CNN's kind (the margin: the probe's own test below)
])
def test_the_first_lone_single_rows_settle_which_session_runs_them(every_core_ms, one_thread_ms, settled_on):
    """Above the 0.3 ms bar (one thread: 1 ms a row at load), lone single rows run in blocks on each
    session in turn (serving/single_row_probe.py); the medians of their runs then decide where the
    rest run, with the 0.9 margin. A lone batch of several rows runs on every core throughout."""
    from serving import single_row_probe

    used = []

    def session(tag: str, ms: float):
        def run(inputs, options=None):
            used.append((tag, len(inputs["x"])))
            time.sleep(ms / 1e3)  # the session's run time: what the probe measures
            return {"y": inputs["x"] + 1}
        return run

    probed = single_row_probe.BLOCK_RUNS * single_row_probe.BLOCKS

    async def main():
        policy = BatchPolicy(max_batch_size=4, dynamic=True, instances=2)
        batcher = Batcher(session("all cores", every_core_ms), policy, "test",
                          side_by_side_run=session("divided", one_thread_ms), side_by_side_row_ns=1e6,
                          probe_single_rows=True)
        batcher.start()
        try:
            for _ in range(probed + 3):
                await batcher.submit(rows(1.0))
            await batcher.submit(rows(2.0, n=2))
        finally:
            await batcher.close()

    asyncio.run(main())
    block = single_row_probe.BLOCK_RUNS
    schedule = [("all cores", 1)] * block + [("divided", 1)] * block
    assert used == schedule * 2 + [(settled_on, 1)] * 3 + [("all cores", 2)]


def test_without_the_probe_a_lone_single_row_runs_on_every_core():
    """A model whose requests set a dimension of their own (no probe: runs of different shapes do
    not compare): lone single rows above the bar run on every core."""
    used = []

    def session(tag: str):
        def run(inputs, options=None):
            used.append(tag)
            return {"y": inputs["x"] + 1}
        return run

    async def main():
        policy = BatchPolicy(max_batch_size=4, dynamic=True, instances=2)
        batcher = Batcher(session("all cores"), policy, "test", side_by_side_run=session("divided"),
                          side_by_side_row_ns=1e6, probe_single_rows=False)
        batcher.start()
        try:
            for _ in range(3):
                await batcher.submit(rows(1.0))
        finally:
            await batcher.close()

    asyncio.run(main())
    assert used == ["all cores"] * 3


def test_the_probe_runs_blocks_counts_all_but_their_first_run_and_ignores_runs_it_did_not_ask_for():
    from serving.single_row_probe import BLOCK_RUNS, BLOCKS, SingleRowProbe

    probe = SingleRowProbe()
    order = []
    while not probe.finished:
        one_thread = probe.one_thread_next()
        order.append(one_thread)
        probe.record(not one_thread, 1)  # not what it asked for: ignored
        probe.record(one_thread, 300 if one_thread else 400)
    assert order == ([False] * BLOCK_RUNS + [True] * BLOCK_RUNS) * (BLOCKS // 2)
    assert [len(samples) for samples in probe.samples] == [(BLOCK_RUNS - 1) * BLOCKS // 2] * 2
    assert probe.medians_ns() == (400, 300)
    assert probe.one_thread_wins(0.9)  # 300 <= 0.9 x 400
    assert not probe.one_thread_wins(0.7)


def test_batches_count_as_side_by_side_from_when_they_last_ran_together_not_from_their_start():
    """Two long batches side by side, the second ending more than `side_by_side_memory_s` after
    both started: a batch that starts alone just after them still runs on the divided session."""
    memory_s = 0.5
    gates = {1.0: threading.Event(), 2.0: threading.Event()}
    running = {1.0: threading.Event(), 2.0: threading.Event()}
    used = []

    def session(tag: str):
        def run(inputs, options=None):
            value = float(inputs["x"][0, 0])
            used.append((tag, value))
            if value in gates:
                running[value].set()
                gates[value].wait(10)
            return {"y": inputs["x"] + 1}
        return run

    async def main():
        loop = asyncio.get_running_loop()
        policy = BatchPolicy(max_batch_size=4, dynamic=True, instances=2, side_by_side_memory_s=memory_s)
        batcher = Batcher(session("all cores"), policy, "test", side_by_side_run=session("divided"))
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(rows(1)))
            await loop.run_in_executor(None, running[1.0].wait, 10)
            second = asyncio.ensure_future(batcher.submit(rows(2)))  # starts beside the first
            await loop.run_in_executor(None, running[2.0].wait, 10)
            started = time.monotonic()
            while time.monotonic() < started + memory_s * 1.2:  # both started longer ago than the memory
                await asyncio.sleep(0.05)
            gates[2.0].set()  # the second ends while the first still runs: they ran together until now
            await second
            gates[1.0].set()
            await first
            await batcher.submit(rows(3))  # alone, just after
        finally:
            for gate in gates.values():
                gate.set()
            await batcher.close()

    asyncio.run(main())
    assert used == [("all cores", 1.0), ("divided", 2.0), ("divided", 3.0)]


class SplitScene:
    """An adaptive-plan batcher (2 instances) whose all-core session holds its first batch until
    `release`, and whose divided session is taught 1 ms a row: 2-row parts and more are worth
    splitting (`split_above_s` 2 ms)."""

    def __init__(self, fail_on: float | None = None, max_queue_size: int = 0, dynamic: bool = True) -> None:
        self.holding, self.release = threading.Event(), threading.Event()
        self.parts_gate = threading.Event()  # the divided session runs while this is set
        self.parts_gate.set()
        self.whole: list[np.ndarray] = []
        self.parts: list[np.ndarray] = []
        self.fail_on = fail_on
        policy = BatchPolicy(max_batch_size=8, dynamic=dynamic, instances=2, max_queue_size=max_queue_size,
                             side_by_side_memory_s=0.0)  # a request to an idle model runs on every core
        self.batcher = Batcher(self.all_cores, policy, "test", side_by_side_run=self.divided, side_by_side_row_ns=1e6)

    def all_cores(self, inputs, options=None):
        self.whole.append(inputs["x"].copy())
        if not self.holding.is_set():
            self.holding.set()
            self.release.wait(10)
        return {"y": inputs["x"] + 1}

    def divided(self, inputs, options=None):
        self.parts.append(inputs["x"].copy())
        self.parts_gate.wait(10)
        if self.fail_on is not None and (inputs["x"] == self.fail_on).any():
            raise ValueError(f"cannot run {self.fail_on}")
        return {"y": inputs["x"] + 1}

    async def busy(self) -> asyncio.Future:
        """A first request, held running on the all-core session; the batcher is busy from now on."""
        first = asyncio.ensure_future(self.batcher.submit(rows(-1)))
        await asyncio.get_running_loop().run_in_executor(None, self.holding.wait, 10)
        return first


def counted(n: int) -> dict:
    return {"x": np.arange(2 * n, dtype=np.float32).reshape(n, 2)}


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic batching", "no dynamic batching"])
def test_a_large_request_to_a_busy_adaptive_model_runs_as_parts_side_by_side(dynamic):
    """A request the divided session needs >= 2 ms for, arriving while another runs, is split into a
    part per instance; the parts run on the divided session, and the answer is the whole request's,
    in order, once, with the parts' rows as its batch size. To an idle model it runs whole. A plain
    config without `dynamic_batching` splits too: `max_batch_size` > 0 makes rows independent items."""
    scene = SplitScene(dynamic=dynamic)
    answers = []

    async def main():
        scene.batcher.start()
        try:
            first = await scene.busy()
            split = asyncio.ensure_future(scene.batcher.submit(counted(5)))
            await until(lambda: len(scene.parts) == 2, "both parts to run on the free instance")
            scene.release.set()
            answers.append(await split)
            await first
            answers.append(await scene.batcher.submit(counted(5)))  # idle again: whole, every core
        finally:
            scene.release.set()
            await scene.batcher.close()

    asyncio.run(main())
    np.testing.assert_array_equal(np.concatenate(scene.parts), counted(5)["x"])
    assert [len(p) for p in scene.parts] == [2, 3] or [len(p) for p in scene.parts] == [3, 2]
    for outputs, timings in answers:
        np.testing.assert_array_equal(outputs["y"], counted(5)["x"] + 1)
        assert timings.batch_size == 5
    assert [len(w) for w in scene.whole] == [1, 5]


def test_an_answered_split_request_lets_go_of_its_inputs_without_the_garbage_collector():
    """A split request's parts and their Split refer to each other. Its inputs (views of the
    request's payload) must be freed once it is answered, not when the cyclic collector next runs:
    a 224x224 CNN's batch-32 requests (19 MB each) held the server at 1.1 GB instead of 0.4."""
    scene = SplitScene()

    async def main():
        scene.batcher.start()
        try:
            first = await scene.busy()
            payload = counted(5)["x"].copy()  # owns its memory: the parts are views of it
            alive = weakref.ref(payload)
            split = asyncio.ensure_future(scene.batcher.submit({"x": payload}))
            del payload
            await until(lambda: len(scene.parts) == 2, "both parts to run on the free instance")
            scene.release.set()
            outputs, _ = await split
            np.testing.assert_array_equal(outputs["y"], counted(5)["x"] + 1)
            await first
            return alive
        finally:
            scene.release.set()
            await scene.batcher.close()

    gc.disable()
    try:
        alive = asyncio.run(main())
        assert alive() is None, "the answered request's inputs are still referenced"
    finally:
        gc.enable()


def test_a_split_request_fails_once_with_its_parts_failure_and_others_are_served():
    scene = SplitScene(fail_on=7.0)  # a value in the split request's second part

    async def main():
        scene.batcher.start()
        try:
            first = await scene.busy()
            doomed = asyncio.ensure_future(scene.batcher.submit(counted(5)))
            await until(lambda: len(scene.parts) >= 1, "a part to run")
            scene.release.set()
            with pytest.raises(ValueError, match="cannot run 7"):
                await doomed
            await first
            outputs, _ = await scene.batcher.submit(rows(3, 2))
            np.testing.assert_array_equal(outputs["y"], np.full((2, 2), 4))
        finally:
            scene.release.set()
            await scene.batcher.close()

    asyncio.run(main())


def test_a_split_request_is_cancelled_whole_and_queues_as_one_request():
    """Cancelling drops every part while none runs; the queue limit counts a split request once."""
    scene = SplitScene(max_queue_size=2)

    async def main():
        scene.batcher.start()
        try:
            first = await scene.busy()  # instance 1, on every core
            scene.parts_gate.clear()
            kept = asyncio.ensure_future(scene.batcher.submit(counted(4)))  # split: part 1 on instance 2, held
            await until(lambda: len(scene.parts) == 1 and scene.batcher.queued == 1, "one part running, one waiting")
            scene.release.set()
            await first  # instance 1 takes the second part: both instances run one request's parts
            await until(lambda: len(scene.parts) == 2 and scene.batcher.queued == 0, "both parts running")
            doomed = asyncio.ensure_future(scene.batcher.submit({"x": counted(4)["x"] + 10}))
            await until(lambda: scene.batcher.queued == 1, "the split request queued, as one request")
            assert len(scene.batcher._queue) == 2  # as its two parts
            other = asyncio.ensure_future(scene.batcher.submit(rows(5)))  # a second request still fits
            await until(lambda: scene.batcher.queued == 2, "a second request queued")
            with pytest.raises(QueueFull):
                await scene.batcher.submit(rows(90))
            doomed.cancel()
            await until(lambda: scene.batcher.queued == 1, "the cancelled request's parts dropped")
            scene.parts_gate.set()
            await asyncio.gather(kept, other)
        finally:
            scene.parts_gate.set()
            scene.release.set()
            await scene.batcher.close()

    asyncio.run(main())
    ran = np.concatenate(scene.whole + scene.parts)[:, 0]
    assert not (ran >= 10).any()  # none of the cancelled request's rows (10 and up) ran


def test_a_request_is_not_split_where_every_instance_has_a_request_already():
    """Where as many requests are unanswered as there are instances, the next one waits whole, to be
    merged with what comes after it (parts never merge with their sibling)."""
    scene = SplitScene()

    async def main():
        scene.batcher.start()
        try:
            first = await scene.busy()  # instance 1
            scene.parts_gate.clear()
            second = asyncio.ensure_future(scene.batcher.submit(rows(-2)))  # instance 2, held
            await until(lambda: len(scene.parts) == 1, "both instances busy")
            third = asyncio.ensure_future(scene.batcher.submit(counted(4)))
            await until(lambda: scene.batcher.queued == 1, "the third request queued")
            assert len(scene.batcher._queue) == 1  # whole
            scene.parts_gate.set()
            scene.release.set()
            await asyncio.gather(first, second, third)
        finally:
            scene.parts_gate.set()
            scene.release.set()
            await scene.batcher.close()

    asyncio.run(main())
    assert any(len(batch) == 4 for batch in scene.whole + scene.parts)  # the third ran in one piece


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(1, 8), min_size=1, max_size=12), instances=st.integers(1, 3),
       failing=st.one_of(st.none(), st.integers(0, 11)), cancelled=st.one_of(st.none(), st.integers(0, 11)),
       gap_s=st.sampled_from([0.0, 0.0005, 0.003]), dynamic=st.booleans())
def test_every_request_gets_exactly_its_own_rows_whatever_is_split_merged_failed_or_cancelled(
        sizes, instances, failing, cancelled, gap_s, dynamic):
    """Property: requests of any sizes sent at once to an adaptive-plan batcher that splits whenever it
    may (bar 0), with one request that fails and one that is cancelled: every other request gets
    exactly its own rows + 1, in order; the failing one fails (only it); no row runs twice; nothing
    waits forever; without dynamic batching no execution holds two requests' rows."""
    ran: list[float] = []
    apart: list[bool] = []  # per execution: whether it held only part of some request's rows
    merged: list[bool] = []  # per execution: whether it held rows of more than one request
    lock = threading.Lock()

    def session(inputs, options=None):
        values = inputs["x"][:, 0]
        with lock:
            ran.extend(values.tolist())
            numbers = (values // 1000).astype(int)
            apart.append(any((numbers == n).sum() < sizes[n] for n in set(numbers.tolist())))
            merged.append(len(set(numbers.tolist())) > 1)
        if failing is not None and (values == 1000 * failing).any():
            raise ValueError("this request is bad")
        time.sleep(0.002)
        return {"y": inputs["x"] + 1}

    def request(number: int, size: int) -> dict:
        return {"x": np.repeat((1000 * number + np.arange(size, dtype=np.float32))[:, None], 2, axis=1)}

    async def main():
        policy = BatchPolicy(max_batch_size=8, dynamic=dynamic, instances=instances, split_above_s=0.0)
        batcher = Batcher(session, policy, "test", side_by_side_run=session, side_by_side_row_ns=1.0)
        batcher.start()
        try:
            calls = []
            for number, size in enumerate(sizes):  # a little apart: some arrive to a busy, empty queue
                calls.append(asyncio.ensure_future(batcher.submit(request(number, size))))
                await asyncio.sleep(gap_s)
            if cancelled is not None and cancelled < len(calls):
                calls[cancelled].cancel()
            answers = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 30)
            # every request counted out: answered, failed or cancelled (a cancelled one that already
            # ran is counted out when its run ends, which may be after its caller stopped waiting)
            await until(lambda: batcher._unanswered == 0, "every request counted out")
            return answers
        finally:
            await batcher.close()

    answers = asyncio.run(main())
    event("some request ran as parts" if any(apart) else "every request ran whole")
    for number, (size, answer) in enumerate(zip(sizes, answers)):
        if number == cancelled and isinstance(answer, asyncio.CancelledError):
            continue
        if number == failing:
            assert isinstance(answer, ValueError), answer
            continue
        assert not isinstance(answer, BaseException), answer
        np.testing.assert_array_equal(answer[0]["y"], request(number, size)["x"] + 1)
    times = collections.Counter(ran).values()
    assert max(times, default=0) <= (1 if failing is None else 2)  # only a failed batch's requests run again, alone
    assert dynamic or not any(merged)


def test_a_lone_cheap_request_to_an_idle_model_may_run_on_the_callers_thread():
    """The native front offers its dispatch thread for a call that arrived alone: one thread
    wake-up less, taken only when nothing else waits and the model is measured to be cheap."""
    threads = []

    def cheap(inputs, options=None):
        threads.append(threading.get_ident())
        return {"y": inputs["x"] + 1}

    callers = []  # the thread each call enqueued from (the executor may use another each time)

    def call(batcher, value: float, run_here: bool) -> np.ndarray:
        answered = []
        ready = threading.Event()
        callers.append(threading.get_ident())
        batcher.enqueue(rows(value), None, lambda result: (answered.append(result), ready.set()), run_here)
        assert ready.wait(10)
        return answered[0][0]["y"]

    async def main():
        batcher = Batcher(cheap, BatchPolicy(max_batch_size=8, dynamic=True), "test")
        batcher.start()
        loop = asyncio.get_running_loop()
        for value, run_here in ((1, True), (2, True), (3, False)):
            y = await loop.run_in_executor(None, call, batcher, value, run_here)
            np.testing.assert_array_equal(y, np.full((1, 2), value + 1))
        await batcher.close()

    asyncio.run(main())
    assert threads[0] != callers[0]  # nothing measured yet: an instance thread
    assert threads[1] == callers[1]  # measured cheap, model idle: the caller's thread
    assert threads[2] != callers[2]  # not offered


class EndlessModel:
    """y = x + 1, except that a row whose x is negative runs until its RunOptions say terminate (as
    an ONNX Loop whose trip count a request sets runs), then raises as ONNX Runtime does."""

    def __init__(self) -> None:
        self.threads: list[tuple[float, int]] = []

    def __call__(self, inputs, options=None):
        self.threads.append((float(inputs["x"].flat[0]), threading.get_ident()))
        while (inputs["x"] < 0).any():
            if options.terminate:
                raise RuntimeError("Exiting due to terminate flag being set to true.")
            time.sleep(0.001)
        return {"y": inputs["x"] + 1}


def offer(batcher, inputs, run_here: bool = True, deadline: float | None = None):
    """Enqueue from this thread (offering it to run the request); returns the answer."""
    answered, ready = [], threading.Event()
    batcher.enqueue(inputs, deadline, lambda result: (answered.append(result), ready.set()), run_here)
    assert ready.wait(30), "never answered"
    return answered[0]


def test_a_run_in_place_that_overstays_is_stopped_and_handed_to_an_instance_thread():
    """A request measured cheap runs on the caller's thread (the native front's dispatch thread):
    one that would run for ever there would hold every other model's calls with it."""
    model = EndlessModel()
    policy = BatchPolicy(max_batch_size=8, dynamic=True, run_here_longest_s=0.1, max_run_s=1.0)
    batcher = Batcher(model, policy, "test")
    batcher.start()
    offer(batcher, rows(1))  # measured cheap
    offer(batcher, rows(2))
    assert model.threads[1][1] == threading.get_ident()  # ran in place
    with ThreadPoolExecutor(1) as pool:
        caller = pool.submit(threading.get_ident).result()
        answer = pool.submit(offer, batcher, rows(-1)).result(30)
    # it ran in place, was stopped there, ran again on an instance thread until the server's bound
    assert [value for value, _ in model.threads[2:]] == [-1, -1]
    assert model.threads[2][1] == caller and model.threads[3][1] != caller
    assert isinstance(answer, DeadlineExceeded) and "--max-run-seconds" in str(answer)
    # its cost counted: a request like it is no longer run in place
    offer(batcher, rows(3))
    assert model.threads[4] != (3.0, threading.get_ident())
    asyncio.run(batcher.close())


def test_after_a_few_overstays_a_model_runs_nothing_in_place_again():
    """A client alternating cheap requests (they bring the estimate back down) with endless ones
    would otherwise hold the caller's thread again and again."""
    model = EndlessModel()
    policy = BatchPolicy(max_batch_size=8, dynamic=True, run_here_longest_s=0.05, run_here_strikes=2, max_run_s=0.2)
    batcher = Batcher(model, policy, "test")
    batcher.start()
    here = threading.get_ident()

    def cheap_until_in_place() -> bool:
        for value in range(1, 200):
            offer(batcher, rows(value))
            if model.threads[-1][1] == here:
                return True
        return False

    for _ in range(policy.run_here_strikes):
        assert cheap_until_in_place()  # the estimate came back down
        answer = offer(batcher, rows(-1))
        assert model.threads[-2] == (-1.0, here)  # it ran in place first, then on an instance
        assert isinstance(answer, DeadlineExceeded)
    assert not cheap_until_in_place()  # 199 cheap requests, none in place
    asyncio.run(batcher.close())


def test_runs_past_the_servers_bound_or_every_deadline_are_stopped_and_the_instance_serves_again():
    model = EndlessModel()
    batcher = Batcher(model, BatchPolicy(max_batch_size=8, dynamic=True, instances=1, max_run_s=0.3), "test")
    batcher.start()
    answer = offer(batcher, rows(-1), run_here=False)
    assert isinstance(answer, DeadlineExceeded) and "took more than 0.3 s" in str(answer) and "--max-run-seconds" in str(answer)
    outputs, _ = offer(batcher, rows(5), run_here=False)  # the one instance is free again
    np.testing.assert_array_equal(outputs["y"], np.full((1, 2), 6))
    asyncio.run(batcher.close())

    # no server bound: stopped once every request in it is past its deadline
    delayed = BatchPolicy(max_batch_size=8, dynamic=True, instances=1, max_queue_delay_s=0.2)
    batcher = Batcher(model, delayed, "test")
    batcher.start()
    answer = offer(batcher, rows(-1), run_here=False, deadline=time.monotonic() + 0.3)
    assert isinstance(answer, DeadlineExceeded) and "deadline passed while the request ran" in str(answer)
    outputs, _ = offer(batcher, rows(7), run_here=False)
    np.testing.assert_array_equal(outputs["y"], np.full((1, 2), 8))
    # a merged batch the watch stopped is answered whole, not run again request by request
    ran, answers = len(model.threads), []
    for value in (-1, 9):  # merged: the queue delay holds the first for the second
        batcher.enqueue(rows(value), time.monotonic() + 0.5, answers.append)
    wait_until(lambda: len(answers) == 2, what="both requests of the stopped batch answered", timeout=30)
    assert all(isinstance(result, DeadlineExceeded) for result in answers)
    assert len(model.threads) == ran + 1
    asyncio.run(batcher.close())


def test_a_request_far_larger_than_those_measured_is_not_run_in_place():
    """Cheap is judged by elements, not rows: one row of an image 100 times the size of those
    measured (a model with variable dimensions) goes to an instance thread."""
    threads = []

    def run(inputs, options=None):
        threads.append(threading.get_ident())
        return {"y": inputs["x"] + 1}

    batcher = Batcher(run, BatchPolicy(max_batch_size=8, dynamic=True, run_here_below_s=0.005), "test")
    batcher.start()
    for _ in range(3):
        offer(batcher, {"x": np.zeros((1, 2), np.float32)})
    assert threads[-1] == threading.get_ident()
    batcher._element_ns = 0.005e9 / 1000  # as measured: 1,000 elements cost the whole bar
    offer(batcher, {"x": np.zeros((1, 999), np.float32)})
    assert threads[-1] == threading.get_ident()
    batcher._element_ns = 0.005e9 / 1000
    offer(batcher, {"x": np.zeros((1, 100_000), np.float32)})
    assert threads[-1] != threading.get_ident()
    asyncio.run(batcher.close())


def test_a_request_offered_to_a_busy_model_waits_for_an_instance():
    async def scenario(batcher, model):
        await batcher.submit(rows(0))  # measured: cheap
        model.gate.clear()
        running = asyncio.ensure_future(batcher.submit(rows(1)))
        await until(lambda: model.started == 2, "one running")
        answered = threading.Event()
        batcher.enqueue(rows(2), None, lambda result: answered.set(), run_here=True)  # returns at once
        assert batcher.queued == 1 and not answered.is_set()
        model.gate.set()
        await running
        await asyncio.get_running_loop().run_in_executor(None, answered.wait, 10)
        assert answered.is_set()

    run_batcher(BatchPolicy(max_batch_size=8, dynamic=True), scenario)


def test_no_dynamic_batching_runs_each_request_alone():
    async def scenario(batcher, model):
        await asyncio.gather(*(batcher.submit(rows(i)) for i in range(3)))

    model = run_batcher(BatchPolicy(max_batch_size=8, dynamic=False), scenario)
    assert [len(b) for b in model.batches] == [1, 1, 1]


def test_full_queue_is_refused():
    async def scenario(batcher, model):
        model.gate.clear()
        running = asyncio.ensure_future(batcher.submit(rows(0)))
        await until(lambda: model.started == 1, "first running")
        waiting = [asyncio.ensure_future(batcher.submit(rows(i))) for i in (1, 2)]
        await until(lambda: batcher.queued == 2, "queue full")
        with pytest.raises(QueueFull, match="queue is full"):
            await batcher.submit(rows(3))
        model.gate.set()
        await asyncio.gather(running, *waiting)

    run_batcher(BatchPolicy(max_batch_size=1, dynamic=True, max_queue_size=2), scenario)


def test_expired_deadline_is_answered_and_not_run():
    async def scenario(batcher, model):
        model.gate.clear()
        running = asyncio.ensure_future(batcher.submit(rows(0)))
        await until(lambda: model.started == 1, "first running")
        deadline = time.monotonic() + 0.2
        late = asyncio.ensure_future(batcher.submit(rows(7), deadline=deadline))
        on_time = asyncio.ensure_future(batcher.submit(rows(8), deadline=time.monotonic() + 60))
        await until(lambda: batcher.queued == 2, "both queued")
        await until(lambda: time.monotonic() > deadline, "the first deadline to pass")
        model.gate.set()
        with pytest.raises(DeadlineExceeded, match="not run"):
            await late
        await asyncio.gather(running, on_time)

    model = run_batcher(BatchPolicy(max_batch_size=4, dynamic=True), scenario)
    assert not any((b == 7).any() for b in model.batches)
    assert any((b == 8).any() for b in model.batches)


def test_cancelled_request_is_dropped():
    async def scenario(batcher, model):
        model.gate.clear()
        running = asyncio.ensure_future(batcher.submit(rows(0)))
        await until(lambda: model.started == 1, "first running")
        doomed = asyncio.ensure_future(batcher.submit(rows(5)))
        kept = asyncio.ensure_future(batcher.submit(rows(6)))
        await until(lambda: batcher.queued == 2, "both queued")
        doomed.cancel()
        await until(lambda: batcher.queued == 1, "the cancelled one dropped")
        model.gate.set()
        await asyncio.gather(running, kept)

    model = run_batcher(BatchPolicy(max_batch_size=4, dynamic=True), scenario)
    assert not any((b == 5).any() for b in model.batches)


def test_close_runs_queued_requests_without_waiting_for_the_delay():
    async def scenario(batcher, model):
        pending = asyncio.ensure_future(batcher.submit(rows(1)))
        await until(lambda: batcher.queued == 1, "queued")
        await batcher.close()
        (outputs, _) = await pending
        np.testing.assert_array_equal(outputs["y"], np.full((1, 2), 2))

    run_batcher(BatchPolicy(max_batch_size=4, dynamic=True, max_queue_delay_s=60), scenario)


def test_a_closed_batcher_says_its_version_is_retired():
    """The data plane resolves the model again on VersionRetired, so a hot reload fails nothing."""
    async def scenario(batcher, model):
        await batcher.close()
        with pytest.raises(VersionRetired, match="unloading"):
            await batcher.submit(rows(1))

    run_batcher(BatchPolicy(max_batch_size=4, dynamic=True), scenario)


# -- through the server -------------------------------------------------------------------------


def _batch_sizes(stub, model: str) -> dict[int, int]:
    stats = stub.ModelStatistics(pb.ModelStatisticsRequest(name=model)).model_stats[0]
    return {b.batch_size: b.compute_infer.count for b in stats.batch_stats}


def _queued(served, model: str) -> int:
    return served.server.models.resolve(model).batcher.queued


def test_concurrent_requests_are_merged_and_equal_unbatched(stub, served):
    before = _batch_sizes(stub, "merger")
    inputs = [np.array([[i, -i]], np.float32) for i in range(4)]
    futures = [stub.ModelInfer.future(raw_request("merger", x=("FP32", x)), timeout=30) for x in inputs]
    results = [output(f.result(), "y") for f in futures]
    for x, y in zip(inputs, results):
        np.testing.assert_array_equal(y, x + 1)  # the unbatched answer
    after = _batch_sizes(stub, "merger")
    assert after.get(4, 0) == before.get(4, 0) + 1
    stats = stub.ModelStatistics(pb.ModelStatisticsRequest(name="merger")).model_stats[0]
    assert stats.inference_count > stats.execution_count


def test_many_concurrent_clients_get_their_own_answers(stub):
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(int(rng.integers(1, 4)), 4)).astype(np.float32) for _ in range(48)]
    futures = [stub.ModelInfer.future(raw_request("doubler", x=("FP32", x)), timeout=30) for x in inputs]
    for x, future in zip(inputs, futures):
        np.testing.assert_array_equal(output(future.result(), "y"), x * 2)


def test_queue_limit_is_resource_exhausted_and_cancelled_requests_are_dropped(stub, served):
    executions = stub.ModelStatistics(pb.ModelStatisticsRequest(name="held")).model_stats[0].execution_count
    waiting = [stub.ModelInfer.future(raw_request("held", x=("FP32", np.zeros((1, 2), np.float32))), timeout=60) for _ in range(2)]
    wait_until(lambda: _queued(served, "held") == 2, what="two requests queued")
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(raw_request("held", x=("FP32", np.zeros((1, 2), np.float32))), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "queue is full" in caught.value.details()
    for future in waiting:
        future.cancel()
    wait_until(lambda: _queued(served, "held") == 0, what="cancelled requests dropped")
    assert stub.ModelStatistics(pb.ModelStatisticsRequest(name="held")).model_stats[0].execution_count == executions


def test_deadline_while_queued_is_deadline_exceeded_and_not_run(stub, served):
    before = stub.ModelStatistics(pb.ModelStatisticsRequest(name="held")).model_stats[0]
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(raw_request("held", x=("FP32", np.zeros((1, 2), np.float32))), timeout=0.3)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: _queued(served, "held") == 0, what="expired request dropped")
    after = stub.ModelStatistics(pb.ModelStatisticsRequest(name="held")).model_stats[0]
    assert after.execution_count == before.execution_count
    assert after.inference_stats.fail.count == before.inference_stats.fail.count + 1


def test_timeout_parameter_expires_a_queued_request(stub, served):
    before = stub.ModelStatistics(pb.ModelStatisticsRequest(name="held")).model_stats[0].execution_count
    request = raw_request("held", x=("FP32", np.zeros((1, 2), np.float32)))
    request.parameters["timeout"].int64_param = 1000  # microseconds: gone long before the batch could fill
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "not run" in caught.value.details()
    assert stub.ModelStatistics(pb.ModelStatisticsRequest(name="held")).model_stats[0].execution_count == before


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic batching", "no dynamic batching"])
def test_large_requests_to_a_busy_adaptive_model_are_split_and_each_answered_whole(tmp_path, monkeypatch, dynamic):
    """Through the real server and ONNX Runtime, a plain config (the adaptive plan), the split bar at 0
    (so that it does not depend on this machine's speed). First one request is held running while
    a second arrives: the second runs as two 2-row parts on the divided session and
    comes back whole (the statistics show 2-row executions, which only parts have). Then 6 clients
    at once: each gets exactly its own rows back, in order, however the batcher split or merged them."""
    import functools

    from protos import grpc_service_pb2_grpc as pb_grpc
    from serving import plan, repository
    from tests.serving.builders import CONFIGS, plus_one_graph, write_model
    from tests.serving.conftest import server_config, start_server

    monkeypatch.setattr(plan, "usable_cores", lambda: 2)  # a divided session on any machine
    monkeypatch.setattr(repository, "BatchPolicy", functools.partial(BatchPolicy, split_above_s=0.0))
    config = CONFIGS["plain"] if dynamic else CONFIGS["plain"].replace("dynamic_batching { }\n", "")
    assert ("dynamic_batching" in config) == dynamic
    write_model(tmp_path, "plain", graph=plus_one_graph, config=config)
    running = start_server(server_config(tmp_path))
    try:
        loaded = running.server.models.resolve("plain")
        assert loaded.side_by_side is not None
        holding, release = threading.Event(), threading.Event()

        def held_once(run):  # the real session's run; the first run on either session is held
            def held(inputs, options=None):
                if not holding.is_set():
                    holding.set()
                    release.wait(10)
                return run(inputs, options)
            return held

        loaded.batcher.run = held_once(loaded.batcher.run)
        loaded.batcher.side_by_side_run = held_once(loaded.batcher.side_by_side_run)
        with grpc.insecure_channel(running.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)

            def four_rows(number: int, call: int = 0) -> np.ndarray:
                return np.arange(8, dtype=np.float32).reshape(4, 2) + 100 * number + 1000 * call

            first = stub.ModelInfer.future(raw_request("plain", x=("FP32", four_rows(1))), timeout=30)
            assert holding.wait(10)
            second = stub.ModelInfer.future(raw_request("plain", x=("FP32", four_rows(2))), timeout=30)
            wait_until(lambda: any(b.batch_size == 2 for b in stub.ModelStatistics(
                pb.ModelStatisticsRequest(name="plain")).model_stats[0].batch_stats), what="a 2-row part to run")
            release.set()
            np.testing.assert_array_equal(output(second.result(), "y"), four_rows(2) + 1)
            np.testing.assert_array_equal(output(first.result(), "y"), four_rows(1) + 1)

            def client(number: int) -> None:
                for call in range(15):
                    x = four_rows(number, call)
                    answer = output(stub.ModelInfer(raw_request("plain", x=("FP32", x)), timeout=30), "y")
                    np.testing.assert_array_equal(answer, x + 1)

            with ThreadPoolExecutor(6) as pool:
                list(pool.map(client, range(6)))
            stats = stub.ModelStatistics(pb.ModelStatisticsRequest(name="plain")).model_stats[0]
    finally:
        release.set()
        running.stop()
    assert stats.inference_count == (2 + 6 * 15) * 4 and stats.inference_stats.success.count == 2 + 6 * 15
