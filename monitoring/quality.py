"""Data quality of a window against the reference: schema, missing values, new categories and
out-of-range numbers, as a small typed result. Pure functions on frames."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.config_monitoring import QualityConfig
from monitoring.drift import ReferenceStats, reference_stats

IssueKind = Literal[
    "empty_window",
    "missing_column",
    "unexpected_column",
    "dtype_changed",
    "missing_share",
    "new_categories",
    "out_of_range",
]
Severity = Literal["error", "warning"]
#: New categories listed per issue (the count is always complete).
_MAX_LISTED = 10


@dataclass(frozen=True)
class QualityIssue:
    """One problem found in the window; errors fail the check, warnings do not."""

    kind: IssueKind
    column: str | None
    severity: Severity
    value: float
    threshold: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ColumnQuality:
    """Quality figures of one feature column in the window."""

    column: str
    kind: Literal["numeric", "categorical"]
    missing_share: float
    reference_missing_share: float
    new_category_share: float | None = None
    new_categories: tuple[str, ...] = ()
    out_of_range_share: float | None = None
    range: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["new_categories"] = list(self.new_categories)
        out["range"] = None if self.range is None else list(self.range)
        return out


@dataclass(frozen=True)
class QualityResult:
    """Quality of one window: per-column figures, the issues found and the verdict."""

    columns: tuple[ColumnQuality, ...]
    issues: tuple[QualityIssue, ...]
    passed: bool
    n_rows: int

    @property
    def errors(self) -> tuple[QualityIssue, ...]:
        return tuple(i for i in self.issues if i.severity == "error")

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": [c.to_dict() for c in self.columns],
            "issues": [i.to_dict() for i in self.issues],
            "passed": self.passed,
            "n_rows": self.n_rows,
        }


def compute_quality(
    *,
    reference: pd.DataFrame | None,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    config: QualityConfig | None = None,
    reference_stats: ReferenceStats | None = None,
    allowed_extra: Iterable[str] | None = None,
) -> QualityResult:
    """Check the window's schema and values against the reference.

    Args:
        reference: the training snapshot (or None with ``reference_stats``).
        current: the window of logged rows.
        numeric, categorical: the feature columns.
        config: tolerances (default :class:`QualityConfig`).
        reference_stats: precomputed statistics of the reference.
        allowed_extra: non-feature columns the window may carry (id, time, prediction...);
            when given, any other column is reported as a warning. None skips that check.
    """
    config = config or QualityConfig()
    stats_ = _stats(reference, reference_stats, numeric, categorical)
    issues: list[QualityIssue] = []
    n = len(current)
    if n == 0:
        issues.append(
            QualityIssue("empty_window", None, "error", 0.0, None, "the window has no rows")
        )
    features = (*numeric, *categorical)
    absent = [c for c in features if c not in current.columns]
    issues += [
        QualityIssue(
            "missing_column",
            c,
            "error",
            1.0,
            None,
            f"feature {c!r} is missing from the window (the model was trained with it)",
        )
        for c in absent
    ]
    if allowed_extra is not None:
        allowed = set(allowed_extra) | set(features)
        issues += [
            QualityIssue(
                "unexpected_column",
                str(c),
                "warning",
                1.0,
                None,
                f"column {c!r} is in the window but neither a feature nor an expected column",
            )
            for c in current.columns
            if c not in allowed
        ]
    columns: list[ColumnQuality] = []
    for col in numeric:
        if col in current.columns:
            cq, found = _numeric_quality(col, current[col], stats_, config)
            columns.append(cq)
            issues += found
    for col in categorical:
        if col in current.columns:
            cq, found = _categorical_quality(col, current[col], stats_, config)
            columns.append(cq)
            issues += found
    passed = not any(i.severity == "error" for i in issues)
    return QualityResult(tuple(columns), tuple(issues), passed, n)


#: Issues about the window as a whole or its schema: listed before the columns' own issues.
_WINDOW_ISSUES: tuple[IssueKind, ...] = ("empty_window", "missing_column", "unexpected_column")


def combine_quality(parts: Sequence[QualityResult]) -> QualityResult:
    """The quality of a window checked in parts of its columns (each part a
    :func:`compute_quality` of the same rows with some of the features, the parts' features
    in the order of the whole lists, numeric before categorical): equal to one
    :func:`compute_quality` of every feature. Without ``allowed_extra`` in the parts (the
    unexpected-column check needs every column at once).

    Raises:
        ValueError: no parts, or parts of windows of different sizes.
    """
    if not parts:
        raise ValueError("no quality parts to combine: pass at least one")
    sizes = sorted({p.n_rows for p in parts})
    if len(sizes) > 1:
        raise ValueError(f"quality parts of windows of different sizes: {sizes} rows")
    issues = [i for p in parts for i in p.issues]
    empty = [i for i in issues if i.kind == "empty_window"][:1]
    window = [i for kind in _WINDOW_ISSUES[1:] for i in issues if i.kind == kind]
    own = [i for i in issues if i.kind not in _WINDOW_ISSUES]
    combined = (*empty, *window, *own)
    passed = not any(i.severity == "error" for i in combined)
    return QualityResult(tuple(c for p in parts for c in p.columns), combined, passed, sizes[0])


def _stats(
    reference: pd.DataFrame | None,
    given: ReferenceStats | None,
    numeric: Sequence[str],
    categorical: Sequence[str],
) -> ReferenceStats:
    if (
        given is not None
        and all(c in given.numeric for c in numeric)
        and all(c in given.categorical for c in categorical)
    ):
        return given
    if reference is None:
        raise ValueError("compute_quality needs a reference frame or complete reference_stats")
    return reference_stats(reference, numeric=numeric, categorical=categorical)


def _missing_issue(
    col: str, share: float, ref_share: float, config: QualityConfig
) -> list[QualityIssue]:
    if share - ref_share > config.max_missing_increase or (share == 1.0 and ref_share < 1.0):
        return [
            QualityIssue(
                "missing_share",
                col,
                "error",
                share,
                ref_share + config.max_missing_increase,
                f"{col!r} is missing in {share:.1%} of rows (reference {ref_share:.1%}, "
                f"tolerance +{config.max_missing_increase:.1%})",
            )
        ]
    return []


def _numeric_quality(
    col: str, series: pd.Series, stats_: ReferenceStats, config: QualityConfig
) -> tuple[ColumnQuality, list[QualityIssue]]:
    ref = stats_.numeric[col]
    ref_missing = ref.n_missing / ref.n_rows if ref.n_rows else 0.0
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(dtype):
        issue = QualityIssue(
            "dtype_changed",
            col,
            "error",
            1.0,
            None,
            f"{col!r} should be numeric ({ref.dtype} in the reference) "
            f"but is {dtype} in the window",
        )
        missing = float(series.isna().mean()) if len(series) else 0.0
        return ColumnQuality(col, "numeric", missing, ref_missing), [issue]
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    n = values.size
    finite = values[np.isfinite(values)]
    missing = (n - finite.size) / n if n else 0.0
    issues = _missing_issue(col, missing, ref_missing, config)
    out_share = None
    band = None
    if ref.sorted_values.size and finite.size:
        if config.range_quantiles is None:
            lo, hi = float(ref.sorted_values[0]), float(ref.sorted_values[-1])
        else:
            lo, hi = (ref.quantile(q) for q in config.range_quantiles)
        band = (lo, hi)
        outside = np.count_nonzero((finite < lo) | (finite > hi)) / finite.size
        rv = ref.sorted_values
        ref_outside = np.searchsorted(rv, lo, "left") + rv.size - np.searchsorted(rv, hi, "right")
        ref_outside /= rv.size
        out_share = float(outside)
        limit = float(ref_outside) + config.max_out_of_range_share
        if config.range_quantiles is None:
            limit += chance_outside_range(int(rv.size))
        if outside > limit:
            issues.append(
                QualityIssue(
                    "out_of_range",
                    col,
                    "error",
                    out_share,
                    limit,
                    f"{outside:.1%} of {col!r} values lie outside the reference range "
                    f"[{lo:.6g}, {hi:.6g}] (tolerated {limit:.1%})",
                )
            )
    return ColumnQuality(col, "numeric", missing, ref_missing, None, (), out_share, band), issues


#: How improbable the share beyond a small reference's range must be before it counts.
RANGE_CHANCE = 0.001


def chance_outside_range(reference_rows: int, level: float = RANGE_CHANCE) -> float:
    """The share of new values from the reference's own distribution that may fall outside its
    [min, max] by chance, at probability ``level`` (pure).

    For exchangeable values the share beyond the extremes of n reference rows follows
    Beta(2, n - 1) (mean 2 / (n + 1)): about 1% for 850 rows, 0.01% for 100,000, so a version
    trained on a small window is not flagged for values its own distribution produces.
    """
    from scipy.stats import beta

    if reference_rows < 2:
        return 1.0
    return float(beta.ppf(1.0 - level, 2, reference_rows - 1))


def _categorical_quality(
    col: str, series: pd.Series, stats_: ReferenceStats, config: QualityConfig
) -> tuple[ColumnQuality, list[QualityIssue]]:
    ref = stats_.categorical[col]
    ref_missing = ref.n_missing / ref.n_rows if ref.n_rows else 0.0
    n = len(series)
    counts = series.value_counts(dropna=True, sort=True)
    counts = counts[counts > 0]
    present = int(counts.sum())
    missing = (n - present) / n if n else 0.0
    issues = _missing_issue(col, missing, ref_missing, config)
    new = [(k, int(v)) for k, v in counts.items() if k not in ref.counts]
    new_share = sum(v for _, v in new) / present if present else 0.0
    names = tuple(str(k) for k, _ in new)
    if new_share > config.max_new_category_share:
        listed = ", ".join(repr(x) for x in names[:_MAX_LISTED])
        more = f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
        issues.append(
            QualityIssue(
                "new_categories",
                col,
                "error",
                new_share,
                config.max_new_category_share,
                f"{new_share:.1%} of {col!r} values are categories never seen in the reference: "
                f"{listed}{more} (tolerated {config.max_new_category_share:.1%})",
            )
        )
    if pd.api.types.is_numeric_dtype(series.dtype) and not _numeric_like(ref.dtype):
        issues.append(
            QualityIssue(
                "dtype_changed",
                col,
                "warning",
                1.0,
                None,
                f"{col!r} holds numbers ({series.dtype}) in the window but {ref.dtype} values in "
                "the reference: categories may not match",
            )
        )
    return (
        ColumnQuality(col, "categorical", missing, ref_missing, new_share, names),
        issues,
    )


def _numeric_like(dtype: str) -> bool:
    return dtype.startswith(("int", "uint", "float", "Int", "UInt", "Float"))
