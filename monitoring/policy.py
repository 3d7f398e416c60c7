"""Decisions as pure functions: should this monitor run alert, should it start a retraining?

The flow builds a :class:`MonitorResult` (with :func:`make_result`, which judges each check: a
performance drop counts only when it exceeds sampling noise, see :mod:`monitoring.significance`),
asks :func:`should_alert` (severity and incidents, :mod:`monitoring.incidents`) and
:func:`should_retrain` with the history of earlier runs, then acts (sends the alert, emits the
event) and stores a :class:`RunRecord` of what it did. Nothing here does I/O or reads the clock:
``now`` is passed in (use timezone-aware UTC datetimes throughout).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from core.config import RollbackConfig
from core.config_monitoring import Check, PolicyConfig
from core.metrics import higher_is_better
from monitoring import incidents
from monitoring.drift import DriftResult, weighted_drift
from monitoring.incidents import Incident, Severity
from monitoring.performance import PerformanceResult
from monitoring.quality import QualityResult
from monitoring.significance import DropVerdict, MetricNoise, judge_drop
from pipelines.promotion import Difference

Status = Literal["ok", "drift", "not_enough_data"]
_DAY = timedelta(hours=24)
#: Drifted columns named in a reason before "and N more".
_MAX_NAMED = 5


@dataclass(frozen=True)
class Decision:
    """A yes/no answer with a sentence that says why, numbers included."""

    yes: bool
    reason: str

    def __bool__(self) -> bool:
        return self.yes


@dataclass(frozen=True)
class AlertDecision(Decision):
    """``yes`` when the run raises an alert (an incident opened or escalated to ``severity``);
    ``step`` is the incident after this run and the event to tell people (a resolution too)."""

    severity: Severity = "none"
    step: incidents.Step | None = None

    @property
    def event(self) -> str | None:
        return self.step.event if self.step else None

    @property
    def incident(self) -> Incident | None:
        return self.step.incident if self.step else None


@dataclass(frozen=True)
class Predecessor:
    """The serving version minus the version it replaced, on the same labeled rows (positive =
    the new one is better), with its paired bootstrap interval."""

    version: int
    metric: str
    difference: Difference
    #: the replaced version's value of the metric on those rows (None: not measured)
    before_value: float | None = None

    @property
    def worse(self) -> bool:
        """The new version is worse beyond noise (the whole interval below zero)."""
        return self.difference.high < 0


@dataclass(frozen=True)
class MonitorResult:
    """Everything one monitor run found; ``status`` is set by :func:`make_result`.

    ``status`` is ``not_enough_data`` when the window is smaller than ``min_window_rows`` (no
    verdict), ``drift`` when a counted check failed, else ``ok``.
    """

    status: Status
    window_rows: int
    min_window_rows: int
    drift: DriftResult | None = None
    quality: QualityResult | None = None
    performance: PerformanceResult | None = None
    estimated_performance: PerformanceResult | None = None
    feature_importances: Mapping[str, float] | None = None
    #: the serving version against the champion it replaced, on the window's labeled rows
    predecessor: Predecessor | None = None
    failed: tuple[Check, ...] = ()
    condition: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)
    #: how each performance figure was judged (``performance`` / ``estimated_performance``)
    verdicts: Mapping[str, DropVerdict] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        broken = self.quality is None or any(
            i.kind not in incidents.SHIFT_QUALITY_KINDS for i in self.quality.errors
        )
        return incidents.severity_of(self.failed, broken_inputs=broken)

    def judged_drop(self) -> tuple[float, float] | None:
        """(drop, threshold) of the performance figure that was judged: measured, else
        estimated; None when neither was."""
        verdict = self.verdicts.get("performance") or self.verdicts.get("estimated_performance")
        if verdict is None or not _finite(verdict.drop):
            return None
        return verdict.drop, verdict.threshold

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "status": self.status,
            "window_rows": self.window_rows,
            "min_window_rows": self.min_window_rows,
            "drift": None if self.drift is None else self.drift.to_dict(),
            "quality": None if self.quality is None else self.quality.to_dict(),
            "performance": None if self.performance is None else self.performance.to_dict(),
            "estimated_performance": None
            if self.estimated_performance is None
            else self.estimated_performance.to_dict(),
            "failed": list(self.failed),
            "severity": self.severity,
            "condition": self.condition,
            "details": dict(self.details),
        }


#: What became of a retraining a run started (the retrain flow records it).
RetrainOutcome = Literal["promoted", "refused", "deferred", "failed"]


@dataclass(frozen=True)
class RunRecord:
    """What an earlier monitor run concluded and did (the flow stores these)."""

    time: datetime
    status: Status
    condition: str | None
    alerted: bool = False
    retrained: bool = False
    severity: Severity = "none"
    #: the open incident after this run (None: no incident)
    incident: Incident | None = None
    retrain_outcome: RetrainOutcome | None = None
    #: the model version whose window the run judged, and why it retrained (if it did)
    version: int | None = None
    retrain_reason: str = ""
    #: the primary metric's drop the run judged (measured, else estimated), None if none
    drop: float | None = None


def make_result(
    *,
    window_rows: int,
    min_window_rows: int,
    policy: PolicyConfig,
    drift: DriftResult | None = None,
    quality: QualityResult | None = None,
    performance: PerformanceResult | None = None,
    estimated_performance: PerformanceResult | None = None,
    feature_importances: Mapping[str, float] | None = None,
    noise: MetricNoise | None = None,
    predecessor: Predecessor | None = None,
    floor: float | None = None,
) -> MonitorResult:
    """Assemble a run's result and judge each check the policy counts.

    ``noise`` is the primary metric's sampling spread on the version's holdout; without it a
    drop counts by the relative rule alone. ``floor`` is ``promotion.floor``: measured live
    performance below it by more than noise fails the ``floor`` check (harm), whatever the
    version's own reference says.
    """
    base = MonitorResult(
        status="ok",
        window_rows=window_rows,
        min_window_rows=min_window_rows,
        drift=drift,
        quality=quality,
        performance=performance,
        estimated_performance=estimated_performance,
        feature_importances=None if feature_importances is None else dict(feature_importances),
        predecessor=predecessor,
    )
    if window_rows < min_window_rows:
        return _replace(base, status="not_enough_data")
    verdicts = _verdicts(base, policy, noise, floor)
    details = _failures(base, policy, verdicts, floor)
    failed = tuple(details)
    return _replace(
        base,
        status="drift" if failed else "ok",
        failed=failed,
        condition=_condition_key(base, failed) if failed else None,
        details=details,
        verdicts=verdicts,
    )


def _replace(result: MonitorResult, **changes: Any) -> MonitorResult:
    return replace(result, **changes)


def floor_gap(perf: PerformanceResult, floor: float) -> float:
    """How far a measured value is below the floor (positive = below), whatever the metric's
    direction."""
    return floor - perf.value if higher_is_better(perf.metric) else perf.value - floor


def _verdicts(
    result: MonitorResult,
    policy: PolicyConfig,
    noise: MetricNoise | None,
    floor: float | None = None,
) -> dict[str, DropVerdict]:
    """Each performance figure's drop judged against noise for its number of rows, and the
    measured value's distance below the floor (``floor``) by the same rule."""
    out: dict[str, DropVerdict] = {}
    measured = _counted_performance(result, policy)
    if measured is not None and floor is not None and _finite(measured.value):
        out["floor"] = judge_drop(
            floor_gap(measured, floor),
            reference_value=floor,
            rows=max(measured.labeled_rows, 1),
            noise=noise if noise is not None and noise.metric == measured.metric else None,
            alpha=policy.drop_alpha,
            min_relative_drop=policy.min_relative_drop,
        )
    estimated = result.estimated_performance
    if estimated is not None and not _estimate_judges(estimated, measured):
        estimated = None
    for name, perf in (("performance", measured), ("estimated_performance", estimated)):
        if perf is None:
            continue
        rows = perf.labeled_rows if not perf.estimated else result.window_rows
        matching = noise if noise is not None and noise.metric == perf.metric else None
        out[name] = judge_drop(
            perf.drop,
            reference_value=perf.reference_value,
            rows=max(rows, 1),
            noise=matching,
            alpha=policy.drop_alpha,
            min_relative_drop=policy.min_relative_drop,
            shrink=perf.unlabeled_share**0.5 if perf.estimated else 1.0,
        )
    return out


