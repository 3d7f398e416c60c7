"""Prometheus metrics of one service process (its own registry: nothing global, nothing at import).

Under `driftloop serve --workers N` one port is answered by N processes, and a scrape reaches
whichever of them accepts it; so there, every worker writes its metrics into one directory
(prometheus_client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``, a fresh directory per
`serve` run) and `/metrics` merges them: counters and histograms are summed over every worker of
the run, queue depth and pending spool rows over the live workers, `driftloop_log_database_up` is
the lowest of the live workers', and `driftloop_model_version` has one series per live worker
(label `pid`), so a worker that has not swapped yet shows. The values read from a worker's state
(rows logged, queue depth, model version, ...) are published into that directory by the worker
after each log batch, every :data:`PUBLISH_SECONDS` and before it answers a scrape. A worker
leaves the live values when it shuts down, or, killed, when a new worker starts (uvicorn starts
one in its place); its counts stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from core.errors import DriftloopError

logger = logging.getLogger("driftloop.serving")

#: How long the monitor gauges read from ``drift_runs`` are reused (scrapes stay cheap).
MONITOR_GAUGES_TTL_SECONDS = 5.0
#: How often a worker of `serve --workers N` publishes its state values for the others' scrapes.
PUBLISH_SECONDS = 1.0

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


class MetricsDirectoryError(DriftloopError):
    """Shared (multiprocess) metrics were asked for in a process that cannot write them."""


#: How the workers' values of one metric combine (prometheus_client's multiprocess modes):
#: ``sum`` over every worker of the run (counters), or over, the lowest of, the highest of, or
#: one series per (``liveall``) the live workers.
Combine = Literal["sum", "livesum", "livemin", "livemax", "liveall"]


@dataclass(frozen=True)
class LiveMetric:
    """A metric whose values are read from the service's state (see ``Service.live_state``).

    ``series`` pairs a label value with the state key holding its value (one ``("", key)`` when
    the metric has no label); a ``model_name`` label takes its value from the state.
    """

    name: str  # a counter's name without ``_total``
    help: str
    kind: Literal["counter", "gauge"]
    series: tuple[tuple[str, str], ...]
    label: str = ""
    workers: Combine = "sum"

    @property
    def sample_name(self) -> str:
        return f"{self.name}_total" if self.kind == "counter" else self.name

    def label_values(self, label_value: str, state: dict[str, Any]) -> list[str]:
        if not self.label:
            return []
        return [str(state.get("model_name", ""))] if self.label == "model_name" else [label_value]


LIVE_METRICS: tuple[LiveMetric, ...] = (
    LiveMetric(
        "driftloop_rows_logged",
        "log records made durable, by destination",
        "counter",
        (("database", "rows_database"), ("spool", "rows_spooled")),
        label="destination",
    ),
    LiveMetric(
        "driftloop_rows_replayed",
        "spooled records replayed into the database",
        "counter",
        (("", "rows_replayed"),),
    ),
    LiveMetric(
        "driftloop_rows_log_failed",
        "records neither the database nor the spool took (nor, for refused ones, a dead-letter "
        "store)",
        "counter",
        (("", "rows_failed"),),
    ),
    LiveMetric(
        "driftloop_rows_dead_lettered",
        "records the database refused, kept in the dead-letter table or, when it refused "
        "them too, the dead-letter file",
        "counter",
        (("table", "rows_dead_lettered"), ("file", "rows_dead_lettered_file")),
        label="store",
    ),
    LiveMetric(
        "driftloop_log_queue_depth",
        "log rows waiting for the writer",
        "gauge",
        (("", "queue"),),
        workers="livesum",
    ),
    LiveMetric(
        "driftloop_spool_pending_rows",
        "log records this process spooled that are not replayed yet",
        "gauge",
        (("", "spool_rows"),),
        workers="livesum",
    ),
    LiveMetric(
        "driftloop_spool_pending_files",
        "spool files waiting for replay (this process's and those left by earlier ones)",
        "gauge",
        (("", "spool_files"),),
        workers="livemax",
    ),
    LiveMetric(
        "driftloop_log_database_up",
        "1 while log records go to the database; 0 while they go to the spool or the spool "
        "cannot be replayed",
        "gauge",
        (("", "database_up"),),
        workers="livemin",
    ),
    LiveMetric(
        "driftloop_model_version",
        "the model version answering (0: none loaded)",
        "gauge",
        (("", "model_version"),),
        label="model_name",
        workers="liveall",
    ),
    LiveMetric(
        "driftloop_model_reloads",
        "champion versions loaded after startup",
        "counter",
        (("", "reloads"),),
    ),
    LiveMetric(
        "driftloop_model_load_failures",
        "failed attempts to load a champion",
        "counter",
        (("", "load_failures"),),
    ),
    LiveMetric(
        "driftloop_shadow_model_version",
        "the challenger version scoring live requests in the shadow (0: none)",
        "gauge",
        (("", "shadow_version"),),
        label="model_name",
        workers="liveall",
    ),
    LiveMetric(
        "driftloop_shadow_rows",
        "live rows the challenger scored and logged, dropped (queue full, features it lacks) "
        "or failed on",
        "counter",
        (("scored", "shadow_scored"), ("dropped", "shadow_dropped"), ("failed", "shadow_failed")),
        label="outcome",
    ),
)
_LIVE_COUNTERS = {m.sample_name: m for m in LIVE_METRICS if m.kind == "counter"}


class ServiceMetrics:
    """Request counters and latency, plus live values (queue depth, model version) read at scrape.

    With ``shared_dir`` (a worker of `serve --workers N`), the metrics of every worker of the run
    are in that directory and :meth:`render` merges them (see the module docstring).
    """

    def __init__(
        self, state: Callable[[], dict[str, Any]], *, shared_dir: Path | None = None
    ) -> None:
        if shared_dir is not None:
            check_shared_dir(shared_dir)
        self.shared_dir = shared_dir
        self.registry = CollectorRegistry(auto_describe=True)
        #: where the counters register: this registry, or none when the shared directory holds them
        own = self.registry if shared_dir is None else None
        self.requests = Counter(
            "driftloop_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=own,
        )
        self.errors = Counter(
            "driftloop_request_errors",
            "HTTP requests answered with status >= 400",
            ["endpoint", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "driftloop_request_latency_seconds",
            "time to answer, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.rows_predicted = Counter(
            "driftloop_rows_predicted", "rows scored and answered", registry=own
        )
        self.log_batch = Histogram(
            "driftloop_log_batch_seconds",
            "time to make one group-commit batch of log records durable",
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.log_batch_rows = Counter(
            "driftloop_log_batch_rows", "log records in committed batches", registry=own
        )
        self._publisher: _Publisher | None = None
        if shared_dir is None:
            self.registry.register(_LiveCollector(state))
        else:
            forget_dead_workers(shared_dir)  # e.g. the worker this one replaces (kill -9)
            self._publisher = _Publisher(state)
            self.registry.register(_WorkersCollector(shared_dir))
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
        self.publish()

    def publish(self) -> None:
        """Write this worker's state values into the shared directory (no-op without one)."""
        if self._publisher is not None:
            self._publisher.publish()

    def retire(self) -> None:
        """At shutdown: publish the final counts; this worker's live gauges leave the merge."""
        if self._publisher is not None and self.shared_dir is not None:
            self._publisher.publish()
            mark_process_dead(os.getpid(), str(self.shared_dir))

    def render(self) -> bytes:
        self.publish()
        return generate_latest(self.registry)


