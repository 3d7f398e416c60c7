"""The service's run-time state: everything one process needs while it serves, built once in the
lifespan by :func:`start_service` (the database, the registry client, the log writer, the model
holder, the micro-batcher, the metrics, the gate's limits) and handed to the gate and the routes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from core.config_serving import ServingConfig
from core.settings import Settings
from monitoring import store
from monitoring.spool import Spool, spool_directory, spool_files
from serving.deadline import BoundedCalls
from serving.gate import AuthThrottle, GateLimits, error_body
from serving.holder import ModelHolder
from serving.logwriter import LogWriter
from serving.microbatch import MicroBatcher
from serving.model import ServedModel
from serving.predict import predict_answer
from serving.prometheus import MonitorGaugeCache, ServiceMetrics, read_monitor_gauges
from serving.shadow import ShadowScorer
from serving.validation import InputSpec, numeric_limits

logger = logging.getLogger("driftloop.serving")
#: /feedback database calls running at once; more wait for a slot within db_timeout_seconds
_FEEDBACK_CALLS = 4


class Service:
    """Everything one process needs at run time (built in the lifespan)."""

    def __init__(
        self,
        *,
        settings: Settings,
        model_name: str,
        config: ServingConfig,
        engine: Engine,
        client: Any,
        spool_dir: Path,
        metrics_dir: Path | None = None,
    ) -> None:
        """`metrics_dir`: the metrics directory shared by the workers of `serve --workers N`
        (None: this process's metrics alone)."""
        self.settings = settings
        self.model_name = model_name
        self.config = config
        self.engine = engine
        self.holder = ModelHolder(client, model_name)
        self.shadow = ShadowScorer(client, model_name, engine, share=config.shadow_share)
        self.spool_dir = spool_dir
        self.writer = LogWriter(
            engine,
            Spool(spool_dir),
            batch_rows=config.writer_batch_rows,
            queue_rows=config.writer_queue_rows,
            retry_seconds=config.db_retry_seconds,
            db_timeout=config.db_timeout_seconds,
            observe_batch=self._observe_batch,
        )
        self.feedback_calls = BoundedCalls(
            timeout=config.db_timeout_seconds, limit=_FEEDBACK_CALLS, name="driftloop-feedback"
        )
        self.batcher = MicroBatcher(max_rows=config.microbatch_rows)
        self.metrics = ServiceMetrics(self.live_state, shared_dir=metrics_dir)
        self.monitor_gauges = MonitorGaugeCache(
            functools.partial(read_monitor_gauges, engine, model_name),
            timeout=config.db_timeout_seconds,
        )
        self.limits = GateLimits(config.max_body_bytes, config.body_timeout_seconds)
        self.throttle = AuthThrottle(free=config.auth_free_failures)
        self._id_prefix = os.urandom(8).hex()
        self._id_counter = itertools.count()
        self._spec: tuple[ServedModel, InputSpec] | None = None

    def input_spec(self, model: ServedModel) -> InputSpec:
        """What /predict accepts for this model (built once per loaded model)."""
        cached = self._spec
        if cached is not None and cached[0] is model:
            return cached[1]
        spec = InputSpec(
            model.numeric,
            model.categorical,
            model.not_null,
            limits=numeric_limits(model.magnitudes, max_abs_value=self.config.max_abs_value),
            max_string_length=self.config.max_string_length,
        )
        self._spec = (model, spec)
        return spec

    def unavailable(self) -> str:
        """Why no model is loaded, fit for a client."""
        return self.holder.unavailable()

    async def predict(self, body: bytes, start: float) -> tuple[int, Any]:
        """The answer to one POST /predict body (unexpected failures become a plain 500)."""
        try:
            return await predict_answer(self, body, start)
        except Exception:
            logger.exception("unhandled error on /predict")
            return 500, error_body("internal error; see the service log")

    def request_ids(self, n: int) -> list[str]:
        """n new request ids: 32 hex digits, a random per-process prefix and a counter.

        Unique like uuid4 (64 random bits per process start) without a getrandom call per row.
        """
        prefix, counter = self._id_prefix, self._id_counter
        return [f"{prefix}{next(counter):016x}" for _ in range(n)]

    def _observe_batch(self, rows: int, seconds: float) -> None:
        self.metrics.observe_batch(rows, seconds)

    def live_state(self) -> dict[str, Any]:
        stats = self.writer.stats
        model = self.holder.current
        return {
            "rows_database": stats.rows_database,
            "rows_spooled": stats.rows_spooled,
            "rows_replayed": stats.rows_replayed,
            "rows_failed": stats.rows_failed,
            "rows_dead_lettered": stats.rows_dead_lettered,
            "rows_dead_lettered_file": stats.rows_dead_lettered_file,
            "spool_rows": self.writer.spool_rows,
            "spool_files": len(spool_files(self.spool_dir)),
            "queue": self.writer.queue_depth,
            "database_up": 1 if stats.database_up else 0,
            "model_name": self.model_name,
            "model_version": model.version if model else 0,
            "reloads": self.holder.reloads,
            "load_failures": self.holder.load_failures,
            "shadow_version": self.shadow.model.version if self.shadow.model else 0,
            "shadow_scored": self.shadow.stats.scored,
            "shadow_dropped": self.shadow.stats.dropped,
            "shadow_failed": self.shadow.stats.failed,
        }

    @cached_property
    def api_key(self) -> bytes | None:
        key = self.settings.api_key
        return (
            key.get_secret_value().encode() if key is not None and key.get_secret_value() else None
        )


def start_service(
    *,
    settings: Settings,
    model_name: str,
    config: ServingConfig,
    spool_dir: Path | None,
    engine: Engine | None,
    client: Any,
    migrate: bool,
    metrics_dir: Path | None = None,
) -> Service:
    """Connect (migrating the log first when asked), start the writer, load the champion.

    A champion that cannot be loaded leaves the service unready (logged by the holder); it keeps
    polling. Blocking: the lifespan runs it on a thread.
    """
    from mlflow import MlflowClient

    if migrate:
        store.upgrade_database(settings.database_url)
    db = (
        engine
        if engine is not None
        else store.make_engine(
            settings.database_url,
            statement_timeout_seconds=config.db_timeout_seconds,
            synchronous=settings.sqlite_synchronous,
        )
    )
    registry = (
        client if client is not None else MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    )
    base = spool_dir if spool_dir is not None else config.spool_dir
    service = Service(
        settings=settings,
        model_name=model_name,
        config=config,
        engine=db,
        client=registry,
        spool_dir=spool_directory(Path(base), settings.database_url),
        metrics_dir=metrics_dir,
    )
    service.writer.start()
    with contextlib.suppress(Exception):  # logged by refresh; the service starts unready
        service.holder.refresh()  # and keeps polling
    service.shadow.refresh()
    return service