def _failures(
    result: MonitorResult,
    policy: PolicyConfig,
    verdicts: Mapping[str, DropVerdict],
    floor: float | None = None,
) -> dict[Check, str]:
    """Counted checks that failed, each with a sentence giving its numbers."""
    out: dict[Check, str] = {}
    checks = set(policy.checks)
    drift = result.drift
    if "data_drift" in checks and drift is not None:
        failed, sentence = _data_drift(drift, policy, result.feature_importances)
        if failed:
            out["data_drift"] = sentence
    if "prediction_drift" in checks and drift is not None and drift.prediction is not None:
        p = drift.prediction
        if p.drifted:
            out["prediction_drift"] = f"prediction drift in {p.column!r} ({_describe(p)})"
    if "data_quality" in checks and result.quality is not None and not result.quality.passed:
        errors = result.quality.errors
        listed = "; ".join(i.message for i in errors[:_MAX_NAMED])
        more = f"; and {len(errors) - _MAX_NAMED} more" if len(errors) > _MAX_NAMED else ""
        out["data_quality"] = f"{len(errors)} data quality error(s): {listed}{more}"
    before = result.predecessor
    if (
        "regression" in checks
        and before is not None
        and before.worse
        and before.difference.rows >= policy.min_labeled_rows
    ):
        out["regression"] = (
            f"the promoted version scores worse than v{before.version}, the champion it "
            f"replaced, on the same labeled rows: {before.metric} "
            f"{before.difference.text().replace('improvement', 'difference')}"
        )
    short = verdicts.get("floor")
    perf = result.performance
    if "floor" in checks and floor is not None and short is not None and short.significant:
        assert perf is not None  # the floor is judged on the measured figure only
        out["floor"] = (
            f"{perf.metric} on {perf.labeled_rows} labeled rows is {perf.value:.4f}, missing "
            f"promotion.floor {floor:g} by {short.drop:.4f}, which {short.reason}"
        )
    for check, perf in (
        ("performance", result.performance),
        ("estimated_performance", result.estimated_performance),
    ):
        verdict = verdicts.get(check)
        if check in checks and perf is not None and verdict is not None and verdict.significant:
            out[check] = _perf_sentence(perf, verdict)  # type: ignore[index]
    return out


