"""Which session a lone single row runs on under the adaptive plan, decided in service.

The adaptive plan (serving/plan.py) runs a lone single row on the one-thread session where that is
faster than every core (an LSTM, a transformer encoder), and on every core otherwise (the CNNs).
Warm runs timed at load decided this until now, but they run while the server starts, often
beside other processes starting too: `peers.py` starts four servers at once, and there the LSTM got
its one-thread choice in 3 of 4 runs and the encoder in 2 of 4 (README). They also run back to back
on quiet cores, without the client's and the front's work between runs, which is what a lone
request in service has (the all-core session's workers must wake for each).

So the first lone single rows a model serves settle it: they run on each session in turn, in blocks
(every core, one thread, every core, one thread), the first run of each block uncounted (the session
it switched to starts cold), and a run that another batch joined is not counted either. Blocks, not
alternation run by run: a session that runs every other time finds its weights evicted by the other
session's copy each time, and a choice learned that way once moved a CNN's lone requests to one
thread and lost 11 %. The medians then decide: one thread where it takes at most `margin` of every
core's time (BatchPolicy.single_row_on_one_thread_below).
"""

from __future__ import annotations

import statistics

BLOCK_RUNS = 8  # runs per block, the first uncounted
BLOCKS = 4  # every core, one thread, every core, one thread


class SingleRowProbe:
    """The schedule and the samples; the batcher calls it under its lock."""

    def __init__(self) -> None:
        self.position = 0  # runs recorded so far, uncounted ones included
        self.samples: tuple[list[int], list[int]] = ([], [])  # run ns: every core, one thread

    @property
    def finished(self) -> bool:
        return self.position >= BLOCK_RUNS * BLOCKS

    def one_thread_next(self) -> bool:
        """The session the next lone single row runs on (True: the one-thread session)."""
        return (self.position // BLOCK_RUNS) % 2 == 1

    def record(self, one_thread: bool, run_ns: int) -> None:
        """A lone single row ran alone on a session; a run the schedule did not ask for is ignored."""
        if self.finished or one_thread != self.one_thread_next():
            return
        if self.position % BLOCK_RUNS:
            self.samples[one_thread].append(run_ns)
        self.position += 1

    def medians_ns(self) -> tuple[float, float]:
        """(every core, one thread), once finished."""
        return statistics.median(self.samples[0]), statistics.median(self.samples[1])

    def one_thread_wins(self, margin: float) -> bool:
        all_cores, one_thread = self.medians_ns()
        return one_thread <= margin * all_cores
