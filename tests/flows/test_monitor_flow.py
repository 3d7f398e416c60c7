"""The monitor and retrain flows on the inference log, with a real registry, workspace and database."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from mlflow import MlflowClient
from prefect import flow
from sklearn.metrics import f1_score
from typer.testing import CliRunner

import registry
from core.config import load_config
from core.settings import Settings
from driftloop.cli import app
from flows.monitor import monitor, monitor_once
from flows.score import score_and_log
from flows.train import train
from monitoring import runs, store
from monitoring.verdict import MonitorOutcome, VersionReference, evaluate_window
from monitoring.workspace import list_snapshots
from pipelines.scenarios import apply_scenario
from serving.model import load_alias
from tests.conftest import DATA
from tests.flows.conftest import write_config

MONITORING = {
    "window": {"kind": "last_rows", "rows": 2000},
    "min_window_rows": 500,
    "policy": {"cooldown_hours": 0, "min_labeled_rows": 100},
    "retrain": {"min_labeled_rows": 300},
}


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
    # the run compacted the log first: every served row is in a columnar segment
    with engine.connect() as connection:
        held = connection.scalar(sa.select(sa.func.sum(store.log_segments.c.rows)))
    assert held == store.count_rows(engine, model_name="employment") == len(live)
    engine.dispose()
    result = CliRunner().invoke(app, ["log", "compact", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "employment: 0 rows into 0 segments" in result.output


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


def _three_classes(n: int, *, seed: int) -> pd.DataFrame:
    """A generated three-class problem: the class follows x + z, with a categorical nudge."""
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=n), rng.normal(size=n)
    kind = rng.choice(["a", "b"], n)
    score = x + 0.5 * z + np.where(kind == "a", 0.3, -0.3) + rng.normal(0, 0.4, n)
    return pd.DataFrame({"x": x, "z": z, "kind": kind, "grade": np.digitize(score, [-0.6, 0.6])})


def _multiclass_config(directory: Path) -> Path:
    _three_classes(1500, seed=1).to_parquet(directory / "train.parquet", index=False)
    config = {
        "model_name": "grades",
        "task": "classification",
        "target": "grade",
        "data": {"train": str(directory / "train.parquet")},
        "features": {"numeric": ["x", "z"], "categorical": ["kind"]},
        "model": {
            "candidates": [{"family": "logistic", "search": {"C": [1.0]}}],
            "cv_folds": 2,
            "search_iterations": 1,
        },
        "promotion": {"metric": "f1"},
        "monitoring": {
            "window": {"kind": "last_rows", "rows": 1000},
            "min_window_rows": 200,
            # the decision is what is tested here: the daily limit keeps retraining from running
            "policy": {"min_labeled_rows": 100, "max_retrains_per_day": 0},
        },
    }
    path = directory / "driftloop.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _serve_multiclass(env: dict[str, str], live: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    client = registry.make_client(env["MLFLOW_TRACKING_URI"])
    store.upgrade_database(env["DRIFTLOOP_DATABASE_URL"])
    engine = store.make_engine(env["DRIFTLOOP_DATABASE_URL"])
    try:
        ids = [f"r{i}" for i in range(len(live))]
        scored = score_and_log(load_alias(client, "grades"), live, engine=engine, request_ids=ids)
        store.record_labels(engine, dict(zip(ids, labels.tolist(), strict=True)))
    finally:
        engine.dispose()
    return scored


def test_multiclass_traffic_with_labels_gets_quality_metrics(
    tmp_path: Path, mlflow_env: dict[str, str]
) -> None:
    config = _multiclass_config(tmp_path)
    train(config_path=str(config))
    live = _three_classes(1000, seed=2)
    scored = _serve_multiclass(mlflow_env, live.drop(columns=["grade"]), live["grade"])

    summary = monitor(config_path=str(config))

    assert summary["status"] == "ok", summary
    engine = store.make_engine(mlflow_env["DRIFTLOOP_DATABASE_URL"])
    latest = runs.latest_run(engine, "grades")
    engine.dispose()
    expected_f1 = f1_score(live["grade"], scored["prediction"], average="weighted")
    assert latest["metric"] == "f1" and latest["labeled_rows"] == 1000
    assert latest["metric_value"] == pytest.approx(expected_f1)
    client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("grades-monitoring")
    (run,) = client.search_runs([experiment.experiment_id])
    metrics = run.data.metrics
    assert metrics["f1"] == pytest.approx(expected_f1)
    assert metrics["quality.f1_macro"] == pytest.approx(
        f1_score(live["grade"], scored["prediction"], average="macro")
    )
    assert {"quality.log_loss", "quality.recall.0", "quality.recall.1", "quality.recall.2"} <= set(
        metrics
    )
    # the estimate of the primary metric: every row is labeled here, so it is the measured one
    assert metrics["estimated_f1"] == pytest.approx(metrics["f1"], abs=1e-9)


def test_multiclass_performance_drop_counts_for_retraining(
    tmp_path: Path, mlflow_env: dict[str, str]
) -> None:
    config = _multiclass_config(tmp_path)
    train(config_path=str(config))
    live = _three_classes(1000, seed=3)
    _serve_multiclass(mlflow_env, live.drop(columns=["grade"]), (live["grade"] + 1) % 3)

    summary = monitor(config_path=str(config))

    assert "performance" in summary["failed_checks"], summary
    assert summary["alert"] is True and "f1 on 1000 labeled rows" in summary["alert_reason"]
    # the policy asks for a retraining (held back here only by the daily limit of 0)
    assert "measured performance drop" in summary["retrain_reason"]
    assert "reached the limit of 0" in summary["retrain_reason"]


def test_monitor_reuses_cached_references_with_the_same_verdicts(
    tmp_path: Path, mlflow_env: dict[str, str]
) -> None:
    """A caller that monitors repeatedly (the backtest) loads a version's reference once."""
    config_path = _multiclass_config(tmp_path)
    train(config_path=str(config_path))
    live = _three_classes(1000, seed=4)
    _serve_multiclass(mlflow_env, live.drop(columns=["grade"]), live["grade"])
    config = load_config(config_path)
    cache: dict[int, VersionReference] = {}

    @flow
    def monitor_twice() -> tuple[MonitorOutcome, MonitorOutcome]:
        first = monitor_once(config, Settings(), publish_views=False, references=cache)
        # a perfect holdout value: the second run can only have used it if it read the cache
        cache[1] = dataclasses.replace(cache[1], holdout_value=1.0)
        return first, monitor_once(config, Settings(), publish_views=False, references=cache)

    first, second = monitor_twice()

    assert list(cache) == [1]
    assert first.result.performance is not None and second.result.performance is not None
    assert first.result.performance.reference_value < 1.0
    assert second.result.performance.reference_value == 1.0
    # the statistics cached with the reference give the verdicts computed from the frame itself
    ref = cache[1]
    fresh = evaluate_window(
        config,
        ref.info,
        ref.frame,
        second.window,
        holdout_value=1.0,
        noise=ref.noise.get(config.promotion.metric),
        estimation=ref.estimation,
    )
    assert fresh.to_dict() == second.result.to_dict()