def _finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


#: The estimate judges a window when labels are too few to measure, or when at least this share
#: of the window's own rows is unlabeled: with delayed labels the measured figure describes older
#: rows, and the estimate is the only view of the newest ones.
ESTIMATE_JUDGES_SHARE = 0.5


def _estimate_judges(estimated: PerformanceResult, measured: PerformanceResult | None) -> bool:
    if estimated.unlabeled_share <= 0:
        return False
    return measured is None or estimated.unlabeled_share >= ESTIMATE_JUDGES_SHARE


def _counted_performance(result: MonitorResult, policy: PolicyConfig) -> PerformanceResult | None:
    """The labeled performance if it has enough labeled rows and a defined drop."""
    perf = result.performance
    if perf is None or perf.labeled_rows < policy.min_labeled_rows or not _finite(perf.drop):
        return None
    return perf


def _perf_sentence(perf: PerformanceResult, verdict: DropVerdict) -> str:
    if not perf.estimated:
        how = f"on {perf.labeled_rows} labeled rows"
    elif perf.labeled_rows:
        how = f"estimated ({perf.labeled_rows} labeled rows measured, the rest without labels)"
    else:
        how = "estimated without labels"
    return (
        f"{perf.metric} {how} is {perf.value:.4f} against {perf.reference_value:.4f} on the "
        f"reference, a drop of {perf.drop:.4f}, which {verdict.reason}"
    )


