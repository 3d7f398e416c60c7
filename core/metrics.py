"""The metric registry: every metric driftloop knows, once (name, where it applies, direction).

Training's cross-validation and holdout, the promotion gate, the monitor's measured and
estimated performance and the config all read this table; the scorers themselves live in
``pipelines.evaluation``. Imports nothing of ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Task = Literal["classification", "regression"]
#: What a metric is computed for: a binary or multiclass classifier, or a regressor.
Kind = Literal["binary", "multiclass", "regression"]


@dataclass(frozen=True)
class Metric:
    """One metric: where it applies, whether higher is better, what it needs."""

    name: str
    kinds: frozenset[Kind]
    higher_is_better: bool
    uses_probabilities: bool
    #: kinds for which it can be estimated without labels (calibrated CBPE, or DLE)
    estimable: frozenset[Kind]
    description: str

    @property
    def tasks(self) -> frozenset[Task]:
        return frozenset(
            "regression" if k == "regression" else "classification" for k in self.kinds
        )


def _m(
    name: str,
    kinds: str,
    higher: bool,
    proba: bool,
    estimable: str,
    description: str,
) -> Metric:
    def split(text: str) -> frozenset[Kind]:
        return frozenset(text.split()) if text else frozenset()  # type: ignore[arg-type]

    return Metric(name, split(kinds), higher, proba, split(estimable), description)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        _m("roc_auc", "binary multiclass", True, True, "binary multiclass",
           "area under the ROC curve (multiclass: one-vs-rest, weighted by class frequency)"),
        _m("roc_auc_macro", "binary multiclass", True, True, "binary multiclass",
           "area under the ROC curve, one-vs-rest, unweighted mean over classes"),
        _m("accuracy", "binary multiclass", True, False, "binary multiclass",
           "share of correct predictions"),
        _m("f1", "binary multiclass", True, False, "binary multiclass",
           "F1 of the positive class (multiclass: weighted by class frequency)"),
        _m("f1_macro", "binary multiclass", True, False, "binary multiclass",
           "F1 averaged over classes, unweighted"),
        _m("precision", "binary multiclass", True, False, "binary multiclass",
           "precision of the positive class (multiclass: weighted)"),
        _m("recall", "binary multiclass", True, False, "binary multiclass",
           "recall of the positive class (multiclass: weighted)"),
        _m("log_loss", "binary multiclass", False, True, "binary multiclass",
           "cross-entropy of the predicted probabilities"),
        _m("brier", "binary multiclass", False, True, "binary multiclass",
           "mean squared error of the probabilities (multiclass: summed over classes, 0-2)"),
        _m("rmse", "regression", False, False, "regression", "root mean squared error"),
        _m("mae", "regression", False, False, "regression", "mean absolute error"),
        _m("r2", "regression", True, False, "", "coefficient of determination"),
    )
}  # fmt: skip

DEFAULT_METRIC: dict[str, str] = {"classification": "roc_auc", "regression": "rmse"}


def metric_info(name: str) -> Metric:
    """The registry entry of a metric; KeyError naming the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; choose one of {sorted(METRICS)}") from None


def names_for(task: str) -> list[str]:
    """The metrics that apply to a task (``classification`` or ``regression``), in table order."""
    return [name for name, m in METRICS.items() if task in m.tasks]


def kind_of(task: str, n_classes: int) -> Kind:
    """``binary``, ``multiclass`` or ``regression`` for a task and its number of classes."""
    if task == "regression":
        return "regression"
    return "binary" if n_classes <= 2 else "multiclass"


def higher_is_better(name: str) -> bool:
    return metric_info(name).higher_is_better


def drop(name: str, value: float, reference: float) -> float:
    """How much worse ``value`` is than ``reference`` in the metric's own units (positive = worse;
    NaN when either is undefined)."""
    if not (math.isfinite(value) and math.isfinite(reference)):
        return math.nan
    return reference - value if higher_is_better(name) else value - reference
