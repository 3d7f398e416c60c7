"""Model quality with labels and the label-free estimate for calibrated classifiers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from monitoring.performance import (
    PerformanceInputError,
    compute_performance,
    performance_drop,
)


def calibrated(rng: np.random.Generator, n: int, a: float = 2.0, b: float = 2.0) -> pd.DataFrame:
    """A perfectly calibrated classifier: labels drawn with the predicted probability."""
    p = rng.beta(a, b, n)
    y = (rng.random(n) < p).astype(int)
    return pd.DataFrame({"probability": p, "prediction": (p >= 0.5).astype(int), "employed": y})


def test_classification_metrics_on_labeled_rows_only() -> None:
    current = pd.DataFrame(
        {
            "employed": [1, 0, 1, np.nan, np.nan],
            "prediction": [1, 0, 0, 1, 1],
            "probability": [0.9, 0.2, 0.4, 0.8, 0.7],
        }
    )
    result = compute_performance(
        current=current,
        reference=None,
        target="employed",
        task="classification",
        metric="accuracy",
        reference_value=0.9,
    )
    assert result.labeled_rows == 3 and not result.estimated
    assert result.value == pytest.approx(2 / 3)
    assert result.drop == pytest.approx(0.9 - 2 / 3)


@pytest.mark.parametrize("metric", ["accuracy", "roc_auc", "f1", "log_loss", "brier"])
def test_each_classification_metric_matches_sklearn(metric: str) -> None:
    rng = np.random.default_rng(0)
    frame = calibrated(rng, 500)
    result = compute_performance(
        current=frame, reference=frame, target="employed", task="classification", metric=metric
    )
    y, p, f = frame["employed"], frame["probability"], frame["prediction"]
    expected = {
        "accuracy": skm.accuracy_score(y, f),
        "roc_auc": skm.roc_auc_score(y, p),
        "f1": skm.f1_score(y, f),
        "log_loss": skm.log_loss(y, p),
        "brier": skm.brier_score_loss(y, p),
    }[metric]
    assert result.value == pytest.approx(expected)
    assert result.drop == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("metric", "value", "reference", "drop"),
    [
        ("rmse", 2.0, 1.0, 1.0),
        ("mae", 0.5, 1.0, -0.5),
        ("r2", 0.7, 0.9, 0.2),
        ("roc_auc", 0.9, 0.8, -0.1),
    ],
)
def test_drop_is_positive_when_worse(
    metric: str, value: float, reference: float, drop: float
) -> None:
    assert performance_drop(metric, value, reference) == pytest.approx(drop)


def test_regression_metrics() -> None:
    current = pd.DataFrame({"y": [1.0, 2.0, 3.0, np.nan], "prediction": [1.0, 2.0, 5.0, 9.0]})
    rmse = compute_performance(
        current=current,
        reference=current,
        target="y",
        task="regression",
        metric="rmse",
        reference_value=1.0,
    )
    assert rmse.value == pytest.approx(math.sqrt(4 / 3)) and rmse.labeled_rows == 3
    r2 = compute_performance(
        current=current, reference=current, target="y", task="regression", metric="r2"
    )
    assert r2.value == pytest.approx(skm.r2_score([1, 2, 3], [1, 2, 5]))


def test_label_less_window_gives_nan_not_an_error() -> None:
    current = pd.DataFrame(
        {"employed": [np.nan] * 3, "prediction": [1, 0, 1], "probability": [0.8, 0.1, 0.9]}
    )
    result = compute_performance(
        current=current,
        reference=None,
        target="employed",
        task="classification",
        metric="roc_auc",
        reference_value=0.8,
    )
    assert result.labeled_rows == 0 and math.isnan(result.value) and math.isnan(result.drop)
    assert result.to_dict()["value"] is None


def test_roc_auc_with_one_class_is_undefined() -> None:
    current = pd.DataFrame({"employed": [1, 1], "prediction": [1, 0], "probability": [0.8, 0.3]})
    result = compute_performance(
        current=current,
        reference=None,
        target="employed",
        task="classification",
        metric="roc_auc",
        reference_value=0.8,
    )
    assert math.isnan(result.value)


def test_metric_must_fit_the_task() -> None:
    with pytest.raises(PerformanceInputError, match="does not fit task 'regression'"):
        compute_performance(
            current=pd.DataFrame(),
            reference=None,
            target="y",
            task="regression",
            metric="roc_auc",
            reference_value=1,
        )
