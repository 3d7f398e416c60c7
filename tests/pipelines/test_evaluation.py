"""Metrics, the overfitting gap and diagnostic figures."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn import metrics as skm

from pipelines.evaluation import (
    evaluate,
    evaluation_figures,
    expected_calibration_error,
    overfit_gap,
    score_metric,
)
from pipelines.schema import prepare_features
from pipelines.training import build_pipeline
from tests.pipelines.conftest import SPEC, make_frame


def fitted(task: str = "classification", classes: int = 2, labels: dict | None = None):
    frame = make_frame(150, task=task, classes=classes)
    if labels:
        frame["y"] = frame["y"].map(labels)
    family = "logistic" if task == "classification" else "linear"
    X = prepare_features(frame, SPEC)
    return build_pipeline(SPEC, task=task, family=family).fit(X, frame["y"]), X, frame["y"]


@pytest.mark.parametrize(
    ("task", "classes", "labels", "names"),
    [
        ("classification", 2, None, {"roc_auc", "log_loss", "accuracy", "f1", "brier", "ece"}),
        (
            "classification",
            2,
            {0: "no", 1: "yes"},
            {"roc_auc", "log_loss", "accuracy", "f1", "brier", "ece"},
        ),
        ("classification", 3, None, {"roc_auc", "log_loss", "accuracy", "f1", "brier", "ece"}),
        ("regression", 0, None, {"rmse", "mae", "r2"}),
    ],
    ids=["binary", "binary strings", "multiclass", "regression"],
)
def test_metrics_per_task_are_plain_finite_floats(
    task: str, classes: int, labels: dict | None, names: set
) -> None:
    pipeline, X, y = fitted(task, classes, labels)
    metrics = evaluate(pipeline, X, y, task=task)
    assert set(metrics) == names
    assert all(type(v) is float and math.isfinite(v) for v in metrics.values())
    if task == "classification":
        assert metrics["roc_auc"] > 0.7 and metrics["accuracy"] > 0.5
        assert 0 <= metrics["ece"] <= 1 and 0 <= metrics["brier"] <= (1 if classes == 2 else 2)
    else:
        assert metrics["r2"] > 0.5 and metrics["mae"] <= metrics["rmse"]


def test_binary_metrics_take_the_larger_label_as_positive() -> None:
    pipeline, X, y = fitted(labels={0: "no", 1: "yes"})
    flipped, _, _ = fitted(labels={0: "yes", 1: "no"})
    ours = evaluate(pipeline, X, y, task="classification")
    theirs = evaluate(flipped, X, y.map({"no": "yes", "yes": "no"}), task="classification")
    assert ours["roc_auc"] == pytest.approx(theirs["roc_auc"])
    # f1 of "yes" in one and of "no"-as-positive... differ unless the positive class is fixed by label order
    assert list(pipeline.classes_) == ["no", "yes"]
    positive = np.asarray(y) == "yes"
    predicted = pipeline.predict(X) == "yes"
    tp = (positive & predicted).sum()
    assert ours["f1"] == pytest.approx(2 * tp / (positive.sum() + predicted.sum()))


def test_metrics_undefined_on_a_single_class_are_nan() -> None:
    pipeline, X, y = fitted()
    only_ones = y == 1
    metrics = evaluate(pipeline, X[only_ones.to_numpy()], y[only_ones], task="classification")
    assert math.isnan(metrics["roc_auc"])
    assert math.isfinite(metrics["log_loss"]) and math.isfinite(metrics["accuracy"])


@pytest.mark.parametrize(
    ("confidence", "correct", "expected"),
    [
        ([0.9, 0.9, 0.9, 0.9], [1, 1, 1, 0], 0.15),
        ([0.25, 0.25, 0.75, 0.75], [0, 1, 1, 0], 0.25),
        ([0.05, 0.95], [0, 1], 0.05),
        ([1.0, 0.0], [1, 0], 0.0),
    ],
)
def test_expected_calibration_error(confidence: list, correct: list, expected: float) -> None:
    assert expected_calibration_error(np.array(confidence), np.array(correct)) == pytest.approx(
        expected
    )


@pytest.mark.parametrize(
    ("train", "holdout", "higher", "gap"),
    [
        (0.95, 0.85, True, 0.10),
        (0.85, 0.95, True, -0.10),
        (0.2, 0.5, False, 0.3),
        (0.5, 0.2, False, -0.3),
    ],
)
def test_overfit_gap_is_positive_when_train_is_better(
    train: float, holdout: float, higher: bool, gap: float
) -> None:
    assert overfit_gap(
        {"m": train}, {"m": holdout}, metric="m", higher_is_better=higher
    ) == pytest.approx(gap)


def test_overfit_gap_names_a_missing_metric() -> None:
    with pytest.raises(KeyError, match="'f1' is not in the holdout metrics"):
        overfit_gap({"f1": 0.9}, {"roc_auc": 0.8}, metric="f1", higher_is_better=True)


@pytest.mark.parametrize(
    ("task", "classes", "names"),
    [
        ("classification", 2, {"confusion_matrix", "roc_curve", "pr_curve", "calibration"}),
        ("classification", 3, {"confusion_matrix", "roc_curve", "pr_curve", "calibration"}),
        ("regression", 0, {"residuals", "predicted_vs_actual"}),
    ],
)
def test_figures_per_task_render_to_png(task: str, classes: int, names: set) -> None:
    pipeline, X, y = fitted(task, classes)
    figures = evaluation_figures(pipeline, X, y, task=task)
    assert set(figures) == names
    for figure in figures.values():
        assert isinstance(figure, Figure)
        assert figure.axes and figure.axes[0].has_data()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_do_not_register_with_pyplot() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    pipeline, X, y = fitted()
    evaluation_figures(pipeline, X, y, task="classification")
    assert plt.get_fignums() == before


def test_roc_figure_on_a_single_class_says_so() -> None:
    pipeline, X, y = fitted()
    keep = (y == 0).to_numpy()
    figure = evaluation_figures(pipeline, X[keep], y[keep], task="classification")["roc_curve"]
    assert any("single class" in t.get_text() for t in figure.axes[0].texts)


def test_multiclass_curves_are_one_per_class() -> None:
    pipeline, X, y = fitted("classification", 3)
    figures = evaluation_figures(pipeline, X, y, task="classification")
    assert len(figures["roc_curve"].axes[0].get_legend().get_texts()) == 3
    assert figures["confusion_matrix"].axes[0].images[0].get_array().shape == (3, 3)


def test_inputs_are_not_modified() -> None:
    pipeline, X, y = fitted()
    before_X, before_y = X.copy(), y.copy()
    evaluate(pipeline, X, y, task="classification")
    evaluation_figures(pipeline, X, y, task="classification")
    pd.testing.assert_frame_equal(X, before_X)
    pd.testing.assert_series_equal(y, before_y)


# --- score_metric: every registry metric from labels, predictions and probabilities ----------

_BINARY_Y = np.array(["no", "yes", "yes", "no", "yes", "no"])
_BINARY_P = np.array([0.2, 0.7, 0.4, 0.6, 0.9, 0.1])
_BINARY_PROBA = np.column_stack([1 - _BINARY_P, _BINARY_P])
_BINARY_PRED = np.where(_BINARY_P >= 0.5, "yes", "no")
_IS_YES = (_BINARY_Y == "yes").astype(int)
_SAID_YES = (_BINARY_PRED == "yes").astype(int)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("roc_auc", skm.roc_auc_score(_IS_YES, _BINARY_P)),
        ("roc_auc_macro", skm.roc_auc_score(_IS_YES, _BINARY_P)),
        ("accuracy", 4 / 6),
        ("f1", skm.f1_score(_IS_YES, _SAID_YES)),
        ("f1_macro", skm.f1_score(_IS_YES, _SAID_YES, average="macro")),
        ("precision", 2 / 3),
        ("recall", 2 / 3),
        ("log_loss", skm.log_loss(_IS_YES, _BINARY_P)),
        ("brier", float(np.mean((_IS_YES - _BINARY_P) ** 2))),
    ],
)
def test_score_metric_binary_takes_the_last_class_as_positive(name: str, expected: float) -> None:
    got = score_metric(name, _BINARY_Y, _BINARY_PRED, _BINARY_PROBA, classes=["no", "yes"])
    assert got == pytest.approx(expected)


_MC_Y = np.array([0, 1, 2, 2, 1, 0, 2, 1])
_MC_PROBA = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.2, 0.5, 0.3],
        [0.1, 0.3, 0.6],
        [0.3, 0.4, 0.3],
        [0.5, 0.4, 0.1],
        [0.6, 0.3, 0.1],
        [0.2, 0.2, 0.6],
        [0.1, 0.8, 0.1],
    ]
)
_MC_PRED = _MC_PROBA.argmax(axis=1)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("roc_auc", skm.roc_auc_score(_MC_Y, _MC_PROBA, multi_class="ovr", average="weighted")),
        ("roc_auc_macro", skm.roc_auc_score(_MC_Y, _MC_PROBA, multi_class="ovr")),
        ("accuracy", 6 / 8),
        ("f1", skm.f1_score(_MC_Y, _MC_PRED, average="weighted")),
        ("f1_macro", skm.f1_score(_MC_Y, _MC_PRED, average="macro")),
        ("precision", skm.precision_score(_MC_Y, _MC_PRED, average="weighted")),
        ("recall", skm.recall_score(_MC_Y, _MC_PRED, average="weighted")),
        ("log_loss", skm.log_loss(_MC_Y, _MC_PROBA)),
        ("brier", float(np.mean(np.sum((np.eye(3)[_MC_Y] - _MC_PROBA) ** 2, axis=1)))),
    ],
)
def test_score_metric_multiclass_definitions(name: str, expected: float) -> None:
    assert score_metric(name, _MC_Y, _MC_PRED, _MC_PROBA, classes=[0, 1, 2]) == pytest.approx(
        expected
    )


@pytest.mark.parametrize(
    ("name", "y", "pred", "proba", "classes"),
    [
        ("accuracy", [], [], np.empty((0, 2)), [0, 1]),
        ("roc_auc", [1, 1], [1, 0], np.array([[0.2, 0.8], [0.6, 0.4]]), [0, 1]),
        ("roc_auc_macro", [0, 1, 1], [0, 1, 1], _MC_PROBA[:3], [0, 1, 2]),  # class 2 absent
        ("roc_auc", [1, 1, 1], [0, 1, 1], _MC_PROBA[:3], [0, 1, 2]),  # one class
        ("log_loss", [0, 1], [0, 1], None, [0, 1]),
        ("r2", [1.0], [2.0], None, ()),
    ],
    ids=["no rows", "one class", "absent class", "one of three", "no probabilities", "r2"],
)
def test_score_metric_is_nan_where_undefined(name, y, pred, proba, classes) -> None:
    assert math.isnan(score_metric(name, y, pred, proba, classes=classes))


def test_score_metric_regression() -> None:
    y, pred = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0])
    assert score_metric("mae", y, pred, None, classes=()) == pytest.approx(0.5)
    assert score_metric("rmse", y, pred, None, classes=()) == pytest.approx(math.sqrt(1.25 / 3))
    assert score_metric("r2", y, pred, None, classes=()) == pytest.approx(skm.r2_score(y, pred))


def test_score_metric_refuses_unknown_and_misapplied_metrics() -> None:
    with pytest.raises(KeyError, match="unknown metric 'auc'"):
        score_metric("auc", [0], [0], None, classes=[0, 1])
    with pytest.raises(ValueError, match="'rmse' does not apply to a binary model"):
        score_metric("rmse", [0], [0], None, classes=[0, 1])
    with pytest.raises(ValueError, match="'roc_auc' does not apply to a regression model"):
        score_metric("roc_auc", [0.0], [0.0], None, classes=())


@pytest.mark.parametrize(("task", "classes"), [("classification", 2), ("classification", 3)])
def test_evaluate_reports_score_metric(task: str, classes: int) -> None:
    pipeline, X, y = fitted(task, classes)
    proba = pipeline.predict_proba(X)
    pred = pipeline.classes_[proba.argmax(axis=1)]
    metrics = evaluate(pipeline, X, y, task=task)
    for name in ("roc_auc", "log_loss", "accuracy", "f1", "brier"):
        assert metrics[name] == score_metric(name, y, pred, proba, classes=pipeline.classes_)
