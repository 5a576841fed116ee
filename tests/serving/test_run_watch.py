"""The run watch (serving/run_watch.py) on its own: it sets a run's terminate flag once the run is
due, never one that ended, and after a quiet spell it sleeps until the next run begins."""

from __future__ import annotations

import time

from serving.run_watch import RunWatch
from tests.serving.conftest import wait_until


def test_due_runs_are_flagged_ended_ones_are_not_and_a_quiet_watch_dozes_then_wakes():
    watch = RunWatch(tick_s=0.01, doze_after_s=0.05)
    due = watch.begin(time.monotonic() + 0.05)
    later = watch.begin(time.monotonic() + 60)
    unbounded = watch.begin(None)
    wait_until(lambda: due.terminate, what="the due run flagged", timeout=10)
    assert watch.end(due) and not watch.end(later) and not later.terminate and not watch.end(unbounded)
    ended = watch.begin(time.monotonic() + 0.05)
    assert not watch.end(ended)  # ended before it was due
    wait_until(lambda: watch.dozing, what="the watch asleep with no run in flight", timeout=10)
    time.sleep(0.1)
    assert not ended.terminate
    woken = watch.begin(time.monotonic() + 0.05)  # the first run after a quiet spell wakes it
    wait_until(lambda: woken.terminate, what="a run after the doze flagged", timeout=10)
    assert watch.end(woken) and not watch.dozing
