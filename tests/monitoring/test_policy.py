"""Alert and retraining decisions, both ways: drift that hurts, severity and incidents, noise,
cooldown, daily limit, the retraining budget of an incident, the follow-up after a change."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from core.config_monitoring import PolicyConfig
from monitoring.drift import ColumnDrift, DriftResult
from monitoring.incidents import Incident
from monitoring.performance import PerformanceResult
from monitoring.policy import (
    Refresh,
    RunRecord,
    make_result,
    record_of,
    should_alert,
    should_retrain,
)
from monitoring.quality import QualityIssue, QualityResult
from monitoring.significance import MetricNoise

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
POLICY = PolicyConfig()


def drift(*drifted: str, features: tuple[str, ...] = ("age", "job", "edu", "sex")) -> DriftResult:
    columns = tuple(
        ColumnDrift(
            f, "numeric", "driftloop", 0.01, 0.001 if f in drifted else 0.8, f in drifted, 0.3, 0.1
        )
        for f in features
    )
    return DriftResult(
        columns=columns,
        drift_share=len(drifted) / len(features),
        drifted_features=tuple(drifted),
        dataset_drift=bool(drifted),
        prediction=None,
        n_reference=5000,
        n_current=1000,
    )


def perf(
    drop: float, *, labeled: int = 1000, estimated: bool = False, rows: int = 1000
) -> PerformanceResult:
    """A figure on ``rows`` rows; an estimate has ``labeled`` of them measured (default none)."""
    if estimated:
        labeled = 0 if labeled == 1000 else labeled
    return PerformanceResult(
        "roc_auc", 0.85 - drop, 0.85, drop, labeled, estimated, rows=rows if estimated else 0
    )


#: roc_auc scatters by 0.01 on 1,000 rows of a 10,000-row holdout: on 1,000 window rows a drop
#: must pass ~0.024 (alpha 0.01), on 100,000 rows ~0.008
NOISE = MetricNoise("roc_auc", rows=1000, std=0.01, reference_rows=10_000)


def result(policy: PolicyConfig = POLICY, rows: int = 1000, noise=NOISE, **parts):
    return make_result(window_rows=rows, min_window_rows=500, policy=policy, noise=noise, **parts)


def incident(severity: str = "critical", hours_ago: float = 10, name: str = "i1") -> Incident:
    return Incident(name, severity, severity, NOW - timedelta(hours=hours_ago))  # type: ignore[arg-type]


def alerted(
    condition: str | None,
    hours_ago: float,
    *,
    retrained: bool = False,
    status: str = "drift",
    severity: str = "critical",
    outcome: str | None = None,
    open_incident: Incident | None = None,
) -> RunRecord:
    return RunRecord(
        NOW - timedelta(hours=hours_ago),
        status,  # type: ignore[arg-type]
        condition,
        alerted=True,
        retrained=retrained,
        severity=severity,  # type: ignore[arg-type]
        incident=open_incident,
        retrain_outcome=outcome,  # type: ignore[arg-type]
    )


# ---- status ---------------------------------------------------------------------------------


def test_small_window_is_not_enough_data_and_never_acts() -> None:
    r = result(rows=499, drift=drift("age"), performance=perf(0.2))
    assert r.status == "not_enough_data" and r.failed == ()
    for decide in (should_alert, should_retrain):
        d = decide(r, [], POLICY, NOW)
        assert not d and "499 rows" in d.reason and "500" in d.reason


def test_clean_window_is_ok_and_quiet() -> None:
    r = result(drift=drift(), performance=perf(0.0))
    assert r.status == "ok"
    assert not should_alert(r, [], POLICY, NOW)
    assert not should_retrain(r, [], POLICY, NOW)


# ---- alerts: severity and incidents ---------------------------------------------------------


def test_drift_without_harm_is_a_warning_with_the_numbers_in_the_reason() -> None:
    r = result(drift=drift("age"))
    d = should_alert(r, [], POLICY, NOW, new_incident_id="i1")
    assert d and d.severity == "warning" and d.event == "opened" and d.incident.id == "i1"
    assert "1 of 4 features" in d.reason and "age" in d.reason and "0.001" in d.reason


def test_harm_is_critical() -> None:
    r = result(drift=drift("age"), performance=perf(0.05))
    d = should_alert(r, [], POLICY, NOW)
    assert d and d.severity == "critical" and "harm" in d.reason


def test_an_incident_that_persists_does_not_alert_again_even_when_its_columns_change() -> None:
    before = result(drift=drift("age"))
    opened = should_alert(before, [], POLICY, NOW - timedelta(hours=2), new_incident_id="i1")
    history = [
        record_of(
            before,
            time=NOW - timedelta(hours=2),
            alerted=True,
            retrained=False,
            incident=opened.incident,
        )
    ]
    now = result(drift=drift("age", "job"))
    assert before.condition != now.condition
    d = should_alert(now, history, POLICY, NOW, new_incident_id="i2")
    assert not d and "persists" in d.reason and d.incident.id == "i1"


def test_harm_escalates_an_open_warning_incident_once() -> None:
    warned = alerted("data_drift[age]", 3, severity="warning", open_incident=incident("warning"))
    r = result(drift=drift("age"), performance=perf(0.05))
    d = should_alert(r, [warned], POLICY, NOW)
    assert d and d.event == "escalated" and d.incident.severity == "critical"
    again = RunRecord(
        NOW - timedelta(hours=1), "drift", r.condition, severity="critical", incident=d.incident
    )
    assert not should_alert(r, [warned, again], POLICY, NOW)


def test_an_incident_resolves_after_clean_runs_and_then_a_new_one_alerts() -> None:
    policy = PolicyConfig(resolve_after_runs=2)
    open_ = incident("critical")
    history = [alerted("performance", 5, open_incident=open_)]
    clean = result(policy, drift=drift(), performance=perf(0.0))
    first = should_alert(clean, history, policy, NOW - timedelta(hours=2))
    assert not first and first.event is None and first.incident is not None  # one clean run
    history.append(
        record_of(
            clean,
            time=NOW - timedelta(hours=2),
            alerted=False,
            retrained=False,
            incident=first.incident,
        )
    )
    second = should_alert(clean, history, policy, NOW - timedelta(hours=1))
    assert second.event == "resolved" and second.incident is None and "resolved" in second.reason
    history.append(
        record_of(
            clean, time=NOW - timedelta(hours=1), alerted=False, retrained=False, incident=None
        )
    )
    assert should_alert(result(policy, drift=drift("age")), history, policy, NOW)


def test_not_enough_data_runs_do_not_break_an_open_incident() -> None:
    r = result(drift=drift("age"))
    history = [
        alerted(r.condition, 5, severity="warning", open_incident=incident("warning")),
        RunRecord(NOW - timedelta(hours=1), "not_enough_data", None),
    ]
    assert not should_alert(r, history, POLICY, NOW)


def test_checks_that_do_not_count_do_not_alert() -> None:
    policy = PolicyConfig(checks=("performance",))
    r = result(policy, drift=drift("age", "job"))
    assert r.status == "ok" and not should_alert(r, [], policy, NOW)


def test_quality_errors_are_critical() -> None:
    issue = QualityIssue("missing_column", "age", "error", 1.0, None, "feature 'age' is missing")
    r = result(quality=QualityResult((), (issue,), False, 1000))
    d = should_alert(r, [], POLICY, NOW)
    assert d and d.severity == "critical" and "feature 'age' is missing" in d.reason
    assert r.condition == "data_quality[missing_column:age]"


# ---- drops against noise ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "rows", "counts"),
    [(0.02, 1000, False), (0.05, 1000, True), (0.02, 100_000, True), (0.008, 1_000_000, False)],
)
def test_a_drop_counts_only_beyond_noise_for_its_rows_and_the_relative_floor(
    drop: float, rows: int, counts: bool
) -> None:
    r = result(rows=rows, performance=perf(drop, labeled=rows))
    assert ("performance" in r.failed) is counts, r.verdicts["performance"].reason
    # 0.008 on 1,000,000 rows is beyond noise (0.0074), but below 1% of the reference (0.0085)


def test_without_a_noise_measurement_only_the_relative_rule_applies() -> None:
    r = result(noise=None, performance=perf(0.01))
    assert "performance" in r.failed and "only the 1.0% rule" in r.details["performance"]


@pytest.mark.parametrize(
    ("rule", "kwargs", "importances", "fails"),
    [
        ("share", {"drift_share": 0.5}, None, False),  # 1 of 4 < 50%
        ("share", {"drift_share": 0.25}, None, True),
        ("weighted", {"weighted_drift": 0.5}, {"age": 6, "job": 1, "edu": 1, "sex": 2}, True),
        ("weighted", {"weighted_drift": 0.5}, {"age": 1, "job": 6, "edu": 1, "sex": 2}, False),
    ],
)
def test_drift_rules(rule: str, kwargs: dict, importances: dict | None, fails: bool) -> None:
    policy = PolicyConfig(drift_rule=rule, **kwargs)
    r = result(policy, drift=drift("age"), feature_importances=importances)
    assert ("data_drift" in r.failed) is fails


# ---- retraining -----------------------------------------------------------------------------


def test_drift_that_hurts_retrains() -> None:
    r = result(drift=drift("age"), performance=perf(0.05))
    d = should_retrain(r, [], POLICY, NOW)
    assert d and "drift that hurts" in d.reason and "0.0500" in d.reason


def test_drift_without_harm_does_not_retrain() -> None:
    r = result(drift=drift("age"), performance=perf(0.01))
    d = should_retrain(r, [], POLICY, NOW)
    assert not d and "drift without harm" in d.reason and "is within the threshold" in d.reason
    assert should_alert(r, [], POLICY, NOW).severity == "warning"  # people can see it


def test_estimated_drop_counts_when_labels_are_missing() -> None:
    r = result(
        drift=drift("age"),
        performance=perf(0.0, labeled=10),
        estimated_performance=perf(0.04, estimated=True),
    )
    d = should_retrain(r, [], POLICY, NOW)
    assert d and "estimated without labels" in d.reason


def test_enough_labels_overrule_the_estimate_of_a_mostly_labeled_window() -> None:
    r = result(
        drift=drift("age"),
        performance=perf(0.0),
        estimated_performance=perf(0.04, estimated=True, labeled=600),
    )
    assert "estimated_performance" not in r.verdicts
    assert not should_retrain(r, [], POLICY, NOW)


def test_the_estimate_judges_a_mostly_unlabeled_window_even_with_older_labels() -> None:
    # delayed labels: the measured figure is on older rows (no drop yet); the window's own rows
    # are unlabeled and their estimate shows the drop, which counts
    r = result(
        drift=drift("age"),
        performance=perf(0.0),
        estimated_performance=perf(0.04, estimated=True, labeled=400),
    )
    assert "estimated_performance" in r.failed
    d = should_retrain(r, [], POLICY, NOW)
    assert d and "estimated (400 labeled rows measured" in d.reason


def test_drift_alone_retrains_when_the_policy_says_so() -> None:
    policy = PolicyConfig(drift_alone_retrains=True)
    r = result(policy, drift=drift("age"))
    assert should_retrain(r, [], policy, NOW)
    assert not should_retrain(result(drift=drift("age")), [], POLICY, NOW)


def test_measured_drop_alone_retrains_by_default_but_can_be_switched_off() -> None:
    r = result(drift=drift(), performance=perf(0.05))
    assert should_retrain(r, [], POLICY, NOW)
    policy = PolicyConfig(performance_alone_retrains=False)
    assert not should_retrain(
        result(policy, drift=drift(), performance=perf(0.05)), [], policy, NOW
    )


def test_cooldown_blocks_a_second_retraining() -> None:
    r = result(drift=drift("age"), performance=perf(0.05))
    history = [alerted("x", 23, retrained=True)]
    d = should_retrain(r, history, POLICY, NOW)
    assert not d and "cooldown" in d.reason and "23.0 h ago" in d.reason
    assert should_retrain(r, [alerted("x", 25, retrained=True)], POLICY, NOW)


def test_cooldown_backs_off_while_the_problem_persists() -> None:
    r = result(drift=drift("age"), performance=perf(0.05))
    # retrained 30 h and 72 h ago, never a clean run since: the second wait is 48 h, not 24 h
    persisting = [alerted("x", 72, retrained=True), alerted("x", 30, retrained=True)]
    d = should_retrain(r, persisting, POLICY, NOW)
    assert not d and "48 h required (backed off" in d.reason
    assert should_retrain(r, persisting, PolicyConfig(retry_backoff=1), NOW)
    # a clean run in between resets the wait to the plain cooldown
    clean = RunRecord(NOW - timedelta(hours=40), "ok", None)
    assert should_retrain(r, [*persisting[:1], clean, persisting[1]], POLICY, NOW)


def test_max_retrains_per_day() -> None:
    policy = PolicyConfig(cooldown_hours=1, max_retrains_per_day=2)
    r = result(policy, drift=drift("age"), performance=perf(0.05))
    history = [alerted("x", 10, retrained=True), alerted("y", 5, retrained=True)]
    d = should_retrain(r, history, policy, NOW)
    assert not d and "2 in the last 24 h" in d.reason
    assert should_retrain(r, history[1:], policy, NOW)


def test_record_of_keeps_what_incidents_need() -> None:
    r = result(drift=drift("age"))
    d = should_alert(r, [], POLICY, NOW)
    record = record_of(r, time=NOW, alerted=True, retrained=False, incident=d.incident)
    assert record == RunRecord(NOW, "drift", r.condition, True, False, "warning", d.incident)
    assert not should_alert(r, [record], POLICY, NOW + timedelta(hours=1))


# ---- the retraining budget of an incident, the follow-up after a change -----------------------


def test_after_a_refused_challenger_the_incident_retrains_no_more() -> None:
    r = result(drift=drift("age"), performance=perf(0.05))
    open_ = incident()
    history = [alerted("x", 48, retrained=True, outcome="refused", open_incident=open_)]
    d = should_retrain(r, history, POLICY, NOW, incident=open_)
    assert not d and "did not beat the champion" in d.reason
    assert should_retrain(r, history, POLICY, NOW, incident=incident(name="i2"))  # a new incident


def test_a_deferred_retraining_does_not_count_and_an_incident_has_a_budget() -> None:
    r = result(drift=drift("age"), performance=perf(0.05))
    open_ = incident()
    deferred = alerted("x", 1, retrained=True, outcome="deferred", open_incident=open_)
    assert should_retrain(r, [deferred], POLICY, NOW, incident=open_)  # no cooldown either
    promoted = [
        alerted("x", 100, retrained=True, outcome="promoted", open_incident=open_),
        alerted("x", 50, retrained=True, outcome="promoted", open_incident=open_),
    ]
    d = should_retrain(r, promoted, PolicyConfig(max_retrains_per_incident=2), NOW, incident=open_)
    assert not d and "max_retrains_per_incident 2" in d.reason


def test_a_follow_up_retrains_once_enough_rows_arrived_since_the_change() -> None:
    calm = result(drift=drift(), performance=perf(0.0))
    since = NOW - timedelta(days=3)
    early = Refresh(since, trained_rows=1000, available_rows=3000)
    assert not should_retrain(calm, [], POLICY, NOW, refresh=early, window_rows=500)
    due = Refresh(since, trained_rows=1000, available_rows=4000)
    d = should_retrain(calm, [], POLICY, NOW, refresh=due, window_rows=500)
    assert d and "follow-up" in d.reason and "1000 live rows" in d.reason
    # and at least a monitor window of rows, for a fair judgement
    assert not should_retrain(calm, [], POLICY, NOW, refresh=due, window_rows=5000)
    done = Refresh(since, 1000, 90_000, done=True)
    assert not should_retrain(calm, [], POLICY, NOW, refresh=done, window_rows=500)
    assert not should_retrain(calm, [], PolicyConfig(refresh_factor=0), NOW, refresh=due)
    capped = Refresh(since, trained_rows=20_000, available_rows=50_000)
    assert should_retrain(calm, [], POLICY, NOW, refresh=capped, max_live_rows=50_000)
    assert not should_retrain(calm, [], POLICY, NOW, refresh=Refresh(since, 50_000, 90_000))


def test_after_a_refused_challenger_a_retraining_waits_for_the_harm_to_grow() -> None:
    open_ = incident()
    refused = dataclasses.replace(
        alerted("x", 48, retrained=True, outcome="refused", open_incident=open_), drop=0.05
    )
    same = result(drift=drift("age"), performance=perf(0.06))
    assert not should_retrain(same, [refused], POLICY, NOW, incident=open_)
    worse = result(drift=drift("age"), performance=perf(0.3))  # a gradual change goes on
    d = should_retrain(worse, [refused], POLICY, NOW, incident=open_)
    assert d, d.reason


def test_values_beyond_the_training_range_alone_are_a_warning_missing_ones_critical() -> None:
    shift = QualityIssue("out_of_range", "age", "error", 0.03, 0.01, "3% of 'age' out of range")
    broken = QualityIssue("missing_share", "age", "error", 0.9, 0.05, "90% of 'age' missing")
    assert result(quality=QualityResult((), (shift,), False, 1000)).severity == "warning"
    assert result(quality=QualityResult((), (shift, broken), False, 1000)).severity == "critical"


def test_a_promoted_version_worse_than_its_predecessor_is_critical() -> None:
    from monitoring.policy import Predecessor
    from pipelines.promotion import Difference

    worse = Predecessor(1, "roc_auc", Difference(-0.3, -0.35, -0.25, 0.9, 1000))
    r = result(predecessor=worse)
    assert r.failed == ("regression",) and r.severity == "critical"
    assert "worse than v1" in r.details["regression"] and "-0.3" in r.details["regression"]
    noise = Predecessor(1, "roc_auc", Difference(-0.01, -0.03, 0.01, 0.9, 1000))
    assert result(predecessor=noise).failed == ()


def test_after_a_refused_challenger_a_retraining_waits_for_new_labels_too() -> None:
    """Harm that grew is not enough: a challenger built from mostly the rows the refused one
    saw gives the same answer, so half a monitor window of new labels must have arrived."""
    open_ = incident()
    refused = dataclasses.replace(
        alerted("x", 48, retrained=True, outcome="refused", open_incident=open_), drop=0.05
    )
    worse = result(drift=drift("age"), performance=perf(0.3))
    few = should_retrain(
        worse, [refused], POLICY, NOW, incident=open_, window_rows=5000, labels_since_refusal=1000
    )
    assert not few and "only 1000 labels arrived since" in few.reason and "2500" in few.reason
    enough = should_retrain(
        worse, [refused], POLICY, NOW, incident=open_, window_rows=5000, labels_since_refusal=2500
    )
    assert enough, enough.reason
    # a new incident starts with its full budget whatever arrived since
    assert should_retrain(
        worse, [refused], POLICY, NOW, incident=incident(name="i2"), labels_since_refusal=0
    )
