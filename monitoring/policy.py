"""Decisions as pure functions: should this monitor run alert, should it start a retraining?

The flow builds a :class:`MonitorResult` (with :func:`make_result`), asks :func:`should_alert`
and :func:`should_retrain` with the history of earlier runs, then acts (sends the alert, emits
the event) and stores a :class:`RunRecord` of what it did. Nothing here does I/O or reads the
clock: ``now`` is passed in (use timezone-aware UTC datetimes throughout).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from monitoring.config import Check, PolicyConfig
from monitoring.drift import DriftResult, weighted_drift
from monitoring.performance import PerformanceResult
from monitoring.quality import QualityResult

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
    failed: tuple[Check, ...] = ()
    condition: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)

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
            "condition": self.condition,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class RunRecord:
    """What an earlier monitor run concluded and did (the flow stores these)."""

    time: datetime
    status: Status
    condition: str | None
    alerted: bool = False
    retrained: bool = False


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
) -> MonitorResult:
    """Assemble a run's result and judge each check the policy counts."""
    base = MonitorResult(
        status="ok",
        window_rows=window_rows,
        min_window_rows=min_window_rows,
        drift=drift,
        quality=quality,
        performance=performance,
        estimated_performance=estimated_performance,
        feature_importances=None if feature_importances is None else dict(feature_importances),
    )
    if window_rows < min_window_rows:
        return _replace(base, status="not_enough_data")
    details = _failures(base, policy)
    failed = tuple(details)
    return _replace(
        base,
        status="drift" if failed else "ok",
        failed=failed,
        condition=_condition_key(base, failed) if failed else None,
        details=details,
    )


def _replace(result: MonitorResult, **changes: Any) -> MonitorResult:
    return replace(result, **changes)


def _failures(result: MonitorResult, policy: PolicyConfig) -> dict[Check, str]:
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
    perf = _counted_performance(result, policy)
    if "performance" in checks and perf is not None and perf.drop > policy.max_performance_drop:
        out["performance"] = _perf_sentence(perf, policy)
    est = result.estimated_performance
    if (
        "estimated_performance" in checks
        and est is not None
        and _finite(est.drop)
        and est.drop > policy.max_performance_drop
    ):
        out["estimated_performance"] = _perf_sentence(est, policy)
    return out


def _finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


def _counted_performance(result: MonitorResult, policy: PolicyConfig) -> PerformanceResult | None:
    """The labeled performance if it has enough labeled rows and a defined drop."""
    perf = result.performance
    if perf is None or perf.labeled_rows < policy.min_labeled_rows or not _finite(perf.drop):
        return None
    return perf


def _perf_sentence(perf: PerformanceResult, policy: PolicyConfig) -> str:
    how = "estimated without labels" if perf.estimated else f"on {perf.labeled_rows} labeled rows"
    return (
        f"{perf.metric} {how} is {perf.value:.4f} against {perf.reference_value:.4f} on the "
        f"reference, a drop of {perf.drop:.4f} (tolerated {policy.max_performance_drop:.4f})"
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
    result: MonitorResult, *, time: datetime, alerted: bool, retrained: bool
) -> RunRecord:
    """The history item the flow stores after acting on a result."""
    return RunRecord(time, result.status, result.condition, alerted, retrained)


def should_alert(
    result: MonitorResult, history: Sequence[RunRecord], policy: PolicyConfig, now: datetime
) -> Decision:
    """Alert when a counted check failed, once per condition while it persists.

    A run with the same condition key as an alerted run, with nothing but that same condition
    (or not-enough-data runs) since, does not alert again. ``policy`` and ``now`` are accepted
    for symmetry with :func:`should_retrain`; the checks were judged by :func:`make_result`.
    """
    del policy, now
    if result.status == "not_enough_data":
        return Decision(False, _not_enough(result))
    if not result.failed:
        return Decision(False, "no alert: every counted check passed")
    for record in sorted(history, key=lambda r: r.time, reverse=True):
        if record.status == "not_enough_data":
            continue
        if record.condition != result.condition:
            break
        if record.alerted:
            return Decision(
                False,
                f"no new alert: the same condition ({result.condition}) was alerted at "
                f"{record.time.isoformat()} and persists",
            )
    return Decision(True, "; ".join(result.details[c] for c in result.failed))


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


def should_retrain(
    result: MonitorResult, history: Sequence[RunRecord], policy: PolicyConfig, now: datetime
) -> Decision:
    """Retrain on drift that matters, within the cooldown and the daily limit.

    Drift that matters: data or prediction drift (counted checks) together with a measured
    performance drop, or an estimated one when labels are too few, or ``drift_alone_retrains``;
    or a measured drop alone when ``performance_alone_retrains``. Never on not_enough_data.
    """
    if result.status == "not_enough_data":
        return Decision(False, _not_enough(result))
    failed = set(result.failed)
    drift_checks = [c for c in ("data_drift", "prediction_drift") if c in failed]
    measured = _counted_performance(result, policy) is not None
    perf_bad = "performance" in failed
    est_bad = "estimated_performance" in failed and not measured
    why = [
        result.details[c]
        for c in (*drift_checks, "performance", "estimated_performance")
        if c in failed
    ]
    if drift_checks and (perf_bad or est_bad):
        reason = "drift that hurts: " + "; ".join(why)
    elif drift_checks and policy.drift_alone_retrains:
        reason = "drift (the policy retrains on drift alone): " + "; ".join(why)
    elif perf_bad and policy.performance_alone_retrains:
        reason = "measured performance drop: " + result.details["performance"]
    elif drift_checks:
        perf = result.performance if measured else result.estimated_performance
        tail = (
            f"{perf.metric} drop {perf.drop:.4f} is within the tolerated "
            f"{policy.max_performance_drop:.4f}"
            if perf is not None and _finite(perf.drop)
            else "no performance figure (labels or probabilities) to show it hurts"
        )
        return Decision(False, f"no retraining: drift without harm ({tail}); " + "; ".join(why))
    else:
        return Decision(False, "no retraining: no drift or performance drop that counts")
    retrains = sorted((r.time for r in history if r.retrained and r.time <= now), reverse=True)
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