def _describe(col: Any) -> str:
    if col.method == "driftloop":
        return (
            f"adjusted p={col.score:.3g} < {col.threshold:g}, effect {col.effect:.3f} >= "
            f"{col.effect_threshold:g}"
        )
    return f"{col.method} score {col.score:.4g}, threshold {col.threshold:g}"


def _data_drift(
    drift: DriftResult, policy: PolicyConfig, importances: Mapping[str, float] | None
) -> tuple[bool, str]:
    drifted = [c for c in drift.columns if c.drifted]
    named = ", ".join(f"{c.column} ({_describe(c)})" for c in drifted[:_MAX_NAMED])
    if len(drifted) > _MAX_NAMED:
        named += f", and {len(drifted) - _MAX_NAMED} more"
    n, total = len(drifted), len(drift.columns)
    if policy.drift_rule == "weighted" and importances:
        share = weighted_drift(drift, importances)
        return share >= policy.weighted_drift, (
            f"drifted features carry {share:.1%} of the model's feature importance "
            f"(threshold {policy.weighted_drift:.1%}): {named}"
        )
    if policy.drift_rule == "share":
        return drift.drift_share >= policy.drift_share, (
            f"data drift in {n} of {total} features ({drift.drift_share:.1%}, threshold "
            f"{policy.drift_share:.1%}): {named}"
        )
    return drift.dataset_drift, f"data drift in {n} of {total} features: {named}"


def _condition_key(result: MonitorResult, failed: Sequence[Check]) -> str:
    """Identifies "the same condition": the failed checks and what failed in them."""
    parts = []
    for check in sorted(failed):
        if check == "data_drift" and result.drift is not None:
            parts.append(f"data_drift[{','.join(sorted(result.drift.drifted_features))}]")
        elif check == "data_quality" and result.quality is not None:
            issues = sorted({f"{i.kind}:{i.column}" for i in result.quality.errors})
            parts.append(f"data_quality[{','.join(issues)}]")
        else:
            parts.append(check)
    return "|".join(parts)


def record_of(
    result: MonitorResult,
    *,
    time: datetime,
    alerted: bool,
    retrained: bool,
    incident: Incident | None = None,
) -> RunRecord:
    """The history item the flow stores after acting on a result."""
    return RunRecord(
        time, result.status, result.condition, alerted, retrained, result.severity, incident
    )


def current_incident(history: Sequence[RunRecord], now: datetime) -> Incident | None:
    """The incident open after the newest earlier run with a verdict (None: none open)."""
    for record in sorted(history, key=lambda r: r.time, reverse=True):
        if record.time > now or record.status == "not_enough_data":
            continue
        return record.incident
    return None


def should_alert(
    result: MonitorResult,
    history: Sequence[RunRecord],
    policy: PolicyConfig,
    now: datetime,
    *,
    new_incident_id: str = "incident",
) -> AlertDecision:
    """Alert once per incident: when it opens, and when it escalates from drift to harm.

    The run's severity (:func:`monitoring.incidents.severity_of`) advances the open incident
    (:func:`monitoring.incidents.step`); an incident that persists never alerts again, whatever
    columns drift from one window to the next. The decision's ``step`` also carries the events
    that are not alerts (an incident calmed down or resolved) so the flow can tell people.
    """
    if result.status == "not_enough_data":
        return AlertDecision(False, _not_enough(result))
    open_incident = current_incident(history, now)
    severity = result.severity
    step = incidents.step(
        open_incident,
        severity,
        now=now,
        new_id=new_incident_id,
        resolve_after=policy.resolve_after_runs,
    )
    what = "; ".join(result.details[c] for c in result.failed)
    if step.event in ("opened", "escalated"):
        label = "harm" if severity == "critical" else "drift without harm"
        return AlertDecision(True, f"{severity} ({label}): {what}", severity, step)
    if step.event == "resolved":
        reason = f"no alert: incident {step.incident_id} resolved after {policy.resolve_after_runs} clean run(s)"
        return AlertDecision(False, reason, "none", step)
    if step.event == "calmed":
        reason = (
            f"no alert: the harm of incident {step.incident_id} cleared; drift remains ({what})"
        )
        return AlertDecision(False, reason, "warning", step)
    if not result.failed:
        return AlertDecision(False, "no alert: every counted check passed", "none", step)
    since = open_incident.opened_at.isoformat() if open_incident else "earlier"
    reason = (
        f"no new alert: incident {step.incident_id} ({step.incident.severity if step.incident else severity}) "
        f"open since {since} persists: {what}"
    )
    return AlertDecision(False, reason, severity, step)


