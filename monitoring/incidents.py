"""Severity and incidents: what a person is told about, and how often (pure).

Drift that does not hurt is a ``warning``: recorded, on dashboards and gauges, delivered only if
configured. Harm (a significant measured or estimated performance drop, data quality errors, a
promoted model worse than the one it replaced, live performance below ``promotion.floor``) is
``critical``. A run's problems belong to one
*incident* while they persist: the incident opens once, escalates when harm appears, calms down
when harm clears but drift remains, and resolves after ``resolve_after`` clean runs in a row;
only those transitions are alert events, so an incident that persists never re-alerts, whatever
columns drift from one window to the next.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

Severity = Literal["none", "warning", "critical"]
Event = Literal["opened", "escalated", "calmed", "resolved"]
_RANK = {"none": 0, "warning": 1, "critical": 2}
#: Checks whose failure is harm (critical); other failed checks (drift) are warnings.
HARM_CHECKS = frozenset(
    {"performance", "estimated_performance", "data_quality", "regression", "floor"}
)
#: Data quality errors that describe a shift (values beyond the training range, categories
#: never seen) rather than broken inputs: a warning on their own, like drift.
SHIFT_QUALITY_KINDS = frozenset({"out_of_range", "new_categories"})


def severity_of(failed: Iterable[str], *, broken_inputs: bool = True) -> Severity:
    """``critical`` when a harm check failed, ``warning`` when only drift did, else ``none``.

    ``broken_inputs`` False says the failed data quality check found only shifts
    (:data:`SHIFT_QUALITY_KINDS`): then it counts as a warning.
    """
    failed = set(failed)
    harm = HARM_CHECKS if broken_inputs else HARM_CHECKS - {"data_quality"}
    if failed & harm:
        return "critical"
    return "warning" if failed else "none"


@dataclass(frozen=True)
class Incident:
    """An open incident as stored with each run: its id, current severity, the worst it has
    been, when it opened, and the clean runs (at each level) counted towards calming down or
    resolving."""

    id: str
    severity: Severity
    worst: Severity
    opened_at: datetime
    clean_runs: int = 0
    harmless_runs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "opened_at": self.opened_at.isoformat()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Incident | None:
        if not raw:
            return None
        opened = raw["opened_at"]
        return cls(
            id=str(raw["id"]),
            severity=raw["severity"],
            worst=raw.get("worst", raw["severity"]),
            opened_at=datetime.fromisoformat(opened) if isinstance(opened, str) else opened,
            clean_runs=int(raw.get("clean_runs", 0)),
            harmless_runs=int(raw.get("harmless_runs", 0)),
        )


@dataclass(frozen=True)
class Step:
    """The incident after a run and the alert event the run caused (None: nothing to tell)."""

    incident: Incident | None
    event: Event | None
    #: severity of the event: what an alert about it is (critical for escalations and for the
    #: calm-down or resolution of an incident that was critical)
    event_severity: Severity
    #: the incident the event is about (for a resolution: the one that just closed)
    incident_id: str | None


def step(
    current: Incident | None,
    severity: Severity,
    *,
    now: datetime,
    new_id: str,
    resolve_after: int = 2,
) -> Step:
    """Advance the incident by one run that found ``severity`` (pure).

    Runs without a verdict (not enough data) should not be passed: they change nothing.
    """
    if current is None:
        if severity == "none":
            return Step(None, None, "none", None)
        opened = Incident(new_id, severity, severity, now)
        return Step(opened, "opened", severity, new_id)
    if _RANK[severity] > _RANK[current.severity]:
        raised = replace(
            current,
            severity=severity,
            worst=max(current.worst, severity, key=_RANK.__getitem__),
            clean_runs=0,
            harmless_runs=0,
        )
        return Step(raised, "escalated", severity, current.id)
    if severity == current.severity:
        return Step(replace(current, clean_runs=0, harmless_runs=0), None, "none", current.id)
    # a better run than the incident's level
    clean = current.clean_runs + 1 if severity == "none" else 0
    harmless = current.harmless_runs + 1
    if severity == "none" and clean >= resolve_after:
        return Step(None, "resolved", current.worst, current.id)
    if current.severity == "critical" and harmless >= resolve_after:
        calmed = replace(current, severity="warning", clean_runs=clean, harmless_runs=0)
        return Step(calmed, "calmed", "critical", current.id)
    waiting = replace(current, clean_runs=clean, harmless_runs=harmless)
    return Step(waiting, None, "none", current.id)


def delivered(step_: Step, *, deliver_warnings: bool) -> bool:
    """Whether the run's event is sent to webhooks and notification blocks."""
    if step_.event is None:
        return False
    return step_.event_severity == "critical" or deliver_warnings


@dataclass(frozen=True)
class Staleness:
    """Whether the monitor stopped running: the age of its newest run (or, before its first,
    of the champion) against the limit, and why."""

    stale: bool
    age: timedelta | None
    limit: timedelta
    reason: str


def staleness(
    last_run_at: datetime | None,
    *,
    champion_since: datetime | None,
    now: datetime,
    interval: timedelta,
    intervals: float,
) -> Staleness:
    """Whether the newest monitor run is older than ``intervals`` schedule ``interval`` s (pure).

    Before the first run the champion's registration time counts instead (a champion nobody
    monitors is as bad as a monitor that stopped); with neither there is nothing to watch.
    """
    limit = interval * intervals
    since = last_run_at or champion_since
    if since is None:
        return Staleness(False, None, limit, "no champion and no monitor run: nothing to watch")
    age = now - since
    what = "the newest monitor run" if last_run_at else "the champion, never monitored,"
    stale = age > limit
    verdict = "older than" if stale else "within"
    reason = (
        f"{what} is {_human(age)} old, {verdict} {intervals:g} schedule intervals of "
        f"{_human(interval)} ({_human(limit)})"
    )
    return Staleness(stale, age, limit, reason)


def _human(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
