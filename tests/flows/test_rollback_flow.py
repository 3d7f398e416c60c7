"""Automatic rollback through the monitor flow, on a real MLflow registry (SQLite), a real
inference-log database and a real webhook receiver: a version worse live than the champion it
replaced (trained on shuffled labels, promoted by hand with `driftloop promote`) goes back, is
tagged and alerted, and is never promoted again; a version that is not worse stays."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import prefect.main  # noqa: F401  (Prefect logs to the real stderr, not to a CliRunner stream)
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

import registry
from driftloop.cli import app
from flows.monitor import monitor
from flows.train import train
from tests.flows.conftest import write_config
from tests.flows.test_monitor_flow import MONITORING, _serve
from tests.flows.test_retrain_alerts import alerts_config, received
from tests.monitoring.test_alerts import SECRET, Receiver

runner = CliRunner()


@pytest.fixture
def live() -> pd.DataFrame:
    from tests.conftest import DATA

    frame = pd.read_parquet(DATA / "live_2016_2018.parquet").iloc[:2000]
    labels = pd.read_parquet(DATA / "live_2016_2018_labels.parquet").set_index("id")["employed"]
    return frame.assign(employed=frame["id"].map(labels))


def _second_version(tmp_path: Path, frame: pd.DataFrame, **overrides: object) -> None:
    """Register v2 of `employment` from another config (the gate keeps v1 champion)."""
    other = tmp_path / "other"
    other.mkdir()
    outcome = train(config_path=str(write_config(other, frame, monitoring=MONITORING, **overrides)))
    assert outcome["version"] == 2 and outcome["promoted"] is False, outcome["reason"]


def _promote_by_hand(config: Path, version: int) -> None:
    result = runner.invoke(app, ["promote", "--version", str(version), "--config", str(config)])
    assert result.exit_code == 0, result.output


def _champion(client: MlflowClient) -> int:
    return int(client.get_model_version_by_alias("employment", "champion").version)


def test_a_worse_model_promoted_by_hand_is_rolled_back_tagged_alerted_and_never_promoted_again(
    tmp_path: Path,
    mlflow_env: dict[str, str],
    small_employment: pd.DataFrame,
    live: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLOOP_WEBHOOK_SECRET", SECRET)
    with Receiver() as receiver:
        config = write_config(
            tmp_path, small_employment, monitoring=MONITORING, alerts=alerts_config(receiver)
        )
        train(config_path=str(config))
        shuffled = small_employment.assign(
            employed=small_employment["employed"].sample(frac=1.0, random_state=3).to_numpy()
        )
        _second_version(tmp_path, shuffled)
        _promote_by_hand(config, 2)
        _serve(mlflow_env, live)  # served by v2, labeled

        summary = monitor(config_path=str(config))

        client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
        assert summary["rollback"] is True and summary["rolled_back_to"] == 1, summary
        assert _champion(client) == 1
        assert "worse than the champion it replaced: v2 against v1" in summary["rollback_reason"]
        # judged against the predecessor and against the floor, not only its own reference
        assert {"regression", "floor"} <= set(summary["failed_checks"]), summary
        assert summary["severity"] == "critical" and summary["retrain"] is False
        v2, v1 = (client.get_model_version("employment", v).tags for v in ("2", "1"))
        assert v2[registry.ROLLED_BACK_TAG] == summary["rollback_reason"]
        assert v2["driftloop.role"] == "rolled_back" and v1["driftloop.role"] == "champion"
        assert v1["driftloop.restored"].startswith("v2 rolled back: worse than the champion")
        history = registry.champion_history(client, "employment")
        assert [h["version"] for h in history] == [1, 2, 1]
        assert history[-1]["by"] == f"monitor:{summary['run_id']}"

        kinds = {alert["kind"]: alert for alert in received(receiver)}
        assert set(kinds) == {"harm", "rolled_back"}, kinds
        rolled = kinds["rolled_back"]
        assert rolled["severity"] == "critical"
        assert rolled["title"] == "employment: v2 rolled back, v1 is champion again"
        assert rolled["details"]["version"] == 2 and rolled["details"]["restored"] == 1
        assert rolled["details"]["drift_run_id"] == summary["run_id"]

        again = runner.invoke(app, ["promote", "--version", "2", "--config", str(config)])
        assert again.exit_code == 2 and "version 2 was rolled back" in again.output, again.output
        assert _champion(client) == 1

        # the log still holds v2's rows: judged again, nothing moves and nothing more is sent
        later = monitor(config_path=str(config))
        assert later["rollback"] is False and "no longer the champion" in later["rollback_reason"]
        assert len(received(receiver)) == 2


def test_a_model_promoted_by_hand_that_is_not_worse_stays_champion(
    tmp_path: Path,
    mlflow_env: dict[str, str],
    small_employment: pd.DataFrame,
    live: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLOOP_WEBHOOK_SECRET", SECRET)
    with Receiver() as receiver:
        config = write_config(
            tmp_path, small_employment, monitoring=MONITORING, alerts=alerts_config(receiver)
        )
        train(config_path=str(config))
        stronger = {"candidates": [{"family": "logistic", "search": {"C": [10.0]}}], "seed": 8}
        _second_version(tmp_path, small_employment, model={"cv_folds": 2, **stronger})
        _promote_by_hand(config, 2)
        _serve(mlflow_env, live)

        summary = monitor(config_path=str(config))

        client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
        assert summary["rollback"] is False, summary
        assert "not worse beyond noise: v2 against v1" in summary["rollback_reason"]
        assert _champion(client) == 2
        assert registry.ROLLED_BACK_TAG not in client.get_model_version("employment", "2").tags
        assert "rolled_back" not in {alert["kind"] for alert in received(receiver)}
