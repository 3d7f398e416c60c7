"""The monitor and retrain flows on the inference log, with a real registry, workspace and database."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from driftloop import registry
from driftloop.scenarios import apply_scenario
from flows.monitor import monitor
from flows.score import score_and_log
from flows.train import train
from monitoring import runs, store
from monitoring.workspace import list_snapshots
from serving.model import load_alias
from tests.conftest import DATA
from tests.flows.conftest import write_config

MONITORING = {
    "window": {"kind": "last_rows", "rows": 2000},
    "min_window_rows": 500,
    "policy": {"cooldown_hours": 0, "min_labeled_rows": 100},
    "retrain": {"min_labeled_rows": 300},
}


@pytest.fixture
def live() -> pd.DataFrame:
    frame = pd.read_parquet(DATA / "live_2016_2018.parquet").iloc[:2000]
    labels = pd.read_parquet(DATA / "live_2016_2018_labels.parquet").set_index("id")["employed"]
    return frame.assign(employed=frame["id"].map(labels))


def _serve(env: dict[str, str], live: pd.DataFrame) -> None:
    """Score the traffic with the champion, log it, and post its labels, as serving does."""
    client = registry.make_client(env["MLFLOW_TRACKING_URI"])
    store.upgrade_database(env["DRIFTLOOP_DATABASE_URL"])
    engine = store.make_engine(env["DRIFTLOOP_DATABASE_URL"])
    try:
        ids = [f"r{i}" for i in range(len(live))]
        score_and_log(load_alias(client, "employment"), live, engine=engine, request_ids=ids)
        store.record_labels(engine, dict(zip(ids, live["employed"].tolist(), strict=True)))
    finally:
        engine.dispose()


def test_no_drift_passes_and_is_recorded_everywhere(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame, live: pd.DataFrame
) -> None:
    config = write_config(tmp_path, small_employment, monitoring=MONITORING)
    train(config_path=str(config))
    _serve(mlflow_env, live)

    summary = monitor(config_path=str(config))

    assert summary["status"] == "ok", summary
    assert summary["retrain"] is False and summary["alert"] is False
    engine = store.make_engine(mlflow_env["DRIFTLOOP_DATABASE_URL"])
    latest = runs.latest_run(engine, "employment")
    assert latest["run_id"] == summary["run_id"] and latest["window_rows"] == 2000
    assert latest["labeled_rows"] == 2000 and latest["model_version"] == 1
    assert len(list_snapshots(mlflow_env["DRIFTLOOP_WORKSPACE"], "employment")) == 1
    client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("employment-monitoring")
    (run,) = client.search_runs([experiment.experiment_id])
    assert "drift_share" in run.data.metrics
    assert [a.path for a in client.list_artifacts(run.info.run_id, "reports")] == [
        "reports/drift_report.html"
    ]


def test_drift_that_hurts_alerts_retrains_and_promotes_a_better_model(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame, live: pd.DataFrame
) -> None:
    config = write_config(tmp_path, small_employment, monitoring=MONITORING)
    train(config_path=str(config))
    _serve(mlflow_env, apply_scenario(live, "broken-feature", start_fraction=0.0))

    summary = monitor(config_path=str(config))

    assert summary["status"] == "drift"
    assert "data_quality" in summary["failed_checks"] and "AGEP" in summary["alert_reason"]
    assert summary["alert"] is True and summary["retrain"] is True, summary
    client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
    new = client.get_model_version("employment", "2")
    assert new.tags["driftloop.trigger"] == "drift"
    assert new.tags["driftloop.drift_run_id"] == summary["run_id"]
    champion = client.get_model_version_by_alias("employment", "champion")
    # the retrained model learned to do without age, the champion imputes it: it must win
    assert str(champion.version) == "2", new.tags["driftloop.decision"]

    again = monitor(config_path=str(config))  # the same condition persists: no second alert
    assert again["alert"] is False
