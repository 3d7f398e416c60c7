"""`drift_rule: weighted` on the real flows: training stores each feature's permutation importance
with the version, and the monitor weighs drift by it (a drifted unimportant feature does not
count, a drifted important one does) and shows the importances next to per-feature drift on the
Evidently dashboard and in the Prefect verdict table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

import registry
from flows.monitor import monitor
from flows.score import score_and_log
from flows.train import train
from monitoring import runs, store
from monitoring.workspace import find_project, list_snapshots, open_workspace
from serving.model import load_alias
from tests.conftest import DATA
from tests.flows.conftest import write_config

MONITORING = {
    "window": {"kind": "last_rows", "rows": 2000},
    "min_window_rows": 500,
    "policy": {
        "drift_rule": "weighted",
        "weighted_drift": 0.3,
        "cooldown_hours": 0,
        "max_retrains_per_day": 0,  # judged and alerted, never retrained here
    },
}


def shifted(live: pd.DataFrame, column: str, reference: pd.DataFrame) -> pd.DataFrame:
    """The traffic with 70% of a column's values replaced by its second most common value in
    training (a shift in the mix of known categories: no quality error, only drift)."""
    value = reference[column].value_counts().index[1]
    rows = live.sample(frac=0.7, random_state=0).index
    out = live.copy()
    out.loc[rows, column] = value
    return out


def log_traffic(env: dict[str, str], frame: pd.DataFrame, prefix: str) -> None:
    client = registry.make_client(env["MLFLOW_TRACKING_URI"])
    store.upgrade_database(env["DRIFTLOOP_DATABASE_URL"])
    engine = store.make_engine(env["DRIFTLOOP_DATABASE_URL"])
    try:
        ids = [f"{prefix}{i}" for i in range(len(frame))]
        score_and_log(load_alias(client, "employment"), frame, engine=engine, request_ids=ids)
    finally:
        engine.dispose()


def driftloop_series(workspace: str, model_name: str) -> dict[tuple[str, str | None], float]:
    """driftloop's own values in the model's newest Evidently snapshot, by (name, column)."""
    ws = open_workspace(workspace)
    project = find_project(ws, model_name)
    assert project is not None
    stored = [ws.get_run(project.id, ref) for ref in list_snapshots(ws, model_name)]
    newest = max(stored, key=lambda run: run.timestamp)
    out = {}
    for result in newest.metric_results.values():
        params = result.metric_value_location.metric.params
        if params["type"].endswith(":DriftloopValue"):
            out[(params["name"], params.get("column"))] = float(result.value)
    return out


def test_weighted_rule_counts_drift_by_the_stored_importances(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    config = write_config(tmp_path, small_employment, monitoring=MONITORING)
    train(config_path=str(config))
    client = registry.make_client(mlflow_env["MLFLOW_TRACKING_URI"])
    stored = json.loads(
        registry.load_evaluation(client, "employment", "1")[registry.IMPORTANCE_FILE]
    )
    importances = stored["importances"]
    assert stored["metric"] == "roc_auc" and len(importances) == 16
    total = sum(importances.values())
    important = max(importances, key=importances.get)
    unimportant = "RAC1P"
    assert importances[important] / total >= 0.3 > importances[unimportant] / total

    live = pd.read_parquet(DATA / "live_2016_2018.parquet")
    log_traffic(mlflow_env, shifted(live.iloc[:2000], unimportant, small_employment), "a")
    quiet = monitor(config_path=str(config))
    assert unimportant in quiet["drifted_features"], quiet  # it drifted ...
    assert "data_drift" not in quiet["failed_checks"], quiet  # ... and does not count

    log_traffic(mlflow_env, shifted(live.iloc[2000:4000], important, small_employment), "b")
    loud = monitor(config_path=str(config))
    assert important in loud["drifted_features"], loud
    assert "data_drift" in loud["failed_checks"], loud
    engine = store.make_engine(mlflow_env["DRIFTLOOP_DATABASE_URL"])
    details = runs.latest_run(engine, "employment")["details"]
    engine.dispose()
    assert "of the model's feature importance" in json.dumps(details), details

    # the dashboard shows each feature's importance beside its drift score, and the weighted share
    series = driftloop_series(mlflow_env["DRIFTLOOP_WORKSPACE"], "employment")
    assert {c: series[("importance", c)] for c in importances} == pytest.approx(importances)
    assert series[("weighted_drift_share", None)] >= 0.3
    ws = open_workspace(mlflow_env["DRIFTLOOP_WORKSPACE"])
    panels = {p.title: p for p in ws.get_dashboard(find_project(ws, "employment").id).panels}
    beside = panels["Feature importance (permutation, on the version's holdout)"]
    assert {v.metric_labels["column"] for v in beside.values} == set(importances)
    drift_panel = panels["Per-feature drift scores (driftloop, full window)"]
    assert beside.size == drift_panel.size == "half"

    # and the Prefect verdict table of the run has an importance column
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["employment-monitor"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    table = artifact.data
    assert "| feature | method | score | threshold | drifted | importance |" in table, table
    assert f"| {important} |" in table and f"| {importances[important]:.4g} |" in table, table
