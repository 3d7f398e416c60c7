"""Scoring of one POST /predict body: validation -> micro-batched scoring -> durable log -> answer.

The gate (`serving.gate`) reads the body under its limits and calls `Service.predict`, which
answers with :func:`predict_answer`; there is no FastAPI route for /predict. A prediction is
answered only once its rows are durable (in the database or the spool); a record the log refuses
is answered 422, never with its predictions.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from serving.gate import error_body
from serving.holder import redact
from serving.logwriter import LogRecordRefused, LogWriteError
from serving.model import ModelScoringError
from serving.validation import PayloadError, clip, validate_payload

if TYPE_CHECKING:
    from serving.service import Service

logger = logging.getLogger("driftloop.serving")


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
    service.shadow.submit(records.columns, ids, now)  # off the response path; never raises
    return 200, {"model_name": model.name, "model_version": model.version, "predictions": out}
