"""Severity and the incident state machine: one alert per incident, escalation, calm-down,
resolution after clean runs, never a re-alert while a problem persists (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring.alerts import dedup_key, stale_alert
from monitoring.incidents import Incident, delivered, severity_of, staleness, step

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("failed", "severity"),
    [
        ((), "none"),
        (("data_drift",), "warning"),
        (("prediction_drift", "data_drift"), "warning"),
        (("data_drift", "performance"), "critical"),
        (("estimated_performance",), "critical"),
        (("data_quality",), "critical"),
        (("regression",), "critical"),
    ],
)
def test_severity(failed: tuple[str, ...], severity: str) -> None:
    assert severity_of(failed) == severity


def run(
    severities: list[str], *, resolve_after: int = 2
) -> list[tuple[str | None, str, str | None]]:
    """(event, event severity, open incident severity) after each run."""
    current: Incident | None = None
    out = []
    for n, severity in enumerate(severities):
        s = step(
            current,
            severity,
            now=T0 + timedelta(hours=n),
            new_id=f"i{n}",
            resolve_after=resolve_after,
        )  # type: ignore[arg-type]
        current = s.incident
        out.append((s.event, s.event_severity, current.severity if current else None))
    return out


def test_a_persisting_warning_opens_once() -> None:
    events = [e for e, _, _ in run(["warning"] * 10)]
    assert events == ["opened"] + [None] * 9


def test_harm_escalates_once_then_calms_down_then_resolves() -> None:
    assert run(["warning", "critical", "critical", "warning", "warning", "none", "none"]) == [
        ("opened", "warning", "warning"),
        ("escalated", "critical", "critical"),
        (None, "none", "critical"),
        (None, "none", "critical"),  # one harmless run: not yet
        ("calmed", "critical", "warning"),  # the harm cleared: people hear it once
        (None, "none", "warning"),
        ("resolved", "critical", None),  # the incident had been critical
    ]


def test_a_flapping_check_does_not_reopen_within_the_hysteresis() -> None:
    events = [e for e, _, _ in run(["critical", "none", "critical", "none", "critical"])]
    assert events == ["opened", None, None, None, None]


def test_a_new_incident_after_a_resolution_alerts_again_with_a_new_id() -> None:
    current = None
    ids = []
    for n, severity in enumerate(["warning", "none", "none", "critical"]):
        s = step(current, severity, now=T0 + timedelta(hours=n), new_id=f"i{n}")  # type: ignore[arg-type]
        current = s.incident
        ids.append((s.event, s.incident_id))
    assert ids == [("opened", "i0"), (None, "i0"), ("resolved", "i0"), ("opened", "i3")]


def test_only_critical_events_are_delivered_unless_warnings_are_asked_for() -> None:
    warning = step(None, "warning", now=T0, new_id="w")
    critical = step(None, "critical", now=T0, new_id="c")
    quiet = step(critical.incident, "critical", now=T0, new_id="x")
    assert not delivered(warning, deliver_warnings=False)
    assert delivered(warning, deliver_warnings=True)
    assert delivered(critical, deliver_warnings=False)
    assert not delivered(quiet, deliver_warnings=True)


def test_an_incident_round_trips_through_json() -> None:
    incident = Incident("i1", "critical", "critical", T0, clean_runs=1)
    assert Incident.from_dict(incident.to_dict()) == incident
    assert Incident.from_dict(None) is None


def test_quality_errors_that_only_describe_a_shift_are_a_warning() -> None:
    assert severity_of(("data_quality",), broken_inputs=False) == "warning"
    assert severity_of(("data_quality", "performance"), broken_inputs=False) == "critical"


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("last_run", "champion", "stale", "reason"),
    [
        (
            NOW - timedelta(minutes=61),
            None,
            True,
            "the newest monitor run is 1 h 1 min old, older than",
        ),
        (
            NOW - timedelta(minutes=59),
            None,
            False,
            "the newest monitor run is 59 min 0 s old, within",
        ),
        (None, NOW - timedelta(hours=3), True, "the champion, never monitored, is 3 h 0 min old"),
        (
            None,
            NOW - timedelta(minutes=5),
            False,
            "the champion, never monitored, is 5 min 0 s old",
        ),
        (None, None, False, "nothing to watch"),
    ],
)
def test_staleness_against_four_intervals(
    last_run: datetime | None, champion: datetime | None, stale: bool, reason: str
) -> None:
    found = staleness(
        last_run, champion_since=champion, now=NOW, interval=timedelta(minutes=15), intervals=4
    )
    assert found.stale is stale and found.limit == timedelta(hours=1)
    assert reason in found.reason, found.reason


def test_stale_alerts_of_one_stop_share_their_dedup_key() -> None:
    first = stale_alert("employment", "1 h old", last_run_id="run-1")
    again = stale_alert("employment", "2 h old", last_run_id="run-1")
    later = stale_alert("employment", "1 h old", last_run_id="run-2")
    assert first.kind == "monitor_stale"
    assert dedup_key(first) == dedup_key(again) != dedup_key(later)
