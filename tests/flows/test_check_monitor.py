"""`driftloop check-monitor` through the real command: a monitor that stopped is alerted as
``monitor_stale`` to a real webhook (signature checked); a monitor that runs is not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from monitoring import runs, store
from monitoring.alerts import verify
from tests.conftest import DATA
from tests.flows.conftest import write_config
from tests.flows.test_cli_errors import run
from tests.monitoring.test_alerts import SECRET, Receiver
from tests.serving.test_monitor_gauges import drift_run

PREFECT_YAML = DATA.parents[1] / "prefect.yaml"


def record(database: Path, started_at: datetime, run_id: str) -> None:
    url = f"sqlite:///{database}"
    store.upgrade_database(url)
    engine = store.make_engine(url)
    try:
        runs.record_run(engine, {**drift_run(started_at, 0.1), "run_id": run_id})
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("age", "stale"), [(timedelta(hours=2), True), (timedelta(minutes=10), False)]
)
def test_a_monitor_that_stopped_is_alerted_to_the_webhook(
    tmp_path: Path, small_employment: pd.DataFrame, age: timedelta, stale: bool
) -> None:
    with Receiver() as receiver:
        config = write_config(
            tmp_path, small_employment, alerts={"webhooks": [receiver.url], "retries": 0}
        )
        record(tmp_path / "driftloop.db", datetime.now(UTC) - age, "run-7")
        done = run(
            ["check-monitor", "-c", str(config), "--prefect-yaml", str(PREFECT_YAML)],
            tmp_path,
            DRIFTLOOP_WEBHOOK_SECRET=SECRET,
        )
        requests = list(receiver.requests)
    assert done.returncode == 0, done.stdout + done.stderr
    if not stale:  # 10 minutes: within 4 intervals of the shipped 15-minute schedule
        assert done.stdout.startswith("employment: ok: the newest monitor run is 10 min"), (
            done.stdout
        )
        assert requests == []
        return
    assert done.stdout.startswith(
        "employment: monitor_stale: the newest monitor run is 2 h 0 min old"
    )
    assert "older than 4 schedule intervals of 15 min 0 s (1 h 0 min)" in done.stdout
    assert receiver.url in done.stdout
    ((_, headers, body),) = requests
    assert verify(body, headers, SECRET)
    alert = json.loads(body)
    assert alert["kind"] == "monitor_stale" and alert["severity"] == "warning"
    assert alert["details"]["last_run_id"] == "run-7"
    assert "check the Prefect work pool" in alert["message"]


def test_without_a_schedule_the_check_says_what_to_pass(
    tmp_path: Path, small_employment: pd.DataFrame
) -> None:
    config = write_config(tmp_path, small_employment)
    done = run(
        ["check-monitor", "-c", str(config), "--prefect-yaml", str(tmp_path / "none.yaml")],
        tmp_path,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: "), done.stderr
    assert "--every-minutes" in done.stderr and "Traceback" not in done.stderr
