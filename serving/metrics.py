"""Prometheus metrics for one server, on their own registry and HTTP port (serving.metrics_http), read at scrape time.

A request pays for no metric: the series are built when /metrics is scraped, from the statistics
the server keeps anyway for ModelStatistics (`serving.statistics`), so the two can never disagree.
A per-server `CollectorRegistry` (not prometheus-client's global one) keeps two servers in one
process, as in the tests, from colliding. Everything is labelled by model and version; failures
also by the error's name so a dashboard can tell bad requests from overload. A series appears once
its version has seen a request, and stays (counting on) when the version is reloaded or unloaded,
as client-side counters would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import accumulate

from prometheus_client import CollectorRegistry, metrics as _prometheus_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from serving.statistics import LATENCY_BUCKETS_S, VersionStatistics

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_LABELS = ("model", "version")
_LATENCY_LE = [floatToGoString(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]
_BATCH_LE = [floatToGoString(b) for b in _BATCH_BUCKETS] + ["+Inf"]


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self._collector = _Statistics()
        self.registry.register(self._collector)

    def statistics(self, model: str, version: str) -> VersionStatistics:
        """New statistics for a model version being loaded, exported from now on."""
        stats = VersionStatistics(model, version)
        self._collector.track(stats)
        return stats

    def watch_models(self, snapshot: Callable[[], Iterable[tuple[str, str, tuple[str, ...]]]]) -> None:
        """Export `dnnzoo_model_loaded{model,version,providers}` = 1, read at scrape time."""
        self.registry.register(_LoadedModels(snapshot))


@dataclass
class _Totals:
    """One model version's numbers at a scrape, summed over its loads."""

    since: float
    success: int = 0
    in_flight: int = 0
    failures: dict[str, list] = field(default_factory=dict)  # reason -> [count, since]
    request: list[int] = field(default_factory=lambda: [0] * len(_LATENCY_LE))
    request_ns: int = 0
    queue: list[int] = field(default_factory=lambda: [0] * len(_LATENCY_LE))
    queue_ns: int = 0
    compute: list[int] = field(default_factory=lambda: [0] * len(_LATENCY_LE))
    compute_ns: int = 0
    batches: dict[int, int] = field(default_factory=dict)  # rows -> executions

    def add(self, s: VersionStatistics) -> None:
        with s.lock:
            self.since = min(self.since, s.created)
            self.success += s.success.count
            self.in_flight += s.in_flight
            for reason, count in s.failures.items():
                seen = self.failures.setdefault(reason, [0, s.failures_since[reason]])
                seen[0] += count
                seen[1] = min(seen[1], s.failures_since[reason])
            for mine, theirs in ((self.request, s.request_buckets), (self.queue, s.queue_buckets),
                                 (self.compute, s.compute_buckets)):
                for i, count in enumerate(theirs):
                    mine[i] += count
            self.request_ns += s.success.ns + s.fail.ns
            self.queue_ns += s.queue.ns
            self.compute_ns += s.compute_input.ns + s.compute_infer.ns + s.compute_output.ns
            for rows, batch in s.batches.items():
                self.batches[rows] = self.batches.get(rows, 0) + batch.compute_infer.count

    @property
    def seen(self) -> bool:
        return bool(self.success or self.failures or self.in_flight)

    def batch_buckets(self) -> list[int]:
        counts = [0] * len(_BATCH_LE)
        for rows, executions in self.batches.items():
            counts[next((i for i, bound in enumerate(_BATCH_BUCKETS) if rows <= bound), len(_BATCH_BUCKETS))] += executions
        return counts


class _Statistics(Collector):
    """The request metrics, from every VersionStatistics the server has made."""

    def __init__(self) -> None:
        self._tracked: list[VersionStatistics] = []
        self._lock = threading.Lock()

    def track(self, stats: VersionStatistics) -> None:
        with self._lock:
            self._tracked.append(stats)

    def collect(self):
        with self._lock:
            tracked = list(self._tracked)
        totals: dict[tuple[str, str], _Totals] = {}
        for stats in tracked:
            key = (stats.name, stats.version)
            totals.setdefault(key, _Totals(stats.created)).add(stats)
        created = getattr(_prometheus_metrics, "_use_created", True)  # PROMETHEUS_DISABLE_CREATED_SERIES
        success = CounterMetricFamily("dnnzoo_request_success", "Inference requests answered", labels=_LABELS)
        failure = CounterMetricFamily("dnnzoo_request_failure", "Inference requests failed", labels=(*_LABELS, "reason"))
        request = HistogramMetricFamily("dnnzoo_request_duration_seconds", "Request time from arrival to answer", labels=_LABELS)
        queue = HistogramMetricFamily("dnnzoo_queue_duration_seconds", "Time a request waited in the batching queue", labels=_LABELS)
        compute = HistogramMetricFamily(
            "dnnzoo_compute_duration_seconds", "Model execution time of the batch a request ran in", labels=_LABELS)
        batch = HistogramMetricFamily("dnnzoo_batch_size", "Rows per model execution", labels=_LABELS)
        in_flight = GaugeMetricFamily("dnnzoo_requests_in_flight", "Inference requests being handled", labels=_LABELS)
        for labels, t in totals.items():
            if not t.seen:
                continue
            since = t.since if created else None
            success.add_metric(labels, t.success, created=since)
            for reason, (count, first) in sorted(t.failures.items()):
                failure.add_metric((*labels, reason), count, created=first if created else None)
            _histogram(request, labels, _LATENCY_LE, t.request, t.request_ns / 1e9, since)
            _histogram(queue, labels, _LATENCY_LE, t.queue, t.queue_ns / 1e9, since)
            _histogram(compute, labels, _LATENCY_LE, t.compute, t.compute_ns / 1e9, since)
            _histogram(batch, labels, _BATCH_LE, t.batch_buckets(), sum(r * n for r, n in t.batches.items()), since)
            in_flight.add_metric(labels, t.in_flight)
        yield from (success, failure, request, queue, compute, batch, in_flight)


def _histogram(family: HistogramMetricFamily, labels: tuple[str, ...], le: list[str], counts: list[int],
               total: float, since: float | None) -> None:
    """Per-bucket counts -> Prometheus's cumulative buckets, count, sum and (as prometheus-client's
    own Histogram writes it) _created."""
    family.add_metric(labels, list(zip(le, accumulate(counts))), total)
    if since is not None:
        family.samples.append(Sample(family.name + "_created", dict(zip(_LABELS, labels)), since))


class _LoadedModels(Collector):
    def __init__(self, snapshot) -> None:
        self.snapshot = snapshot

    def collect(self):
        family = GaugeMetricFamily(
            "dnnzoo_model_loaded", "Loaded model versions and the execution providers they run on",
            labels=("model", "version", "providers"),
        )
        for model, version, providers in self.snapshot():
            family.add_metric((model, version, ",".join(providers)), 1)
        yield family
