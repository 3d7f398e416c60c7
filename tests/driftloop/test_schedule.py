"""The monitor's schedule interval, read from prefect.yaml."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from driftloop.schedule import ScheduleError, deployment_interval, monitor_interval

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"


def test_the_shipped_monitor_runs_every_15_minutes() -> None:
    assert monitor_interval(PREFECT_YAML) == timedelta(minutes=15)


def test_a_deployment_without_an_interval_schedule_has_none() -> None:
    text = "deployments:\n  - name: monitor\n    schedules: [{cron: '*/5 * * * *'}]\n"
    assert deployment_interval(text) is None
    assert deployment_interval("deployments:\n  - name: train\n") is None


def test_a_missing_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match="--every-minutes"):
        monitor_interval(tmp_path / "prefect.yaml")
