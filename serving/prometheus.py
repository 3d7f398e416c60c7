"""Prometheus metrics of one service process (its own registry: nothing global, nothing at import)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
)
ENDPOINTS = frozenset(
    {"/predict", "/feedback", "/health", "/ready", "/model", "/metrics", "/reload"}
)


class ServiceMetrics:
    """Request counters and latency, plus live values (queue depth, model version) read at scrape."""

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "driftloop_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "driftloop_request_errors",
            "HTTP requests answered with status >= 400",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "driftloop_request_latency_seconds",
            "time to answer, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows_predicted = Counter(
            "driftloop_rows_predicted", "rows scored and answered", registry=self.registry
        )
        self.log_batch = Histogram(
            "driftloop_log_batch_seconds",
            "time to make one group-commit batch of log records durable",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.log_batch_rows = Counter(
            "driftloop_log_batch_rows", "log records in committed batches", registry=self.registry
        )
        self.registry.register(_LiveCollector(state))
        self._children: dict[tuple[str, int], tuple[Any, Any | None, Any]] = {}

    def observe(self, path: str, status: int, seconds: float) -> None:
        endpoint = path if path in ENDPOINTS else "other"
        key = (endpoint, status)
        children = self._children.get(key)
        if children is None:
            error = self.errors.labels(endpoint, str(status)) if status >= 400 else None
            children = (
                self.requests.labels(endpoint, str(status)),
                error,
                self.latency.labels(endpoint),
            )
            self._children[key] = children
        children[0].inc()
        if children[1] is not None:
            children[1].inc()
        children[2].observe(seconds)

    def observe_batch(self, rows: int, seconds: float) -> None:
        """One writer batch made durable (called from the writer thread; thread-safe)."""
        self.log_batch.observe(seconds)
        self.log_batch_rows.inc(rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector(Collector):
    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self._state = state

    def collect(self) -> Iterator[Any]:
        s = self._state()
        logged = CounterMetricFamily(
            "driftloop_rows_logged",
            "log records made durable, by destination",
            labels=["destination"],
        )
        logged.add_metric(["database"], s.get("rows_database", 0))
        logged.add_metric(["spool"], s.get("rows_spooled", 0))
        yield logged
        yield CounterMetricFamily(
            "driftloop_rows_replayed",
            "spooled records replayed into the database",
            value=s.get("rows_replayed", 0),
        )
        yield CounterMetricFamily(
            "driftloop_rows_log_failed",
            "records neither the database nor the spool took (nor, for refused ones, a dead-letter store)",
            value=s.get("rows_failed", 0),
        )
        dead = CounterMetricFamily(
            "driftloop_rows_dead_lettered",
            "records the database refused, kept in the dead-letter table or, when it refused "
            "them too, the dead-letter file",
            labels=["store"],
        )
        dead.add_metric(["table"], s.get("rows_dead_lettered", 0))
        dead.add_metric(["file"], s.get("rows_dead_lettered_file", 0))
        yield dead
        yield GaugeMetricFamily(
            "driftloop_log_queue_depth", "log rows waiting for the writer", value=s.get("queue", 0)
        )
        yield GaugeMetricFamily(
            "driftloop_spool_pending_rows",
            "log records this process spooled that are not replayed yet",
            value=s.get("spool_rows", 0),
        )
        yield GaugeMetricFamily(
            "driftloop_spool_pending_files",
            "spool files waiting for replay (this process's and those left by earlier ones)",
            value=s.get("spool_files", 0),
        )
        yield GaugeMetricFamily(
            "driftloop_log_database_up",
            "1 while log records go to the database; 0 while they go to the spool or the spool "
            "cannot be replayed",
            value=s.get("database_up", 0),
        )
        version = GaugeMetricFamily(
            "driftloop_model_version",
            "the model version answering (0: none loaded)",
            labels=["model_name"],
        )
        version.add_metric([s.get("model_name", "")], s.get("model_version", 0))
        yield version
        yield CounterMetricFamily(
            "driftloop_model_reloads",
            "champion versions loaded after startup",
            value=s.get("reloads", 0),
        )
        yield CounterMetricFamily(
            "driftloop_model_load_failures",
            "failed attempts to load a champion",
            value=s.get("load_failures", 0),
        )
