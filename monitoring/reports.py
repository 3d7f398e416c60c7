"""The human-facing Evidently 0.7 report of one monitoring window.

The verdict comes from driftloop's own engine (``monitoring/drift.py``); this module builds the
Evidently Snapshot people read (HTML report, workspace dashboards). It hides Evidently behind
:func:`run_report`, :func:`save_html` and :func:`snapshot_values`, and always calls
``Report.run(current_data=..., reference_data=...)`` with keywords.

driftloop's own numbers (drift share of the full window, estimated accuracy, ...) go into the
same snapshot as :class:`DriftloopValue` metrics, so the Evidently UI can chart them next to
Evidently's own (the UI reads them from the stored snapshot; it does not need this module).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from evidently import (
    BinaryClassification,
    DataDefinition,
    Dataset,
    MulticlassClassification,
    Report,
)
from evidently._pydantic_compat import PrivateAttr
from evidently.core.datasets import Regression
from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric
from evidently.core.report import Snapshot
from evidently.metrics import ValueDrift
from evidently.presets import (
    ClassificationPreset,
    DataDriftPreset,
    DataSummaryPreset,
    RegressionPreset,
)

from core.errors import DriftloopError

Task = Literal["classification", "regression"]

#: A sensible cap for report windows: Evidently computes everything in memory with pandas.
DEFAULT_MAX_ROWS = 50_000
#: Metric type names as the Evidently UI and dashboards refer to them.
METRIC_PREFIX = "evidently:metric_v2:"


class ReportError(DriftloopError, ValueError):
    """The report cannot be built from these frames; the message names the columns or settings."""


class DriftloopValue(SingleValueMetric):
    """A number computed by driftloop, stored in the snapshot like any Evidently metric.

    ``name`` (and ``column``, for per-feature numbers) identify the series across runs; the value
    itself is private so that runs with different values still form one series in dashboards.
    Build it with :func:`driftloop_value`.
    """

    name: str
    column: str | None = None
    _value: float = PrivateAttr(math.nan)

    def _default_tests(self, context: Any) -> list:
        return []

    def _default_tests_with_reference(self, context: Any) -> list:
        return []


class DriftloopValueCalculation(SingleValueCalculation[DriftloopValue]):
    def calculate(self, context: Any, current_data: Dataset, reference_data: Dataset | None) -> Any:
        return self.result(self.metric._value), None

    def display_name(self) -> str:
        suffix = f" ({self.metric.column})" if self.metric.column else ""
        return f"driftloop: {self.metric.name}{suffix}"


def driftloop_value(name: str, value: float, *, column: str | None = None) -> DriftloopValue:
    """A :class:`DriftloopValue` metric carrying `value` (bools become 0/1)."""
    metric = DriftloopValue(name=name, column=column)
    metric._value = float(value)
    return metric


def _sample(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    if max_rows is None or len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=seed).sort_index()


def _check_columns(frame: pd.DataFrame, columns: Sequence[str], which: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ReportError(
            f"{which} frame lacks feature columns {missing}; it has {list(frame.columns)[:30]}"
        )


def _align_target(labeled: pd.DataFrame, target: str, prediction: str | None) -> pd.DataFrame:
    """Give float targets (NaN before labels arrived) the prediction's integer dtype again."""
    if prediction is None or prediction not in labeled.columns:
        return labeled
    y, p = labeled[target], labeled[prediction]
    if (
        pd.api.types.is_float_dtype(y)
        and pd.api.types.is_integer_dtype(p)
        and (y.dropna() == y.dropna().round()).all()
    ):
        return labeled.assign(**{target: y.astype(p.dtype)})
    return labeled


def _task_definition(
    *,
    task: Task,
    target: str,
    prediction: str,
    probability: str | None,
    labels: Sequence[Any],
    pos_label: Any = None,
) -> tuple[dict[str, Any], list[str], list[str]]:
    """DataDefinition keyword for the task, plus extra numeric/categorical columns."""
    if task == "regression":
        return (
            {"regression": [Regression(target=target, prediction=prediction)]},
            [target, prediction],
            [],
        )
    extra_num = [probability] if probability else []
    if len(labels) <= 2:
        if pos_label is None:  # scikit-learn's predict_proba[:, 1] is the larger class
            pos_label = sorted(labels)[-1] if labels else 1
        spec = BinaryClassification(
            target=target,
            prediction_labels=prediction,
            prediction_probas=probability,
            pos_label=pos_label,
        )
    else:
        spec = MulticlassClassification(target=target, prediction_labels=prediction)
    return {"classification": [spec]}, extra_num, [target, prediction]


