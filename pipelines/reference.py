"""The reference snapshot: training features, target and the model's own predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.spec import PREDICTION_COLUMN, PROBABILITY_COLUMN


def build_reference(
    pipeline: Any, X: pd.DataFrame, y: pd.Series | np.ndarray, *, target: str, task: str
) -> pd.DataFrame:
    """A new frame: X's columns, target, PREDICTION_COLUMN and (classification) PROBABILITY_COLUMN.

    X and y are matched by position; the result has a fresh 0..n-1 index. The probability is the
    positive (second) class's for binary models and the top class's for multiclass ones. This is
    the snapshot that monitoring compares live traffic with.

    Raises:
        ValueError: the target or a prediction column name is already a column of X, or the
            lengths differ.
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    added = [target, PREDICTION_COLUMN] + ([PROBABILITY_COLUMN] if task == "classification" else [])
    clash = [c for c in added if c in X.columns]
    if clash:
        raise ValueError(
            f"feature columns {clash} clash with the reference's own columns; rename them"
        )
    y_values = np.asarray(y)
    if len(y_values) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y_values)}")
    reference = X.reset_index(drop=True).copy()
    reference[target] = y_values
    if task == "classification":
        proba = np.asarray(pipeline.predict_proba(X), dtype=float)
        classes = np.asarray(pipeline.classes_)
        reference[PREDICTION_COLUMN] = classes[np.argmax(proba, axis=1)]
        reference[PROBABILITY_COLUMN] = proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1)
    else:
        reference[PREDICTION_COLUMN] = np.asarray(pipeline.predict(X), dtype=float)
    return reference
