"""Prometheus metrics for one server, on their own registry and HTTP port.

A per-server `CollectorRegistry` (not prometheus-client's global one) keeps two servers in one
process, as in the tests, from colliding. Everything is labelled by model and version; failures
also by gRPC-style status name so a dashboard can tell bad requests from overload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from serving.batching import Timings

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_LABELS = ("model", "version")


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.success = Counter("dnnzoo_request_success", "Inference requests answered", _LABELS, registry=r)
        self.failure = Counter("dnnzoo_request_failure", "Inference requests failed", (*_LABELS, "reason"), registry=r)
        self.request_latency = Histogram(
            "dnnzoo_request_duration_seconds", "Request time from arrival to answer", _LABELS,
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.queue_latency = Histogram(
            "dnnzoo_queue_duration_seconds", "Time a request waited in the batching queue", _LABELS,
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.compute_latency = Histogram(
            "dnnzoo_compute_duration_seconds", "Model execution time of the batch a request ran in", _LABELS,
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.batch_size = Histogram(
            "dnnzoo_batch_size", "Rows per model execution", _LABELS, buckets=_BATCH_BUCKETS, registry=r,
        )
        self.in_flight = Gauge("dnnzoo_requests_in_flight", "Inference requests being handled", _LABELS, registry=r)
        self._versions: dict[tuple[str, str], VersionMetrics] = {}

    def version(self, model: str, version: str) -> VersionMetrics:
        """The label children of one model version, looked up once: `.labels()` costs more than
        the observation itself, and this runs for every request."""
        key = (model, version)
        found = self._versions.get(key)
        if found is None:
            found = self._versions[key] = VersionMetrics(self, model, version)
        return found

    def observe_success(self, model: str, version: str, total_ns: int, timings: Timings) -> None:
        self.version(model, version).observe_success(total_ns, timings)

    def observe_failure(self, model: str, version: str, total_ns: int, reason: str) -> None:
        self.version(model, version).observe_failure(total_ns, reason)

    def observe_execution(self, model: str, version: str, rows: int) -> None:
        self.version(model, version).batch_size.observe(rows)

    def watch_models(self, snapshot: Callable[[], Iterable[tuple[str, str, tuple[str, ...]]]]) -> None:
        """Export `dnnzoo_model_loaded{model,version,providers}` = 1, read at scrape time."""
        self.registry.register(_LoadedModels(snapshot))

    def serve(self, host: str, port: int):
        """Start the /metrics HTTP endpoint in a daemon thread; returns (httpd, bound port)."""
        httpd, _thread = start_http_server(port, addr=host, registry=self.registry)
        return httpd, httpd.server_port


class VersionMetrics:
    """One model version's label children (see `Metrics.version`)."""

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        self._metrics, self._labels = metrics, (model, version)
        self.success = metrics.success.labels(model, version)
        self.request_latency = metrics.request_latency.labels(model, version)
        self.queue_latency = metrics.queue_latency.labels(model, version)
        self.compute_latency = metrics.compute_latency.labels(model, version)
        self.batch_size = metrics.batch_size.labels(model, version)
        self.in_flight = metrics.in_flight.labels(model, version)

    def observe_success(self, total_ns: int, timings: Timings) -> None:
        self.success.inc()
        self.request_latency.observe(total_ns / 1e9)
        self.queue_latency.observe(timings.queue_ns / 1e9)
        self.compute_latency.observe((timings.compute_input_ns + timings.compute_infer_ns + timings.compute_output_ns) / 1e9)

    def observe_failure(self, total_ns: int, reason: str) -> None:
        self._metrics.failure.labels(*self._labels, reason).inc()
        self.request_latency.observe(total_ns / 1e9)


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
