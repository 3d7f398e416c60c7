"""A real monitor run's verdict on a real inference service's /metrics, and every series the
shipped alert rules name among what that /metrics exports."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import registry
from flows.monitor import monitor
from flows.score import score_and_log
from flows.train import train
from monitoring import runs, store
from pipelines.scenarios import apply_scenario
from serving.model import load_alias
from tests.conftest import DATA
from tests.flows.conftest import write_config
from tests.monitoring.test_prometheus_rules import RULES
from tests.serving.conftest import Server, records, server_env

MONITORING = {
    "window": {"kind": "last_rows", "rows": 2000},
    "min_window_rows": 500,
    # judged and recorded, never retrained here (retraining has tests of its own)
    "policy": {"cooldown_hours": 0, "min_labeled_rows": 100, "max_retrains_per_day": 0},
}


def log_traffic(env: dict[str, str], frame: pd.DataFrame) -> None:
    """Score the traffic with the champion and log it, with its labels, as serving does."""
    client = registry.make_client(env["MLFLOW_TRACKING_URI"])
    store.upgrade_database(env["DRIFTLOOP_DATABASE_URL"])
    engine = store.make_engine(env["DRIFTLOOP_DATABASE_URL"])
    try:
        ids = [f"r{i}" for i in range(len(frame))]
        score_and_log(load_alias(client, "employment"), frame, engine=engine, request_ids=ids)
        store.record_labels(engine, dict(zip(ids, frame["employed"].tolist(), strict=True)))
    finally:
        engine.dispose()


def rule_series(rules_text: str) -> set[str]:
    """Every series name the alert rules' expressions read."""
    exprs = [r["expr"] for g in yaml.safe_load(rules_text)["groups"] for r in g["rules"]]
    return {name for expr in exprs for name in re.findall(r"\bdriftloop_[a-z0-9_]+", expr)}


def exported_series(metrics_text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(metrics_text) for s in f.samples}


@pytest.fixture
def drifted_service(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> tuple[Server, dict]:
    """A trained champion, drifted traffic logged, one monitor run, a real service started."""
    config = write_config(tmp_path, small_employment, monitoring=MONITORING)
    train(config_path=str(config))
    live = pd.read_parquet(DATA / "live_2016_2018.parquet").iloc[:2000]
    labels = pd.read_parquet(DATA / "live_2016_2018_labels.parquet").set_index("id")["employed"]
    live = live.assign(employed=live["id"].map(labels))
    log_traffic(mlflow_env, apply_scenario(live, "broken-feature", start_fraction=0.0))
    summary = monitor(config_path=str(config))
    assert summary["status"] == "drift", summary
    engine = store.make_engine(mlflow_env["DRIFTLOOP_DATABASE_URL"])
    latest = runs.latest_run(engine, "employment")
    engine.dispose()
    env = server_env(mlflow_env["MLFLOW_TRACKING_URI"], mlflow_env["DRIFTLOOP_DATABASE_URL"])
    server = Server(config=config, env=env).start()
    yield server, latest
    server.stop()


def test_metrics_carry_the_monitor_run_and_every_series_the_rules_read(
    drifted_service: tuple[Server, dict], small_employment: pd.DataFrame
) -> None:
    server, latest = drifted_service
    version = str(latest["model_version"])
    # touch the request counters the serving rules read (an error, a prediction)
    assert httpx.post(f"{server.url}/predict", json={"nope": 1}, timeout=30).status_code == 422
    row = records(small_employment, 1)[0]
    assert httpx.post(f"{server.url}/predict", json=row, timeout=30).status_code == 200

    text = httpx.get(f"{server.url}/metrics", timeout=30).text

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }

    def gauge(name: str, **labels: str) -> float:
        return samples[
            (name, tuple(sorted({"model": "employment", "version": version, **labels}.items())))
        ]

    assert gauge("driftloop_drift_share") == pytest.approx(latest["drift_share"])
    assert gauge("driftloop_dataset_drift") == float(latest["dataset_drift"])
    assert gauge("driftloop_drifted_features") == len(latest["drifted_features"])
    assert gauge("driftloop_monitor_severity") == 2.0 == {"critical": 2.0}[latest["severity"]]
    assert gauge("driftloop_monitor_last_run_timestamp_seconds") == pytest.approx(
        latest["started_at"].timestamp()
    )
    assert gauge("driftloop_monitor_window_rows") == 2000
    if latest["performance_drop"] is not None:
        assert gauge("driftloop_performance_drop") == pytest.approx(latest["performance_drop"])
    scored = {f: score for f, score in latest["scores"].items() if score is not None}
    assert len(scored) >= 10, latest["scores"]  # a feature without a score has no sample
    for feature, score in scored.items():
        assert gauge("driftloop_feature_drift_score", feature=feature) == pytest.approx(score)
        drifted = feature in latest["drifted_features"]
        assert gauge("driftloop_feature_drifted", feature=feature) == float(drifted)

    read_by_rules = rule_series(RULES.read_text())
    # the monitor alerts read these (DatasetDrift, ModelHarm, MonitorStale)
    assert {
        "driftloop_drift_share",
        "driftloop_monitor_severity",
        "driftloop_monitor_last_run_timestamp_seconds",
    } <= read_by_rules
    missing = read_by_rules - exported_series(text)
    assert not missing, f"the alert rules read series /metrics does not export: {sorted(missing)}"
