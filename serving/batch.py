"""Offline (batch) scoring with the champion, logged to the inference log like the service does.

The Prefect flow in `flows/` reads the file or table and calls these functions; they do no I/O
besides the database writes of :func:`log_scores`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from monitoring import store
from serving.model import ServedModel, load_alias

MAX_LISTED_ROWS = 10


class BatchValidationError(ValueError):
    """The frame to score does not fit the model: the message names the columns and rows."""


def load_champion(tracking_uri: str, model_name: str) -> ServedModel:
    """The model behind `models:/<model_name>@champion`."""
    from mlflow import MlflowClient

    return load_alias(MlflowClient(tracking_uri=tracking_uri), model_name)


def prepare_frame(model: ServedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """The feature frame of `frame` typed for the model (numeric float64, categorical object str).

    Extra columns (ids, the target, timestamps) are ignored. Raises BatchValidationError for
    missing features, values that are not numbers in numeric features, and nulls in not-null
    features, listing the first offending rows (by position) of each column.
    """
    missing = [c for c in model.features if c not in frame.columns]
    if missing:
        raise BatchValidationError(
            f"the data lacks feature columns {missing} that model {model.name} v{model.version} needs"
        )
    problems: list[str] = []
    data: dict[str, Any] = {}
    for name in model.numeric:
        raw = frame[name]
        values = pd.to_numeric(
            raw.astype(object) if isinstance(raw.dtype, pd.CategoricalDtype) else raw,
            errors="coerce",
        ).astype(np.float64)
        bad = np.flatnonzero(values.isna().to_numpy() & raw.notna().to_numpy())
        infinite = np.flatnonzero(np.isinf(values.to_numpy()))
        if len(bad):
            problems.append(f"{name}: not a number in rows {_rows(bad)}")
        if len(infinite):
            problems.append(f"{name}: infinite value in rows {_rows(infinite)}")
        data[name] = values.to_numpy()
    for name in model.categorical:
        raw = frame[name]
        present = raw.notna().to_numpy()
        array = np.empty(len(raw), dtype=object)
        array[:] = None
        array[present] = raw[present].astype(str).to_numpy()
        data[name] = array
    for name in sorted(model.not_null):
        nulls = np.flatnonzero(pd.isna(pd.Series(data[name])).to_numpy())
        if len(nulls):
            problems.append(f"{name}: null in rows {_rows(nulls)} (listed in features.not_null)")
    if problems:
        raise BatchValidationError(
            "the data does not fit the model:\n  - " + "\n  - ".join(problems)
        )
    return pd.DataFrame({c: data[c] for c in model.column_order})


def _rows(positions: np.ndarray) -> str:
    shown = ", ".join(str(int(p)) for p in positions[:MAX_LISTED_ROWS])
    more = (
        f" and {len(positions) - MAX_LISTED_ROWS} more" if len(positions) > MAX_LISTED_ROWS else ""
    )
    return f"[{shown}{more}]"


def score_frame(
    model: ServedModel, frame: pd.DataFrame, *, request_ids: Sequence[str] | None = None
) -> pd.DataFrame:
    """Predictions for every row of `frame`, aligned with it (same index).

    Columns: `request_id` (given, or new UUIDs), `prediction`, `probability` (float64, NaN for
    regressors), `probabilities` (dict per row, None for regressors), `model_version`.
    """
    if request_ids is not None and len(request_ids) != len(frame):
        raise BatchValidationError(f"{len(request_ids)} request ids for {len(frame)} rows")
    X = prepare_frame(model, frame)
    scores = model.score_frame(X) if len(X) else None
    n = len(X)
    ids = list(request_ids) if request_ids is not None else [uuid.uuid4().hex for _ in range(n)]
    return pd.DataFrame(
        {
            "request_id": pd.Series(ids, dtype=object).to_numpy(),
            "prediction": scores.predictions if scores else [],
            "probability": np.asarray(
                scores.probability if scores and scores.probability is not None else [np.nan] * n,
                dtype=np.float64,
            ),
            "probabilities": pd.Series(
                scores.probabilities if scores and scores.probabilities is not None else [None] * n,
                dtype=object,
            ).to_numpy(),
            "model_version": np.full(n, model.version, dtype=np.int64),
        },
        index=frame.index,
    )


def log_scores(
    engine: Engine,
    model: ServedModel,
    frame: pd.DataFrame,
    scored: pd.DataFrame,
    *,
    ts: datetime | None = None,
    ignore_duplicates: bool = False,
) -> int:
    """Write scored rows to the inference log (one transaction); returns the rows written.

    `frame` gives the features, `scored` is :func:`score_frame`'s output for it. With
    `ignore_duplicates`, rows whose request_id is already logged are skipped (re-runs).
    """
    X = prepare_frame(model, frame)
    ts = ts or datetime.now(UTC)
    features = X.astype(object).where(X.notna(), None).to_dict(orient="records")
    records = [
        store.log_record(
            request_id=rid,
            ts=ts,
            model_name=model.name,
            model_version=model.version,
            features=feats,
            prediction=_plain(pred),
            probability=None if prob is None or np.isnan(prob) else float(prob),
            probabilities=probs,
            latency_ms=0.0,
        )
        for rid, feats, pred, prob, probs in zip(
            scored["request_id"],
            features,
            scored["prediction"],
            scored["probability"],
            scored["probabilities"],
            strict=True,
        )
    ]
    return store.insert_records(engine, records, ignore_duplicates=ignore_duplicates)


def score_and_log(
    engine: Engine,
    model: ServedModel,
    frame: pd.DataFrame,
    *,
    request_ids: Sequence[str] | None = None,
    chunk_rows: int = 50_000,
    ignore_duplicates: bool = False,
) -> pd.DataFrame:
    """Score `frame` in chunks and log every row; returns the scores (aligned with `frame`)."""
    parts = []
    for start in range(0, len(frame), chunk_rows):
        chunk = frame.iloc[start : start + chunk_rows]
        ids = request_ids[start : start + chunk_rows] if request_ids is not None else None
        scored = score_frame(model, chunk, request_ids=ids)
        log_scores(engine, model, chunk, scored, ignore_duplicates=ignore_duplicates)
        parts.append(scored)
    return pd.concat(parts) if parts else score_frame(model, frame.iloc[:0])


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
