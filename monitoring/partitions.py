"""Per-partition statistics of a current window that merge exactly, and drift from them.

A window split into partitions (any split of its rows; every partition a frame with the same
columns and dtypes, an empty one included) is summarised partition by partition
(:func:`partition_stats`, on whichever process holds the rows), the summaries are merged
(:func:`merge_partitions`: associative, in partition order) and the drift of the merged
summary (:func:`drift_from_partitions`) equals :func:`monitoring.drift.compute_drift` on the
concatenated frame: the same columns, methods, thresholds, notes and verdicts, the same
scores (bit for bit on numeric columns; to the last bits of a float sum on categorical ones,
where the order of categories may differ).

What a partition sends, and why it merges exactly:

* a numeric column: its finite values, sorted, and how many were NaN or +-inf. KS and
  Wasserstein need every value (the empirical distribution functions of both samples), and the
  binned methods (PSI, KL, Jensen-Shannon) take Sturges edges over the range of reference and
  window together, so neither a fixed histogram nor moments would reproduce them. The merge is
  a sorted merge, so the window's sorted sample is the same array (up to the order of ``-0.0``
  and ``0.0``, which compare equal and change no statistic);
* a categorical column: its category counts, which add up, in the order categories first
  appear;
* the partition's row count and columns.

A numeric sample costs 8 bytes per finite value, as much as the column itself: what
partitions save is the per-partition work (conversion, sorting, counting), not the transfer.
The data-quality check is not merged here: it lists new categories in the order of pandas'
sort by count, whose ties follow the whole column's hash table, so it runs on the frame.

Pure functions: no I/O, no Prefect or Dask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.config_monitoring import DriftConfig
from core.errors import DriftloopError
from monitoring.drift import (
    MISSING_FROM_WINDOW,
    DriftResult,
    Kind,
    ReferenceStats,
    Sample,
    categorical_sample,
    category_counts,
    drift_of_samples,
    numeric_sample,
    numeric_values,
)


class PartitionError(DriftloopError, ValueError):
    """Partition statistics that cannot be merged or compared; the message names the columns."""


@dataclass(frozen=True)
class NumericPart:
    """A numeric column of one partition: finite values sorted, and how many were not."""

    sorted_values: np.ndarray
    n_missing: int
    #: why the column cannot be compared (not numeric), as :func:`monitoring.drift.numeric_values`
    problem: str | None = None


@dataclass(frozen=True)
class CategoricalPart:
    """A categorical column of one partition: category counts (first-appearance order) and
    how many values were missing."""

    counts: dict[Any, int]
    n_missing: int


@dataclass(frozen=True)
class PartitionStats:
    """What the drift of a window needs from one partition (or from several, merged).

    Picklable, so a partition can be summarised in another process.
    """

    n_rows: int
    #: every column of the partition with its dtype, in the frame's order
    dtypes: dict[str, str]
    numeric: dict[str, NumericPart]
    categorical: dict[str, CategoricalPart]


def partition_stats(
    frame: pd.DataFrame, *, numeric: Sequence[str], categorical: Sequence[str]
) -> PartitionStats:
    """Summarise one partition's listed columns (those it has; the others count as missing
    from the window, as in :func:`monitoring.drift.compute_drift`).

    Raises:
        PartitionError: a column listed as both numeric and categorical.
    """
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise PartitionError(f"columns listed as both numeric and categorical: {both}")
    num = {}
    for col in numeric:
        if col in frame.columns:
            values, n_missing, problem = numeric_values(frame[col])
            num[col] = NumericPart(np.sort(values), n_missing, problem)
    cat = {}
    for col in categorical:
        if col in frame.columns:
            counts, n_missing = category_counts(frame[col])
            cat[col] = CategoricalPart(counts, n_missing)
    dtypes = {str(c): str(t) for c, t in frame.dtypes.items()}
    return PartitionStats(len(frame), dtypes, num, cat)


def merge_partitions(parts: Sequence[PartitionStats]) -> PartitionStats:
    """The statistics of the partitions' rows taken together, in the order given.

    Raises:
        PartitionError: no partitions, or partitions that disagree on their columns, their
            dtypes or which columns are numeric and which categorical (they must be parts of
            one window).
    """
    if not parts:
        raise PartitionError("no partition statistics to merge: pass at least one partition")
    first = parts[0]
    if len(parts) == 1:
        return first
    _check_alike(parts)
    numeric = {
        col: NumericPart(
            _sorted_merge([p.numeric[col].sorted_values for p in parts]),
            sum(p.numeric[col].n_missing for p in parts),
            first.numeric[col].problem,
        )
        for col in first.numeric
    }
    categorical = {
        col: CategoricalPart(
            _add_counts([p.categorical[col].counts for p in parts]),
            sum(p.categorical[col].n_missing for p in parts),
        )
        for col in first.categorical
    }
    return PartitionStats(sum(p.n_rows for p in parts), first.dtypes, numeric, categorical)


def _check_alike(parts: Sequence[PartitionStats]) -> None:
    first = parts[0]
    for i, part in enumerate(parts[1:], start=1):
        if set(part.dtypes) != set(first.dtypes):
            differ = sorted(set(part.dtypes) ^ set(first.dtypes))
            raise PartitionError(
                f"partition {i} has other columns than partition 0 (differing: {differ}); "
                "partitions must be parts of one window"
            )
        changed = sorted(c for c in first.dtypes if part.dtypes[c] != first.dtypes[c])
        if changed:
            detail = ", ".join(f"{c!r} {first.dtypes[c]} vs {part.dtypes[c]}" for c in changed)
            raise PartitionError(
                f"partition {i} has other dtypes than partition 0 ({detail}); split one frame "
                "so every partition keeps its dtypes"
            )
        if set(part.numeric) != set(first.numeric) or set(part.categorical) != set(
            first.categorical
        ):
            raise PartitionError(
                f"partition {i} summarised other columns than partition 0 (numeric "
                f"{sorted(part.numeric)} vs {sorted(first.numeric)}, categorical "
                f"{sorted(part.categorical)} vs {sorted(first.categorical)})"
            )


def _sorted_merge(arrays: list[np.ndarray]) -> np.ndarray:
    """One sorted array from sorted ones (timsort finds the runs: a k-way merge)."""
    return np.sort(np.concatenate(arrays), kind="stable")


def _add_counts(counts: list[dict[Any, int]]) -> dict[Any, int]:
    total: dict[Any, int] = {}
    for part in counts:
        for key, n in part.items():
            total[key] = total.get(key, 0) + n
    return total


def drift_from_partitions(
    *,
    reference_stats: ReferenceStats,
    partitions: Sequence[PartitionStats],
    numeric: Sequence[str],
    categorical: Sequence[str],
    config: DriftConfig | None = None,
    prediction: str | None = None,
    prediction_kind: Kind = "numeric",
) -> DriftResult:
    """The drift of the window the partitions make up: equal to
    :func:`monitoring.drift.compute_drift` on their rows concatenated, with the same arguments.

    Raises:
        PartitionError: partitions that do not merge, or a column the partitions hold but did
            not summarise as the kind it is compared as.
        DriftInputError: what :func:`monitoring.drift.compute_drift` refuses.
    """
    merged = merge_partitions(partitions)

    def current_sample(col: str, kind: Kind) -> tuple[Sample | None, str | None]:
        return _sample_of(merged, col, kind)

    return drift_of_samples(
        reference=None,
        current_sample=current_sample,
        n_current=merged.n_rows,
        numeric=numeric,
        categorical=categorical,
        config=config,
        prediction=prediction,
        prediction_kind=prediction_kind,
        reference_stats=reference_stats,
    )


def _sample_of(stats: PartitionStats, col: str, kind: Kind) -> tuple[Sample | None, str | None]:
    summaries = stats.numeric if kind == "numeric" else stats.categorical
    if col not in summaries:
        if col not in stats.dtypes:
            return None, MISSING_FROM_WINDOW
        raise PartitionError(
            f"column {col!r} is compared as {kind} but the partitions did not summarise it as "
            f"{kind} (numeric: {sorted(stats.numeric)}, categorical: {sorted(stats.categorical)}); "
            "pass the same column lists to partition_stats"
        )
    if kind == "numeric":
        part = stats.numeric[col]
        return numeric_sample(part.sorted_values, part.problem)
    return categorical_sample(stats.categorical[col].counts)


def split_rows(n_rows: int, n_parts: int) -> list[slice]:
    """``n_parts`` contiguous slices of ``range(n_rows)``, sizes differing by at most one
    (empty slices when there are fewer rows than parts).

    Raises:
        PartitionError: fewer than one part.
    """
    if n_parts < 1:
        raise PartitionError(f"cannot split a window into {n_parts} partitions: need at least 1")
    bounds = [i * n_rows // n_parts for i in range(n_parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@dataclass(frozen=True)
class ColumnGroup:
    """Some of a window's compared columns, checked in one task: each task reads only its
    columns of the window, so its memory grows with the window's rows times its columns."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    #: whether the group also compares the prediction column
    prediction: bool = False

    def features(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)


