"""The FastAPI inference service: serves the champion, validates, predicts, logs every row.

Build it with :func:`create_app` (an entry point builds the settings and passes them in). Nothing
connects at import or at construction: the database, the registry and the writer start in the
lifespan, and stop there (flushing every queued log record).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import math
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from driftloop.registry import CHAMPION, ModelNotFoundError, get_alias
from driftloop.settings import Settings
from monitoring import store
from monitoring.spool import Spool, spool_directory, spool_files
from serving.config import ServingConfig
from serving.deadline import BoundedCalls, DeadlineExceeded
from serving.gate import (
    AuthThrottle,
    Gate,
    GateLimits,
    error_body,
)
from serving.logwriter import LogRecordRefused, LogWriteError, LogWriter
from serving.microbatch import MicroBatcher
from serving.model import ModelLoadError, ModelScoringError, ServedModel, load_version
from serving.openapi import complete_schema
from serving.prometheus import ServiceMetrics
from serving.schemas import ErrorResponse, FeedbackRequest, FeedbackResponse
from serving.validation import (
    MAX_REPORTED_ERRORS,
    InputSpec,
    PayloadError,
    clip,
    numeric_limits,
    short,
    validate_payload,
)

logger = logging.getLogger("driftloop.serving")
#: Longest error sentence an HTTP body carries.
_MAX_ERROR_CHARS = 300
#: Absolute file paths and file URIs in messages from libraries (never sent to clients).
_PATH = re.compile(r"(?:file://)?(?:[A-Za-z]:)?(?:/[\w.@%+~-]+){2,}/?")
#: /feedback database calls running at once; more wait for a slot within db_timeout_seconds
_FEEDBACK_CALLS = 4


# --------------------------------------------------------------------------- responses


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _problem(status: int, message: str, detail: Any = None) -> Response:
    return json_response(error_body(message, detail), status)


def redact(text: str) -> str:
    """A library's error message fit for a client: no file paths, bounded length."""
    return clip(_PATH.sub("<path>", text), _MAX_ERROR_CHARS)


# --------------------------------------------------------------------------- the model holder


#: Load failures whose message is ours (names the model, version and file, never a local path)
#: and may be shown in HTTP bodies; any other exception is shown by its type only. The registry's
#: family: a missing version or alias, a version driftloop did not register (ModelLoadError), a
#: failed integrity check (ModelIntegrityError).
_PUBLIC_ERRORS = (ModelNotFoundError, ModelScoringError)


def public_error(exc: BaseException) -> str:
    """What `/ready`, `/model` and `/reload` may say about a failed load."""
    if isinstance(exc, _PUBLIC_ERRORS):
        return str(exc)
    return f"{type(exc).__name__} while checking or loading the model; see the service log"


