"""The promotion decision: does a candidate take the `champion` alias? Pure, with its reason.

Candidate and champion are scored on the same rows. With the rows' per-model scores, the
improvement comes with a paired bootstrap interval (:func:`paired_difference`): a candidate
whose advantage sampling noise could explain is not promoted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

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
class Difference:
    """The candidate's improvement over the champion on the same rows (positive = better,
    whatever the metric's direction) and its bootstrap interval at ``level``."""

    value: float
    low: float
    high: float
    level: float
    rows: int

    def text(self) -> str:
        return (
            f"improvement {_fmt(self.value)}, {self.level:.0%} interval "
            f"[{_fmt(self.low)}, {_fmt(self.high)}] over {self.rows} rows"
        )


@dataclass(frozen=True)
class PromotionDecision:
    """Whether to promote, and a sentence saying why (with the numbers)."""

    promote: bool
    reason: str
    metric: str
    candidate: float
    champion: float | None
    difference: Difference | None = None


def paired_difference(
    score: Callable[[str, np.ndarray], float],
    rows: int,
    *,
    higher_is_better: bool,
    level: float = 0.9,
    resamples: int = 200,
    seed: int = 0,
) -> Difference:
    """Candidate minus champion on the same rows, with a paired percentile-bootstrap interval.

    ``score(model, positions)`` is the metric of ``"candidate"`` or ``"champion"`` on those row
    positions; both are scored on each resample of the rows, so the interval reflects only what
    differs between the two models. Resamples where the metric is undefined are left out.
    """
    sign = 1.0 if higher_is_better else -1.0
    everything = np.arange(rows)
    value = sign * (score("candidate", everything) - score("champion", everything))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        positions = rng.integers(0, rows, size=rows)
        diff = sign * (score("candidate", positions) - score("champion", positions))
        if math.isfinite(diff):
            draws.append(diff)
    tail = (1.0 - level) / 2.0
    if len(draws) < 10:
        return Difference(value, math.nan, math.nan, level, rows)
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return Difference(float(value), float(low), float(high), level, rows)


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
    difference: Difference | None = None,
) -> PromotionDecision:
    """Decide whether the candidate replaces the champion.

    With no champion the candidate is promoted iff it meets the floor (always, when no floor is
    configured). With a champion it must beat it by at least ``min_improvement`` (a tie never
    promotes) and still meet the floor; with a ``difference`` measured on the same rows, the
    lower end of its interval must also be above zero (the advantage is more than noise). A
    missing or non-finite metric refuses promotion.
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
    noise = ""
    if difference is not None:
        noise = f"; {difference.text()}"
        if beats and not difference.low > 0:
            reason = (
                f"candidate {name} {_fmt(value)} beats champion {_fmt(current)} by "
                f"{_fmt(improvement)}, but not by more than noise ({difference.text()}); "
                "champion kept"
            )
            return PromotionDecision(False, reason, name, value, current, difference)
    if beats and meets_floor:
        reason = (
            f"candidate {name} {_fmt(value)} beats champion {_fmt(current)} by {_fmt(improvement)} "
            f">= {_fmt(needed)} ({better} is better){noise}"
        )
        return PromotionDecision(True, reason, name, value, current, difference)
    if beats:
        reason = (
            f"candidate {name} {_fmt(value)} beats champion {_fmt(current)} by {_fmt(improvement)} "
            f"but misses the {floor_text}; champion kept"
        )
        return PromotionDecision(False, reason, name, value, current, difference)
    if improvement > 0:
        why = f"improves on champion {_fmt(current)} by only {_fmt(improvement)} < {_fmt(needed)}"
    elif improvement == 0:
        why = f"ties champion {_fmt(current)}"
    else:
        why = f"is worse than champion {_fmt(current)} by {_fmt(-improvement)}"
    reason = f"candidate {name} {_fmt(value)} {why} ({better} is better){noise}; champion kept"
    return PromotionDecision(False, reason, name, value, current, difference)