def check_shared_dir(directory: Path) -> None:
    """Raise MetricsDirectoryError unless prometheus_client writes this process's metrics into
    ``directory`` (``PROMETHEUS_MULTIPROC_DIR``, read by prometheus_client when it is imported)."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if prometheus_values.ValueClass is prometheus_values.MutexValue or configured is None:
        raise MetricsDirectoryError(
            f"shared metrics in {directory} need PROMETHEUS_MULTIPROC_DIR set to that directory "
            "before prometheus_client is imported; start the service with "
            "`driftloop serve --workers N`, which does it"
        )
    if Path(configured).resolve() != directory.resolve():
        raise MetricsDirectoryError(
            f"PROMETHEUS_MULTIPROC_DIR is {configured}, not the shared metrics directory "
            f"{directory}"
        )
    if not directory.is_dir():
        raise MetricsDirectoryError(f"the shared metrics directory {directory} does not exist")


def forget_dead_workers(directory: Path) -> list[int]:
    """Drop the live values (queue, version, ...) of workers that died without retiring; their
    counts stay. Returns their pids."""
    dead = []
    for path in directory.glob("gauge_live*_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        if pid not in dead and not _alive(pid):
            mark_process_dead(pid, str(directory))
            dead.append(pid)
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class _LiveCollector(Collector):
    """The state values of this process, read at scrape."""

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self._state = state

    def collect(self) -> Iterator[Any]:
        s = self._state()
        for metric in LIVE_METRICS:
            family_type = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
            family = family_type(
                metric.name, metric.help, labels=[metric.label] if metric.label else []
            )
            for label_value, key in metric.series:
                family.add_metric(metric.label_values(label_value, s), s.get(key, 0))
            yield family


class _Publisher:
    """Writes this worker's state values into the shared directory, as gauges combined per
    :attr:`LiveMetric.workers` (one lock: published values never go back in time)."""

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._gauges = [
            (
                metric,
                Gauge(
                    metric.sample_name,
                    metric.help,
                    [metric.label] if metric.label else [],
                    multiprocess_mode=metric.workers,
                    registry=None,
                ),
            )
            for metric in LIVE_METRICS
        ]

    def publish(self) -> None:
        with self._lock:
            s = self._state()
            for metric, gauge in self._gauges:
                for label_value, key in metric.series:
                    values = metric.label_values(label_value, s)
                    (gauge.labels(*values) if values else gauge).set(s.get(key, 0))


class _WorkersCollector(Collector):
    """Every worker's metrics in the shared directory, merged; published counters typed as
    counters again (they travel as ``sum`` gauges)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        files = glob.glob(os.path.join(self._directory, "*.db"))
        for metric in MultiProcessCollector.merge(files, accumulate=True):
            live = _LIVE_COUNTERS.get(metric.name)
            if live is None:
                yield metric
                continue
            counter = Metric(live.name, metric.documentation, "counter")
            counter.samples = list(metric.samples)
            yield counter


async def publish_every(metrics: ServiceMetrics, interval: float = PUBLISH_SECONDS) -> None:
    """Publish the state values every ``interval`` seconds, for as long as the service runs."""
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(metrics.publish)


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
