"""The rollback decision and the floor check (pure): a champion worse than the one it replaced
by more than noise goes back, within the period after its promotion; live performance below
`promotion.floor` by more than noise is harm, whatever the version's own reference says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.config import RollbackConfig
from core.config_monitoring import PolicyConfig
from monitoring.performance import PerformanceResult
from monitoring.policy import Predecessor, make_result, should_roll_back
from monitoring.significance import MetricNoise
from pipelines.promotion import Difference

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RULE = RollbackConfig()
#: v2 minus v1 on 1,000 labeled rows: clearly worse, within noise, and better
WORSE = Predecessor(1, "roc_auc", Difference(-0.35, -0.38, -0.32, 0.9, 1000), before_value=0.88)
NOISE = Predecessor(1, "roc_auc", Difference(-0.01, -0.03, 0.01, 0.9, 1000), before_value=0.88)
BETTER = Predecessor(1, "roc_auc", Difference(0.02, 0.01, 0.03, 0.9, 1000), before_value=0.88)


def decide(
    predecessor: Predecessor | None = WORSE,
    rule: RollbackConfig = RULE,
    *,
    version: int | None = 2,
    champion: int | None = 2,
    hours_ago: float = 3.0,
    labeled: int = 1000,
    predecessor_rolled_back: bool = False,
    min_relative_drop: float = 0.01,
):
    return should_roll_back(
        predecessor,
        rule,
        version=version,
        champion=champion,
        promoted_at=NOW - timedelta(hours=hours_ago),
        labeled_since_promotion=labeled,
        now=NOW,
        min_relative_drop=min_relative_drop,
        predecessor_rolled_back=predecessor_rolled_back,
    )


def test_a_champion_worse_than_the_one_it_replaced_beyond_noise_is_rolled_back() -> None:
    decision = decide()
    assert decision.yes
    assert "v2 against v1, the champion it replaced, on the same 1000 labeled live rows" in (
        decision.reason
    )
    assert "roc_auc difference -0.35" in decision.reason


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"predecessor": NOISE}, "not worse beyond noise"),
        ({"predecessor": BETTER}, "not worse beyond noise"),
        ({"predecessor": None}, "no comparison with a champion this version replaced"),
        ({"rule": RollbackConfig(enabled=False)}, "enabled is false"),
        ({"champion": 1}, "v2 is no longer the champion (v1)"),
        ({"hours_ago": 200.0}, "promoted 200.0 h ago, after the 168 h"),
        ({"rule": RollbackConfig(within_rows=500)}, "served 1000 labeled rows since"),
        ({"rule": RollbackConfig(min_labeled_rows=2000)}, "2000 rows needed"),
        ({"predecessor_rolled_back": True}, "was itself rolled back"),
        ({"min_relative_drop": 0.5}, "by less than 50.0%"),
    ],
)
def test_no_rollback(kwargs: dict, needle: str) -> None:
    decision = decide(**kwargs)
    assert not decision.yes and needle in decision.reason, decision.reason


def test_no_time_limit_and_a_simulated_clock_before_the_promotion() -> None:
    assert decide(rule=RollbackConfig(within_hours=None), hours_ago=10_000).yes
    assert decide(hours_ago=-5).yes  # a backtest's clock runs behind the wall clock


def _measured(value: float, rows: int = 1000) -> PerformanceResult:
    # the version matches its own (poor) reference: no drop against it
    return PerformanceResult("roc_auc", value, value, 0.0, rows, False)


def _result(performance: PerformanceResult, floor: float | None, **policy: object):
    return make_result(
        window_rows=1000,
        min_window_rows=500,
        policy=PolicyConfig(**policy),
        performance=performance,
        noise=MetricNoise("roc_auc", 1000, 0.01, 2000),
        floor=floor,
    )


def test_live_performance_below_the_floor_beyond_noise_is_harm() -> None:
    r = _result(_measured(0.52), floor=0.75)
    assert r.failed == ("floor",) and r.severity == "critical"
    assert (
        "roc_auc on 1000 labeled rows is 0.5200, missing promotion.floor 0.75 by 0.2300"
        in r.details["floor"]
    )


@pytest.mark.parametrize(
    ("value", "floor", "policy"),
    [
        (0.80, 0.75, {}),  # above the floor
        (0.745, 0.75, {}),  # below it, within noise
        (0.52, None, {}),  # no floor configured
        (0.52, 0.75, {"checks": ("performance",)}),  # the check left out
        (0.52, 0.75, {"min_labeled_rows": 2000}),  # too few labeled rows to count
    ],
)
def test_no_floor_harm(value: float, floor: float | None, policy: dict) -> None:
    assert "floor" not in _result(_measured(value), floor, **policy).failed


def test_the_floor_of_a_lower_is_better_metric_is_a_ceiling() -> None:
    rmse = PerformanceResult("rmse", 30.0, 30.0, 0.0, 1000, False)
    noise = MetricNoise("rmse", 1000, 0.5, 2000)
    policy = PolicyConfig()
    high = make_result(
        window_rows=1000,
        min_window_rows=500,
        policy=policy,
        performance=rmse,
        noise=noise,
        floor=20.0,
    )
    assert high.failed == ("floor",)
    low = make_result(
        window_rows=1000,
        min_window_rows=500,
        policy=policy,
        performance=rmse,
        noise=noise,
        floor=40.0,
    )
    assert low.failed == ()
