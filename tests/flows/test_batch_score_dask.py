"""Batch scoring by partitions: Prefect tasks on a real Dask cluster of 2 worker processes each
score and log their rows; every row is logged once, with the predictions of one process."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from distributed import Client, LocalCluster, get_task_stream

from flows.score import batch_score
from flows.train import train
from monitoring import store
from tests.flows.conftest import write_config


def test_batch_scoring_by_partitions_logs_every_row_once(
    tmp_path: Path,
    mlflow_env: dict[str, str],
    small_employment: pd.DataFrame,
    live: pd.DataFrame,
    cluster: LocalCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(tmp_path, small_employment)
    train(config_path=str(config))
    batch = tmp_path / "batch.parquet"
    live.head(900).to_parquet(batch, index=False)
    monkeypatch.setenv("DRIFTLOOP_DASK_ADDRESS", cluster.scheduler_address)

    with Client(cluster, set_as_default=False) as watcher, get_task_stream(watcher) as stream:
        summary = batch_score(
            source=str(batch),
            output=str(tmp_path / "on-dask.parquet"),
            config_path=str(config),
            partitions=3,
        )
    ran = [t for t in stream.data if t["key"].startswith("score_partition")]
    assert len(ran) == 3 and {t["worker"] for t in ran} <= set(cluster.scheduler_info["workers"])
    assert summary["rows"] == 900

    scored = pd.read_parquet(tmp_path / "on-dask.parquet")
    engine = store.make_engine(mlflow_env["DRIFTLOOP_DATABASE_URL"])
    with engine.connect() as connection:
        logged = pd.DataFrame(
            connection.execute(
                sa.select(store.inference_log.c.request_id, store.inference_log.c.model_version)
            ).all()
        )
    engine.dispose()
    assert len(logged) == 900 and logged["request_id"].is_unique
    assert set(logged["request_id"]) == set(scored["request_id"])
    assert (logged["model_version"] == summary["model_version"]).all()

    # the same rows in one process: the same predictions, in the same order
    batch_score(source=str(batch), output=str(tmp_path / "alone.parquet"), config_path=str(config))
    alone = pd.read_parquet(tmp_path / "alone.parquet")
    assert alone["prediction"].tolist() == scored["prediction"].tolist()