class ModelHolder:
    """The model answering requests; swapped atomically when the alias moves.

    A version that fails to load (integrity check, tags, warm-up) is never swapped in: the loaded
    one keeps answering, and the failure is logged, counted in `load_failures` and kept in
    `last_error` until a version loads.
    """

    def __init__(self, client: Any, model_name: str, alias: str = CHAMPION) -> None:
        self.client = client
        self.model_name = model_name
        self.alias = alias
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self.reloads = 0
        self.load_failures = 0
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Check the alias; load, warm up and swap in a new version. True when it changed."""
        with self._lock:
            try:
                found = get_alias(self.client, self.model_name, self.alias)
                if found is None:
                    raise ModelLoadError(
                        f"model {self.model_name!r} has no `{self.alias}` alias yet; "
                        "train one with `driftloop train`"
                    )
                version = int(found.version)
                if self.current is not None and self.current.version == version:
                    return False
                model = load_version(self.client, self.model_name, version, alias=self.alias)
                model.score_columns(
                    model.example_columns()
                )  # a model that cannot score is not swapped in
            except Exception as exc:
                self.last_error = public_error(exc)
                self.load_failures += 1
                kept = self.current.version if self.current is not None else "none"
                logger.error(
                    "%s@%s not loaded (still serving version %s): %s",
                    self.model_name,
                    self.alias,
                    kept,
                    exc,
                )
                raise
            previous = self.current
            self.current = model
            self.last_error = None
            gc.freeze()  # the loaded model and libraries are never garbage: keep them out of GC scans
            if previous is not None:
                self.reloads += 1
            logger.warning(
                "serving %s version %s (was %s)",
                self.model_name,
                version,
                previous.version if previous else "none",
            )
            return True


# --------------------------------------------------------------------------- the service


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
    ) -> None:
        self.settings = settings
        self.model_name = model_name
        self.config = config
        self.engine = engine
        self.holder = ModelHolder(client, model_name)
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
        self.metrics = ServiceMetrics(self.live_state)
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
        return redact(self.holder.last_error or "loading the model")

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
        }

    @cached_property
    def api_key(self) -> bytes | None:
        key = self.settings.api_key
        return (
            key.get_secret_value().encode() if key is not None and key.get_secret_value() else None
        )


async def predict_answer(service: Service, body: bytes, start: float) -> tuple[int, Any]:
    """Validate, score and durably log one /predict body; the status and JSON body to answer."""
    model = service.holder.current
    if model is None:
        return 503, error_body(f"no model loaded: {service.unavailable()}")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return 422, error_body(
            "the body is not valid JSON",
            [{"loc": ["body"], "row": None, "field": None, "msg": clip(str(exc), 200)}],
        )
    spec = service.input_spec(model)
    try:
        records = validate_payload(payload, spec, max_rows=service.config.max_batch_rows)
    except PayloadError as exc:
        return 422, error_body(str(exc), exc.detail())
    n = len(records)
    try:
        scores = await service.batcher.score(model, records.columns, n)
    except ModelScoringError as exc:
        return 422, error_body(redact(str(exc)))
    latency_ms = (time.perf_counter() - start) * 1000.0
    now = datetime.now(UTC)
    ids = service.request_ids(n)
    rows = []
    out = []
    probability = scores.probability
    probabilities = scores.probabilities
    for i in range(n):
        p = probability[i] if probability is not None else None
        ps = probabilities[i] if probabilities is not None else None
        rows.append(
            {
                "request_id": ids[i],
                "ts": now,
                "model_name": model.name,
                "model_version": model.version,
                "features": records.rows[i],
                "prediction": scores.predictions[i],
                "probability": p,
                "probabilities": ps,
                "latency_ms": latency_ms,
            }
        )
        out.append(
            {
                "request_id": ids[i],
                "prediction": scores.predictions[i],
                "probability": p,
                "probabilities": ps,
            }
        )
    try:
        await service.writer.write(rows)
    except LogRecordRefused as exc:  # bad data the validation let through: never its predictions
        return 422, error_body(str(exc))
    except LogWriteError as exc:
        logger.error("%s", exc)
        return 503, error_body(
            "the prediction could not be logged, so it is not returned; retry later"
        )
    service.metrics.rows_predicted.inc(n)
    return 200, {"model_name": model.name, "model_version": model.version, "predictions": out}


def create_app(
    *,
    settings: Settings,
    model_name: str,
    serving_config: ServingConfig | None = None,
    spool_dir: Path | None = None,
    engine: Engine | None = None,
    client: Any = None,
    migrate: bool = True,
) -> FastAPI:
    """The inference service for `models:/<model_name>@champion`.

    Args:
        settings: where the registry and the inference log are, and the API key.
        serving_config: service knobs (defaults when None).
        spool_dir: base directory of the durable spool (default: serving_config.spool_dir).
        engine: the inference-log engine (default: built from settings.database_url).
        client: an MlflowClient (default: one for settings.mlflow_tracking_uri).
        migrate: run the Alembic migrations at startup (off when a parent process did it).
    """
    config = serving_config or ServingConfig()
    holder: dict[str, Service] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await asyncio.to_thread(_start_service)
        holder["service"] = service
        poller = asyncio.create_task(_poll(service))
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await service.batcher.close()
            await asyncio.to_thread(service.writer.close)
            if engine is None:
                service.engine.dispose()

    def _start_service() -> Service:
        from mlflow import MlflowClient

        if migrate:
            store.upgrade_database(settings.database_url)
        db = (
            engine
            if engine is not None
            else store.make_engine(
                settings.database_url, statement_timeout_seconds=config.db_timeout_seconds
            )
        )
        registry = (
            client
            if client is not None
            else MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
        )
        base = spool_dir if spool_dir is not None else config.spool_dir
        service = Service(
            settings=settings,
            model_name=model_name,
            config=config,
            engine=db,
            client=registry,
            spool_dir=spool_directory(Path(base), settings.database_url),
        )
        service.writer.start()
        with contextlib.suppress(Exception):  # logged by refresh; the service starts unready
            service.holder.refresh()  # and keeps polling
        return service

    async def _poll(service: Service) -> None:
        while True:
            await asyncio.sleep(config.poll_interval_seconds)
            with contextlib.suppress(Exception):  # logged by refresh, which keeps the old model
                await asyncio.to_thread(service.holder.refresh)

    app = FastAPI(
        title="driftloop inference service",
        version="1",
        summary=f"Serves models:/{model_name}@champion and logs every prediction.",
        lifespan=lifespan,
    )
    app.add_middleware(Gate, services=holder)

    def svc() -> Service:
        return holder["service"]

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s", request.url.path)
        return _problem(500, "internal error; see the service log")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        items = [_error_item(e) for e in exc.errors()]
        first = items[0] if items else {"msg": "invalid request"}
        message = f"{len(items)} problem(s) in the request; first: {first['msg']}"
        return _problem(422, message, items[:MAX_REPORTED_ERRORS])

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:  # FastAPI could not decode the body (not UTF-8 / JSON)
            return _problem(422, "the body is not valid JSON (UTF-8)")
        return json_response(error_body(str(exc.detail)), exc.status_code, exc.headers)

    @app.get("/health", summary="liveness (never needs the API key)")
    async def health() -> Response:
        return json_response({"status": "ok"})

    @app.get(
        "/ready", summary="ready when a model is loaded", responses={503: {"model": ErrorResponse}}
    )
    async def ready() -> Response:
        holder = svc().holder
        model = holder.current
        if model is None:
            return _problem(503, f"not ready: {svc().unavailable()}")
        return json_response(
            {
                "ready": True,
                "model_name": model.name,
                "model_version": model.version,
                # why the newest `champion` is not the one answering, if it failed to load
                "last_error": holder.last_error,
            }
        )

    @app.get(
        "/model",
        summary="the served model: name, version, alias, features, signature",
        responses={503: {"model": ErrorResponse}},
    )
    async def model_info() -> Response:
        model = svc().holder.current
        if model is None:
            return _problem(503, f"no model loaded: {svc().unavailable()}")
        return json_response(model.describe())

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return PlainTextResponse(
            svc().metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.post(
        "/feedback",
        summary="attach true labels to logged requests (delayed ground truth)",
        response_model=FeedbackResponse,
        responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    )
    async def feedback(body: FeedbackRequest) -> Response:
        service = svc()
        if len(body.labels) > config.max_feedback_rows:
            return _problem(
                422,
                f"{len(body.labels)} labels, more than serving.max_feedback_rows={config.max_feedback_rows}",
            )
        model = service.holder.current
        labels: dict[str, Any] = {}
        errors = []
        for index, item in enumerate(body.labels):
            value, problem = _check_label(item.label, model)
            if problem is not None and len(errors) < MAX_REPORTED_ERRORS:
                errors.append(
                    {
                        "loc": ["body", "labels", index, "label"],
                        "row": index,
                        "field": "label",
                        "msg": problem,
                    }
                )
            labels[item.request_id] = value
        if errors:
            return _problem(422, f"{len(errors)} label(s) do not fit the model", errors)
        try:
            known, updated = await service.feedback_calls.run(_store_labels, service.engine, labels)
        except DeadlineExceeded as exc:
            logger.error("feedback not answered in time: %s", exc)
            return _problem(
                503,
                f"the inference log did not answer within serving.db_timeout_seconds="
                f"{config.db_timeout_seconds:g} s; the labels may not be stored: "
                "post them again later (posting a label twice is harmless)",
            )
        except Exception as exc:
            logger.error("feedback not stored: %s", exc)
            return _problem(
                503, "the inference log is unavailable; the labels were not stored, retry later"
            )
        unknown = [rid for rid in labels if rid not in known]
        return json_response({"updated": updated, "unknown_request_ids": unknown})

    @app.post(
        "/reload",
        summary="check the champion alias now and swap in a new version",
        responses={503: {"model": ErrorResponse}},
    )
    async def reload() -> Response:
        service = svc()
        try:
            changed = await asyncio.to_thread(service.holder.refresh)
        except Exception:
            current = service.holder.current
            kept = f"still serving version {current.version}" if current else "no model loaded"
            return _problem(503, f"reload failed, {kept}: {service.unavailable()}")
        model = service.holder.current
        return json_response(
            {
                "changed": changed,
                "model_name": model_name,
                "model_version": model.version if model else None,
            }
        )

    def openapi() -> dict[str, Any]:
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        service = holder.get("service")
        current = service.holder.current if service is not None else None
        spec = service.input_spec(current) if service is not None and current else None
        protected = settings.api_key is not None and bool(settings.api_key.get_secret_value())
        return complete_schema(schema, model=current, spec=spec, config=config, protected=protected)

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _store_labels(engine: Engine, labels: dict[str, Any]) -> tuple[set[str], int]:
    """The logged request ids among the labels', and how many rows got their label."""
    known = store.known_request_ids(engine, labels)
    updated = store.record_labels(engine, {k: v for k, v in labels.items() if k in known})
    return known, updated


def _error_item(error: Mapping[str, Any]) -> dict[str, Any]:
    """One of FastAPI's validation errors in driftloop's error shape (no echo of the input)."""
    loc = [clip(str(p), 60) if isinstance(p, str) else p for p in error.get("loc", ())]
    row = next((p for p in loc[2:3] if isinstance(p, int)), None)
    field = next((p for p in reversed(loc) if isinstance(p, str) and p != "body"), None)
    return {"loc": loc, "row": row, "field": field, "msg": clip(str(error.get("msg", "")), 200)}


def _check_label(label: Any, model: ServedModel | None) -> tuple[Any, str | None]:
    if model is None:
        return label, None
    if model.task == "classification":
        for cls in model.classes:
            if type(cls) is type(label) and cls == label:
                return cls, None
        for cls in model.classes:
            if str(cls) == str(label) and not isinstance(label, bool):
                return cls, None
        classes = clip(str(list(model.classes)), 200)
        return label, f"{short(label)} is not one of the model's classes {classes}"
    if (
        isinstance(label, bool)
        or not isinstance(label, (int, float))
        or not math.isfinite(float(label))
    ):
        return label, "expected a finite number for a regression target"
    return float(label), None