def test_logged_numbers_too_large_to_train_on_do_not_block_retraining(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame, live: pd.DataFrame
) -> None:
    """Rows an older service logged with huge numbers are left out of the challenger's data."""
    from flows.retrain import retrain

    config = write_config(tmp_path, small_employment, monitoring=MONITORING)
    train(config_path=str(config))
    _serve(mlflow_env, live)
    url = mlflow_env["DRIFTLOOP_DATABASE_URL"]
    huge = {"huge0": 1.797e308, "huge1": 1e159, "huge2": -1e200}
    engine = store.make_engine(url)
    try:
        client = registry.make_client(mlflow_env["MLFLOW_TRACKING_URI"])
        score_and_log(
            load_alias(client, "employment"), live.head(3), engine=engine, request_ids=list(huge)
        )
        store.record_labels(engine, {"huge0": 1, "huge1": 0, "huge2": 1})
    finally:
        engine.dispose()
    _set_features(url, huge)
    outcome = retrain(config_path=str(config), reason="test")
    assert outcome["version"] == 2
    assert "3 unusable rows left out" in outcome["lineage"]["window"]


def _set_features(url: str, ages: dict[str, float]) -> None:
    import sqlalchemy as sa

    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            for rid, age in ages.items():
                features = conn.execute(
                    sa.select(store.inference_log.c.features).where(
                        store.inference_log.c.request_id == rid
                    )
                ).scalar_one()
                conn.execute(
                    store.inference_log.update()
                    .where(store.inference_log.c.request_id == rid)
                    .values(features={**features, "AGEP": age})
                )
    finally:
        engine.dispose()


