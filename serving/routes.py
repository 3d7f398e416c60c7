"""The FastAPI routes: /health, /ready, /model, /metrics, /feedback, /reload, and the error
handlers that give every answer driftloop's error shape.

POST /predict has no route: the gate answers it (`serving.gate`, `serving.predict`), and
`serving.openapi` describes it. Every route reads the started service from ``app.state.service``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.config_serving import ServingConfig
from monitoring import store
from serving.deadline import DeadlineExceeded
from serving.gate import error_body
from serving.schemas import ErrorResponse, FeedbackRequest, FeedbackResponse
from serving.service import Service
from serving.validation import MAX_REPORTED_ERRORS, check_label, clip

logger = logging.getLogger("driftloop.serving")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _problem(status: int, message: str, detail: Any = None) -> Response:
    return json_response(error_body(message, detail), status)


def add_routes(app: FastAPI, *, model_name: str, config: ServingConfig) -> None:
    """Register the error handlers and every route but /predict on `app`."""

    def svc() -> Service:
        return app.state.service

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
        service = svc()
        monitor = await service.monitor_gauges.text()  # the latest drift_runs row, cached
        return PlainTextResponse(
            service.metrics.render() + monitor.encode(),
            media_type="text/plain; version=0.0.4; charset=utf-8",
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
            value, problem = (
                (item.label, None)
                if model is None
                else check_label(item.label, task=model.task, classes=model.classes)
            )
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