def column_groups(
    numeric: Sequence[str],
    categorical: Sequence[str],
    *,
    prediction: bool,
    per_group: int,
) -> list[ColumnGroup]:
    """The compared columns (the features, numeric first, then the prediction) in contiguous
    groups of at most ``per_group``, in order: the order :func:`monitoring.drift.combine_drift`
    and :func:`monitoring.quality.combine_quality` need.

    Raises:
        PartitionError: fewer than one column per group, or a column listed twice.
    """
    if per_group < 1:
        raise PartitionError(f"cannot check {per_group} columns per task: need at least 1")
    listed = [*numeric, *categorical]
    twice = sorted({c for c in listed if listed.count(c) > 1})
    if twice:
        raise PartitionError(f"columns listed more than once: {twice}")
    kinds = [("n", c) for c in numeric] + [("c", c) for c in categorical]
    if prediction:
        kinds.append(("p", ""))
    groups = []
    for start in range(0, len(kinds), per_group):
        chunk = kinds[start : start + per_group]
        groups.append(
            ColumnGroup(
                tuple(c for k, c in chunk if k == "n"),
                tuple(c for k, c in chunk if k == "c"),
                any(k == "p" for k, _ in chunk),
            )
        )
    return groups


def split_frame(frame: pd.DataFrame, n_parts: int) -> list[pd.DataFrame]:
    """The frame's rows in ``n_parts`` contiguous partitions (views, in order)."""
    return [frame.iloc[s] for s in split_rows(len(frame), n_parts)]
