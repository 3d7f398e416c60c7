"""The `batch_score` flow: score a CSV/Parquet file or SQL table with the champion, logged like serving.

Offline inference uses the same loaded-model code as the HTTP service (`serving.model`) and writes
the same inference-log rows, so the monitor sees batch traffic exactly like live traffic.

With `partitions: N` the rows are split into N contiguous partitions, each scored and logged by
a Prefect task on a Dask cluster (`DRIFTLOOP_DASK_ADDRESS`, else a local one of 2 worker
processes): each task loads the same champion version and writes its own rows. Request ids are
assigned before the split and the writes skip ids already logged, so a retried task logs no
row twice.
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
from serving.model import ServedModel, load_alias, load_version

#: Rows scored and written per chunk (bounded memory on big files).
CHUNK_ROWS = 10_000


def score_and_log(
    model: ServedModel,
    frame: pd.DataFrame,
    *,
    engine: Engine,
    ts: datetime | None = None,
    request_ids: list[str] | None = None,
    ignore_duplicates: bool = False,
) -> pd.DataFrame:
    """Score every row, write one inference-log row each, and return request ids and outputs
    (with `ignore_duplicates`, a request id already logged is not written again)."""
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
        store.insert_records(engine, records, ignore_duplicates=ignore_duplicates)
        out.append(pd.DataFrame({"request_id": chunk_ids, "prediction": scores.predictions}))
    return (
        pd.concat(out, ignore_index=True)
        if out
        else pd.DataFrame(columns=["request_id", "prediction"])
    )


@task(retries=2, retry_delay_seconds=3, retry_condition_fn=transient, cache_policy=NO_CACHE)
def read_input(source: str, query: str | None, base_dir: Path) -> pd.DataFrame:
    return read_source(SqlSource(url=source, query=query) if query else source, base_dir=base_dir)


@task(
    name="score-partition",
    retries=2,
    retry_delay_seconds=3,
    retry_condition_fn=transient,
    cache_policy=NO_CACHE,
)
def score_partition(
    frame: pd.DataFrame,
    request_ids: list[str],
    *,
    model_name: str,
    version: int,
    ts: datetime,
    tracking_uri: str,
    database_url: str,
    synchronous: str,
) -> pd.DataFrame:
    """Score and log one partition with one registered version (runs on a Dask worker; it is
    handed the two addresses it needs, not the settings and their secrets)."""
    model = load_version(registry.make_client(tracking_uri), model_name, version)
    engine = store.make_engine(database_url, synchronous=synchronous)
    try:
        return score_and_log(
            model, frame, engine=engine, ts=ts, request_ids=request_ids, ignore_duplicates=True
        )
    finally:
        engine.dispose()


def score_by_partitions(
    model: ServedModel, frame: pd.DataFrame, *, partitions: int, settings: Settings
) -> pd.DataFrame:
    """:func:`score_and_log` spread over `partitions` Prefect tasks on Dask; call it inside a
    flow run. The result is in the frame's row order."""
    from flows.partitioned import dask_runner  # imports dask only when used

    ids = [uuid.uuid4().hex for _ in range(len(frame))]
    bounds = [round(i * len(frame) / partitions) for i in range(partitions + 1)]
    ts = datetime.now(UTC)
    with dask_runner(settings.dask_address) as runner:
        futures = [
            runner.submit(
                score_partition,
                parameters={
                    "frame": frame.iloc[lo:hi],
                    "request_ids": ids[lo:hi],
                    "model_name": model.name,
                    "version": model.version,
                    "ts": ts,
                    "tracking_uri": settings.mlflow_tracking_uri,
                    "database_url": settings.database_url,
                    "synchronous": settings.sqlite_synchronous,
                },
            )
            for lo, hi in zip(bounds, bounds[1:], strict=False)
            if hi > lo
        ]
        parts = [future.result() for future in futures]
    if not parts:
        return pd.DataFrame(columns=["request_id", "prediction"])
    return pd.concat(parts, ignore_index=True)


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
    partitions: Annotated[
        int,
        Field(
            ge=0,
            description="0: score in this process; N: N Prefect tasks on a Dask cluster "
            "(DRIFTLOOP_DASK_ADDRESS, else a local cluster of 2 worker processes)",
        ),
    ] = 0,
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
        if partitions:
            result = score_by_partitions(model, frame, partitions=partitions, settings=settings)
        else:
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