def run_report(
    *,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    target: str | None = None,
    prediction: str | None = "prediction",
    task: Task,
    per_column_method: Mapping[str, str] | None = None,
    per_column_threshold: Mapping[str, float] | None = None,
    max_rows: int | None = None,
    probability: str | None = "probability",
    pos_label: Any = None,
    drift_share: float = 0.5,
    driftloop_values: Mapping[str, float | bool | None] | None = None,
    driftloop_feature_scores: Mapping[str, float | None] | None = None,
    driftloop_feature_importances: Mapping[str, float] | None = None,
    timestamp: datetime | None = None,
    metadata: Mapping[str, object] | None = None,
    tags: Sequence[str] = (),
    name: str | None = None,
    seed: int = 0,
) -> Snapshot:
    """Evidently report of one window against the reference.

    Contains DataDriftPreset over the features (per-column method/threshold as configured),
    DataSummaryPreset (row counts, missing values, value stats), prediction drift when both
    frames hold `prediction`, and ClassificationPreset/RegressionPreset on the rows of `current`
    whose `target` is known. Frames larger than `max_rows` are sampled (seeded) for the report;
    the inputs are never modified.

    Args:
        probability: predicted probability of the positive class (binary classification), used
            when the frames have it.
        pos_label: the positive class; default the larger label, as in scikit-learn's
            ``predict_proba(X)[:, 1]``.
        driftloop_values: driftloop's own numbers for the window (e.g. ``drift_share``,
            ``dataset_drift``, ``estimated_accuracy``), stored as :class:`DriftloopValue`.
        driftloop_feature_scores: driftloop's per-feature drift scores (full window).
        driftloop_feature_importances: each feature's importance to the model version (stored
            as ``importance`` per column, shown next to the drift scores).
        metadata: string key/values kept with the snapshot (model version, drift run id, ...).

    Raises:
        ReportError: empty frames, missing feature columns, or a bad `max_rows`.
    """
    numeric, categorical = list(numeric), list(categorical)
    features = numeric + categorical
    if not features:
        raise ReportError("no feature columns given: pass numeric and/or categorical column names")
    if task not in ("classification", "regression"):
        raise ReportError(f"task must be 'classification' or 'regression', got {task!r}")
    if max_rows is not None and max_rows < 1:
        raise ReportError(f"max_rows must be a positive number of rows, got {max_rows}")
    for frame, which in ((reference, "reference"), (current, "current")):
        if len(frame) == 0:
            raise ReportError(f"the {which} frame is empty: nothing to report on")
        _check_columns(frame, features, which)

    has_prediction = prediction is not None and prediction in current.columns
    pred_drift = has_prediction and prediction in reference.columns
    proba = (
        probability
        if task == "classification" and probability is not None and probability in current.columns
        else None
    )
    labeled = pd.DataFrame()
    if target is not None and has_prediction and target in current.columns:
        labeled = current.loc[current[target].notna()]

    # the window's columns: features, plus the model's outputs
    extra_num = [proba] if proba else []
    extra_cat: list[str] = []
    if has_prediction:
        (extra_cat if task == "classification" else extra_num).append(prediction)
    window_definition = DataDefinition(
        numerical_columns=list(dict.fromkeys(numeric + extra_num)),
        categorical_columns=list(dict.fromkeys(categorical + extra_cat)),
    )

    def dataset(
        frame: pd.DataFrame, definition: DataDefinition, extra: Sequence[str] = ()
    ) -> Dataset:
        wanted = dict.fromkeys([*features, *extra_num, *extra_cat, *extra])
        return Dataset.from_pandas(
            frame[[c for c in wanted if c in frame.columns]], data_definition=definition
        )

    window_metrics: list[Any] = [
        DataDriftPreset(
            columns=features,
            drift_share=drift_share,
            per_column_method=dict(per_column_method) if per_column_method else None,
            per_column_threshold=dict(per_column_threshold) if per_column_threshold else None,
        ),
        DataSummaryPreset(columns=features),
    ]
    if pred_drift:
        window_metrics.append(ValueDrift(column=prediction))
    for key, value in (driftloop_values or {}).items():
        if value is not None:  # e.g. no performance drop without labels
            window_metrics.append(driftloop_value(key, float(value)))
    for column, value in (driftloop_feature_scores or {}).items():
        if value is not None:
            window_metrics.append(driftloop_value("drift_score", float(value), column=column))
    for column, value in (driftloop_feature_importances or {}).items():
        if column in features:
            window_metrics.append(driftloop_value("importance", float(value), column=column))

    run_kw: dict[str, Any] = {
        "timestamp": timestamp,
        "metadata": {str(k): str(v) for k, v in (metadata or {}).items()},
        "tags": list(tags),
        "name": name,
    }
    ref_sample = _sample(reference, max_rows, seed)
    snapshot = Report(window_metrics).run(
        current_data=dataset(_sample(current, max_rows, seed), window_definition),
        reference_data=dataset(ref_sample, window_definition),
        **run_kw,
    )
    if len(labeled) == 0:
        return snapshot

    # model quality on the rows whose labels have arrived
    labeled = _align_target(_sample(labeled, max_rows, seed), target, prediction)
    labels: list[Any] = []
    if task == "classification":
        parts = [labeled[target], labeled[prediction]]
        if target in reference.columns:
            parts.append(reference[target].dropna())
        labels = sorted(pd.unique(pd.concat(parts, ignore_index=True)).tolist())
    task_kw, task_num, task_cat = _task_definition(
        task=task,
        target=target,
        prediction=prediction,
        probability=proba if len(labels) <= 2 else None,
        labels=labels,
        pos_label=pos_label,
    )
    quality_definition = DataDefinition(
        numerical_columns=list(dict.fromkeys(numeric + extra_num + task_num)),
        categorical_columns=list(dict.fromkeys(categorical + extra_cat + task_cat)),
        **task_kw,
    )
    quality = ClassificationPreset() if task == "classification" else RegressionPreset()
    quality_ref = None
    if (
        target in reference.columns
        and prediction in reference.columns
        and reference[target].notna().all()
    ):
        quality_ref = dataset(
            _align_target(ref_sample, target, prediction), quality_definition, [target]
        )
    quality_snapshot = Report([quality]).run(
        current_data=dataset(labeled, quality_definition, [target]),
        reference_data=quality_ref,
        **run_kw,
    )
    return merge_snapshots(snapshot, quality_snapshot)


