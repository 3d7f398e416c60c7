"""Permutation importance on held-out rows (pipelines/importance.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipelines.importance import permutation_importances


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"signal": rng.normal(size=n), "noise": rng.normal(size=n)})


@pytest.mark.parametrize(
    ("task", "metric", "model"),
    [
        ("classification", "roc_auc", LogisticRegression()),
        ("classification", "accuracy", LogisticRegression()),
        ("regression", "rmse", LinearRegression()),
    ],
)
def test_the_feature_the_target_follows_carries_the_importance(
    task: str, metric: str, model: object
) -> None:
    train, holdout = _frame(400, 1), _frame(300, 2)

    def target(frame: pd.DataFrame) -> np.ndarray:
        value = 2 * frame["signal"].to_numpy()
        return (value > 0).astype(int) if task == "classification" else value

    pipeline = make_pipeline(StandardScaler(), model).fit(train, target(train))
    classes = (0, 1) if task == "classification" else ()
    importances = permutation_importances(
        pipeline, holdout, target(holdout), metric=metric, task=task, classes=classes
    )
    assert set(importances) == {"signal", "noise"}
    assert importances["signal"] > 0.1
    assert 0.0 <= importances["noise"] < 0.02