def _not_enough(result: MonitorResult) -> str:
    return (
        f"not enough data: the window has {result.window_rows} rows, "
        f"{result.min_window_rows} are needed for a verdict"
    )


def _unresolved(history: Sequence[RunRecord], now: datetime) -> int:
    """Retrainings since the last run that found nothing wrong (the problem never went away)."""
    count = 0
    for record in sorted((r for r in history if r.time <= now), key=lambda r: r.time, reverse=True):
        if record.status == "ok" and record.condition is None:
            break
        count += record.retrained
    return count


#: How a follow-up retraining's reason starts (the retrain flow recognises it by this).
FOLLOW_UP = "follow-up"


@dataclass(frozen=True)
class Refresh:
    """What a retrained champion learned from, for the follow-up retraining: ``trained_rows``
    labeled live rows from ``since`` on; ``available_rows`` are labeled since then now.
    ``done`` when the champion is itself a follow-up or one was tried for it already (a
    follow-up is tried once per champion); ``version`` is the champion's."""

    since: datetime
    trained_rows: int
    available_rows: int
    done: bool = False
    version: int | None = None


def refresh_reason(
    refresh: Refresh | None, policy: PolicyConfig, *, max_rows: int, min_rows: int = 0
) -> str | None:
    """Why a follow-up retraining is due, or None (pure).

    Due once ``refresh_factor`` times as many labeled rows arrived since the champion's window
    started as it learned from, and at least ``min_rows`` (a monitor window: what a fair
    judgement of the follow-up needs); never for a follow-up itself or once tried.
    """
    if refresh is None or refresh.done or policy.refresh_factor <= 0:
        return None
    if refresh.trained_rows >= max_rows:
        return None
    needed = min(max_rows, max(min_rows, int(policy.refresh_factor * refresh.trained_rows)))
    if refresh.available_rows < needed:
        return None
    return (
        f"{FOLLOW_UP}: the retrained champion learned from {refresh.trained_rows} live rows from "
        f"{refresh.since.isoformat()} on; {refresh.available_rows} are labeled since then "
        f"(refresh_factor {policy.refresh_factor:g})"
    )


def should_retrain(
    result: MonitorResult,
    history: Sequence[RunRecord],
    policy: PolicyConfig,
    now: datetime,
    *,
    incident: Incident | None = None,
    refresh: Refresh | None = None,
    max_live_rows: int = 50_000,
    window_rows: int = 5000,
    labels_since_refusal: int | None = None,
) -> Decision:
    """Retrain on harm a new model may fix, once or twice per incident, within the limits.

    Harm: data or prediction drift together with a significant measured performance drop, or
    an estimated one when labels are too few or most of the window is unlabeled, or
    ``drift_alone_retrains``; or a measured drop
    alone when ``performance_alone_retrains``. ``incident`` is the incident after this run
    (``AlertDecision.incident``): within one incident at most ``max_retrains_per_incident``
    retrainings start, and after a refused challenger none until the harm grew beyond noise and
    at least half a monitor window of labels arrived since it (``labels_since_refusal``, counted
    by the caller: a challenger built from mostly the same rows would give the same answer;
    retraining did not help at that level; a retraining deferred for lack of rows since the change does not count). Without harm, a
    follow-up ``refresh`` may be due. Cooldown (backed off while the problem persists) and the
    daily limit apply to all. Never on not_enough_data.
    """
    if result.status == "not_enough_data":
        return Decision(False, _not_enough(result))
    reason = _harm_reason(result, policy)
    if reason is None:
        follow_up = refresh_reason(refresh, policy, max_rows=max_live_rows, min_rows=window_rows)
        if follow_up is None:
            return Decision(False, _no_harm(result, policy))
        reason = follow_up
    elif incident is not None:
        blocked = _incident_budget(
            history,
            incident,
            policy,
            now,
            result,
            labels_since_refusal=labels_since_refusal,
            window_rows=window_rows,
        )
        if blocked is not None:
            return Decision(False, f"{blocked}; {reason}")
    started = [
        r for r in history if r.retrained and r.time <= now and r.retrain_outcome != "deferred"
    ]
    retrains = sorted((r.time for r in started), reverse=True)
    cooldown = policy.cooldown_hours * policy.retry_backoff ** max(0, _unresolved(history, now) - 1)
    if retrains and now - retrains[0] < timedelta(hours=cooldown):
        hours = (now - retrains[0]).total_seconds() / 3600
        backoff = "" if cooldown == policy.cooldown_hours else " (backed off: the problem persists)"
        return Decision(
            False,
            f"no retraining: cooldown, the last one was {hours:.1f} h ago "
            f"(at {retrains[0].isoformat()}), {cooldown:g} h required{backoff}; {reason}",
        )
    today = sum(1 for t in retrains if now - t < _DAY)
    if today >= policy.max_retrains_per_day:
        return Decision(
            False,
            f"no retraining: {today} in the last 24 h reached the limit of "
            f"{policy.max_retrains_per_day}; {reason}",
        )
    return Decision(True, reason)


