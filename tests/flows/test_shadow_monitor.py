"""The monitor flow reports the challenger against the champion on the live rows both answered:
in the run's details, on the challenger version in MLflow, and in `driftloop versions`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import prefect.main  # noqa: F401  (Prefect logs to the real stderr, not to a CliRunner stream)
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

import registry
from driftloop.cli import app
from flows.monitor import monitor
from monitoring import runs, store
from monitoring.shadow import write_shadow
from pipelines.schema import prepare_features
from tests.flows.conftest import write_config
from tests.flows.test_monitor_flow import MONITORING, _serve
from tests.flows.test_weighted_drift import driftloop_series

runner = CliRunner()


def test_monitor_reports_the_challenger_on_the_same_live_rows(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame, live: pd.DataFrame
) -> None:
    config = write_config(tmp_path, small_employment, monitoring=MONITORING)
    for _ in range(2):  # the second, identical model is registered as challenger
        assert runner.invoke(app, ["train", "--config", str(config)]).exit_code == 0
    client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
    assert str(client.get_model_version_by_alias("employment", "challenger").version) == "2"
    _serve(mlflow_env, live)
    # what the service's shadow scorer writes: the challenger's answers under the same ids
    challenger = registry.load_model(client, "employment", 2)
    spec = registry.version_info(client.get_model_version("employment", "2")).spec
    p = challenger.predict_proba(prepare_features(live, spec))[:, 1]
    engine = store.make_engine(mlflow_env["DRIFTLOOP_DATABASE_URL"])
    now = datetime.now(UTC)
    write_shadow(
        engine,
        [
            {"request_id": f"r{i}", "ts": now, "model_name": "employment", "model_version": 2,
             "prediction": int(p[i] > 0.5), "probability": float(p[i])}
            for i in range(len(live))
        ],
    )  # fmt: skip

    summary = monitor(config_path=str(config))

    shadow = runs.latest_run(engine, "employment")["details"]["shadow"]
    engine.dispose()
    assert shadow["champion"] == 1 and shadow["challenger"] == 2
    assert shadow["rows"] == 2000 and shadow["metric"] == "roc_auc"
    assert shadow["verdict"] == "no clear difference"  # the same model on the same rows
    assert abs(shadow["challenger_value"] - shadow["champion_value"]) < 1e-9
    tag = client.get_model_version("employment", "2").tags["driftloop.shadow"]
    assert "challenger v2 vs champion v1 on 2000 labeled live rows" in tag
    listing = runner.invoke(app, ["versions", "--config", str(config)])
    assert "live, in the shadow: challenger v2 vs champion v1" in listing.output, listing.output
    series = driftloop_series(mlflow_env["DRIFTLOOP_WORKSPACE"], "employment")  # Evidently UI
    assert series[("shadow.challenger", None)] == pytest.approx(shadow["challenger_value"])
    assert series[("shadow.champion", None)] == pytest.approx(shadow["champion_value"])
    assert summary["run_id"]


def test_with_use_shadow_a_challenger_better_on_live_rows_replaces_the_champion(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame, live: pd.DataFrame
) -> None:
    no_retraining = {**MONITORING, "policy": {**MONITORING["policy"], "max_retrains_per_day": 0}}
    promotion = {"use_shadow": True, "floor": None, "rollback": {"enabled": False}}
    shuffled = small_employment.assign(
        employed=small_employment["employed"].sample(frac=1.0, random_state=3).to_numpy()
    )
    for frame in (shuffled, small_employment):  # v1 learned noise, v2 the real thing
        config = write_config(tmp_path, frame, monitoring=no_retraining, promotion=promotion)
        assert runner.invoke(app, ["train", "--config", str(config)]).exit_code == 0
    client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
    client.set_registered_model_alias("employment", "champion", "1")  # v1 serves, v2 waits
    client.set_registered_model_alias("employment", "challenger", "2")
    _serve(mlflow_env, live)
    challenger = registry.load_model(client, "employment", 2)
    spec = registry.version_info(client.get_model_version("employment", "2")).spec
    p = challenger.predict_proba(prepare_features(live, spec))[:, 1]
    engine = store.make_engine(mlflow_env["DRIFTLOOP_DATABASE_URL"])
    now = datetime.now(UTC)
    write_shadow(
        engine,
        [
            {"request_id": f"r{i}", "ts": now, "model_name": "employment", "model_version": 2,
             "prediction": int(p[i] > 0.5), "probability": float(p[i])}
            for i in range(len(live))
        ],
    )  # fmt: skip

    monitor(config_path=str(config))

    shadow = runs.latest_run(engine, "employment")["details"]["shadow"]
    engine.dispose()
    assert shadow["verdict"] == "better" and shadow["challenger_value"] > shadow["champion_value"]
    champion = client.get_model_version_by_alias("employment", "champion")
    assert str(champion.version) == "2"  # promoted on its paired live results
    assert champion.tags["driftloop.judged_against"] == "1"
