"""Metrics and figures of a fitted Pipeline on labelled data."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    auc,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_recall_curve,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    roc_curve,
    root_mean_squared_error,
)

from core.metrics import metric_info

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Bins of the expected calibration error and the calibration plot.
CALIBRATION_BINS = 10


def safe_metric(fn: Callable[[], float]) -> float:
    """A metric's value, or NaN where it is undefined on this data (e.g. one class present)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(fn())
    except ValueError:
        return float("nan")


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, *, bins: int = CALIBRATION_BINS
) -> float:
    """ECE: weighted mean gap between confidence and observed frequency over equal-width bins."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if len(confidence) == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


def _classes(pipeline: Any) -> np.ndarray:
    return np.asarray(pipeline.classes_)


def evaluate(
    pipeline: Any, X: pd.DataFrame, y: pd.Series | np.ndarray, *, task: str
) -> dict[str, float]:
    """Task metrics as plain floats (NaN where undefined on this data).

    Classification: roc_auc, log_loss, accuracy, f1, brier, ece. Binary metrics treat the second
    (larger) class label as positive; multiclass uses weighted one-vs-rest roc_auc and weighted f1,
    the multiclass brier score (range 0-2) and the top-label ece. Regression: rmse, mae, r2.
    Each value is :func:`score_metric`'s.
    """
    y_true = np.asarray(y)
    if task == "regression":
        pred = np.asarray(pipeline.predict(X), dtype=float)
        return {m: score_metric(m, y_true, pred, None, classes=()) for m in _EVALUATED[task]}
    if task != "classification":
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    classes = _classes(pipeline)
    proba = np.asarray(pipeline.predict_proba(X), dtype=float)
    pred = classes[np.argmax(proba, axis=1)]
    out = {m: score_metric(m, y_true, pred, proba, classes=classes) for m in _EVALUATED[task]}
    if len(classes) == 2:
        out["ece"] = expected_calibration_error(proba[:, 1], (y_true == classes[1]).astype(float))
    else:
        out["ece"] = expected_calibration_error(proba.max(axis=1), (pred == y_true).astype(float))
    return out


#: What :func:`evaluate` reports per task (plus ``ece`` for classification).
_EVALUATED = {
    "classification": ("roc_auc", "log_loss", "accuracy", "f1", "brier"),
    "regression": ("rmse", "mae", "r2"),
}


def score_metric(
    name: str,
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray | None,
    proba: np.ndarray | None,
    *,
    classes: Sequence[Any] | np.ndarray = (),
) -> float:
    """Any registry metric (``core.metrics``) from labels, predictions and probabilities.

    Classification: ``y_pred`` are predicted labels (None: the top class of ``proba``),
    ``proba`` the n x k probabilities in the order of ``classes`` (the model's); binary
    metrics take ``classes[-1]`` as positive.
    Multiclass roc_auc is weighted one-vs-rest, roc_auc_macro macro one-vs-rest,
    f1/precision/recall are weighted, f1_macro macro. Regression: ``y_pred`` are the predicted
    values, ``proba`` and ``classes`` are ignored. NaN where undefined (no rows, one class for
    roc_auc, fewer than two rows for r2, probability metrics without ``proba``).

    Raises:
        KeyError: an unknown metric name.
        ValueError: a metric that does not apply to the kind of model.
    """
    info = metric_info(name)
    y_true = np.asarray(y_true)
    if y_true.size == 0:
        return float("nan")
    if not len(classes):
        _check_kind(name, "regression", info.kinds)
        return _regression_metric(name, y_true, np.asarray(y_pred, dtype=float))
    classes = np.asarray(classes)
    kind = "binary" if len(classes) == 2 else "multiclass"
    _check_kind(name, kind, info.kinds)
    if info.uses_probabilities and proba is None:
        return float("nan")
    if y_pred is None:
        if proba is None:
            return float("nan")
        y_pred = classes[np.argmax(np.asarray(proba), axis=1)]
    y_pred = np.asarray(y_pred)
    if kind == "binary":
        return _binary_metric(name, y_true, y_pred, proba, classes)
    return _multiclass_metric(name, y_true, y_pred, proba, classes)


def _check_kind(name: str, kind: str, kinds: frozenset[str]) -> None:
    if kind not in kinds:
        raise ValueError(
            f"metric {name!r} does not apply to a {kind} model; it is for {sorted(kinds)}"
        )


def _regression_metric(name: str, y_true: np.ndarray, pred: np.ndarray) -> float:
    if name == "rmse":
        return safe_metric(lambda: root_mean_squared_error(y_true, pred))
    if name == "mae":
        return safe_metric(lambda: mean_absolute_error(y_true, pred))
    return safe_metric(lambda: r2_score(y_true, pred)) if len(y_true) > 1 else float("nan")


def _binary_metric(
    name: str, y_true: np.ndarray, pred: np.ndarray, proba: Any, classes: np.ndarray
) -> float:
    positive = classes[-1]
    is_pos = (y_true == positive).astype(float)
    said_pos = (pred == positive).astype(float)
    scorers: dict[str, Callable[[], float]] = {
        "roc_auc": lambda: roc_auc_score(is_pos, proba[:, -1]),
        "roc_auc_macro": lambda: roc_auc_score(is_pos, proba[:, -1]),
        "accuracy": lambda: accuracy_score(y_true, pred),
        "f1": lambda: f1_score(is_pos, said_pos, zero_division=0.0),
        "precision": lambda: precision_score(is_pos, said_pos, zero_division=0.0),
        "recall": lambda: recall_score(is_pos, said_pos, zero_division=0.0),
        "f1_macro": lambda: f1_score(is_pos, said_pos, average="macro", zero_division=0.0),
        "log_loss": lambda: log_loss(y_true, proba, labels=classes),
        "brier": lambda: brier_score_loss(is_pos, proba[:, -1], pos_label=1.0),
    }
    return safe_metric(scorers[name])


def _multiclass_metric(
    name: str, y_true: np.ndarray, pred: np.ndarray, proba: Any, classes: np.ndarray
) -> float:
    labels = list(classes)

    def averaged(fn: Callable[..., float], average: str) -> Callable[[], float]:
        return lambda: fn(y_true, pred, average=average, zero_division=0.0)

    scorers: dict[str, Callable[[], float]] = {
        "roc_auc": lambda: roc_auc_score(
            y_true, proba, multi_class="ovr", average="weighted", labels=labels
        ),
        "roc_auc_macro": lambda: roc_auc_score(
            y_true, proba, multi_class="ovr", average="macro", labels=labels
        ),
        "accuracy": lambda: accuracy_score(y_true, pred),
        "f1": averaged(f1_score, "weighted"),
        "f1_macro": averaged(f1_score, "macro"),
        "precision": averaged(precision_score, "weighted"),
        "recall": averaged(recall_score, "weighted"),
        "log_loss": lambda: log_loss(y_true, proba, labels=labels),
        "brier": lambda: brier_score_loss(y_true, proba, labels=labels),
    }
    return safe_metric(scorers[name])


def multiclass_metrics(
    y_true: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, *, labels: Sequence[Any]
) -> dict[str, float]:
    """Multiclass accuracy, weighted f1, weighted one-vs-rest roc_auc, log_loss and brier.

    ``labels`` are the classes in the column order of ``proba``; without ``proba`` the
    probability metrics are NaN. Training's holdout and the monitor's windows both use this.
    """
    names = ("accuracy", "f1", "roc_auc", "log_loss", "brier")
    return {m: score_metric(m, y_true, pred, proba, classes=labels) for m in names}


def overfit_gap(
    train_metrics: Mapping[str, float],
    holdout_metrics: Mapping[str, float],
    *,
    metric: str,
    higher_is_better: bool,
) -> float:
    """How much better the metric is on training data than on the holdout (positive = overfit)."""
    for name, metrics in (("train", train_metrics), ("holdout", holdout_metrics)):
        if metric not in metrics:
            raise KeyError(f"metric {metric!r} is not in the {name} metrics ({sorted(metrics)})")
    gap = float(train_metrics[metric]) - float(holdout_metrics[metric])
    return gap if higher_is_better else -gap


def _figure(title: str) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    return fig, ax


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)


def _confusion(y_true: np.ndarray, pred: np.ndarray, classes: np.ndarray) -> Figure:
    matrix = confusion_matrix(y_true, pred, labels=classes)
    fig, ax = _figure("Confusion matrix (holdout)")
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    labels = [str(c) for c in classes]
    ax.set_xticks(range(len(classes)), labels, rotation=45 if len(classes) > 4 else 0)
    ax.set_yticks(range(len(classes)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            f"{value:,}",
            ha="center",
            va="center",
            color="white" if value > threshold else "black",
        )
    return fig


def _one_vs_rest(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, is_class, score) per curve: the positive class for binary, every class otherwise."""
    if len(classes) == 2:
        return [(str(classes[1]), (y_true == classes[1]).astype(int), proba[:, 1])]
    return [(str(c), (y_true == c).astype(int), proba[:, k]) for k, c in enumerate(classes)]


def _roc(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> Figure:
    fig, ax = _figure("ROC curve (holdout)")
    drawn = False
    for label, is_class, score in _one_vs_rest(y_true, proba, classes):
        if 0 < is_class.sum() < len(is_class):
            fpr, tpr, _ = roc_curve(is_class, score)
            ax.plot(fpr, tpr, label=f"{label} (AUC {auc(fpr, tpr):.3f})")
            drawn = True
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    if drawn:
        ax.legend(loc="lower right", fontsize="small")
    else:
        _note(ax, "undefined: the data holds a single class")
    return fig


def _pr(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> Figure:
    fig, ax = _figure("Precision-recall curve (holdout)")
    drawn = False
    for label, is_class, score in _one_vs_rest(y_true, proba, classes):
        if is_class.sum() > 0:
            precision, recall, _ = precision_recall_curve(is_class, score)
            ax.step(
                recall, precision, where="post", label=f"{label} (base rate {is_class.mean():.3f})"
            )
            drawn = True
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    if drawn:
        ax.legend(loc="lower left", fontsize="small")
    else:
        _note(ax, "undefined: no positive rows")
    return fig


def _calibration(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> Figure:
    binary = len(classes) == 2
    if binary:
        confidence = proba[:, 1]
        outcome = (y_true == classes[1]).astype(float)
        title, xlabel = "Calibration (holdout)", f"predicted probability of {classes[1]}"
    else:
        confidence = proba.max(axis=1)
        outcome = (classes[np.argmax(proba, axis=1)] == y_true).astype(float)
        title, xlabel = "Calibration, top label (holdout)", "confidence of the predicted class"
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, CALIBRATION_BINS - 1)
    xs, ys, counts = [], [], []
    for b in range(CALIBRATION_BINS):
        in_bin = index == b
        if in_bin.any():
            xs.append(confidence[in_bin].mean())
            ys.append(outcome[in_bin].mean())
            counts.append(int(in_bin.sum()))
    fig, ax = _figure(title)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    ax.plot(
        xs,
        ys,
        marker="o",
        label=f"model (ECE {expected_calibration_error(confidence, outcome):.3f})",
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize="small")
    return fig


def _residuals(y_true: np.ndarray, pred: np.ndarray) -> Figure:
    fig, ax = _figure("Residuals vs predicted (holdout)")
    ax.scatter(pred, y_true - pred, s=6, alpha=0.4)
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual - predicted")
    return fig


def _predicted_vs_actual(y_true: np.ndarray, pred: np.ndarray) -> Figure:
    fig, ax = _figure("Predicted vs actual (holdout)")
    ax.scatter(y_true, pred, s=6, alpha=0.4)
    if len(y_true):
        low = float(min(np.min(y_true), np.min(pred)))
        high = float(max(np.max(y_true), np.max(pred)))
        if math.isfinite(low) and math.isfinite(high):
            ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    return fig


def evaluation_figures(
    pipeline: Any, X: pd.DataFrame, y: pd.Series | np.ndarray, *, task: str
) -> dict[str, Figure]:
    """Diagnostic figures of a fitted pipeline on labelled rows (see :func:`figures_from_outputs`)."""
    if task == "regression":
        return figures_from_outputs(np.asarray(y), pipeline.predict(X), None, task=task)
    if task != "classification":
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    classes = _classes(pipeline)
    proba = np.asarray(pipeline.predict_proba(X), dtype=float)
    return figures_from_outputs(np.asarray(y), None, proba, classes=classes, task=task)


def figures_from_outputs(
    y: np.ndarray,
    prediction: np.ndarray | None,
    proba: np.ndarray | None,
    *,
    classes: Sequence[Any] = (),
    task: str,
) -> dict[str, Figure]:
    """Diagnostic figures (matplotlib Figures, not saved and not registered with pyplot).

    Classification: confusion_matrix, roc_curve, pr_curve, calibration (one-vs-rest curves for
    multiclass, top-label calibration), from the n x k ``proba`` in the order of ``classes``.
    Regression: residuals, predicted_vs_actual, from ``prediction``.
    """
    y_true = np.asarray(y)
    if task == "regression":
        pred = np.asarray(prediction, dtype=float)
        y_float = y_true.astype(float)
        return {
            "residuals": _residuals(y_float, pred),
            "predicted_vs_actual": _predicted_vs_actual(y_float, pred),
        }
    labels = np.asarray(classes)
    proba = np.asarray(proba, dtype=float)
    pred = labels[np.argmax(proba, axis=1)]
    return {
        "confusion_matrix": _confusion(y_true, pred, labels),
        "roc_curve": _roc(y_true, proba, labels),
        "pr_curve": _pr(y_true, proba, labels),
        "calibration": _calibration(y_true, proba, labels),
    }
