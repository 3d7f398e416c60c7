"""The FastAPI inference service: serves the champion, validates, predicts, logs every row.

Build it with :func:`create_app` (an entry point builds the settings and passes them in). Nothing
connects at import or at construction: the database, the registry and the writer start in the
lifespan, and stop there (flushing every queued log record).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from driftloop.registry import ModelNotFoundError
from driftloop.settings import Settings
from monitoring import store
from monitoring.spool import Spool
from serving.batching import MicroBatcher
from serving.config import ServingConfig
from serving.logwriter import LogWriteError, LogWriter
from serving.metrics import ServiceMetrics
from serving.model import (
    CHAMPION,
    ModelLoadError,
    ModelScoringError,
    ServedModel,
    alias_version,
    load_version,
)
from serving.validation import InputSpec, PayloadError, validate_payload

logger = logging.getLogger("driftloop.serving")
API_KEY_HEADER = "X-API-Key"
_OPEN_PATHS = frozenset({"/health"})


# --------------------------------------------------------------------------- responses


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _problem(status: int, message: str, detail: Any = None) -> Response:
    status, body = _error(status, message, detail)
    return json_response(body, status)


class PredictionRow(BaseModel):
    request_id: str = Field(
        description="id of this row in the inference log; send it back to /feedback"
    )
    prediction: Any = Field(description="predicted class label or value")
    probability: float | None = Field(
        None,
        description="positive-class probability (binary) or top-class probability (multiclass)",
    )
    probabilities: dict[str, float] | None = Field(None, description="probability of every class")


class PredictResponse(BaseModel):
    model_name: str
    model_version: int
    predictions: list[PredictionRow]


class ErrorItem(BaseModel):
    loc: list[Any]
    row: int | None
    field: str | None
    msg: str


class ErrorResponse(BaseModel):
    error: str
    detail: list[ErrorItem] | str | None = None


class LabelItem(BaseModel):
    request_id: str = Field(max_length=64)
    label: bool | int | float | str


class FeedbackRequest(BaseModel):
    labels: list[LabelItem] = Field(min_length=1, description="true labels of logged requests")


class FeedbackResponse(BaseModel):
    updated: int
    unknown_request_ids: list[str]


# --------------------------------------------------------------------------- the model holder


#: Load failures whose message is ours (names the model, version and file, never a local path)
#: and may be shown in HTTP bodies; any other exception is shown by its type only.
_PUBLIC_ERRORS = (ModelLoadError, ModelNotFoundError, ModelScoringError)


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
                version = alias_version(self.client, self.model_name, self.alias)
                if version is None:
                    raise ModelLoadError(
                        f"model {self.model_name!r} has no `{self.alias}` alias yet; "
                        "train one with `driftloop train`"
                    )
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


def _spec(model: ServedModel) -> InputSpec:
    return _SPECS(model)


class _SpecCache:
    def __init__(self) -> None:
        self._by_model: dict[int, tuple[ServedModel, InputSpec]] = {}

    def __call__(self, model: ServedModel) -> InputSpec:
        hit = self._by_model.get(id(model))
        if hit is not None and hit[0] is model:
            return hit[1]
        spec = InputSpec(model.numeric, model.categorical, model.not_null)
        self._by_model = {id(model): (model, spec)}  # only the current model is ever needed
        return spec


_SPECS = _SpecCache()


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
        self.writer = LogWriter(
            engine,
            Spool(spool_dir),
            batch_rows=config.writer_batch_rows,
            queue_rows=config.writer_queue_rows,
            retry_seconds=config.db_retry_seconds,
            observe_batch=self._observe_batch,
        )
        self.batcher = MicroBatcher(max_rows=config.microbatch_rows)
        self.metrics = ServiceMetrics(self.live_state)
        self._id_prefix = os.urandom(8).hex()
        self._id_counter = itertools.count()

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


def spool_directory(base: Path, database_url: str) -> Path:
    """One spool subdirectory per database, so records never replay into another database."""
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:12]
    return base / digest


class _Gate:
    """Pure ASGI middleware: API-key check, request metrics, and POST /predict itself.

    Answering /predict here skips the framework's routing, exception and response layers,
    a large share of a single-row request's CPU time; the route stays for the OpenAPI schema.
    """

    def __init__(self, app: Any, holder: dict[str, Service]) -> None:
        self.app = app
        self.holder = holder

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service = self.holder.get("service")
        if service is None:
            await _send_json(send, 503, {"error": "the service is starting"})
            return
        start = time.perf_counter()
        path = scope["path"]
        status = 500
        key = service.api_key

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if key is not None and path not in _OPEN_PATHS and not _authorized(scope, key):
                await _send_json(
                    send_status,
                    401,
                    {"error": f"missing or wrong API key: send it in the {API_KEY_HEADER} header"},
                    extra=[(b"www-authenticate", b"ApiKey")],
                )
                return
            if _declared_length(scope) > service.config.max_body_bytes:
                await _send_json(
                    send_status,
                    413,
                    {"error": f"request body larger than {service.config.max_body_bytes} bytes"},
                )
                return
            if path == "/predict" and scope["method"] == "POST":
                reply = await _predict_reply(service, receive, start)
                if reply is None:
                    status = 499  # the client left before sending its body (nginx's code)
                else:
                    await _send_json(send_status, *reply)
                return
            await self.app(scope, receive, send_status)
        finally:
            service.metrics.observe(path, status, time.perf_counter() - start)


async def _predict_reply(service: Service, receive: Any, start: float) -> tuple[int, Any] | None:
    """Status and JSON body answering POST /predict from raw ASGI messages; None: no client."""
    limit = service.config.max_body_bytes
    try:
        body = await _receive_body(receive, limit)
        if body is None:
            return None
        return await predict_answer(service, body, start)
    except _BodyTooLarge:
        return _too_large(limit)
    except Exception:
        logger.exception("unhandled error on /predict")
        return _error(500, "internal error; see the service log")


def _declared_length(scope: dict[str, Any]) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 1 << 62
    return 0


def _authorized(scope: dict[str, Any], key: bytes) -> bool:
    offered = b""
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            offered = value
            break
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            offered = value[7:]
    return hmac.compare_digest(offered, key)


async def _send_json(
    send: Any, status: int, body: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = orjson.dumps(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": payload})


class _BodyTooLarge(Exception):
    pass


def _record_schema(model: ServedModel | None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "title": "Record",
        "description": "feature values of one row; GET /model lists the features of the served version",
        "additionalProperties": model is None,
    }
    if model is not None:
        props: dict[str, Any] = {}
        for name in model.numeric:
            props[name] = {"type": ["number", "null"] if name not in model.not_null else "number"}
        for name in model.categorical:
            props[name] = {"type": ["string", "null"] if name not in model.not_null else "string"}
        schema["properties"] = props
        schema["required"] = list(model.features)
    return schema


_PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/Record"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                    {
                        "type": "object",
                        "properties": {
                            "records": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Record"},
                            }
                        },
                        "required": ["records"],
                    },
                ]
            },
            "example": {"AGEP": 35.0, "SCHL": "21", "SEX": "1"},
        }
    },
}


def _error(status: int, message: str, detail: Any = None) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return status, body


def _too_large(limit: int) -> tuple[int, dict[str, Any]]:
    return _error(413, f"request body larger than {limit} bytes; split the batch")


async def predict_answer(service: Service, body: bytes, start: float) -> tuple[int, Any]:
    """Validate, score and durably log one /predict body; the status and JSON body to answer."""
    model = service.holder.current
    if model is None:
        return _error(503, f"no model loaded: {service.holder.last_error or 'loading'}")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _error(
            422,
            "the body is not valid JSON",
            [{"loc": ["body"], "row": None, "field": None, "msg": str(exc)}],
        )
    try:
        records = validate_payload(payload, _spec(model), max_rows=service.config.max_batch_rows)
    except PayloadError as exc:
        return _error(422, str(exc), exc.detail())
    n = len(records)
    try:
        scores = await service.batcher.score(model, records.columns, n)
    except ModelScoringError as exc:
        return _error(422, str(exc))
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
    except LogWriteError as exc:
        logger.error("%s", exc)
        return _error(503, "the prediction could not be logged, so it is not returned; retry later")
    service.metrics.rows_predicted.inc(n)
    return 200, {"model_name": model.name, "model_version": model.version, "predictions": out}


async def _receive_body(receive: Any, limit: int) -> bytes | None:
    """The request body from raw ASGI messages; None when the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


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
        db = engine if engine is not None else store.make_engine(settings.database_url)
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
    app.add_middleware(_Gate, holder=holder)

    def svc() -> Service:
        return holder["service"]

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s", request.url.path)
        return _problem(500, "internal error; see the service log")

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
            return _problem(503, f"not ready: {holder.last_error or 'loading the model'}")
        return json_response(
            {
                "ready": True,
                "model_name": model.name,
                "model_version": model.version,
                # why the newest `champion` is not the one answering, if it failed to load
                "last_error": holder.last_error,
            }
        )

    @app.get("/model", summary="the served model: name, version, alias, features, signature")
    async def model_info() -> Response:
        model = svc().holder.current
        if model is None:
            return _problem(503, f"no model loaded: {svc().holder.last_error or 'loading'}")
        return json_response(model.describe())

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(
            svc().metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.post(
        "/predict",
        summary="score one record or a batch; every row is logged before the answer",
        response_model=PredictResponse,
        responses={
            413: {"model": ErrorResponse, "description": "body larger than serving.max_body_bytes"},
            422: {"model": ErrorResponse, "description": "each offending row and field"},
            503: {
                "model": ErrorResponse,
                "description": "no model loaded, or the log cannot store the rows",
            },
        },
        openapi_extra={"requestBody": _PREDICT_BODY},
    )
    async def predict(request: Request) -> Response:
        # _Gate answers POST /predict before routing; this route puts it in the OpenAPI schema.
        reply = await _predict_reply(svc(), request.receive, time.perf_counter())
        if reply is None:
            return Response(status_code=499)
        status, answer = reply
        return json_response(answer, status)

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
            if problem is not None:
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
            known = await asyncio.to_thread(store.known_request_ids, service.engine, labels)
            updated = await asyncio.to_thread(
                store.record_labels, service.engine, {k: v for k, v in labels.items() if k in known}
            )
        except Exception as exc:
            logger.error("feedback not stored: %s", exc)
            return _problem(
                503, "the inference log is unavailable; the labels were not stored, retry later"
            )
        unknown = [rid for rid in labels if rid not in known]
        return json_response({"updated": updated, "unknown_request_ids": unknown})

    @app.post("/reload", summary="check the champion alias now and swap in a new version")
    async def reload() -> Response:
        service = svc()
        try:
            changed = await asyncio.to_thread(service.holder.refresh)
        except Exception:
            current = service.holder.current
            kept = f"still serving version {current.version}" if current else "no model loaded"
            return _problem(503, f"reload failed, {kept}: {service.holder.last_error}")
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
        schema.setdefault("components", {}).setdefault("schemas", {})["Record"] = _record_schema(
            current
        )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


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
        return label, f"{label!r} is not one of the model's classes {list(model.classes)}"
    if (
        isinstance(label, bool)
        or not isinstance(label, (int, float))
        or not math.isfinite(float(label))
    ):
        return label, "expected a finite number for a regression target"
    return float(label), None
