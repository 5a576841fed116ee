"""Stops ONNX Runtime runs that outlast their time, so that no request holds a thread for ever.

A graph can loop as often as an input says (an ONNX Loop whose trip count comes from the request),
or be sized by a request far beyond anything measured: one such request used to hold its instance
thread for ever, and on the native front's dispatch thread (a lone request to a model measured
cheap runs there) every model's calls with it. ONNX Runtime cannot be interrupted from outside
except through the `terminate` flag of the `RunOptions` a run was given, which it checks between
nodes. So every batch runs with RunOptions of its own (~0.4 us to make) registered here with the
time by which it must have ended, and one thread, waking every `TICK_S`, sets the flag of each run
past its time: the run raises and its thread is free.

A fresh RunOptions per run, not one per thread reused: a flag set just as its run ended would
otherwise stop the thread's next run.
"""

from __future__ import annotations

import logging
import threading
import time

import onnxruntime as ort

log = logging.getLogger(__name__)

TICK_S = 0.02  # how late a run is stopped at most; the thread's only cost is this wake-up (50 a second)
DOZE_AFTER_S = 1.0  # with no run in flight this long, the thread sleeps until the next one (an idle server never wakes)


class RunWatch:
    """`begin(due)` before a run, `end(options)` after it (True: the watch stopped it)."""

    def __init__(self, tick_s: float = TICK_S, doze_after_s: float = DOZE_AFTER_S) -> None:
        self.tick_s = tick_s
        self._doze_after_ticks = max(1, round(doze_after_s / tick_s))
        self._due: dict[int, tuple[float, ort.RunOptions]] = {}  # id(options) -> (time.monotonic() due, options)
        self._started = threading.Lock()
        self._thread: threading.Thread | None = None
        self._quiet = threading.Condition()
        self.dozing = False  # the thread sleeps until a run begins (only the first run after a quiet spell wakes it)

    def begin(self, due: float | None) -> ort.RunOptions:
        """Options for one run that must end by `due` (time.monotonic() seconds; None: no bound)."""
        options = ort.RunOptions()
        options.log_severity_level = 4  # a failed run is the client's: it is answered, not logged
        if due is not None:
            self._due[id(options)] = (due, options)  # written before `dozing` is read: see `_doze`
            if self._thread is None:
                self._start()
            elif self.dozing:
                with self._quiet:
                    self._quiet.notify()
        return options

    def end(self, options: ort.RunOptions) -> bool:
        """The run is over: whether it was stopped (its error is then this watch's doing)."""
        self._due.pop(id(options), None)
        return options.terminate

    def _start(self) -> None:
        with self._started:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="dnnzoo run watch", daemon=True)
                self._thread.start()

    def _watch(self) -> None:
        quiet_ticks = 0
        while True:
            if quiet_ticks >= self._doze_after_ticks:
                self._doze()
                quiet_ticks = 0
            time.sleep(self.tick_s)
            if not self._due:
                quiet_ticks += 1
                continue
            quiet_ticks = 0
            try:
                now = time.monotonic()
                for due, options in tuple(self._due.values()):  # a C-level copy: atomic under the GIL
                    if now >= due:
                        options.terminate = True
            except Exception:  # noqa: BLE001 - a bug here must not end the watch
                log.exception("the run watch failed to check the runs in flight")

    def _doze(self) -> None:
        """Sleep until a run begins. `dozing` is set before `_due` is read, and `begin` writes `_due`
        before it reads `dozing`, so a run that begins meanwhile is either seen here or wakes us."""
        with self._quiet:
            self.dozing = True
            while not self._due:
                self._quiet.wait()
            self.dozing = False


RUN_WATCH = RunWatch()  # one for the process: its thread starts with the first bounded run
