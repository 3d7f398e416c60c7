"""Estimation through the real monitor flow: the calibrated estimate (with its band) decides
"drift that hurts" before any label arrives, and once the labels come, the estimate is checked
against them (the estimation error is recorded and charted)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

import registry
from flows.monitor import monitor
from flows.score import score_and_log
from flows.train import train
from monitoring import runs, store
from pipelines.synthetic import generate
from serving.model import load_alias


@pytest.fixture
def config(tmp_path: Path) -> Path:
    stream = generate("unfixable", train_rows=4000, live_rows=4000, change=0.0, seed=3)
    stream.train.to_parquet(tmp_path / "train.parquet", index=False)
    raw = {
        "model_name": "synthetic",
        "task": "classification",
        "target": "y",
        "id_column": "id",
        "data": {"train": "train.parquet"},
        "model": {"candidates": [{"family": "logistic"}], "cv_folds": 2},
        "monitoring": {"window": {"rows": 2000}, "policy": {"cooldown_hours": 0}},
    }
    path = tmp_path / "driftloop.yaml"
    path.write_text(yaml.safe_dump(raw))
    stream.live.to_parquet(tmp_path / "live.parquet", index=False)
    stream.labels.to_parquet(tmp_path / "labels.parquet", index=False)
    return path


def serve(env: dict[str, str], frame: pd.DataFrame, ids: list[str]) -> None:
    client = registry.make_client(env["MLFLOW_TRACKING_URI"])
    store.upgrade_database(env["DRIFTLOOP_DATABASE_URL"])
    engine = store.make_engine(env["DRIFTLOOP_DATABASE_URL"])
    try:
        score_and_log(load_alias(client, "synthetic"), frame, engine=engine, request_ids=ids)
    finally:
        engine.dispose()


def test_the_estimate_decides_harm_without_labels_then_meets_its_labels(
    config: Path, mlflow_env: dict[str, str]
) -> None:
    train(config_path=str(config))
    live = pd.read_parquet(config.parent / "live.parquet").head(2000)
    labels = pd.read_parquet(config.parent / "labels.parquet").head(2000)
    ids = [f"r{i}" for i in range(len(live))]
    serve(mlflow_env, live, ids)

    first = monitor(config_path=str(config))

    # no label has arrived: the calibrated estimate shows the harm of the squeezed features
    assert "estimated_performance" in first["failed_checks"], first
    assert first["severity"] == "critical" and "estimated without labels" in first["alert_reason"]
    engine = store.make_engine(mlflow_env["DRIFTLOOP_DATABASE_URL"])
    row = runs.latest_run(engine, "synthetic")
    assert row["labeled_rows"] == 0
    assert row["estimated_low"] < row["estimated_value"] < row["estimated_high"]

    store.record_labels(engine, dict(zip(ids, labels["y"].tolist(), strict=True)))
    monitor(config_path=str(config))

    before = next(r for r in runs.list_runs(engine, "synthetic") if r["run_id"] == first["run_id"])
    engine.dispose()
    assert before["realized_value"] is not None
    # the labels confirm the harm the estimate saw (the band is a no-drift band: under this
    # shift the estimate is off by a few hundredths, which is what the dashboards chart)
    reference = float(
        MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
        .get_model_version("synthetic", "1")
        .tags["driftloop.holdout_roc_auc"]
    )
    assert before["realized_value"] < reference - 0.05
    assert abs(before["estimated_value"] - before["realized_value"]) < 0.05
    client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("synthetic-monitoring")
    latest = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"]
    )[0]
    assert "estimation_error" in latest.data.metrics
    assert {"estimated_roc_auc_low", "estimated_roc_auc_high"} <= set(
        client.search_runs([experiment.experiment_id])[-1].data.metrics
    )
