"""Per-column drift of a window against a model version's reference, as a small typed result.

Two families of methods:

* the named statistics of Evidently 0.7 (``ks``, ``chisquare``, ``z``, ``wasserstein``,
  ``jensenshannon``, ``psi``, ``kl_div``) and its automatic choice (``evidently``), computed
  here with numpy/scipy to the same definitions (NaN and +-inf dropped, the same binning, the
  same thresholds and comparison signs), so verdicts agree column by column, but from sorted
  reference samples and counts that are computed once per model version
  (:func:`reference_stats`);
* ``driftloop`` (the default): a p-value test per column (Kolmogorov-Smirnov for numeric,
  chi-square with rare categories pooled for categorical), Holm's correction across the columns
  so that a no-drift window raises a false alarm with probability at most ``alpha`` whatever its
  size, and a minimum effect size (normed Wasserstein distance, Jensen-Shannon distance) so that
  huge windows do not flag harmless shifts. The dataset drifts when any feature drifts.

Pure functions on frames: no I/O, nothing at import time.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from core.config_monitoring import DriftConfig, DriftMethod
from core.errors import DriftloopError

Kind = Literal["numeric", "categorical"]

#: Evidently 0.7's default threshold per method.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
    "kl_div": 0.1,
}
P_VALUE_METHODS = frozenset({"ks", "chisquare", "z"})
_NUMERIC_ONLY = frozenset({"ks", "wasserstein"})
_CATEGORICAL_ONLY = frozenset({"chisquare", "z"})
#: scipy's ks_2samp uses the exact distribution up to this sample size, the asymptotic above.
_KS_EXACT_MAX_N = 10_000
#: Expected count below which the driftloop chi-square pools a category with the other rare ones.
_MIN_EXPECTED = 5.0
#: Elements per block when scanning merged samples (bounds temporary memory).
_BLOCK = 1 << 18


class DriftInputError(DriftloopError, ValueError):
    """The frames or the method settings cannot be compared; the message names the columns."""


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift: the method, its threshold, the score and the verdict.

    For p-value methods ``score`` is the p-value (drift when small); for distances it is the
    distance (drift when large). ``driftloop`` columns report the Holm-adjusted p-value as
    ``score`` (threshold ``alpha``) and the effect size next to its minimum.
    """

    column: str
    kind: Kind
    method: str
    threshold: float
    score: float
    drifted: bool
    effect: float | None = None
    effect_threshold: float | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (NaN becomes None)."""
        return {k: _json_float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class DriftResult:
    """Drift of every feature (and optionally the prediction) of one window."""

    columns: tuple[ColumnDrift, ...]
    drift_share: float
    drifted_features: tuple[str, ...]
    dataset_drift: bool
    prediction: ColumnDrift | None
    n_reference: int
    n_current: int
    share_threshold: float | None = None

    def column(self, name: str) -> ColumnDrift:
        """The result of one column; KeyError names the known columns."""
        for item in self.columns:
            if item.column == name:
                return item
        raise KeyError(
            f"no drift result for column {name!r}; have {[c.column for c in self.columns]}"
        )

    def scores(self) -> dict[str, float]:
        """Column name to score, for dashboards and metrics."""
        return {c.column: c.score for c in self.columns}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "columns": [c.to_dict() for c in self.columns],
            "drift_share": _json_float(self.drift_share),
            "drifted_features": list(self.drifted_features),
            "dataset_drift": self.dataset_drift,
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "share_threshold": self.share_threshold,
        }


def _json_float(value: Any) -> Any:
    if isinstance(value, float | np.floating) and not math.isfinite(float(value)):
        return None
    if isinstance(value, np.floating | np.integer | np.bool_):
        return value.item()
    return value


# --------------------------------------------------------------------------------------------
# Reference statistics (once per model version)


@dataclass(frozen=True)
class NumericStats:
    """A numeric column of the reference: its finite values sorted, and missing counts."""

    sorted_values: np.ndarray
    n_missing: int
    n_rows: int
    dtype: str

    @property
    def std(self) -> float:
        """Population standard deviation of the finite values (as numpy's ``np.std``)."""
        return float(np.std(self.sorted_values)) if self.sorted_values.size else float("nan")

    @property
    def n_unique(self) -> int:
        v = self.sorted_values
        return int(np.count_nonzero(v[1:] != v[:-1]) + 1) if v.size else 0

    def quantile(self, q: float) -> float:
        """The q-quantile of the finite values (linear interpolation)."""
        if not self.sorted_values.size:
            return float("nan")
        return float(np.quantile(self.sorted_values, q))


@dataclass(frozen=True)
class CategoricalStats:
    """A categorical column of the reference: category counts and missing counts."""

    counts: dict[Any, int]
    n_missing: int
    n_rows: int
    dtype: str

    @property
    def n_values(self) -> int:
        return int(sum(self.counts.values()))


@dataclass(frozen=True)
class ReferenceStats:
    """What drift and quality checks need from a reference, computed once per model version.

    Picklable; its size is one float64 per finite numeric reference value plus one count per
    category.
    """

    n_rows: int
    numeric: dict[str, NumericStats] = field(default_factory=dict)
    categorical: dict[str, CategoricalStats] = field(default_factory=dict)

    def columns(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    def subset(self, numeric: Iterable[str], categorical: Iterable[str]) -> ReferenceStats:
        """The statistics of some columns only (what a task checking them needs);
        KeyError names a column these statistics lack."""
        try:
            return ReferenceStats(
                self.n_rows,
                {c: self.numeric[c] for c in numeric},
                {c: self.categorical[c] for c in categorical},
            )
        except KeyError as exc:
            raise KeyError(f"reference statistics lack column {exc.args[0]!r}") from None


def reference_stats(
    reference: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
) -> ReferenceStats:
    """Summarise the reference frame's numeric and categorical columns.

    Raises:
        DriftInputError: a listed column is missing or a numeric column is not numeric.
    """
    _check_lists(numeric, categorical)
    missing = [c for c in (*numeric, *categorical) if c not in reference.columns]
    if missing:
        raise DriftInputError(f"reference frame lacks columns {missing}")
    num = {}
    for col in numeric:
        values, n_missing, problem = numeric_values(reference[col])
        if problem:
            raise DriftInputError(f"reference column {col!r} {problem}")
        num[col] = NumericStats(
            sorted_values=np.sort(values),
            n_missing=n_missing,
            n_rows=len(reference),
            dtype=str(reference[col].dtype),
        )
    cat = {}
    for col in categorical:
        counts, n_missing = category_counts(reference[col])
        cat[col] = CategoricalStats(
            counts=counts,
            n_missing=n_missing,
            n_rows=len(reference),
            dtype=str(reference[col].dtype),
        )
    return ReferenceStats(n_rows=len(reference), numeric=num, categorical=cat)


def _check_lists(numeric: Sequence[str], categorical: Sequence[str]) -> None:
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise DriftInputError(f"columns listed as both numeric and categorical: {both}")


def numeric_values(series: pd.Series) -> tuple[np.ndarray, int, str | None]:
    """Finite float64 values, the count of non-finite ones, and a problem description."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(dtype):
        return np.empty(0), len(series), f"is not numeric (dtype {dtype})"
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    n_bad = int(values.size - np.count_nonzero(finite))
    if n_bad:
        values = values[finite]
    return values, n_bad, None


def category_counts(series: pd.Series) -> tuple[dict[Any, int], int]:
    counts = series.value_counts(dropna=True, sort=False)
    counts = counts[counts > 0]
    n_missing = len(series) - int(counts.sum())
    return {key: int(n) for key, n in counts.items()}, n_missing


# --------------------------------------------------------------------------------------------
# Statistics, exactly as Evidently 0.7 defines them (from sorted samples / counts)


@dataclass(frozen=True)
class _Merged:
    """Two sorted samples merged: every value, and how many reference / current values are at
    or before each position. At the last position of each run of equal values the counts equal
    ``searchsorted(..., side="right")``, which is all that KS and Wasserstein need."""

    values: np.ndarray
    ref_count: np.ndarray
    cur_count: np.ndarray
    n_ref: int
    n_cur: int


def _merge(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> _Merged:
    both = np.concatenate((ref_sorted, cur_sorted))
    order = np.argsort(both, kind="stable")  # two sorted runs: a linear merge
    values = both[order]
    del both
    from_ref = order < ref_sorted.size
    del order
    count = np.int32 if values.size < 2**31 else np.int64
    ref_count = np.cumsum(from_ref, dtype=count)
    np.logical_not(from_ref, out=from_ref)
    cur_count = np.cumsum(from_ref, dtype=count)
    return _Merged(values, ref_count, cur_count, ref_sorted.size, cur_sorted.size)


def _blocks(n: int) -> Iterable[slice]:
    return (slice(i, min(i + _BLOCK, n)) for i in range(0, n, _BLOCK))


def _ks_d(m: _Merged) -> float:
    """scipy's two-sided KS statistic: max |F1 - F2| over the sample points (same floats)."""
    n = m.values.size
    hi, lo = -np.inf, np.inf
    for block in _blocks(n):
        values = m.values[block.start : block.stop + 1]  # one past: is this the last of a run?
        last = np.ones(block.stop - block.start, dtype=bool)
        k = values.size - 1
        np.not_equal(values[1:], values[:-1], out=last[:k])
        diff = m.ref_count[block][last] / m.n_ref
        diff -= m.cur_count[block][last] / m.n_cur
        if diff.size:  # a block may hold nothing but one run of equal values
            hi, lo = max(hi, float(np.max(diff))), min(lo, float(np.min(diff)))
    return max(hi, float(np.clip(-lo, 0, 1)))


def _w1(m: _Merged) -> float:
    """scipy's first Wasserstein distance: sum |F1 - F2| * step (terms between equal values
    are exactly zero; summed by blocks, so it may differ from scipy in the last bits)."""
    total = 0.0
    for block in _blocks(m.values.size - 1):
        deltas = np.diff(m.values[block.start : block.stop + 1])
        u_cdf = m.ref_count[block] / m.n_ref
        u_cdf -= m.cur_count[block] / m.n_cur
        np.abs(u_cdf, out=u_cdf)
        total += float(np.vecdot(u_cdf, deltas))
    return total


def _ks_p_from_d(d: float, n1: int, n2: int) -> float:
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))