def _harm_reason(result: MonitorResult, policy: PolicyConfig) -> str | None:
    failed = set(result.failed)
    drift_checks = [c for c in ("data_drift", "prediction_drift") if c in failed]
    perf_bad = "performance" in failed
    # the estimate has a verdict only when it judges (_estimate_judges)
    est_bad = "estimated_performance" in failed
    why = [
        result.details[c]
        for c in (*drift_checks, "performance", "estimated_performance")
        if c in failed
    ]
    if drift_checks and (perf_bad or est_bad):
        return "drift that hurts: " + "; ".join(why)
    if drift_checks and policy.drift_alone_retrains:
        return "drift (the policy retrains on drift alone): " + "; ".join(why)
    if perf_bad and policy.performance_alone_retrains:
        return "measured performance drop: " + result.details["performance"]
    return None


def _no_harm(result: MonitorResult, policy: PolicyConfig) -> str:
    failed = set(result.failed)
    drift_checks = [c for c in ("data_drift", "prediction_drift") if c in failed]
    if not drift_checks:
        return "no retraining: no drift or performance drop that counts"
    measured = _counted_performance(result, policy) is not None
    key = "performance" if measured else "estimated_performance"
    verdict = result.verdicts.get(key)
    perf = result.performance if measured else result.estimated_performance
    if perf is not None and verdict is not None and _finite(perf.drop):
        tail = f"{perf.metric} drop {perf.drop:.4f} {verdict.reason}"
    else:
        tail = "no performance figure (labels or probabilities) to show it hurts"
    why = "; ".join(result.details[c] for c in drift_checks)
    return f"no retraining: drift without harm ({tail}); {why}"


def _worse_since(record: RunRecord, result: MonitorResult) -> bool:
    """The harm grew beyond noise since the run ``record`` (a refused retraining's): the
    drop is now larger than then by more than the current threshold."""
    judged = result.judged_drop()
    if judged is None or record.drop is None or not _finite(record.drop):
        return False
    drop, threshold = judged
    return drop - record.drop > threshold


