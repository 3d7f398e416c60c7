"""Alert and retraining decisions, both ways: drift that hurts, cooldown, daily limit, dedup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring.config import PolicyConfig
from monitoring.drift import ColumnDrift, DriftResult
from monitoring.performance import PerformanceResult
from monitoring.policy import (
    Decision,
    RunRecord,
    make_result,
    record_of,
    should_alert,
    should_retrain,
)
from monitoring.quality import QualityIssue, QualityResult

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


def perf(drop: float, *, labeled: int = 1000, estimated: bool = False) -> PerformanceResult:
    return PerformanceResult(
        "roc_auc", 0.85 - drop, 0.85, drop, 0 if estimated else labeled, estimated
    )


def result(policy: PolicyConfig = POLICY, rows: int = 1000, **parts):
    return make_result(window_rows=rows, min_window_rows=500, policy=policy, **parts)


def alerted(
    condition: str | None, hours_ago: float, *, retrained: bool = False, status: str = "drift"
) -> RunRecord:
    return RunRecord(
        NOW - timedelta(hours=hours_ago), status, condition, alerted=True, retrained=retrained
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


# ---- alerts ---------------------------------------------------------------------------------


def test_drift_alerts_with_the_numbers_in_the_reason() -> None:
    r = result(drift=drift("age"))
    d = should_alert(r, [], POLICY, NOW)
    assert d == Decision(True, d.reason) and d
    assert "1 of 4 features" in d.reason and "age" in d.reason and "0.001" in d.reason


def test_same_condition_is_not_alerted_twice_while_it_persists() -> None:
    r = result(drift=drift("age"))
    history = [alerted(r.condition, 3), RunRecord(NOW - timedelta(hours=2), "drift", r.condition)]
    d = should_alert(r, history, POLICY, NOW)
    assert not d and "persists" in d.reason


def test_condition_that_cleared_and_came_back_alerts_again() -> None:
    r = result(drift=drift("age"))
    history = [alerted(r.condition, 5), RunRecord(NOW - timedelta(hours=2), "ok", None)]
    assert should_alert(r, history, POLICY, NOW)


def test_not_enough_data_runs_do_not_break_a_persisting_condition() -> None:
    r = result(drift=drift("age"))
    history = [
        alerted(r.condition, 5),
        RunRecord(NOW - timedelta(hours=1), "not_enough_data", None),
    ]
    assert not should_alert(r, history, POLICY, NOW)


def test_a_changed_condition_alerts_again() -> None:
    before = result(drift=drift("age"))
    now = result(drift=drift("age", "job"))
    assert before.condition != now.condition
    assert should_alert(now, [alerted(before.condition, 1)], POLICY, NOW)


def test_checks_that_do_not_count_do_not_alert() -> None:
    policy = PolicyConfig(checks=("performance",))
    r = result(policy, drift=drift("age", "job"))
    assert r.status == "ok" and not should_alert(r, [], policy, NOW)


def test_quality_errors_alert() -> None:
    issue = QualityIssue("missing_column", "age", "error", 1.0, None, "feature 'age' is missing")
    r = result(quality=QualityResult((), (issue,), False, 1000))
    d = should_alert(r, [], POLICY, NOW)
    assert d and "feature 'age' is missing" in d.reason
    assert r.condition == "data_quality[missing_column:age]"


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
    assert not d and "within the tolerated 0.0200" in d.reason
    assert should_alert(r, [], POLICY, NOW)  # but people hear about it


def test_estimated_drop_counts_when_labels_are_missing() -> None:
    r = result(
        drift=drift("age"),
        performance=perf(0.0, labeled=10),
        estimated_performance=perf(0.04, estimated=True),
    )
    d = should_retrain(r, [], POLICY, NOW)
    assert d and "estimated without labels" in d.reason


def test_enough_labels_overrule_the_estimate() -> None:
    r = result(
        drift=drift("age"), performance=perf(0.0), estimated_performance=perf(0.04, estimated=True)
    )
    assert not should_retrain(r, [], POLICY, NOW)


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


def test_record_of_keeps_what_dedup_needs() -> None:
    r = result(drift=drift("age"))
    record = record_of(r, time=NOW, alerted=True, retrained=False)
    assert record == RunRecord(NOW, "drift", r.condition, True, False)
    assert not should_alert(r, [record], POLICY, NOW + timedelta(hours=1))
