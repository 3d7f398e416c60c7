"""Permutation importance of a fitted Pipeline's input features on rows it never learned from
(pure: scikit-learn only). The monitor's ``drift_rule: weighted`` weighs drifted features by it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

from pipelines.training import make_scoring


def permutation_importances(
    pipeline: Any,
    X: pd.DataFrame,
    y: Any,
    *,
    metric: str,
    task: str,
    classes: Sequence[Any] = (),
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Each input column's mean loss of ``metric`` when its values are shuffled (>= 0).

    The scorer is sign-adjusted (higher is better), so a positive value is what the model loses
    without the column; a column whose shuffling helps or changes nothing gets 0.
    """
    scoring, _ = make_scoring(metric, task=task, classes=classes)
    result = permutation_importance(
        pipeline,
        X,
        np.asarray(y),
        scoring=scoring,
        n_repeats=repeats,
        random_state=seed,
        n_jobs=1,
    )
    return {
        str(column): max(float(value), 0.0)
        for column, value in zip(X.columns, result.importances_mean, strict=True)
    }
