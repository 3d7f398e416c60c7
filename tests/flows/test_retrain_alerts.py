"""The retrain flow tells people what became of a retraining (promoted, refused, failed), through
the configured webhooks: a real receiver on loopback, signatures checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import registry
from flows.monitor import monitor
from flows.retrain import retrain
from flows.score import score_and_log
from flows.train import train
from monitoring import store
from monitoring.alerts import EVENT_HEADER, verify
from pipelines.retraining import RetrainRefused
from pipelines.scenarios import apply_scenario
from serving.model import load_alias
from tests.conftest import DATA
from tests.flows.conftest import write_config
from tests.monitoring.test_alerts import SECRET, Receiver

MONITORING = {
    "window": {"kind": "last_rows", "rows": 2000},
    "min_window_rows": 500,
    "retrain": {"min_labeled_rows": 300},
}


def alerts_config(receiver: Receiver) -> dict[str, Any]:
    return {"webhooks": [receiver.url], "retries": 0, "timeout_s": 10}


def received(receiver: Receiver) -> list[dict[str, Any]]:
    """Every payload the receiver got, after checking its signature and event header."""
    payloads = []
    for _, headers, body in receiver.requests:
        assert verify(body, headers, SECRET), headers
        payload = json.loads(body)
        assert {k.lower(): v for k, v in headers.items()}[EVENT_HEADER.lower()] == payload["kind"]
        payloads.append(payload)
    return payloads


def log_drifted_traffic(env: dict[str, str], *, broken: bool = True, prefix: str = "r") -> None:
    """2,000 live rows with age missing (``broken``; else as they are), scored by the champion
    and logged with their labels under request ids starting with ``prefix``."""
    live = pd.read_parquet(DATA / "live_2016_2018.parquet").iloc[:2000]
    labels = pd.read_parquet(DATA / "live_2016_2018_labels.parquet").set_index("id")["employed"]
    live = live.assign(employed=live["id"].map(labels))
    if broken:
        live = apply_scenario(live, "broken-feature", start_fraction=0.0)
    client = registry.make_client(env["MLFLOW_TRACKING_URI"])
    store.upgrade_database(env["DRIFTLOOP_DATABASE_URL"])
    engine = store.make_engine(env["DRIFTLOOP_DATABASE_URL"])
    try:
        ids = [f"{prefix}{i}" for i in range(len(live))]
        score_and_log(load_alias(client, "employment"), live, engine=engine, request_ids=ids)
        store.record_labels(engine, dict(zip(ids, live["employed"].tolist(), strict=True)))
    finally:
        engine.dispose()


def test_a_failed_retraining_is_alerted_as_critical(
    tmp_path: Path,
    mlflow_env: dict[str, str],
    small_employment: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLOOP_WEBHOOK_SECRET", SECRET)
    with Receiver() as receiver:
        config = write_config(
            tmp_path, small_employment, monitoring=MONITORING, alerts=alerts_config(receiver)
        )
        store.upgrade_database(mlflow_env["DRIFTLOOP_DATABASE_URL"])  # as the monitor left it
        with pytest.raises(RetrainRefused, match="no champion"):
            retrain(config_path=str(config), drift_run_id="run-1", reason="drift that hurts")
        (alert,) = received(receiver)
    assert alert["kind"] == "retrain_failed" and alert["severity"] == "critical"
    assert alert["model_name"] == "employment"
    assert alert["title"] == "employment: retraining failed, the champion stays"
    assert "no champion" in alert["message"]
    assert alert["details"]["drift_run_id"] == "run-1"
    assert alert["details"]["retrain_reason"] == "drift that hurts"


def test_a_promotion_and_a_refused_challenger_are_alerted(
    tmp_path: Path,
    mlflow_env: dict[str, str],
    small_employment: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLOOP_WEBHOOK_SECRET", SECRET)
    with Receiver() as receiver:
        config = write_config(
            tmp_path, small_employment, monitoring=MONITORING, alerts=alerts_config(receiver)
        )
        train(config_path=str(config))  # v1, the champion: no alert from training
        assert received(receiver) == []
        log_drifted_traffic(mlflow_env)

        # the champion imputes the missing age, a challenger learned without it: it wins
        promoted = retrain(config_path=str(config), reason="age is missing")
        assert promoted["promoted"] is True, promoted["reason"]

        # the same again, with a gate no challenger can pass
        raw = yaml.safe_load(config.read_text())
        raw["promotion"] = {**raw.get("promotion", {}), "min_improvement": 0.9}
        config.write_text(yaml.safe_dump(raw))
        refused = retrain(config_path=str(config), reason="once more")
        assert refused["promoted"] is False
        first, second = received(receiver)

    assert first["kind"] == "promotion" and first["severity"] == "info"
    assert first["title"] == f"employment: v{promoted['version']} promoted to champion"
    assert first["message"] == promoted["reason"]
    assert first["details"]["version"] == promoted["version"] == 2
    assert first["details"]["previous_champion"] == 1
    assert first["details"]["mlflow_run_id"] == promoted["run_id"]
    assert first["details"]["retrain_reason"] == "age is missing"

    assert second["kind"] == "retrain_refused" and second["severity"] == "warning"
    assert second["title"] == (
        f"employment: challenger v{refused['version']} refused, the champion stays"
    )
    assert second["details"]["version"] == refused["version"] == 3
    assert second["message"] == refused["reason"]


def test_one_incident_groups_its_alerts_and_resolves_once(
    tmp_path: Path,
    mlflow_env: dict[str, str],
    small_employment: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Harm opens an incident (alerted), the retraining it starts is refused (alerted with the
    incident's id), clean traffic closes it: one resolution message, then silence."""
    monkeypatch.setenv("DRIFTLOOP_WEBHOOK_SECRET", SECRET)
    with Receiver() as receiver:
        config = write_config(
            tmp_path,
            small_employment,
            monitoring={
                **MONITORING,
                "policy": {"cooldown_hours": 0, "min_labeled_rows": 100, "resolve_after_runs": 2},
            },
            promotion={"min_improvement": 0.9},  # the challenger is refused: v1 stays
            alerts=alerts_config(receiver),
        )
        train(config_path=str(config))
        log_drifted_traffic(mlflow_env)
        harmed = monitor(config_path=str(config))  # alerts, then retrains in-process
        assert harmed["alert"] is True and harmed["retrain"] is True, harmed
        log_drifted_traffic(mlflow_env, broken=False, prefix="clean")
        clean = [monitor(config_path=str(config)) for _ in range(3)]
        alerts = received(receiver)

    assert [c["incident_event"] for c in clean] == [None, "resolved", None]
    assert [a["kind"] for a in alerts] == ["harm", "retrain_refused", "resolved"]
    opened, refused, resolved = alerts
    incident = opened["details"]["incident_id"]
    assert incident == harmed["incident_id"] == harmed["run_id"]
    assert refused["details"]["incident_id"] == incident
    assert refused["details"]["drift_run_id"] == harmed["run_id"]
    assert resolved["details"]["incident_id"] == incident
    assert resolved["severity"] == "critical"  # the worst the incident was
    assert resolved["title"] == "employment v1: incident resolved: every check passes"