def merge_snapshots(first: Snapshot, *others: Snapshot) -> Snapshot:
    """One snapshot holding the metrics and widgets of all (name, time and metadata of `first`)."""
    model = first.to_snapshot_model()
    for other in others:
        extra = other.to_snapshot_model()
        model.metric_results.update(extra.metric_results)
        model.top_level_metrics = list(model.top_level_metrics) + [
            m for m in extra.top_level_metrics if m not in model.top_level_metrics
        ]
        model.widgets = list(model.widgets) + list(extra.widgets)
        model.tests_widgets = list(model.tests_widgets) + list(extra.tests_widgets)
    return Snapshot.load_model(model)


def with_timestamp(snapshot: Snapshot, timestamp: datetime) -> Snapshot:
    """A copy of `snapshot` dated `timestamp` (dashboards order runs by it)."""
    model = snapshot.to_snapshot_model()
    model.timestamp = timestamp
    return Snapshot.load_model(model)


def save_html(snapshot: Snapshot, path: str | Path) -> Path:
    """Write the self-contained HTML report; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return path


def _short_type(metric_type: str) -> str:
    return metric_type.removeprefix(METRIC_PREFIX)


def snapshot_values(snapshot: Snapshot) -> dict[str, float]:
    """Flat numbers from a snapshot, for logging (e.g. MLflow) and tests.

    Keys: ``drift_share``/``drifted_features`` (Evidently's DriftedColumnsCount),
    ``drift_score.<column>``, ``missing_share.<column>``, ``missing_share`` (dataset),
    ``rows``, quality metrics in snake case (``accuracy``, ``roc_auc``, ``f1``, ``rmse``, ``mae``,
    ``r2``, ...), and ``driftloop.<name>[.<column>]`` for driftloop's own values.
    """
    rename = {
        "Accuracy": "accuracy",
        "Precision": "precision",
        "Recall": "recall",
        "F1Score": "f1",
        "RocAuc": "roc_auc",
        "LogLoss": "log_loss",
        "RMSE": "rmse",
        "MAE": "mae",
        "R2Score": "r2",
        "MeanError": "mean_error",
        "MAPE": "mape",
        "RowCount": "rows",
    }
    out: dict[str, float] = {}
    for item in snapshot.dict()["metrics"]:
        config, value = item.get("config", {}), item.get("value")
        kind = _short_type(config.get("type", ""))
        column = config.get("column")
        if kind == "DriftloopValue":
            key = f"driftloop.{config['name']}" + (f".{column}" if column else "")
            out[key] = float(value)
        elif kind == "DriftedColumnsCount":
            out["drift_share"] = float(value["share"])
            out["drifted_features"] = float(value["count"])
        elif kind == "ValueDrift":
            out[f"drift_score.{column}"] = float(value)
        elif kind == "MissingValueCount":
            out[f"missing_share.{column}"] = float(value["share"])
        elif kind == "DatasetMissingValueCount":
            out["missing_share"] = float(value["share"])
        elif kind in rename:
            if isinstance(value, Mapping):  # MAE etc. report mean and std
                value = value.get("mean", next(iter(value.values())))
            out[rename[kind]] = float(value)
    return out