def _ks_p(ref_sorted: np.ndarray, cur_sorted: np.ndarray, merged: _Merged | None) -> float:
    n1, n2 = ref_sorted.size, cur_sorted.size
    if max(n1, n2) <= _KS_EXACT_MAX_N:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(stats.ks_2samp(ref_sorted, cur_sorted).pvalue)
    return _ks_p_from_d(_ks_d(merged or _merge(ref_sorted, cur_sorted)), n1, n2)


def ks_pvalue(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> float:
    """Two-sided two-sample Kolmogorov-Smirnov p-value, as ``scipy.stats.ks_2samp`` (auto mode:
    exact up to 10,000 rows per sample, asymptotic above)."""
    return _ks_p(ref_sorted, cur_sorted, None)


def ks_statistic(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> float:
    """The two-sided KS statistic from two sorted samples (scipy's definition, same floats)."""
    return _ks_d(_merge(ref_sorted, cur_sorted))


def wasserstein(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> float:
    """First Wasserstein distance, as ``scipy.stats.wasserstein_distance`` (same floats)."""
    return _w1(_merge(ref_sorted, cur_sorted))


def wasserstein_norm(ref_sorted: np.ndarray, cur_sorted: np.ndarray, ref_std: float) -> float:
    """Evidently's normed Wasserstein distance: W1 divided by max(std(reference), 0.001)."""
    return wasserstein(ref_sorted, cur_sorted) / max(float(ref_std), 0.001)


def _sturges_edges(lo: float, hi: float, n: int) -> np.ndarray:
    """``np.histogram_bin_edges(x, bins="sturges")`` from the range and size of x."""
    first, last = float(lo), float(hi)
    if first == last:
        first, last = first - 0.5, last + 0.5
    width = (hi - lo) / (np.log2(n) + 1.0)
    n_bins = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, n_bins + 1, endpoint=True)


def _hist_sorted(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)[0]`` for sorted values: right-open bins, last one closed."""
    starts = np.searchsorted(sorted_values, edges[:-1], side="left")
    end = np.searchsorted(sorted_values, edges[-1], side="right")
    return np.diff(np.append(starts, end))


@dataclass(frozen=True)
class Sample:
    """One column of one side, in the form the statistics need."""

    kind: Kind
    n: int
    sorted_values: np.ndarray | None = None  # numeric
    counts: dict[Any, int] | None = None  # categorical, or numeric value counts on demand

    def value_counts(self) -> dict[Any, int]:
        if self.counts is not None:
            return self.counts
        values, counts = np.unique(self.sorted_values, return_counts=True)
        return dict(zip(values.tolist(), counts.tolist(), strict=True))

    def n_unique(self) -> int:
        if self.counts is not None:
            return len(self.counts)
        v = self.sorted_values
        return int(np.count_nonzero(v[1:] != v[:-1]) + 1) if v.size else 0

    def uniques(self) -> set[Any]:
        if self.counts is not None:
            return set(self.counts)
        return set(np.unique(self.sorted_values).tolist())


def _aligned(ref: Sample, cur: Sample) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Counts of both sides over the union of their values (Evidently's key set)."""
    rc, cc = ref.value_counts(), cur.value_counts()
    keys = list(set(rc) | set(cc))
    return (
        keys,
        np.array([rc.get(k, 0) for k in keys], dtype=np.float64),
        np.array([cc.get(k, 0) for k in keys], dtype=np.float64),
    )


def _binned(
    ref: Sample, cur: Sample, n_bins: int, fill_zeroes: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's ``get_binned_data``: Sturges histogram for numeric columns with more than 20
    reference values, else value shares over the union of values; zeros optionally filled."""
    if ref.kind == "numeric" and ref.n_unique() > 20:
        lo = min(ref.sorted_values[0], cur.sorted_values[0])
        hi = max(ref.sorted_values[-1], cur.sorted_values[-1])
        edges = _sturges_edges(lo, hi, ref.n + cur.n)
        ref_p = _hist_sorted(ref.sorted_values, edges) / ref.n
        cur_p = _hist_sorted(cur.sorted_values, edges) / cur.n
    else:
        _, rc, cc = _aligned(ref, cur)
        ref_p, cur_p = rc / ref.n, cc / cur.n
    if fill_zeroes:
        ref_p, cur_p = _fill_zeroes(ref_p), _fill_zeroes(cur_p)
    return ref_p, cur_p


def _fill_zeroes(p: np.ndarray) -> np.ndarray:
    p = p.astype(np.float64, copy=True)
    nonzero = p[p != 0]
    smallest = float(nonzero.min())
    p[p == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return p


def _chisquare_p(f_obs: np.ndarray, f_exp: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.chisquare(f_obs, f_exp)[1])


def _z_pvalue(ref: Sample, cur: Sample) -> float:
    rc, cc = ref.value_counts(), cur.value_counts()
    if len(rc) == 1 and len(cc) == 1 and next(iter(rc)) == next(iter(cc)):
        return 1.0
    keys = sorted(set(rc) | set(cc))
    first = keys[0]
    n1, n2 = ref.n, cur.n
    p1 = float(n1 - rc.get(first, 0)) / n1
    p2 = float(n2 - cc.get(first, 0)) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))


def _evidently_score(method: str, ref: Sample, cur: Sample, n_bins: int) -> float:
    if method == "ks":
        return ks_pvalue(ref.sorted_values, cur.sorted_values)
    if method == "wasserstein":
        return wasserstein_norm(ref.sorted_values, cur.sorted_values, np.std(ref.sorted_values))
    if method == "chisquare":
        _, rc, cc = _aligned(ref, cur)
        return _chisquare_p(cc, rc * (cur.n / ref.n))
    if method == "z":
        return _z_pvalue(ref, cur)
    if method == "jensenshannon":
        ref_p, cur_p = _binned(ref, cur, n_bins, fill_zeroes=False)
        return float(distance.jensenshannon(ref_p, cur_p))
    if method == "psi":
        ref_p, cur_p = _binned(ref, cur, n_bins, fill_zeroes=True)
        return float(np.sum((ref_p - cur_p) * np.log(ref_p / cur_p)))
    if method == "kl_div":
        ref_p, cur_p = _binned(ref, cur, n_bins, fill_zeroes=True)
        return float(stats.entropy(ref_p, cur_p))
    raise DriftInputError(
        f"unknown drift method {method!r}; choose one of {sorted(DEFAULT_THRESHOLDS)}"
    )


def _evidently_verdict(method: str, score: float, threshold: float) -> bool:
    if method == "ks":
        return bool(score <= threshold)
    if method in P_VALUE_METHODS:
        return bool(score < threshold)
    return bool(score >= threshold)


def evidently_default_method(ref: Sample, cur: Sample) -> str:
    """Evidently 0.7's automatic method for a column (by reference size and distinct values)."""
    small = ref.n <= 1000
    if ref.kind == "numeric":
        n_values = ref.n_unique() if ref.n_unique() > 5 else len(ref.uniques() | cur.uniques())
        if small:
            if n_values <= 5:
                return "chisquare" if n_values > 2 else "z"
            return "ks"
        return "jensenshannon" if n_values <= 5 else "wasserstein"
    if small:
        return "chisquare" if len(ref.uniques() | cur.uniques()) > 2 else "z"
    return "jensenshannon"


# --------------------------------------------------------------------------------------------
# driftloop's default: p-value with Holm correction + minimum effect size


def _pooled_chisquare_p(ref: Sample, cur: Sample) -> float:
    """Chi-square p-value with categories of expected count < 5 pooled (and never-seen ones)."""
    _, rc, cc = _aligned(ref, cur)
    expected = rc * (cur.n / ref.n)
    keep = expected >= _MIN_EXPECTED
    f_exp, f_obs = list(expected[keep]), list(cc[keep])
    rare_exp, rare_obs = float(expected[~keep].sum()), float(cc[~keep].sum())
    if rare_exp >= _MIN_EXPECTED or (rare_exp > 0 and len(f_exp) < 2):
        f_exp.append(rare_exp)
        f_obs.append(rare_obs)
    elif rare_obs or rare_exp:
        if not f_exp:
            return 1.0
        smallest = int(np.argmin(f_exp))
        f_exp[smallest] += rare_exp
        f_obs[smallest] += rare_obs
    if len(f_exp) < 2:
        return 1.0
    return _chisquare_p(np.asarray(f_obs), np.asarray(f_exp))


def _js_distance(ref: Sample, cur: Sample) -> float:
    _, rc, cc = _aligned(ref, cur)
    return float(distance.jensenshannon(rc / ref.n, cc / cur.n))


def _driftloop_pvalue_effect(ref: Sample, cur: Sample) -> tuple[float, float]:
    if ref.kind == "numeric":
        merged = _merge(ref.sorted_values, cur.sorted_values)
        p = _ks_p(ref.sorted_values, cur.sorted_values, merged)
        effect = _w1(merged) / max(float(np.std(ref.sorted_values)), 0.001)
        return p, effect
    return _pooled_chisquare_p(ref, cur), _js_distance(ref, cur)


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (reject where adjusted < alpha)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


# --------------------------------------------------------------------------------------------
# The entry point


def compute_drift(
    *,
    reference: pd.DataFrame | None,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    config: DriftConfig | None = None,
    prediction: str | None = None,
    prediction_kind: Kind = "numeric",
    reference_stats: ReferenceStats | None = None,
) -> DriftResult:
    """Drift of each feature (and of the prediction column, if named) of ``current``.

    Args:
        reference: the model version's training snapshot; may be None when ``reference_stats``
            (from :func:`reference_stats` on that snapshot) is given.
        current: the window of logged rows; NaN and +-inf are ignored as Evidently does.
        numeric, categorical: the feature columns.
        config: methods, thresholds and the dataset rule (default: :class:`DriftConfig`).
        prediction: a prediction column (e.g. ``probability``) tested on its own, at the same
            ``alpha`` (driftloop) or the method's threshold; it does not count as a feature.
        prediction_kind: whether the prediction column is numeric or categorical.
        reference_stats: precomputed statistics; computed from ``reference`` when absent.

    Raises:
        DriftInputError: no reference at all, a column in both lists, or a method that does not
            fit a column's kind.
    """
    return drift_of_samples(
        reference=reference,
        current_sample=frame_samples(current),
        n_current=len(current),
        numeric=numeric,
        categorical=categorical,
        config=config,
        prediction=prediction,
        prediction_kind=prediction_kind,
        reference_stats=reference_stats,
    )


#: A column of the current window as the statistics take it: its sample, or why there is none
#: (the note a :class:`ColumnDrift` carries).
CurrentSample = Callable[[str, Kind], tuple[Sample | None, str | None]]


def frame_samples(current: pd.DataFrame) -> CurrentSample:
    """The columns of a window frame as the statistics take them (what :func:`compute_drift`
    compares)."""
    return functools.partial(_current_column, current)


def drift_of_samples(
    *,
    reference: pd.DataFrame | None,
    current_sample: CurrentSample,
    n_current: int,
    numeric: Sequence[str],
    categorical: Sequence[str],
    config: DriftConfig | None = None,
    prediction: str | None = None,
    prediction_kind: Kind = "numeric",
    reference_stats: ReferenceStats | None = None,
) -> DriftResult:
    """:func:`compute_drift` from the current window's samples instead of its frame:
    ``current_sample(column, kind)`` gives each column's :class:`Sample` (finite values sorted,
    or category counts) or the note saying why it has none, as :func:`compute_drift` takes them
    from a frame. Merged partition statistics (:mod:`monitoring.partitions`) come in this way, so both
    paths share every statistic and verdict."""
    config = config or DriftConfig()
    part = unadjusted_drift(
        reference=reference,
        current_sample=current_sample,
        n_current=n_current,
        numeric=numeric,
        categorical=categorical,
        config=config,
        prediction=prediction,
        prediction_kind=prediction_kind,
        reference_stats=reference_stats,
    )
    return combine_drift([part], config)


@dataclass(frozen=True)
class UnadjustedDrift:
    """Some columns' drift before the verdicts that need every column (Holm's correction of
    the ``driftloop`` p-values, the dataset rule): what :func:`combine_drift` takes, so
    columns compared in separate processes give the verdicts of one comparison. Picklable."""

    features: tuple[ColumnDrift, ...]
    prediction: ColumnDrift | None
    n_reference: int
    n_current: int


def unadjusted_drift(
    *,
    reference: pd.DataFrame | None,
    current_sample: CurrentSample,
    n_current: int,
    numeric: Sequence[str],
    categorical: Sequence[str],
    config: DriftConfig | None = None,
    prediction: str | None = None,
    prediction_kind: Kind = "numeric",
    reference_stats: ReferenceStats | None = None,
) -> UnadjustedDrift:
    """The listed columns' drift, as :func:`drift_of_samples` computes it, before Holm's
    correction and the dataset rule (:func:`combine_drift` applies them)."""
    config = config or DriftConfig()
    numeric, categorical = tuple(numeric), tuple(categorical)
    _check_lists(numeric, categorical)
    pred_num = (prediction,) if prediction and prediction_kind == "numeric" else ()
    pred_cat = (prediction,) if prediction and prediction_kind == "categorical" else ()
    stats_ = _ensure_stats(reference, reference_stats, numeric + pred_num, categorical + pred_cat)
    kinds: dict[str, Kind] = {c: "numeric" for c in numeric} | {
        c: "categorical" for c in categorical
    }
    for col, method in config.per_column_method.items():
        kind = kinds.get(col) or (prediction_kind if col == prediction else None)
        if kind is not None:
            _check_method_fits(col, kind, method)
    if config.method not in ("driftloop", "evidently"):
        compared = kinds | ({prediction: prediction_kind} if prediction else {})
        for col, kind in compared.items():
            if col not in config.per_column_method:
                _check_method_fits(col, kind, config.method)

    features = tuple(
        _column_drift(col, kind, stats_, current_sample(col, kind), config)
        for col, kind in kinds.items()
    )
    pred = None
    if prediction:
        pred = _column_drift(
            prediction, prediction_kind, stats_, current_sample(prediction, prediction_kind), config
        )
    return UnadjustedDrift(features, pred, stats_.n_rows, n_current)


def combine_drift(
    parts: Sequence[UnadjustedDrift], config: DriftConfig | None = None
) -> DriftResult:
    """The drift result of the parts' columns taken together, in the order given: Holm's
    correction across every feature, the prediction's on its own, the dataset rule. Equal to
    one :func:`drift_of_samples` over all the columns with the same ``config``.

    Raises:
        DriftInputError: no parts, parts of different windows or references (row counts
            differ), a column in two parts, or more than one part with the prediction.
    """
    config = config or DriftConfig()
    if not parts:
        raise DriftInputError("no drift parts to combine: pass at least one")
    first = parts[0]
    sizes = {(p.n_reference, p.n_current) for p in parts}
    if len(sizes) > 1:
        raise DriftInputError(
            f"drift parts of different windows or references (reference, current rows: "
            f"{sorted(sizes)})"
        )
    columns = [c for p in parts for c in p.features]
    names = [c.column for c in columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    predictions = [p.prediction for p in parts if p.prediction is not None]
    if twice or len(predictions) > 1:
        raise DriftInputError(
            f"drift parts overlap: columns {twice} in more than one part"
            if twice
            else f"{len(predictions)} drift parts hold the prediction: it belongs to one"
        )
    features = _apply_holm(columns, config.alpha)
    pred = _apply_holm(predictions, config.alpha)[0] if predictions else None
    drifted = tuple(c.column for c in features if c.drifted)
    share = len(drifted) / len(features) if features else 0.0
    rule = config.dataset_share()
    dataset_drift = bool(drifted) if rule is None else bool(features) and share >= rule
    return DriftResult(
        columns=tuple(features),
        drift_share=share,
        drifted_features=drifted,
        dataset_drift=dataset_drift,
        prediction=pred,
        n_reference=first.n_reference,
        n_current=first.n_current,
        share_threshold=rule,
    )


def _ensure_stats(
    reference: pd.DataFrame | None,
    given: ReferenceStats | None,
    numeric: tuple[str, ...],
    categorical: tuple[str, ...],
) -> ReferenceStats:
    if given is not None:
        lacking = [c for c in numeric if c not in given.numeric] + [
            c for c in categorical if c not in given.categorical
        ]
        if not lacking:
            return given
        if reference is None:
            raise DriftInputError(
                f"reference statistics lack columns {lacking} and no reference frame"
            )
        extra = reference_stats(
            reference,
            numeric=[c for c in numeric if c not in given.numeric],
            categorical=[c for c in categorical if c not in given.categorical],
        )
        return ReferenceStats(
            n_rows=given.n_rows,
            numeric={**given.numeric, **extra.numeric},
            categorical={**given.categorical, **extra.categorical},
        )
    if reference is None:
        raise DriftInputError("compute_drift needs a reference frame or reference_stats")
    return reference_stats(reference, numeric=numeric, categorical=categorical)


def _check_method_fits(column: str, kind: Kind, method: DriftMethod) -> None:
    if method in _NUMERIC_ONLY and kind != "numeric":
        raise DriftInputError(f"method {method!r} needs a numeric column; {column!r} is {kind}")
    if method in _CATEGORICAL_ONLY and kind != "categorical":
        raise DriftInputError(f"method {method!r} needs a categorical column; {column!r} is {kind}")


#: The note of a column the current window lacks.
MISSING_FROM_WINDOW = "column missing from the current window"


def _current_column(
    current: pd.DataFrame, col: str, kind: Kind
) -> tuple[Sample | None, str | None]:
    if col not in current.columns:
        return None, MISSING_FROM_WINDOW
    if kind == "numeric":
        values, _, problem = numeric_values(current[col])
        return numeric_sample(np.sort(values), problem)
    return categorical_sample(category_counts(current[col])[0])


def numeric_sample(
    sorted_values: np.ndarray, problem: str | None = None
) -> tuple[Sample | None, str | None]:
    """A numeric column of the current window from its finite values, sorted (or the note
    saying why it cannot be compared: ``problem`` from :func:`numeric_values`, no values)."""
    if problem:
        return None, f"current column {problem}"
    if not sorted_values.size:
        return None, "no finite values in the current window"
    return Sample("numeric", sorted_values.size, sorted_values=sorted_values), None


def categorical_sample(counts: dict[Any, int]) -> tuple[Sample | None, str | None]:
    """A categorical column of the current window from its category counts (or the note)."""
    n = sum(counts.values())
    if not n:
        return None, "no values in the current window"
    return Sample("categorical", n, counts=counts), None


def _reference_column(
    stats_: ReferenceStats, col: str, kind: Kind
) -> tuple[Sample | None, str | None]:
    if kind == "numeric":
        s = stats_.numeric[col]
        if not s.sorted_values.size:
            return None, "no finite values in the reference"
        return Sample("numeric", s.sorted_values.size, sorted_values=s.sorted_values), None
    c = stats_.categorical[col]
    if not c.n_values:
        return None, "no values in the reference"
    return Sample("categorical", c.n_values, counts=c.counts), None


def _column_drift(
    col: str,
    kind: Kind,
    stats_: ReferenceStats,
    current: tuple[Sample | None, str | None],
    config: DriftConfig,
) -> ColumnDrift:
    method: str = config.per_column_method.get(col, config.method)
    override = config.per_column_threshold.get(col)
    ref, note = _reference_column(stats_, col, kind)
    cur, cur_note = current
    note = note or cur_note
    if method == "driftloop":
        effect_min = (
            override
            if override is not None
            else (config.min_effect_numeric if kind == "numeric" else config.min_effect_categorical)
        )
        if note:
            return ColumnDrift(
                col, kind, "driftloop", config.alpha, float("nan"), False, None, effect_min, note
            )
        p, effect = _driftloop_pvalue_effect(ref, cur)
        # the verdict needs the Holm correction across columns: see _apply_holm
        return ColumnDrift(col, kind, "driftloop", config.alpha, p, False, effect, effect_min)
    if method == "evidently":
        if note:
            return ColumnDrift(col, kind, "evidently", float("nan"), float("nan"), False, note=note)
        method = evidently_default_method(ref, cur)
    threshold = override if override is not None else config.threshold
    threshold = DEFAULT_THRESHOLDS[method] if threshold is None else threshold
    if note:
        return ColumnDrift(col, kind, method, threshold, float("nan"), False, note=note)
    score = _evidently_score(method, ref, cur, config.n_bins)
    return ColumnDrift(
        col, kind, method, threshold, score, _evidently_verdict(method, score, threshold)
    )


def _apply_holm(columns: list[ColumnDrift], alpha: float) -> list[ColumnDrift]:
    """Turn driftloop columns' raw p-values into Holm-adjusted ones and set their verdicts."""
    idx = [i for i, c in enumerate(columns) if c.method == "driftloop" and c.note is None]
    if not idx:
        return columns
    adjusted = holm_adjust([columns[i].score for i in idx])
    out = list(columns)
    for i, p_adj in zip(idx, adjusted, strict=True):
        c = out[i]
        drifted = bool(p_adj < alpha) and c.effect is not None and c.effect >= c.effect_threshold
        out[i] = ColumnDrift(
            c.column, c.kind, c.method, alpha, float(p_adj), drifted, c.effect, c.effect_threshold
        )
    return out


def weighted_drift(result: DriftResult, importances: Mapping[str, float]) -> float:
    """Share of total feature importance carried by drifted features (0 when none is known)."""
    weights = {c.column: max(float(importances.get(c.column, 0.0)), 0.0) for c in result.columns}
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    return sum(weights[c] for c in result.drifted_features) / total
