"""When a performance drop means something: more than sampling noise explains, and big enough.

A metric measured on n rows scatters around its true value; on a window without drift its drop
against the reference is noise. The scatter is measured once per model version on its holdout
(out-of-sample predictions, bootstrap, :class:`MetricNoise`), and scales like 1/sqrt(n). A drop
counts when it exceeds the one-sided ``1 - alpha`` quantile of that noise (window and reference
both noisy) and, so that huge windows do not flag trivial drops, a minimum share of the
reference value. The same rule judges measured, estimated and combined values, for every metric
and at any scale of target (the noise is in the metric's own units). Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from pipelines.evaluation import score_metric


@dataclass(frozen=True)
class MetricNoise:
    """The standard deviation of a metric over samples of ``rows`` rows of the holdout, and the
    holdout's own size (the reference value is measured on all of it)."""

    metric: str
    rows: int
    std: float
    reference_rows: int

    def std_at(self, rows: int) -> float:
        """The spread expected on ``rows`` rows (1/sqrt(n) scaling; NaN for no rows)."""
        if rows <= 0 or not math.isfinite(self.std):
            return math.nan
        return self.std * math.sqrt(self.rows / rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "rows": self.rows,
            "std": self.std,
            "reference_rows": self.reference_rows,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MetricNoise:
        return cls(
            str(raw["metric"]), int(raw["rows"]), float(raw["std"]), int(raw["reference_rows"])
        )


@dataclass(frozen=True)
class DropVerdict:
    """Whether a drop counts, with the numbers that decided it."""

    significant: bool
    drop: float
    threshold: float
    noise_threshold: float
    min_drop: float
    #: "exceeds / is within the threshold T (why)": follows a sentence that states the drop
    reason: str


def drop_threshold(noise: MetricNoise, rows: int, *, alpha: float) -> float:
    """The drop that sampling noise exceeds with probability ``alpha`` on a window of ``rows``
    rows (window and reference value both scatter)."""
    z = NormalDist().inv_cdf(1.0 - alpha)
    window = noise.std_at(rows)
    reference = noise.std_at(noise.reference_rows)
    return z * math.sqrt(window**2 + (reference if math.isfinite(reference) else 0.0) ** 2)


def judge_drop(
    drop: float,
    *,
    reference_value: float,
    rows: int,
    noise: MetricNoise | None,
    alpha: float,
    min_relative_drop: float,
    shrink: float = 1.0,
) -> DropVerdict:
    """Does a drop (positive = worse) count?

    It must exceed the noise threshold for ``rows`` rows (times ``shrink``, below 1 when part of
    the value is measured exactly, e.g. labeled rows in a combined estimate) and
    ``min_relative_drop`` times the reference value's magnitude. Without a noise measurement
    only the relative rule applies (and the reason says so).
    """
    if not math.isfinite(drop):
        return DropVerdict(False, drop, math.nan, math.nan, math.nan, "the drop is undefined")
    min_drop = min_relative_drop * abs(reference_value) if math.isfinite(reference_value) else 0.0
    noise_threshold = (
        drop_threshold(noise, rows, alpha=alpha) * shrink if noise is not None else math.nan
    )
    threshold = max(min_drop, noise_threshold if math.isfinite(noise_threshold) else 0.0)
    significant = drop > threshold and drop > 0
    if noise is None:
        why = f"no noise measurement for this version: only the {min_relative_drop:.1%} rule"
    else:
        why = (
            f"noise on {rows} rows explains up to {noise_threshold:.4g} (alpha {alpha:g}), "
            f"a drop must also reach {min_relative_drop:.1%} of the reference, {min_drop:.4g}"
        )
    verdict = "exceeds" if significant else "is within"
    reason = f"{verdict} the threshold {threshold:.4g} ({why})"
    return DropVerdict(significant, drop, threshold, noise_threshold, min_drop, reason)


def measure_noise(
    metric: str,
    y_true: np.ndarray,
    prediction: np.ndarray | None,
    proba: np.ndarray | None,
    *,
    classes: Sequence[Any] = (),
    rows: int = 1000,
    resamples: int = 200,
    seed: int = 0,
) -> MetricNoise:
    """The metric's spread over bootstrap samples of ``rows`` rows of a holdout scored out of
    sample (at most the holdout's size)."""
    n = len(y_true)
    size = max(1, min(rows, n))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, n, size=size)
        value = score_metric(
            metric,
            np.asarray(y_true)[pick],
            None if prediction is None else np.asarray(prediction)[pick],
            None if proba is None else np.asarray(proba)[pick],
            classes=classes,
        )
        if math.isfinite(value):
            values.append(value)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return MetricNoise(metric, size, std, n)
