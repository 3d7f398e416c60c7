"""The `batch_score` flow: score a CSV/Parquet file or SQL table with the champion, logged like serving.

Offline inference uses the same loaded-model code as the HTTP service (`serving.model`) and writes
the same inference-log rows, so the monitor sees batch traffic exactly like live traffic.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field
from sqlalchemy.engine import Engine

import registry
from core.config import SqlSource, load_config
from core.settings import Settings
from flows.retry import transient
from flows.sources import read_source
from monitoring import store
from pipelines.schema import prepare_features
from serving.model import ServedModel, load_alias

#: Rows scored and written per chunk (bounded memory on big files).
CHUNK_ROWS = 10_000


def score_and_log(
    model: ServedModel,
    frame: pd.DataFrame,
    *,
    engine: Engine,
    ts: datetime | None = None,
    request_ids: list[str] | None = None,
) -> pd.DataFrame:
    """Score every row, write one inference-log row each, and return request ids and outputs."""
    if request_ids is not None and len(request_ids) != len(frame):
        raise ValueError(f"{len(request_ids)} request ids for {len(frame)} rows")
    ts = ts or datetime.now(UTC)
    ids = request_ids or [uuid.uuid4().hex for _ in range(len(frame))]
    out = []
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[start : start + CHUNK_ROWS]
        X = prepare_features(chunk, model.spec)[model.column_order]
        scores = model.score_frame(X)
        features = X.astype(object).where(X.notna(), None).to_dict(orient="records")
        chunk_ids = ids[start : start + CHUNK_ROWS]
        records = [
            store.log_record(
                request_id=rid,
                ts=ts,
                model_name=model.name,
                model_version=model.version,
                features=feats,
                prediction=pred,
                probability=None if scores.probability is None else scores.probability[i],
                probabilities=None if scores.probabilities is None else scores.probabilities[i],
                latency_ms=0.0,
            )
            for i, (rid, feats, pred) in enumerate(
                zip(chunk_ids, features, scores.predictions, strict=True)
            )
        ]
        store.insert_records(engine, records)
        out.append(pd.DataFrame({"request_id": chunk_ids, "prediction": scores.predictions}))
    return (
        pd.concat(out, ignore_index=True)
        if out
        else pd.DataFrame(columns=["request_id", "prediction"])
    )


@task(retries=2, retry_delay_seconds=3, retry_condition_fn=transient, cache_policy=NO_CACHE)
def read_input(source: str, query: str | None, base_dir: Path) -> pd.DataFrame:
    return read_source(SqlSource(url=source, query=query) if query else source, base_dir=base_dir)


@flow(name="batch-score", log_prints=True)
def batch_score(
    source: Annotated[
        str, Field(description="a .csv/.parquet path, or a SQLAlchemy URL when query is set")
    ],
    query: Annotated[str | None, Field(description="SELECT for a SQL source")] = None,
    output: Annotated[
        str | None, Field(description="write request ids and predictions here (.csv/.parquet)")
    ] = None,
    config_path: Annotated[str, Field(description="path to driftloop.yaml")] = "driftloop.yaml",
) -> dict[str, Any]:
    """Score a file or table with the current champion and log every row for monitoring."""
    config = load_config(config_path)
    settings = Settings()
    client = registry.make_client(settings.mlflow_tracking_uri)
    frame = read_input(source, query, config.base_dir)  # a bad source fails before any model I/O
    model = load_alias(client, config.model_name)
    store.upgrade_database(settings.database_url)
    engine = store.make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    try:
        result = score_and_log(model, frame, engine=engine)
    finally:
        engine.dispose()
    if output:
        path = Path(output)
        result.to_parquet(path, index=False) if path.suffix == ".parquet" else result.to_csv(
            path, index=False
        )
    print(f"scored and logged {len(result)} rows with {model.name} v{model.version}")
    return {"rows": len(result), "model_version": model.version, "output": output}
