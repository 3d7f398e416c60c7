"""Prometheus metrics of one service process (its own registry: nothing global, nothing at import)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

logger = logging.getLogger("driftloop.serving")

#: How long the monitor gauges read from ``drift_runs`` are reused (scrapes stay cheap).
MONITOR_GAUGES_TTL_SECONDS = 5.0

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
        shadow = GaugeMetricFamily(
            "driftloop_shadow_model_version",
            "the challenger version scoring live requests in the shadow (0: none)",
            labels=["model_name"],
        )
        shadow.add_metric([s.get("model_name", "")], s.get("shadow_version", 0))
        yield shadow
        rows = CounterMetricFamily(
            "driftloop_shadow_rows",
            "live rows the challenger scored and logged, dropped (queue full, features it lacks) "
            "or failed on",
            labels=["outcome"],
        )
        for outcome in ("scored", "dropped", "failed"):
            rows.add_metric([outcome], s.get(f"shadow_{outcome}", 0))
        yield rows


def read_monitor_gauges(engine: Engine, model_name: str) -> str:
    """The Prometheus text of the newest ``drift_runs`` row of a model ('' when it has none)."""
    from monitoring import runs
    from monitoring.metrics import gauges_of_run, render_monitor_gauges

    row = runs.latest_run(engine, model_name)
    return render_monitor_gauges([gauges_of_run(row)] if row else [])


class MonitorGaugeCache:
    """The monitor gauges, read at most once per ``ttl`` seconds, never more than one read at a
    time, and never longer than ``timeout`` per scrape.

    When the read fails or does not answer in time, the gauges are left out of ``/metrics``
    (Prometheus then sees no series rather than a stale verdict) until a later read succeeds;
    the rest of ``/metrics`` and the service are unaffected.
    """

    def __init__(
        self,
        read: Callable[[], str],
        *,
        ttl: float = MONITOR_GAUGES_TTL_SECONDS,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._ttl = ttl
        self._timeout = timeout
        self._clock = clock
        self._text = ""
        self._read_at: float | None = None
        self._pending: asyncio.Future[None] | None = None
        self._failing = False

    async def text(self) -> str:
        """The gauges' text, read again when older than the ttl."""
        if self._read_at is not None and self._clock() - self._read_at < self._ttl:
            return self._text
        if self._pending is not None and not self._pending.done():
            return self._text  # a read is under way (or hung): do not start another
        self._pending = asyncio.ensure_future(self._refresh())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._pending), self._timeout)
        if not self._pending.done():
            self._text = ""
            self._note_failure(f"no answer within {self._timeout:g} s")
        return self._text

    async def _refresh(self) -> None:
        try:
            text = await asyncio.to_thread(self._read)
        except Exception as exc:
            self._text = ""
            self._note_failure(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        else:
            self._text = text
            if self._failing:
                logger.info("monitor gauges readable again")
            self._failing = False
        self._read_at = self._clock()

    def _note_failure(self, why: str) -> None:
        if not self._failing:  # once per outage, not once per scrape
            logger.warning("monitor gauges left out of /metrics: drift_runs unreadable (%s)", why)
        self._failing = True
