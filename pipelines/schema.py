"""Which columns are features, and the typed frame every model sees (training and serving)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from core.spec import FeatureSpec
from pipelines.validation import DataValidationError, Problem, example_rows, numeric_failures


def _kind(dtype: Any) -> str | None:
    """'numeric', 'categorical' or None (a dtype that is neither, e.g. datetime)."""
    if pd.api.types.is_bool_dtype(dtype):
        return "numeric"
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        return "categorical"
    if pd.api.types.is_object_dtype(dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return "numeric"
    return None


def infer_features(
    df: pd.DataFrame,
    *,
    target: str,
    id_column: str | None = None,
    time_column: str | None = None,
    numeric: Iterable[str] | None = None,
    categorical: Iterable[str] | None = None,
    drop: Iterable[str] = (),
) -> FeatureSpec:
    """The feature spec: explicit lists win, the rest is inferred from dtypes.

    Candidate columns are all columns except the target, id, time and ``drop`` columns. With no
    list given, numbers and booleans are numeric, object/category/string columns categorical.
    With only ``numeric`` given, every other candidate is categorical. With only ``categorical``
    given, the other candidates must be numeric.

    Raises:
        DataValidationError: a candidate column has an unusable dtype (e.g. datetime), or no
            feature is left.
    """
    excluded = {target, id_column, time_column, *drop} - {None}
    remaining = [str(c) for c in df.columns if c not in excluded]
    problems: list[Problem] = []
    if numeric is not None and categorical is not None:
        spec = FeatureSpec(numeric=tuple(numeric), categorical=tuple(categorical))
    elif numeric is not None:
        num = tuple(numeric)
        spec = FeatureSpec(numeric=num, categorical=tuple(c for c in remaining if c not in num))
    else:
        cat = tuple(categorical) if categorical is not None else ()
        inferred: dict[str, list[str]] = {"numeric": [], "categorical": []}
        for column in remaining:
            if column in cat:
                continue
            kind = _kind(df[column].dtype)
            if kind is None or (categorical is not None and kind != "numeric"):
                hint = (
                    "list it under features.categorical or features.drop"
                    if categorical is not None
                    else "set it as time_column, or list it under features.drop"
                )
                problems.append(
                    Problem(column, f"cannot use dtype {df[column].dtype} as a feature; {hint}")
                )
                continue
            inferred[kind].append(column)
        spec = FeatureSpec(
            numeric=tuple(inferred["numeric"]), categorical=cat or tuple(inferred["categorical"])
        )
    if not spec.columns:
        problems.append(
            Problem(None, "no feature columns remain after excluding target, id, time and drop")
        )
    if problems:
        raise DataValidationError(problems, what="feature inference")
    return spec


def _label(value: Any) -> str:
    """The string form of one category: 16, 16.0 and '16' all become '16'."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _as_categorical_strings(series: pd.Series) -> pd.Series:
    """Object series of str labels; missing values become NaN. Converts each distinct value once."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        labels = np.array([_label(v) for v in series.cat.categories], dtype=object)
        codes = series.cat.codes.to_numpy()
        out = np.full(len(series), np.nan, dtype=object)
        out[codes >= 0] = labels[codes[codes >= 0]]
        return pd.Series(out, index=series.index, name=series.name, dtype=object)
    values = series.astype(object)
    missing = values.isna().to_numpy()
    present = values[~missing]
    try:
        mapping = {v: _label(v) for v in pd.unique(present)}
        mapped = present.map(mapping)
    except TypeError:  # unhashable cells
        mapped = present.map(_label)
    out = np.full(len(series), np.nan, dtype=object)
    out[~missing] = mapped.to_numpy(dtype=object)
    return pd.Series(out, index=series.index, name=series.name, dtype=object)


def _as_float(series: pd.Series) -> pd.Series:
    values = series.astype(object) if isinstance(series.dtype, pd.CategoricalDtype) else series
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_object_dtype(values.dtype):
        values = values.map(
            lambda v: float(v) if isinstance(v, bool | np.bool_) else v, na_action="ignore"
        )
    converted = pd.to_numeric(values, errors="coerce")
    return pd.Series(
        converted.to_numpy(dtype=float, na_value=np.nan), index=series.index, name=series.name
    )


def prepare_features(df: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """A new frame with exactly ``spec.columns``: numeric as float64, categorical as str objects.

    Missing values stay missing (NaN); the model Pipeline imputes them. The index is kept.

    Raises:
        DataValidationError: columns are missing, or numeric columns hold values that are not
            numbers (or are infinite); every such column is listed.
    """
    problems = [
        Problem(c, "feature column is missing") for c in spec.columns if c not in df.columns
    ]
    repeated = set(df.columns[df.columns.duplicated()]) & set(spec.columns)
    problems += [Problem(c, "column name appears more than once") for c in sorted(repeated)]
    for column in spec.numeric:
        if column not in df.columns or column in repeated:
            continue
        bad, infinite = numeric_failures(df[column])
        if bad.any():
            problems.append(
                Problem(
                    column,
                    f"{int(bad.sum())} value(s) cannot be read as numbers",
                    example_rows(bad),
                )
            )
        if infinite.any():
            problems.append(
                Problem(
                    column,
                    f"{int(infinite.sum())} infinite value(s) or value(s) too large to use",
                    example_rows(infinite),
                )
            )
    if problems:
        raise DataValidationError(problems, what="feature data")
    columns: dict[str, pd.Series] = {}
    for column in spec.numeric:
        columns[column] = _as_float(df[column])
    for column in spec.categorical:
        columns[column] = _as_categorical_strings(df[column])
    return pd.DataFrame(columns, index=df.index, columns=list(spec.columns))


def split_xy(frame: pd.DataFrame, spec: FeatureSpec, target: str) -> tuple[pd.DataFrame, pd.Series]:
    """The model's typed inputs and the target, row for row (both indexed from 0)."""
    return prepare_features(frame, spec), frame[target].reset_index(drop=True)


def dataset_frame(X: pd.DataFrame, y: Any, target: str) -> pd.DataFrame:
    """Prepared features and the target as one new frame, typed for MLflow's dataset record.

    MLflow types a logged dataset's columns from their dtypes, and an integer column declares
    values that can never be missing (its "integer column(s)" hint). The features are already
    float64 (:func:`prepare_features`); an integer target is declared float64 too, with the same
    values (exact up to 2**53). Other targets (labels as strings, floats, booleans) are kept.
    """
    values = pd.Series(np.asarray(y), index=X.index, name=target)
    if pd.api.types.is_integer_dtype(values.dtype):
        values = values.astype(np.float64)
    return X.assign(**{target: values})