def test_a_promoted_version_worse_than_the_one_it_replaced_is_reported_as_a_regression(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame, live: pd.DataFrame
) -> None:
    """A version trained on shuffled labels, promoted by hand: the labeled live rows show it
    worse than the champion it replaced (a critical alert), even though it matches its own
    (poor) reference."""
    config = write_config(tmp_path, small_employment, monitoring=MONITORING)
    train(config_path=str(config))
    shuffled = small_employment.assign(
        employed=small_employment["employed"].sample(frac=1.0, random_state=3).to_numpy()
    )
    noise_dir = tmp_path / "shuffled"
    noise_dir.mkdir()
    train(config_path=str(write_config(noise_dir, shuffled, monitoring=MONITORING)))
    client = registry.make_client(mlflow_env["MLFLOW_TRACKING_URI"])
    registry.set_champion(client, "employment", 2, reason="by hand", actor="test")
    _serve(mlflow_env, live)

    summary = monitor(config_path=str(config))

    assert "regression" in summary["failed_checks"], summary
    assert summary["severity"] == "critical" and "worse than v1" in summary["alert_reason"]
    assert summary["alert"] is True


def test_delayed_labels_are_measured_on_the_versions_newest_labeled_rows(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    """The window's own rows have no labels yet: performance is measured on the older labeled
    rows of the same version, and the window itself is judged by its estimate."""
    frame = pd.read_parquet(DATA / "live_2016_2018.parquet").iloc[:4000]
    labels = pd.read_parquet(DATA / "live_2016_2018_labels.parquet").set_index("id")["employed"]
    config = write_config(tmp_path, small_employment, monitoring=MONITORING)
    train(config_path=str(config))
    url = mlflow_env["DRIFTLOOP_DATABASE_URL"]
    store.upgrade_database(url)
    engine = store.make_engine(url)
    try:
        model = load_alias(registry.make_client(mlflow_env["MLFLOW_TRACKING_URI"]), "employment")
        old, new = frame.iloc[:2000], frame.iloc[2000:]
        old_ids = [f"old{i}" for i in range(len(old))]
        score_and_log(model, old, engine=engine, request_ids=old_ids)
        store.record_labels(engine, dict(zip(old_ids, old["id"].map(labels).tolist(), strict=True)))
        score_and_log(model, new, engine=engine, request_ids=[f"new{i}" for i in range(len(new))])
    finally:
        engine.dispose()

    @flow
    def once() -> MonitorOutcome:
        return monitor_once(load_config(config), Settings(), publish_views=False)

    outcome = once()

    window = outcome.window
    assert len(window.frame) == 2000 and window.frame["employed"].isna().all()
    assert window.labeled is not None and len(window.labeled) == 2000
    assert set(window.labeled["request_id"]) == set(old_ids)
    perf, est = outcome.result.performance, outcome.result.estimated_performance
    assert perf is not None and perf.labeled_rows == 2000 and not perf.estimated
    assert est is not None and est.unlabeled_share == 1.0
    # the estimate judges the unlabeled window even though the measured figure exists
    assert "performance" in outcome.result.verdicts
    assert "estimated_performance" in outcome.result.verdicts


def test_a_monitor_alert_carries_the_links_a_person_opens(
    tmp_path: Path,
    mlflow_env: dict[str, str],
    small_employment: pd.DataFrame,
    live: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Drift that hurts, delivered to a real webhook: the payload links the drift run, the
    model version and the monitor run in MLflow, and the run's Evidently snapshot, each of
    which exists."""
    import json

    from tests.monitoring.test_alerts import SECRET, Receiver

    monkeypatch.setenv("DRIFTLOOP_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("DRIFTLOOP_EVIDENTLY_UI_URL", "http://127.0.0.1:8001")
    with Receiver() as receiver:
        config = write_config(
            tmp_path,
            small_employment,
            monitoring={
                **MONITORING,
                "policy": {**MONITORING["policy"], "max_retrains_per_day": 0},
            },
            alerts={"webhooks": [receiver.url], "retries": 0},
        )
        train(config_path=str(config))
        _serve(mlflow_env, apply_scenario(live, "broken-feature", start_fraction=0.0))
        summary = monitor(config_path=str(config))
        (payload,) = [json.loads(body) for _, _, body in receiver.requests]

    links = payload["details"]["links"]
    assert links["drift_run_id"] == summary["run_id"]
    assert links["mlflow_model_version"].endswith("/#/models/employment/versions/1")
    experiment, run_id = links["mlflow_run"].rsplit("/#/experiments/", 1)[1].split("/runs/")
    client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
    run = client.get_run(run_id)
    assert run.info.experiment_id == experiment
    assert run.data.tags["driftloop.drift_run_id"] == summary["run_id"]
    snapshot = links["evidently_snapshot"].rsplit("/reports/", 1)[1]
    assert links["evidently_snapshot"].startswith("http://127.0.0.1:8001/projects/")
    assert snapshot in {
        str(s) for s in list_snapshots(mlflow_env["DRIFTLOOP_WORKSPACE"], "employment")
    }
