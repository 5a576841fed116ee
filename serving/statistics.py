"""Per model version inference statistics, in the shape of Triton's ModelStatistics.

Counts and summed nanoseconds per phase: success and fail (whole request), queue, compute_input,
compute_infer, compute_output (per request, as Triton counts them: each request is charged its
batch's compute time), and the same compute phases per executed batch size. `inference_count`
counts rows inferred, `execution_count` counts model executions, so their ratio is the average
batch size. Updated from the model's instance threads, under the version's lock.

They are also everything Prometheus exports (`serving.metrics` reads them when scraped, so a request
pays for no metric of its own): requests in flight, failures by reason, and the counts per latency
bucket of the request, queue and compute histograms, kept here beside the sums they go with.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from dataclasses import dataclass, field

from serving.batching import Timings

# Upper bounds (seconds, inclusive) of the latency histograms; counted here, exported by serving.metrics.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BOUNDS_NS = tuple(round(s * 1e9) for s in LATENCY_BUCKETS_S)


def _buckets() -> list[int]:
    return [0] * (len(_BOUNDS_NS) + 1)  # the last one: above every bound (+Inf only)


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns if ns > 0 else 0


@dataclass
class BatchDurations:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass
class VersionStatistics:
    name: str
    version: str
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, BatchDurations] = field(default_factory=dict)
    # For the metrics: requests accepted and not yet answered, failures by reason (and when each
    # reason first occurred), and per-bucket counts of request, queue and compute time.
    in_flight: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    failures_since: dict[str, float] = field(default_factory=dict)
    request_buckets: list[int] = field(default_factory=_buckets)
    queue_buckets: list[int] = field(default_factory=_buckets)
    compute_buckets: list[int] = field(default_factory=_buckets)
    created: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_execution(self, rows: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        with self.lock:
            self.execution_count += 1
            self.inference_count += rows
            self.last_inference_ms = time.time_ns() // 1_000_000
            batch = self.batches.get(rows)
            if batch is None:
                batch = self.batches[rows] = BatchDurations()
            batch.compute_input.add(input_ns)
            batch.compute_infer.add(infer_ns)
            batch.compute_output.add(output_ns)

    def admit(self) -> None:
        """A request was queued; `record_success`, `record_failure(admitted=True)` or `release` ends it."""
        with self.lock:
            self.in_flight += 1

    def release(self) -> None:
        """An admitted request left without an answer of this version (it is queued at another)."""
        with self.lock:
            self.in_flight -= 1

    def record_success(self, total_ns: int, timings: Timings) -> None:
        """An admitted request was answered."""
        queue_ns, input_ns = timings.queue_ns, timings.compute_input_ns
        infer_ns, output_ns = timings.compute_infer_ns, timings.compute_output_ns
        compute_ns = input_ns + infer_ns + output_ns
        with self.lock:
            self.in_flight -= 1
            self.success.add(total_ns)
            self.queue.add(queue_ns)
            self.compute_input.add(input_ns)
            self.compute_infer.add(infer_ns)
            self.compute_output.add(output_ns)
            self.request_buckets[bisect_left(_BOUNDS_NS, total_ns)] += 1
            self.queue_buckets[bisect_left(_BOUNDS_NS, queue_ns)] += 1
            self.compute_buckets[bisect_left(_BOUNDS_NS, compute_ns)] += 1

    def record_failure(self, total_ns: int, reason: str = "Internal", admitted: bool = False) -> None:
        """A request failed (`reason`: the error's class name, or CANCELLED); `admitted`: it was queued."""
        with self.lock:
            if admitted:
                self.in_flight -= 1
            self.fail.add(total_ns)
            if reason not in self.failures:
                self.failures[reason] = 0
                self.failures_since[reason] = time.time()
            self.failures[reason] += 1
            self.request_buckets[bisect_left(_BOUNDS_NS, total_ns)] += 1
