"""Training data checks: every problem is collected, then reported at once.

Missing feature values and unseen categories are NOT problems here: the model Pipeline imputes
and ignores them. What is checked is what would make training fail or silently wrong.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.errors import DriftloopError

if TYPE_CHECKING:
    from core.spec import FeatureSpec

#: Example rows kept per problem.
MAX_EXAMPLE_ROWS = 5
#: A feature with a larger missing share than this is warned about.
MISSING_WARN_SHARE = 0.5
#: A float classification target with more distinct values than this looks continuous.
MAX_FLOAT_CLASSES = 20
#: The largest magnitude a number may have to be trained on: squares and sums of squares of
#: such values stay finite in float64 (scaling, variance, gradients), so nothing becomes NaN.
MAX_ABS_NUMBER = 1e150


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data: the column (None for the whole frame), what, where."""

    column: str | None
    problem: str
    rows: tuple[int, ...] = ()

    def __str__(self) -> str:
        where = f"column {self.column!r}: " if self.column is not None else ""
        rows = f" (e.g. rows {', '.join(map(str, self.rows))})" if self.rows else ""
        return f"{where}{self.problem}{rows}"


class DataValidationError(DriftloopError, ValueError):
    """The data cannot be used; ``problems`` lists every problem and the message names them all."""

    def __init__(self, problems: Sequence[Problem], *, what: str = "training data") -> None:
        self.problems: list[Problem] = list(problems)
        count = len(self.problems)
        header = f"{what} failed validation ({count} problem{'s' if count != 1 else ''}):"
        super().__init__("\n".join([header, *(f"  - {p}" for p in self.problems)]))


@dataclass(frozen=True)
class ValidationReport:
    """Data that passed: its row count and non-fatal findings."""

    rows: int
    warnings: tuple[Problem, ...] = field(default_factory=tuple)


def example_rows(mask: np.ndarray | pd.Series) -> tuple[int, ...]:
    """Positions (0-based) of the first few True values of a boolean mask."""
    positions = np.flatnonzero(np.asarray(mask, dtype=bool))
    return tuple(int(p) for p in positions[:MAX_EXAMPLE_ROWS])


