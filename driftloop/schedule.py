"""How often a deployment runs, read from ``prefect.yaml`` (the one place schedules are declared)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from core.errors import DriftloopError


class ScheduleError(DriftloopError, ValueError):
    """prefect.yaml is missing, or declares no interval schedule for the deployment."""


def deployment_interval(text: str, deployment: str = "monitor") -> timedelta | None:
    """The first interval schedule of ``deployment`` in a prefect.yaml's text (None: none)."""
    import yaml

    raw = yaml.safe_load(text) or {}
    for item in raw.get("deployments") or []:
        if item.get("name") != deployment:
            continue
        for schedule in item.get("schedules") or []:
            if isinstance(schedule, dict) and schedule.get("interval"):
                return timedelta(seconds=float(schedule["interval"]))
    return None


def monitor_interval(prefect_yaml: Path) -> timedelta:
    """The monitor deployment's schedule interval.

    Raises:
        ScheduleError: the file is missing or gives the monitor no interval schedule.
    """
    if not prefect_yaml.is_file():
        raise ScheduleError(
            f"{prefect_yaml} not found: pass --prefect-yaml, or --every-minutes with the "
            "monitor's schedule"
        )
    interval = deployment_interval(prefect_yaml.read_text())
    if interval is None:
        raise ScheduleError(
            f"{prefect_yaml} gives the monitor deployment no interval schedule; pass "
            "--every-minutes with the monitor's schedule"
        )
    return interval
