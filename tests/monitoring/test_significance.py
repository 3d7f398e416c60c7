"""A drop counts only beyond sampling noise: false alarms on generated no-drift windows stay at
most 5% for every metric, window size and scale of target; real drops are caught."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from core.metrics import drop
from monitoring.significance import MetricNoise, judge_drop, measure_noise
from pipelines.evaluation import score_metric

CLASSES = (0, 1)


def classification(rng: np.random.Generator, n: int, *, flip: float = 0.0):
    X = rng.standard_normal((n, 4))
    p = 1 / (1 + np.exp(-(1.5 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2])))
    y = (rng.random(n) < p).astype(int)
    if flip:
        swap = rng.random(n) < flip
        y[swap] = 1 - y[swap]
    return X, y


def regression(rng: np.random.Generator, n: int, *, scale: float, noise: float = 1.0):
    X = rng.standard_normal((n, 3))
    y = scale * (2.0 * X[:, 0] - X[:, 1] + rng.normal(0, noise, n))
    return X, y


def outputs(model, X, task):
    if task == "regression":
        return model.predict(X), None
    proba = model.predict_proba(X)
    return proba.argmax(axis=1), proba


def false_alarm_rate(task: str, metric: str, window: int, *, scale: float = 1.0) -> float:
    rng = np.random.default_rng(7)
    make = (
        classification if task == "classification" else lambda r, n: regression(r, n, scale=scale)
    )
    classes = CLASSES if task == "classification" else ()
    X, y = make(rng, 4000)
    model = (LogisticRegression() if task == "classification" else LinearRegression()).fit(X, y)
    Xh, yh = make(rng, 5000)  # the holdout, out of sample
    pred, proba = outputs(model, Xh, task)
    noise = measure_noise(metric, yh, pred, proba, classes=classes, rows=1000, seed=1)
    reference = score_metric(metric, yh, pred, proba, classes=classes)
    flagged = 0
    trials = 300
    for _ in range(trials):
        Xw, yw = make(rng, window)
        wp, wproba = outputs(model, Xw, task)
        value = score_metric(metric, yw, wp, wproba, classes=classes)
        verdict = judge_drop(
            drop(metric, value, reference),
            reference_value=reference,
            rows=window,
            noise=noise,
            alpha=0.01,
            min_relative_drop=0.0,  # the noise rule alone
        )
        flagged += verdict.significant
    return flagged / trials


@pytest.mark.parametrize("metric", ["roc_auc", "accuracy", "f1", "log_loss", "brier"])
@pytest.mark.parametrize("window", [300, 3000])
def test_classification_drops_on_no_drift_windows_are_rarely_flagged(
    metric: str, window: int
) -> None:
    assert false_alarm_rate("classification", metric, window) <= 0.05


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
@pytest.mark.parametrize("scale", [0.001, 1.0, 10_000.0])
def test_regression_drops_on_no_drift_windows_are_rarely_flagged_at_any_scale(
    metric: str, scale: float
) -> None:
    assert false_alarm_rate("regression", metric, 500, scale=scale) <= 0.05


def test_a_real_drop_is_caught_and_a_tiny_one_on_a_huge_window_is_not() -> None:
    rng = np.random.default_rng(3)
    X, y = classification(rng, 4000)
    model = LogisticRegression().fit(X, y)
    Xh, yh = classification(rng, 5000)
    pred, proba = outputs(model, Xh, "classification")
    noise = measure_noise("roc_auc", yh, pred, proba, classes=CLASSES)
    reference = score_metric("roc_auc", yh, pred, proba, classes=CLASSES)
    Xw, yw = classification(rng, 2000, flip=0.15)  # labels noisier: a real drop of ~0.07
    wp, wproba = outputs(model, Xw, "classification")
    value = score_metric("roc_auc", yw, wp, wproba, classes=CLASSES)
    verdict = judge_drop(
        drop("roc_auc", value, reference),
        reference_value=reference,
        rows=2000,
        noise=noise,
        alpha=0.01,
        min_relative_drop=0.01,
    )
    assert verdict.significant and "exceeds" in verdict.reason
    tiny = judge_drop(
        0.003,
        reference_value=reference,
        rows=10_000_000,
        noise=MetricNoise("roc_auc", 1000, noise.std, 10_000_000),
        alpha=0.01,
        min_relative_drop=0.01,
    )
    assert not tiny.significant and tiny.min_drop > tiny.noise_threshold


def test_noise_scales_with_the_square_root_of_the_rows() -> None:
    noise = MetricNoise("rmse", rows=1000, std=0.2, reference_rows=5000)
    assert noise.std_at(4000) == pytest.approx(0.1)
    assert math.isnan(noise.std_at(0))
    assert MetricNoise.from_dict(noise.to_dict()) == noise
