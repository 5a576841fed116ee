"""Per model version inference statistics, in the shape of Triton's ModelStatistics.

Counts and summed nanoseconds per phase: success and fail (whole request), queue, compute_input,
compute_infer, compute_output (per request, as Triton counts them: each request is charged its
batch's compute time), and the same compute phases per executed batch size. `inference_count`
counts rows inferred, `execution_count` counts model executions, so their ratio is the average
batch size. Updated from the model's instance threads, under the version's lock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from serving.batching import Timings


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += max(0, int(ns))


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
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_execution(self, rows: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        with self.lock:
            self._record_execution(rows, input_ns, infer_ns, output_ns)

    def _record_execution(self, rows: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        self.execution_count += 1
        self.inference_count += rows
        self.last_inference_ms = time.time_ns() // 1_000_000
        batch = self.batches.setdefault(rows, BatchDurations())
        batch.compute_input.add(input_ns)
        batch.compute_infer.add(infer_ns)
        batch.compute_output.add(output_ns)

    def record_success(self, total_ns: int, timings: Timings) -> None:
        with self.lock:
            self._record_success(total_ns, timings)

    def _record_success(self, total_ns: int, timings: Timings) -> None:
        self.success.add(total_ns)
        self.queue.add(timings.queue_ns)
        self.compute_input.add(timings.compute_input_ns)
        self.compute_infer.add(timings.compute_infer_ns)
        self.compute_output.add(timings.compute_output_ns)

    def record_failure(self, total_ns: int) -> None:
        with self.lock:
            self.fail.add(total_ns)
