"""`drift_rule: weighted` on the real flows: training stores each feature's permutation importance
with the version, and the monitor weighs drift by it (a drifted unimportant feature does not
count, a drifted important one does)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

import registry
from flows.monitor import monitor
from flows.score import score_and_log
from flows.train import train
from monitoring import runs, store
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
