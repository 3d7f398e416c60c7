"""The promotion decision: does a candidate take the `champion` alias? Pure, with its reason."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

#: Slack for float rounding when comparing an improvement with min_improvement.
_EPSILON = 1e-12


@dataclass(frozen=True)
class PromotionPolicy:
    """How candidates are judged: one metric, its direction, the margin and an absolute floor.

    ``floor`` is a lower bound for higher-is-better metrics and an upper bound otherwise.
    """

    metric: str
    higher_is_better: bool
    min_improvement: float = 0.0
    floor: float | None = None

    def __post_init__(self) -> None:
        if not (self.min_improvement >= 0.0 and math.isfinite(self.min_improvement)):
            raise ValueError(
                f"min_improvement must be a finite number >= 0, got {self.min_improvement}"
            )
        if self.floor is not None and not math.isfinite(self.floor):
            raise ValueError(f"floor must be a finite number or None, got {self.floor}")


@dataclass(frozen=True)
class PromotionDecision:
    """Whether to promote, and a sentence saying why (with the numbers)."""

    promote: bool
    reason: str
    metric: str
    candidate: float
    champion: float | None


def _fmt(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4f}".rstrip("0").rstrip(".") or "0"
    return f"{value:.3g}"


def _value(metrics: Mapping[str, float], metric: str) -> float | None:
    try:
        value = float(metrics[metric])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def should_promote(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    policy: PromotionPolicy,
) -> PromotionDecision:
    """Decide whether the candidate replaces the champion.

    With no champion the candidate is promoted iff it meets the floor (always, when no floor is
    configured). With a champion it must beat it by at least ``min_improvement`` (a tie never
    promotes) and still meet the floor. A missing or non-finite metric refuses promotion.
    """
    name = policy.metric
    better = "higher" if policy.higher_is_better else "lower"
    value = _value(candidate, name)
    if value is None:
        raw = candidate.get(name, "missing")
        return PromotionDecision(
            False, f"candidate has no usable {name} ({raw}); not promoted", name, float("nan"), None
        )
    meets_floor = True
    floor_text = ""
    if policy.floor is not None:
        meets_floor = value >= policy.floor if policy.higher_is_better else value <= policy.floor
        sign = ">=" if policy.higher_is_better else "<="
        floor_text = f"floor {name} {sign} {_fmt(policy.floor)}"
    if champion is None:
        if policy.floor is None:
            reason = (
                f"no champion yet and no floor configured: candidate {name} {_fmt(value)} promoted"
            )
            return PromotionDecision(True, reason, name, value, None)
        verdict = "meets" if meets_floor else "misses"
        reason = f"no champion yet: candidate {name} {_fmt(value)} {verdict} the {floor_text}"
        return PromotionDecision(meets_floor, reason, name, value, None)

    current = _value(champion, name)
    if current is None:
        raw = champion.get(name, "missing")
        reason = (
            f"champion has no usable {name} ({raw}) to compare with; "
            "not promoted (promote manually)"
        )
        return PromotionDecision(False, reason, name, value, None)
    improvement = value - current if policy.higher_is_better else current - value
    needed = policy.min_improvement
    beats = improvement > 0 and improvement >= needed - _EPSILON
    if beats and meets_floor:
        reason = (
            f"candidate {name} {_fmt(value)} beats champion {_fmt(current)} by {_fmt(improvement)} "
            f">= {_fmt(needed)} ({better} is better)"
        )
        return PromotionDecision(True, reason, name, value, current)
    if beats:
        reason = (
            f"candidate {name} {_fmt(value)} beats champion {_fmt(current)} by {_fmt(improvement)} "
            f"but misses the {floor_text}; champion kept"
        )
        return PromotionDecision(False, reason, name, value, current)
    if improvement > 0:
        why = f"improves on champion {_fmt(current)} by only {_fmt(improvement)} < {_fmt(needed)}"
    elif improvement == 0:
        why = f"ties champion {_fmt(current)}"
    else:
        why = f"is worse than champion {_fmt(current)} by {_fmt(-improvement)}"
    reason = f"candidate {name} {_fmt(value)} {why} ({better} is better); champion kept"
    return PromotionDecision(False, reason, name, value, current)
