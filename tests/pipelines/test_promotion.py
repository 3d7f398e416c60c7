"""The promotion decision, both ways, with floors and lower-is-better metrics."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.promotion import PromotionDecision, PromotionPolicy, should_promote

AUC = PromotionPolicy(metric="roc_auc", higher_is_better=True, min_improvement=0.002, floor=0.75)
RMSE = PromotionPolicy(metric="rmse", higher_is_better=False, min_improvement=0.5, floor=10.0)


@pytest.mark.parametrize(
    ("candidate", "champion", "policy", "promote", "reason"),
    [
        (0.871, 0.862, AUC, True, "candidate roc_auc 0.871 beats champion 0.862 by 0.009 >= 0.002"),
        (0.863, 0.862, AUC, False, "improves on champion 0.862 by only 0.001 < 0.002"),
        (0.85, 0.862, AUC, False, "is worse than champion 0.862 by 0.012"),
        (
            0.80,
            None,
            AUC,
            True,
            "no champion yet: candidate roc_auc 0.8 meets the floor roc_auc >= 0.75",
        ),
        (
            0.70,
            None,
            AUC,
            False,
            "no champion yet: candidate roc_auc 0.7 misses the floor roc_auc >= 0.75",
        ),
        (0.74, 0.60, AUC, False, "beats champion 0.6 by 0.14 but misses the floor roc_auc >= 0.75"),
        (8.0, 9.0, RMSE, True, "candidate rmse 8 beats champion 9 by 1 >= 0.5 (lower is better)"),
        (8.8, 9.0, RMSE, False, "improves on champion 9 by only 0.2 < 0.5 (lower is better)"),
        (9.5, 9.0, RMSE, False, "is worse than champion 9 by 0.5"),
        (9.0, None, RMSE, True, "meets the floor rmse <= 10"),
        (11.0, None, RMSE, False, "misses the floor rmse <= 10"),
        (10.5, 12.0, RMSE, False, "but misses the floor rmse <= 10"),
    ],
)
def test_decisions_and_reasons(
    candidate: float, champion: float | None, policy: PromotionPolicy, promote: bool, reason: str
) -> None:
    decision = should_promote(
        {policy.metric: candidate, "other": 1.0},
        None if champion is None else {policy.metric: champion},
        policy,
    )
    assert decision.promote is promote
    assert reason in decision.reason
    assert (decision.metric, decision.candidate, decision.champion) == (
        policy.metric,
        candidate,
        champion,
    )


def test_no_champion_and_no_floor_promotes_and_says_so() -> None:
    policy = PromotionPolicy(metric="log_loss", higher_is_better=False)
    decision = should_promote({"log_loss": 0.4}, None, policy)
    assert decision.promote and "no floor configured" in decision.reason


def test_a_tie_never_promotes_even_with_zero_margin() -> None:
    policy = PromotionPolicy(metric="f1", higher_is_better=True)
    assert not should_promote({"f1": 0.8}, {"f1": 0.8}, policy).promote
    assert should_promote({"f1": 0.8001}, {"f1": 0.8}, policy).promote


def test_an_improvement_equal_to_the_margin_promotes_despite_float_rounding() -> None:
    policy = PromotionPolicy(metric="r2", higher_is_better=True, min_improvement=0.2)
    assert 0.3 - 0.1 < 0.2  # the rounding the rule must tolerate
    assert should_promote({"r2": 0.3}, {"r2": 0.1}, policy).promote


@pytest.mark.parametrize("value", [float("nan"), None, "n/a", float("inf")])
def test_an_unusable_candidate_metric_refuses_and_names_it(value: object) -> None:
    decision = should_promote({"roc_auc": value}, {"roc_auc": 0.5}, AUC)  # type: ignore[dict-item]
    assert not decision.promote and "candidate has no usable roc_auc" in decision.reason
    assert math.isnan(decision.candidate)


def test_a_missing_candidate_metric_refuses() -> None:
    decision = should_promote({"accuracy": 0.9}, None, AUC)
    assert not decision.promote and "no usable roc_auc (missing)" in decision.reason


def test_a_champion_without_the_metric_is_not_replaced_blindly() -> None:
    decision = should_promote({"roc_auc": 0.9}, {"accuracy": 0.9}, AUC)
    assert not decision.promote and "champion has no usable roc_auc" in decision.reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"min_improvement": -0.1}, "min_improvement"), ({"floor": float("nan")}, "floor")],
)
def test_policy_rejects_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PromotionPolicy(metric="roc_auc", higher_is_better=True, **kwargs)


scores = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(candidate=scores, champion=scores, margin=st.floats(0, 10), higher=st.booleans())
def test_promotion_is_consistent_with_the_direction(
    candidate: float, champion: float, margin: float, higher: bool
) -> None:
    policy = PromotionPolicy(metric="m", higher_is_better=higher, min_improvement=margin)
    decision: PromotionDecision = should_promote({"m": candidate}, {"m": champion}, policy)
    gain = candidate - champion if higher else champion - candidate
    if decision.promote:
        assert gain > 0 and gain >= margin - 1e-9
    else:
        assert gain <= 0 or gain < margin + 1e-9
    # swapping roles never promotes both ways
    assert not (
        decision.promote and should_promote({"m": champion}, {"m": candidate}, policy).promote
    )