def _incident_budget(
    history: Sequence[RunRecord],
    incident: Incident,
    policy: PolicyConfig,
    now: datetime,
    result: MonitorResult,
    *,
    labels_since_refusal: int | None = None,
    window_rows: int = 5000,
) -> str | None:
    """Why the incident may start no more retrainings, or None."""
    attempts = [
        r
        for r in history
        if r.retrained
        and r.time <= now
        and r.incident is not None
        and r.incident.id == incident.id
        and r.retrain_outcome != "deferred"
    ]
    refused = [r for r in attempts if r.retrain_outcome == "refused"]
    if refused and not _worse_since(refused[-1], result):
        return (
            f"no retraining: in incident {incident.id} the challenger trained at "
            f"{refused[-1].time.isoformat()} did not beat the champion (retraining did not "
            "help); none more until the incident resolves or the harm grows beyond noise"
        )
    needed = max(1, window_rows // 2)
    if refused and labels_since_refusal is not None and labels_since_refusal < needed:
        return (
            f"no retraining: in incident {incident.id} the challenger trained at "
            f"{refused[-1].time.isoformat()} did not beat the champion, and only "
            f"{labels_since_refusal} labels arrived since; another challenger waits for "
            f"{needed} (half a monitor window) so that it can learn something the last one "
            "could not"
        )
    if len(attempts) >= policy.max_retrains_per_incident:
        return (
            f"no retraining: incident {incident.id} already started {len(attempts)} "
            f"(max_retrains_per_incident {policy.max_retrains_per_incident})"
        )
    return None


def should_roll_back(
    predecessor: Predecessor | None,
    rule: RollbackConfig,
    *,
    version: int | None,
    champion: int | None,
    promoted_at: datetime | None,
    labeled_since_promotion: int,
    now: datetime,
    min_relative_drop: float = 0.0,
    predecessor_rolled_back: bool = False,
) -> Decision:
    """Move `champion` back to the version it replaced? (pure)

    Yes when ``version`` (the version whose labeled live rows were judged) is still the
    champion, was promoted within ``rule.within_hours`` (and has served at most
    ``rule.within_rows`` labeled rows since), and on at least ``rule.min_labeled_rows`` of
    those rows scores worse than the version it replaced by more than noise: the whole paired
    bootstrap interval of the difference below zero, and the difference at least
    ``min_relative_drop`` of the replaced version's value (the significance rule's "big
    enough", so a huge window does not roll back a trivial difference). Never back to a
    version that was itself rolled back (``predecessor_rolled_back``).
    """
    if not rule.enabled:
        return Decision(False, "no rollback: promotion.rollback.enabled is false")
    if version is None or predecessor is None:
        return Decision(
            False,
            "no rollback: no comparison with a champion this version replaced "
            "(none, or too few labeled rows)",
        )
    if version != champion:
        return Decision(False, f"no rollback: v{version} is no longer the champion (v{champion})")
    if predecessor_rolled_back:
        return Decision(
            False,
            f"no rollback: v{predecessor.version}, the champion v{version} replaced, was itself "
            "rolled back",
        )
    if promoted_at is not None and rule.within_hours is not None:
        hours = max(0.0, (now - promoted_at).total_seconds() / 3600)
        if hours > rule.within_hours:
            return Decision(
                False,
                f"no rollback: v{version} was promoted {hours:.1f} h ago, after the "
                f"{rule.within_hours:g} h of promotion.rollback.within_hours",
            )
    if rule.within_rows is not None and labeled_since_promotion > rule.within_rows:
        return Decision(
            False,
            f"no rollback: v{version} has served {labeled_since_promotion} labeled rows since "
            f"its promotion, beyond promotion.rollback.within_rows {rule.within_rows}",
        )
    difference = predecessor.difference
    compared = (
        f"v{version} against v{predecessor.version}, the champion it replaced, on the same "
        f"{difference.rows} labeled live rows: {predecessor.metric} "
        f"{difference.text().replace('improvement', 'difference')}"
    )
    if difference.rows < rule.min_labeled_rows:
        return Decision(
            False,
            f"no rollback yet: {compared}; {rule.min_labeled_rows} rows needed "
            "(promotion.rollback.min_labeled_rows)",
        )
    if not predecessor.worse:
        return Decision(False, f"no rollback: not worse beyond noise: {compared}")
    needed = min_relative_drop * abs(predecessor.before_value or 0.0)
    if -difference.value < needed:
        return Decision(
            False,
            f"no rollback: worse beyond noise but by less than {min_relative_drop:.1%} of "
            f"v{predecessor.version}'s value ({needed:.4g}): {compared}",
        )
    return Decision(True, f"worse than the champion it replaced: {compared}")
