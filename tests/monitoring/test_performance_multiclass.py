"""Multiclass model quality: measured on labels like training measures it, estimated without them."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from core.config_monitoring import PolicyConfig
from monitoring.performance import (
    PerformanceInputError,
    class_index,
    compute_performance,
    probability_matrix,
)
from monitoring.policy import make_result, should_retrain
from pipelines.evaluation import evaluate

CLASSES = (0, 1, 2)


def logged(proba: np.ndarray, y: np.ndarray | None, classes: tuple = CLASSES) -> pd.DataFrame:
    """A window as the monitor reads it: prediction, top-class probability, per-class dicts."""
    keys = [str(c) for c in classes]
    top = proba.argmax(axis=1)
    return pd.DataFrame(
        {
            "prediction": [classes[i] for i in top],
            "probability": proba.max(axis=1),
            "probabilities": [dict(zip(keys, row, strict=True)) for row in proba.tolist()],
            "label": pd.Series(list(y), dtype=object) if y is not None else np.nan,
        }
    )


def calibrated(rng: np.random.Generator, n: int, concentration: float) -> tuple[np.ndarray, ...]:
    """Per-class probabilities and labels drawn from them (a perfectly calibrated model)."""
    proba = rng.dirichlet([concentration] * 3, n)
    y = np.array([rng.choice(3, p=row) for row in proba])
    return proba, y


@pytest.fixture(scope="module")
def fitted() -> tuple[LogisticRegression, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600)})
    y = np.digitize(X["a"] + 0.5 * X["b"] + rng.normal(0, 0.7, 600), [-0.5, 0.5])
    return LogisticRegression().fit(X, y), X, y


@pytest.mark.parametrize("metric", ["accuracy", "f1", "roc_auc", "log_loss", "brier"])
def test_multiclass_metric_matches_the_training_evaluation(fitted, metric: str) -> None:
    model, X, y = fitted
    window = logged(model.predict_proba(X), y)

    result = compute_performance(
        current=window,
        reference=None,
        target="label",
        task="classification",
        metric=metric,
        reference_value=0.5,
        classes=CLASSES,
    )

    # the same definition as the holdout value logged at training, so the drop is meaningful
    assert result.value == pytest.approx(evaluate(model, X, y, task="classification")[metric])
    assert result.labeled_rows == 600 and not result.estimated


def test_breakdown_has_macro_f1_log_loss_and_recall_per_class() -> None:
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3], [0.1, 0.1, 0.8]])
    window = logged(proba, np.array([0, 1, 2, 2]))

    result = compute_performance(
        current=window,
        reference=None,
        target="label",
        task="classification",
        metric="accuracy",
        reference_value=1.0,
        classes=CLASSES,
    )

    b = result.breakdown
    assert result.value == pytest.approx(0.75) and result.drop == pytest.approx(0.25)
    assert b["recall.0"] == 1.0 and b["recall.1"] == 1.0 and b["recall.2"] == 0.5
    # per class F1: 1, 2/3, 2/3
    assert b["f1_macro"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert b["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.7, 0.3, 0.8])))
    assert b["unknown_label_share"] == 0.0


def test_class_1_of_three_is_not_a_positive_class() -> None:
    """Read as binary "class 1 vs rest", both rows would count as right; one of them is wrong."""
    proba = np.array([[0.1, 0.1, 0.8], [0.1, 0.1, 0.8]])
    window = logged(proba, np.array([2, 0]))
    result = compute_performance(
        current=window,
        reference=None,
        target="label",
        task="classification",
        metric="accuracy",
        reference_value=1.0,
        classes=CLASSES,
    )
    assert result.value == 0.5 and result.breakdown["recall.0"] == 0.0


def test_string_classes_and_labels_back_from_json_or_floats_match() -> None:
    assert class_index([2.0, np.int64(0), "1", None, 7], CLASSES).tolist() == [2, 0, 1, -1, -1]
    assert class_index(
        np.array(["low", "high", "odd"], dtype=object), ("high", "low", "mid")
    ).tolist() == [1, 0, -1]
    proba = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    window = logged(proba, np.array(["high", "mid"], dtype=object), classes=("high", "low", "mid"))
    result = compute_performance(
        current=window,
        reference=None,
        target="label",
        task="classification",
        metric="f1",
        reference_value=1.0,
        classes=("high", "low", "mid"),
    )
    assert result.value == 1.0 and result.breakdown["recall.mid"] == 1.0


def test_a_label_the_model_never_saw_counts_as_wrong() -> None:
    proba = np.array([[0.8, 0.1, 0.1], [0.8, 0.1, 0.1]])
    window = logged(proba, np.array([0, 9]))
    result = compute_performance(
        current=window,
        reference=None,
        target="label",
        task="classification",
        metric="log_loss",
        reference_value=0.5,
        classes=CLASSES,
    )
    assert result.breakdown["accuracy"] == 0.5
    assert result.breakdown["unknown_label_share"] == 0.5
    assert result.value == pytest.approx(-math.log(0.8))  # the known label only


def test_unlabeled_rows_are_ignored_and_an_unlabeled_window_is_nan() -> None:
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    window = logged(proba, np.array([0, 2, None], dtype=object))
    window["label"] = window["label"].astype(float)  # as the log returns partly labeled ints
    result = compute_performance(
        current=window,
        reference=None,
        target="label",
        task="classification",
        metric="accuracy",
        reference_value=1.0,
        classes=CLASSES,
    )
    assert result.labeled_rows == 2 and result.value == 0.5

    none = compute_performance(
        current=window.assign(label=np.nan),
        reference=None,
        target="label",
        task="classification",
        metric="roc_auc",
        reference_value=0.9,
        classes=CLASSES,
    )
    assert none.labeled_rows == 0 and math.isnan(none.value) and math.isnan(none.drop)


def test_probability_metrics_need_the_per_class_probabilities() -> None:
    window = logged(np.array([[0.8, 0.1, 0.1]]), np.array([0])).drop(columns=["probabilities"])
    with pytest.raises(PerformanceInputError, match="needs the per-class probabilities"):
        compute_performance(
            current=window,
            reference=None,
            target="label",
            task="classification",
            metric="log_loss",
            reference_value=0.5,
            classes=CLASSES,
        )


def test_reference_without_per_class_probabilities_gives_an_undefined_drop() -> None:
    """The training snapshot keeps the top-class probability only: no reference log loss."""
    window = logged(np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]]), np.array([0, 1]))
    reference = window.drop(columns=["probabilities"])
    result = compute_performance(
        current=window,
        reference=reference,
        target="label",
        task="classification",
        metric="log_loss",
        classes=CLASSES,
    )
    assert result.value == pytest.approx(-math.log(0.8))
    assert math.isnan(result.reference_value) and math.isnan(result.drop)

    accuracy = compute_performance(
        current=window,
        reference=reference,
        target="label",
        task="classification",
        metric="accuracy",
        classes=CLASSES,
    )
    assert accuracy.reference_value == 1.0 and accuracy.drop == 0.0


def test_probability_matrix_marks_rows_without_probabilities() -> None:
    m = probability_matrix([{"0": 0.5, "1": 0.3, "2": 0.2}, None, {"0": 1.0}], CLASSES)
    assert m[0].tolist() == [0.5, 0.3, 0.2]
    assert np.isnan(m[1]).all() and np.isnan(m[2]).all()


def test_multiclass_drop_triggers_the_performance_knob_of_should_retrain() -> None:
    rng = np.random.default_rng(5)
    proba, y = calibrated(rng, 1000, 0.5)
    flipped = (y + 1) % 3  # the world changed: every label moved to the next class
    policy = PolicyConfig(min_relative_drop=0.05, min_labeled_rows=100)
    now = datetime(2024, 1, 1, tzinfo=UTC)
    for labels, expected in ((y, False), (flipped, True)):
        performance = compute_performance(
            current=logged(proba, labels),
            reference=logged(proba, y),
            target="label",
            task="classification",
            metric="f1",
            classes=CLASSES,
        )
        result = make_result(
            window_rows=1000, min_window_rows=500, policy=policy, performance=performance
        )
        decision = should_retrain(result, [], policy, now)
        assert decision.yes is expected, decision.reason
    assert "f1 on 1000 labeled rows" in decision.reason
