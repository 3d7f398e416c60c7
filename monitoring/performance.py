"""Model quality in a window: measured where labels have arrived, estimated where they have not.

The estimate assumes a calibrated binary classifier: each row's label is positive with the
predicted probability ``p``. Expected values of the metrics then follow from the probabilities
alone (confidence-based performance estimation, "CBPE"): accuracy is the mean of ``p`` on rows
predicted positive and ``1 - p`` on the others; ROC AUC comes from the expected true and false
positive counts at every threshold. The estimate is compared with the same estimate on the
reference, so calibration error common to both cancels out. Pure functions on frames.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn import metrics as skm

Task = Literal["classification", "regression"]
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae"})
CLASSIFICATION_METRICS = ("accuracy", "roc_auc", "f1", "log_loss", "brier")
REGRESSION_METRICS = ("rmse", "mae", "r2")
ESTIMABLE_METRICS = frozenset(CLASSIFICATION_METRICS)


class PerformanceInputError(ValueError):
    """A metric does not fit the task, or the frames lack the columns it needs."""


@dataclass(frozen=True)
class PerformanceResult:
    """One metric in the window next to its reference value.

    ``drop`` is positive when the window is worse (whatever the metric's direction) and NaN when
    either value is undefined (e.g. ROC AUC with one class).
    """

    metric: str
    value: float
    reference_value: float
    drop: float
    labeled_rows: int
    estimated: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }


def performance_drop(metric: str, value: float, reference_value: float) -> float:
    """How much worse ``value`` is than ``reference_value`` (positive = worse)."""
    if metric in LOWER_IS_BETTER:
        return float(value - reference_value)
    return float(reference_value - value)


def classification_metric(
    metric: str,
    y_true: np.ndarray,
    y_pred: np.ndarray | None,
    proba: np.ndarray | None,
    *,
    positive_label: Hashable = 1,
) -> float:
    """A binary classification metric; NaN when it is undefined on these labels."""
    truth = np.asarray(y_true) == positive_label
    if metric in ("roc_auc", "log_loss", "brier"):
        if proba is None:
            raise PerformanceInputError(f"metric {metric!r} needs predicted probabilities")
        p = np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0)
        if truth.size == 0:
            return float("nan")
        if metric == "brier":
            return float(np.mean((p - truth) ** 2))
        if metric == "roc_auc":
            one_class = truth.all() or not truth.any()
            return float("nan") if one_class else float(skm.roc_auc_score(truth, p))
        return float(skm.log_loss(truth, p, labels=[False, True]))
    if y_pred is None:
        if proba is None:
            raise PerformanceInputError(f"metric {metric!r} needs predictions")
        pred = np.asarray(proba, dtype=np.float64) >= 0.5
    else:
        pred = np.asarray(y_pred) == positive_label
    if truth.size == 0:
        return float("nan")
    if metric == "accuracy":
        return float(np.mean(pred == truth))
    if metric == "f1":
        return float(skm.f1_score(truth, pred, zero_division=0.0))
    raise PerformanceInputError(
        f"unknown classification metric {metric!r}; choose one of {list(CLASSIFICATION_METRICS)}"
    )


def regression_metric(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """A regression metric; NaN on no rows (and r2 on fewer than two)."""
    y = np.asarray(y_true, dtype=np.float64)
    f = np.asarray(y_pred, dtype=np.float64)
    if y.size == 0 or (metric == "r2" and y.size < 2):
        return float("nan")
    if metric == "rmse":
        return float(np.sqrt(np.mean((y - f) ** 2)))
    if metric == "mae":
        return float(np.mean(np.abs(y - f)))
    if metric == "r2":
        return float(skm.r2_score(y, f))
    raise PerformanceInputError(
        f"unknown regression metric {metric!r}; choose one of {list(REGRESSION_METRICS)}"
    )


def _metric_on(
    frame: pd.DataFrame,
    *,
    task: Task,
    metric: str,
    target: str,
    prediction: str,
    probability: str | None,
    positive_label: Hashable,
) -> tuple[float, int]:
    if target not in frame.columns:
        return float("nan"), 0
    labeled = frame[frame[target].notna()]
    if prediction in labeled.columns:
        labeled = labeled[labeled[prediction].notna()]
    y = labeled[target].to_numpy()
    if task == "regression":
        if prediction not in labeled.columns:
            raise PerformanceInputError(f"regression metrics need the {prediction!r} column")
        return regression_metric(metric, y, labeled[prediction].to_numpy()), len(labeled)
    proba = None
    if probability is not None and probability in labeled.columns:
        proba = labeled[probability].to_numpy(dtype=np.float64)
    pred = labeled[prediction].to_numpy() if prediction in labeled.columns else None
    value = classification_metric(metric, y, pred, proba, positive_label=positive_label)
    return value, len(labeled)


def compute_performance(
    *,
    current: pd.DataFrame,
    reference: pd.DataFrame | None,
    target: str,
    task: Task,
    metric: str,
    prediction: str = "prediction",
    probability: str | None = "probability",
    positive_label: Hashable = 1,
    reference_value: float | None = None,
) -> PerformanceResult:
    """The primary metric on the window's labeled rows, against the reference's.

    Args:
        current: the window; rows whose target is NaN (labels not arrived yet) are ignored.
        reference: the training snapshot with target and predictions, used when
            ``reference_value`` is not given (e.g. the test-set value logged at training).
        target, prediction, probability: column names (probability of the positive class).
        positive_label: the label that counts as positive for binary metrics.

    Raises:
        PerformanceInputError: the metric does not fit the task or a needed column is absent.
    """
    _check_metric(task, metric)
    value, labeled = _metric_on(
        current,
        task=task,
        metric=metric,
        target=target,
        prediction=prediction,
        probability=probability,
        positive_label=positive_label,
    )
    if reference_value is None:
        if reference is None:
            raise PerformanceInputError("give a reference frame or a reference_value")
        reference_value, _ = _metric_on(
            reference,
            task=task,
            metric=metric,
            target=target,
            prediction=prediction,
            probability=probability,
            positive_label=positive_label,
        )
    drop = performance_drop(metric, value, float(reference_value))
    return PerformanceResult(metric, value, float(reference_value), drop, labeled, False)


def _check_metric(task: Task, metric: str) -> None:
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    if metric not in allowed:
        raise PerformanceInputError(
            f"metric {metric!r} does not fit task {task!r}; choose one of {list(allowed)}"
        )


def expected_metric(
    metric: str, proba: np.ndarray, predicted_positive: np.ndarray | None = None
) -> float:
    """A metric's expected value if the probabilities are calibrated (labels ~ Bernoulli(p)).

    Args:
        metric: accuracy, roc_auc, f1, log_loss or brier.
        proba: probabilities of the positive class.
        predicted_positive: the model's decisions; default ``proba >= 0.5``.
    """
    p = np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0)
    p = p[np.isfinite(p)] if predicted_positive is None else p
    if p.size == 0:
        return float("nan")
    pos = p >= 0.5 if predicted_positive is None else np.asarray(predicted_positive, dtype=bool)
    if metric == "accuracy":
        return float(np.mean(np.where(pos, p, 1.0 - p)))
    if metric == "f1":
        tp = float(np.sum(p[pos]))
        fp = float(np.sum(1.0 - p[pos]))
        fn = float(np.sum(p[~pos]))
        denom = 2 * tp + fp + fn
        return 2 * tp / denom if denom > 0 else float("nan")
    if metric == "brier":
        return float(np.mean(p * (1.0 - p)))
    if metric == "log_loss":
        q = np.clip(p, 1e-15, 1 - 1e-15)
        return float(np.mean(-(p * np.log(q) + (1.0 - p) * np.log(1.0 - q))))
    if metric == "roc_auc":
        return _expected_roc_auc(p)
    raise PerformanceInputError(
        f"no estimate for metric {metric!r}; choose one of {sorted(ESTIMABLE_METRICS)}"
    )


def _expected_roc_auc(p: np.ndarray) -> float:
    """ROC AUC of the expected ROC curve: at each threshold, expected TP = sum of p above it,
    expected FP = sum of 1 - p above it (NannyML's CBPE construction)."""
    total_pos, total_neg = float(p.sum()), float((1.0 - p).sum())
    if total_pos <= 0 or total_neg <= 0:
        return float("nan")
    values, inverse = np.unique(-p, return_inverse=True)  # thresholds from high to low
    tp = np.bincount(inverse, weights=p, minlength=values.size).cumsum()
    fp = np.bincount(inverse, weights=1.0 - p, minlength=values.size).cumsum()
    tpr = np.concatenate(([0.0], tp / total_pos))
    fpr = np.concatenate(([0.0], fp / total_neg))
    return float(np.trapezoid(tpr, fpr))


def estimate_performance(
    *,
    current: pd.DataFrame,
    reference: pd.DataFrame,
    metric: str,
    probability: str = "probability",
    prediction: str | None = "prediction",
    positive_label: Hashable = 1,
) -> PerformanceResult:
    """The metric estimated from predicted probabilities, in the window and on the reference.

    ``labeled_rows`` is 0: no label is used. For calibrated binary classifiers only.

    Raises:
        PerformanceInputError: a frame lacks the probability column or the metric has no estimate.
    """
    if metric not in ESTIMABLE_METRICS:
        raise PerformanceInputError(
            f"no estimate for metric {metric!r}; choose one of {sorted(ESTIMABLE_METRICS)}"
        )
    values = []
    for name, frame in (("current", current), ("reference", reference)):
        if probability not in frame.columns:
            raise PerformanceInputError(f"the {name} frame has no {probability!r} column")
        rows = frame[frame[probability].notna()]
        proba = rows[probability].to_numpy(dtype=np.float64)
        decided = None
        if prediction is not None and prediction in rows.columns and rows[prediction].notna().all():
            decided = rows[prediction].to_numpy() == positive_label
        values.append(expected_metric(metric, proba, decided))
    value, ref_value = values
    return PerformanceResult(
        metric, value, ref_value, performance_drop(metric, value, ref_value), 0, True
    )