def numeric_failures(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Masks of values that are present but not numbers, and of unusable numbers: infinite or
    larger in magnitude than :data:`MAX_ABS_NUMBER`."""
    values = series.astype(object) if isinstance(series.dtype, pd.CategoricalDtype) else series
    if pd.api.types.is_bool_dtype(values.dtype):
        values = values.astype(float)
    present = values.notna().to_numpy()
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_complex_dtype(
        values.dtype
    ):
        converted = values
    else:
        converted = pd.to_numeric(values.map(_unbool, na_action="ignore"), errors="coerce")
        if pd.api.types.is_complex_dtype(converted.dtype):
            converted = pd.Series(np.nan, index=values.index)
    as_float = converted.to_numpy(dtype=float, na_value=np.nan)
    bad = present & np.isnan(as_float)
    with np.errstate(invalid="ignore"):
        unusable = np.abs(as_float) > MAX_ABS_NUMBER
    return bad, unusable


def usable_numbers(df: pd.DataFrame, numeric: Sequence[str]) -> np.ndarray:
    """Mask of rows whose numeric features are all missing or usable numbers (finite, at most
    :data:`MAX_ABS_NUMBER` in magnitude): the rows training can use."""
    keep = np.ones(len(df), dtype=bool)
    for column in numeric:
        if column in df.columns:
            bad, unusable = numeric_failures(df[column])
            keep &= ~(bad | unusable)
    return keep


def _unbool(value: Any) -> Any:
    """Booleans inside object columns count as 0/1; complex numbers are not numbers here."""
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, complex | np.complexfloating):
        return np.nan
    return value


def validate_training_data(
    df: pd.DataFrame,
    *,
    spec: FeatureSpec,
    target: str,
    task: str,
    min_rows: int,
    id_column: str | None = None,
    time_column: str | None = None,
) -> ValidationReport:
    """Check a training frame against the feature spec and task.

    Raises:
        DataValidationError: listing every problem found (missing columns, bad target, too few
            rows or classes, non-numeric numeric features, all-missing features, duplicate ids).

    Returns:
        The row count and warnings (duplicate rows, constant columns, mostly-missing columns).
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    problems: list[Problem] = []
    warnings: list[Problem] = []

    duplicated_names = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    for name in duplicated_names:
        problems.append(Problem(name, "column name appears more than once in the data"))
    if duplicated_names:  # every later check indexes columns by name
        raise DataValidationError(problems)

    rows = len(df)
    if rows == 0:
        problems.append(Problem(None, "the data has no rows"))
    elif rows < min_rows:
        problems.append(
            Problem(
                None,
                f"only {rows} rows, fewer than min_rows={min_rows}; add data or lower min_rows",
            )
        )

    features = list(spec.columns)
    if not features:
        problems.append(
            Problem(None, "no feature columns: list features.numeric / features.categorical")
        )
    for role, column in (
        ("target", target),
        ("id column", id_column),
        ("time column", time_column),
    ):
        if column is not None and column in spec.columns:
            problems.append(Problem(column, f"the {role} is also listed as a feature"))

    present = set(df.columns)
    for column in features:
        if column not in present:
            problems.append(Problem(column, "feature column is missing from the data"))
    for role, column in (("target", target), ("id", id_column), ("time", time_column)):
        if column is not None and column not in present:
            problems.append(Problem(column, f"{role} column is missing from the data"))

    if target in present:
        problems += _check_target(df[target], target=target, task=task)
    if id_column is not None and id_column in present:
        problems += _check_ids(df[id_column], id_column)
    if time_column is not None and time_column in present:
        problems += _check_time(df[time_column], time_column)

    for column in spec.numeric:
        if column in present:
            bad, infinite = numeric_failures(df[column])
            if bad.any():
                problems.append(
                    Problem(
                        column,
                        f"numeric feature has {int(bad.sum())} value(s) that are not numbers; "
                        "fix them or list the column under features.categorical",
                        example_rows(bad),
                    )
                )
            if infinite.any():
                problems.append(
                    Problem(
                        column,
                        f"numeric feature has {int(infinite.sum())} infinite value(s) or "
                        f"value(s) larger in magnitude than {MAX_ABS_NUMBER:g}",
                        example_rows(infinite),
                    )
                )

    present_features = [c for c in features if c in present]
    if rows:
        for column in present_features:
            missing = df[column].isna()
            share = float(missing.mean())
            if share == 1.0:
                problems.append(
                    Problem(column, "feature is missing in every row; drop it or fix the source")
                )
                continue
            if share > MISSING_WARN_SHARE:
                warnings.append(
                    Problem(column, f"{share:.0%} of values are missing (imputed by the model)")
                )
            if _nunique(df[column]) == 1:
                warnings.append(
                    Problem(column, "constant column: a single value, it cannot help the model")
                )

    if problems:
        raise DataValidationError(problems)

    check = [*present_features, target]
    try:
        duplicated = df[check].duplicated().to_numpy()
    except TypeError:  # unhashable cells (lists, dicts): cannot compare rows
        duplicated = np.zeros(rows, dtype=bool)
    if duplicated.any():
        warnings.append(
            Problem(
                None,
                f"{int(duplicated.sum())} row(s) repeat an earlier row's features and target",
                example_rows(duplicated),
            )
        )
    return ValidationReport(rows=rows, warnings=tuple(warnings))


def _nunique(series: pd.Series) -> int:
    try:
        return int(series.nunique(dropna=True))
    except TypeError:  # unhashable cells
        return int(series.astype(str).nunique(dropna=True))


def _value_types(values: Iterable[Hashable]) -> set[str]:
    kinds = set()
    for value in values:
        if isinstance(value, bool | np.bool_):
            kinds.add("bool")
        elif isinstance(value, int | float | np.integer | np.floating):
            kinds.add("number")
        elif isinstance(value, str):
            kinds.add("text")
        else:
            kinds.add(type(value).__name__)
    return kinds


def _check_target(y: pd.Series, *, target: str, task: str) -> list[Problem]:
    problems: list[Problem] = []
    missing = y.isna().to_numpy()
    if missing.any():
        problems.append(
            Problem(
                target,
                f"target has {int(missing.sum())} missing value(s); drop or label those rows",
                example_rows(missing),
            )
        )
    labelled = y[~missing]
    if task == "regression":
        numeric = pd.api.types.is_numeric_dtype(labelled.dtype) and not pd.api.types.is_bool_dtype(
            labelled.dtype
        )
        if not numeric or pd.api.types.is_complex_dtype(labelled.dtype):
            bad, _ = numeric_failures(y)
            detail = f" ({int(bad.sum())} value(s) are not numbers)" if bad.any() else ""
            problems.append(
                Problem(
                    target,
                    f"regression target must be numeric, got dtype {y.dtype}{detail}; "
                    "convert it or use task: classification",
                    example_rows(bad),
                )
            )
        else:
            with np.errstate(invalid="ignore"):
                infinite = np.abs(y.to_numpy(dtype=float, na_value=np.nan)) > MAX_ABS_NUMBER
            if infinite.any():
                problems.append(
                    Problem(
                        target,
                        f"target has infinite values or values larger in magnitude than "
                        f"{MAX_ABS_NUMBER:g}",
                        example_rows(infinite),
                    )
                )
        return problems

    if len(labelled) == 0:
        return problems
    values = (
        labelled.astype(object) if isinstance(labelled.dtype, pd.CategoricalDtype) else labelled
    )
    try:
        counts = values.value_counts()
    except TypeError:
        problems.append(
            Problem(target, "target holds unhashable values (lists, dicts): use plain labels")
        )
        return problems
    kinds = _value_types(counts.index)
    if len(kinds) > 1:
        problems.append(
            Problem(
                target,
                f"target mixes label types ({', '.join(sorted(kinds))}); "
                "use one type for all labels",
            )
        )
    if len(counts) < 2:
        problems.append(
            Problem(
                target, f"classification target has {len(counts)} class(es); at least 2 are needed"
            )
        )
    if pd.api.types.is_float_dtype(values.dtype) and len(counts) > MAX_FLOAT_CLASSES:
        problems.append(
            Problem(
                target,
                f"classification target has {len(counts)} distinct float values: "
                "it looks continuous; "
                "use task: regression or encode the classes",
            )
        )
    else:
        rare = counts[counts < 2]
        if len(rare):
            shown = ", ".join(repr(v) for v in list(rare.index)[:MAX_EXAMPLE_ROWS])
            more = (
                f" and {len(rare) - MAX_EXAMPLE_ROWS} more" if len(rare) > MAX_EXAMPLE_ROWS else ""
            )
            problems.append(
                Problem(
                    target,
                    f"{len(rare)} class(es) have a single row ({shown}{more}); "
                    "cross-validation cannot "
                    "stratify them: add rows or merge the classes",
                )
            )
    return problems


def _check_ids(ids: pd.Series, column: str) -> list[Problem]:
    problems: list[Problem] = []
    missing = ids.isna().to_numpy()
    if missing.any():
        problems.append(
            Problem(
                column,
                f"id column has {int(missing.sum())} missing value(s)",
                example_rows(missing),
            )
        )
    try:
        duplicated = (ids.duplicated(keep="first") & ~ids.isna()).to_numpy()
    except TypeError:
        problems.append(Problem(column, "id column holds unhashable values (lists, dicts)"))
        return problems
    if duplicated.any():
        problems.append(
            Problem(
                column,
                f"{int(duplicated.sum())} duplicate id(s): each row needs its own id",
                example_rows(duplicated),
            )
        )
    return problems


def _check_time(times: pd.Series, column: str) -> list[Problem]:
    problems: list[Problem] = []
    missing = times.isna().to_numpy()
    if missing.any():
        problems.append(
            Problem(
                column,
                f"time column has {int(missing.sum())} missing value(s); the time split needs them",
                example_rows(missing),
            )
        )
    try:
        times[~missing].sort_values(kind="stable")
    except TypeError:
        problems.append(Problem(column, "time column mixes value types that cannot be ordered"))
    return problems
