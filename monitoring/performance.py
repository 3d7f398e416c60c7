"""Model quality in a window: measured where labels have arrived, estimated where they have not.

Binary and multiclass classifiers and regressors. Multiclass metrics follow the definitions of
``pipelines.evaluation.evaluate`` (weighted one-vs-rest ROC AUC, weighted F1, multiclass log loss
and Brier score) so a window's value compares with the holdout value logged at training; a
breakdown adds macro F1 and per-class recall. Probability metrics of a multiclass window need the
per-class probabilities the server logs (a column of ``{class as str: probability}`` dicts).

The estimate assumes a calibrated classifier: each row's label is positive with the predicted
probability ``p``. Expected values of the metrics then follow from the probabilities alone
(confidence-based performance estimation, "CBPE"): binary accuracy is the mean of ``p`` on rows
predicted positive and ``1 - p`` on the others; ROC AUC comes from the expected true and false
positive counts at every threshold; multiclass accuracy is the mean probability of the predicted
(top) class. The estimate is compared with the same estimate on the reference, so calibration
error common to both cancels out. Pure functions on frames.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from core.errors import DriftloopError
from pipelines.evaluation import multiclass_metrics, safe_metric

Task = Literal["classification", "regression"]
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae"})
CLASSIFICATION_METRICS = ("accuracy", "roc_auc", "f1", "log_loss", "brier")
REGRESSION_METRICS = ("rmse", "mae", "r2")
_PROBABILITY_METRICS = frozenset({"roc_auc", "log_loss", "brier"})


class PerformanceInputError(DriftloopError, ValueError):
    """A metric does not fit the task, or the frames lack the columns it needs."""


@dataclass(frozen=True)
class PerformanceResult:
    """One metric in the window next to its reference value.

    ``drop`` is positive when the window is worse (whatever the metric's direction) and NaN when
    either value is undefined (e.g. ROC AUC with one class). ``breakdown`` holds secondary
    figures of the window (multiclass: accuracy, macro and weighted F1, log loss, per-class
    recall as ``recall.<class>``).
    """

    metric: str
    value: float
    reference_value: float
    drop: float
    labeled_rows: int
    estimated: bool
    breakdown: Mapping[str, float] = field(default_factory=dict)
    #: rows the figure covers (estimates: the window; 0 when not recorded)
    rows: int = 0
    #: the band of an estimate: where the realized value lies (at the band's level)
    low: float = math.nan
    high: float = math.nan

    @property
    def unlabeled_share(self) -> float:
        """Share of the covered rows whose value is estimated (1 for a pure estimate)."""
        if not self.estimated:
            return 0.0
        return 1.0 - self.labeled_rows / self.rows if self.rows else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": _json_float(self.value),
            "reference_value": _json_float(self.reference_value),
            "drop": _json_float(self.drop),
            "labeled_rows": self.labeled_rows,
            "estimated": self.estimated,
            "breakdown": {k: _json_float(v) for k, v in self.breakdown.items()},
            "rows": self.rows,
            "low": _json_float(self.low),
            "high": _json_float(self.high),
        }


def _json_float(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


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


def class_index(values: Sequence[Any] | np.ndarray, classes: Sequence[Hashable]) -> np.ndarray:
    """Position of each value in ``classes``; -1 for a label the model does not know.

    Labels that went through JSON or a float column (``2.0`` for class ``2``) match their class.
    """
    lookup: dict[Any, int] = {}
    for i, c in enumerate(classes):
        lookup.setdefault(_plain(c), i)
        lookup.setdefault(str(_plain(c)), i)
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        v = _plain(v)
        out[i] = lookup.get(v, lookup.get(v if isinstance(v, str) else str(v), -1))
    return out


def _plain(value: Any) -> Any:
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def probability_matrix(
    rows: Sequence[Mapping[str, float] | None] | np.ndarray, classes: Sequence[Hashable]
) -> np.ndarray:
    """Per-class probabilities (``{str(class): p}`` per row, as logged) as an n x k array.

    Rows without probabilities, or lacking a class, are all NaN.
    """
    keys = [str(_plain(c)) for c in classes]
    out = np.full((len(rows), len(keys)), np.nan)
    for i, row in enumerate(rows):
        if isinstance(row, Mapping) and all(k in row for k in keys):
            out[i] = [row[k] for k in keys]
    return out


def multiclass_metric(
    metric: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    *,
    n_classes: int,
) -> float:
    """A multiclass metric on class indices (see :func:`class_index`), as ``evaluate`` defines it.

    Args:
        y_true, y_pred: class indices; -1 marks a label the model does not know (always wrong).
        proba: n x k per-class probabilities; rows with NaN (not logged) are left out of the
            probability metrics, as are rows whose label the model does not know.
    """
    if metric not in CLASSIFICATION_METRICS:
        raise PerformanceInputError(
            f"unknown classification metric {metric!r}; choose one of {list(CLASSIFICATION_METRICS)}"
        )
    if y_true.size == 0:
        return float("nan")
    labels = list(range(n_classes))
    if metric in ("accuracy", "f1"):
        return multiclass_metrics(y_true, y_pred, None, labels=labels)[metric]
    if proba is None:
        raise PerformanceInputError(
            f"metric {metric!r} of a multiclass model needs the per-class probabilities"
        )
    usable = np.isfinite(proba).all(axis=1) & (y_true >= 0)
    if not usable.any():
        return float("nan")
    return multiclass_metrics(y_true[usable], y_pred[usable], proba[usable], labels=labels)[metric]


def multiclass_breakdown(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    *,
    classes: Sequence[Hashable],
) -> dict[str, float]:
    """Accuracy, macro and weighted F1, log loss (with probabilities) and recall of each class.

    A class absent from the labels has a NaN recall; ``unknown_label_share`` is the share of
    labels the model was not trained on.
    """
    if y_true.size == 0:
        return {}
    out = {
        "accuracy": float(np.mean(y_true == y_pred)),
        "f1_macro": safe_metric(
            lambda: skm.f1_score(y_true, y_pred, average="macro", zero_division=0.0)
        ),
        "f1_weighted": multiclass_metric("f1", y_true, y_pred, None, n_classes=len(classes)),
        "unknown_label_share": float(np.mean(y_true < 0)),
    }
    if proba is not None:
        out["log_loss"] = multiclass_metric(
            "log_loss", y_true, y_pred, proba, n_classes=len(classes)
        )
    for i, c in enumerate(classes):
        mine = y_true == i
        out[f"recall.{_plain(c)}"] = float(np.mean(y_pred[mine] == i)) if mine.any() else math.nan
    return out


def _labeled(frame: pd.DataFrame, target: str, prediction: str) -> pd.DataFrame:
    labeled = frame[frame[target].notna()]
    if prediction in labeled.columns:
        labeled = labeled[labeled[prediction].notna()]
    return labeled


def _multiclass_on(
    labeled: pd.DataFrame,
    *,
    metric: str,
    target: str,
    prediction: str,
    probabilities: str | None,
    classes: Sequence[Hashable],
) -> tuple[float, dict[str, float]]:
    if prediction not in labeled.columns:
        raise PerformanceInputError(f"multiclass metrics need the {prediction!r} column")
    y = class_index(labeled[target].to_numpy(), classes)
    pred = class_index(labeled[prediction].to_numpy(), classes)
    proba = None
    if probabilities is not None and probabilities in labeled.columns:
        proba = probability_matrix(labeled[probabilities].to_numpy(), classes)
    value = multiclass_metric(metric, y, pred, proba, n_classes=len(classes))
    return value, multiclass_breakdown(y, pred, proba, classes=classes)


def _metric_on(
    frame: pd.DataFrame,
    *,
    task: Task,
    metric: str,
    target: str,
    prediction: str,
    probability: str | None,
    positive_label: Hashable,
    classes: Sequence[Hashable] = (),
    probabilities: str | None = None,
) -> tuple[float, int, dict[str, float]]:
    if target not in frame.columns:
        return float("nan"), 0, {}
    labeled = _labeled(frame, target, prediction)
    y = labeled[target].to_numpy()
    if task == "regression":
        if prediction not in labeled.columns:
            raise PerformanceInputError(f"regression metrics need the {prediction!r} column")
        return regression_metric(metric, y, labeled[prediction].to_numpy()), len(labeled), {}
    if len(classes) > 2:
        value, breakdown = _multiclass_on(
            labeled,
            metric=metric,
            target=target,
            prediction=prediction,
            probabilities=probabilities,
            classes=classes,
        )
        return value, len(labeled), breakdown
    proba = None
    if probability is not None and probability in labeled.columns:
        proba = labeled[probability].to_numpy(dtype=np.float64)
    pred = labeled[prediction].to_numpy() if prediction in labeled.columns else None
    value = classification_metric(metric, y, pred, proba, positive_label=positive_label)
    return value, len(labeled), {}


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
    classes: Sequence[Hashable] = (),
    probabilities: str | None = "probabilities",
) -> PerformanceResult:
    """The primary metric on the window's labeled rows, against the reference's.

    Args:
        current: the window; rows whose target is NaN (labels not arrived yet) are ignored.
        reference: the training snapshot with target and predictions, used when
            ``reference_value`` is not given (e.g. the test-set value logged at training).
        target, prediction, probability: column names (probability of the positive class).
        positive_label: the label that counts as positive for binary metrics.
        classes: the model's classes in its own order; more than two means multiclass.
        probabilities: multiclass only: the column of per-class probability dicts. A reference
            without it has an undefined (NaN) value for the probability metrics.

    Raises:
        PerformanceInputError: the metric does not fit the task or a needed column is absent.
    """
    _check_metric(task, metric)
    options: dict[str, Any] = {
        "task": task,
        "metric": metric,
        "target": target,
        "prediction": prediction,
        "probability": probability,
        "positive_label": positive_label,
        "classes": classes,
        "probabilities": probabilities,
    }
    value, labeled, breakdown = _metric_on(current, **options)
    if reference_value is None:
        if reference is None:
            raise PerformanceInputError("give a reference frame or a reference_value")
        multiclass_proba = len(classes) > 2 and metric in _PROBABILITY_METRICS
        if multiclass_proba and (probabilities is None or probabilities not in reference.columns):
            reference_value = float("nan")
        else:
            reference_value, _, _ = _metric_on(reference, **options)
    drop = performance_drop(metric, value, float(reference_value))
    return PerformanceResult(metric, value, float(reference_value), drop, labeled, False, breakdown)


def _check_metric(task: Task, metric: str) -> None:
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    if metric not in allowed:
        raise PerformanceInputError(
            f"metric {metric!r} does not fit task {task!r}; choose one of {list(allowed)}"
        )
