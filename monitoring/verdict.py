"""A window's verdict (pure): the logged rows one monitor run judges, the reference of the version
that served them, drift, quality and performance of the window against it, and what is recorded
and shown (the `drift_runs` row, the markdown verdict, the dashboard figures). The `monitor` flow
reads, calls these and acts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import ProjectConfig
from core.spec import PREDICTION_COLUMN, PROBABILITY_COLUMN, VersionInfo
from monitoring.alerts import DeliveryResult
from monitoring.drift import DriftResult, ReferenceStats, compute_drift, reference_stats
from monitoring.estimation import EstimationFacts, window_estimate
from monitoring.performance import PerformanceResult, compute_performance, probability_matrix
from monitoring.policy import (
    AlertDecision,
    Decision,
    MonitorResult,
    Predecessor,
    make_result,
)
from monitoring.quality import QualityResult, compute_quality
from monitoring.significance import MetricNoise
from pipelines.holdout import HoldoutScores, compare, scores_of
from pipelines.schema import prepare_features

#: The window's per-class probabilities (multiclass), as `store.read_window` names them.
PROBABILITIES_COLUMN = "probabilities"


@dataclass(frozen=True)
class Window:
    """The logged rows one run looks at, and which version served them."""

    frame: pd.DataFrame
    version: int | None
    kind: str
    start: datetime | None
    end: datetime | None
    #: the version's newest labeled rows (at most ``window.rows``), up to the window's end, where
    #: performance is measured: with delayed labels the window's own rows have none yet
    labeled: pd.DataFrame | None = None
    #: a window read without its features (``frame`` and ``labeled`` hold the outputs, the
    #: labels and the times; its drift and quality are computed from the log by column tasks,
    #: :func:`flows.partitioned.column_checks`): the newest rows with their features, for the
    #: report (and the regression estimate), and the newest labeled rows with them, for the
    #: comparison with the predecessor
    sample: pd.DataFrame | None = None
    compared: pd.DataFrame | None = None

    def labeled_rows(self, target: str) -> pd.DataFrame:
        """The rows performance is measured on: ``labeled`` when read, else the window's own."""
        if self.labeled is not None:
            return self.labeled
        return self.frame[self.frame[target].notna()]

    @property
    def has_features(self) -> bool:
        """Whether ``frame`` holds the features (False: read without them)."""
        return self.sample is None

    def report_rows(self) -> pd.DataFrame:
        """The rows with features the report shows: the window's, else its newest ones."""
        return self.frame if self.sample is None else self.sample

    def compared_rows(self, target: str) -> pd.DataFrame:
        """The labeled rows with features the predecessor is compared on."""
        if self.has_features:
            return self.labeled_rows(target)
        return self.compared if self.compared is not None else self.frame.iloc[:0]


@dataclass(frozen=True)
class MonitorOutcome:
    """What a monitor run found and decided."""

    run_id: str
    model_name: str
    version: int | None
    result: MonitorResult
    alert: AlertDecision
    retrain: Decision
    window: Window
    report_path: Path | None
    #: the newest earlier estimate of this version checked against its labels (estimate minus
    #: measured), None when no earlier window got its labels since the last run
    estimation_error: float | None = None
    #: what became of the alert at each webhook (empty when none was sent)
    deliveries: tuple[DeliveryResult, ...] = ()
    #: where a person looks next (monitoring.alerts.alert_links); sent with the alert
    links: dict[str, str] = field(default_factory=dict)
    #: the challenger against the serving version on the labeled live rows both answered
    #: (monitoring.shadow.ShadowComparison.to_dict), None without one
    shadow: dict[str, Any] | None = None
    #: whether `champion` goes back to the version it replaced (:func:`should_roll_back`), and
    #: the version it went back to once it did
    rollback: Decision = field(default_factory=lambda: Decision(False, "no rollback"))
    rolled_back_to: int | None = None

    def summary(self) -> dict[str, Any]:
        drift = self.result.drift
        return {
            "run_id": self.run_id,
            "model_name": self.model_name,
            "version": self.version,
            "status": self.result.status,
            "window_rows": self.result.window_rows,
            "drift_share": drift.drift_share if drift else None,
            "drifted_features": list(drift.drifted_features) if drift else [],
            "failed_checks": list(self.result.failed),
            "severity": self.result.severity,
            "incident_id": self.alert.step.incident_id if self.alert.step else None,
            "incident_event": self.alert.event,
            "alert": self.alert.yes,
            "alert_reason": self.alert.reason,
            "retrain": self.retrain.yes,
            "retrain_reason": self.retrain.reason,
            "rollback": self.rollback.yes,
            "rollback_reason": self.rollback.reason,
            "rolled_back_to": self.rolled_back_to,
        }


def window_since(
    kind: str, *, now: datetime, hours: float, last_end: datetime | None
) -> datetime | None:
    """Start of a time-based window (pure); None means "from the beginning"."""
    if kind == "last_hours":
        return now - timedelta(hours=hours)
    if kind == "since_last_run":
        return last_end
    return None


def is_multiclass(info: VersionInfo) -> bool:
    return info.task == "classification" and len(info.classes) > 2


def evaluate_window(
    config: ProjectConfig,
    info: VersionInfo,
    reference: pd.DataFrame,
    window: Window,
    *,
    holdout_value: float | None,
    stats: ReferenceStats | None = None,
    noise: MetricNoise | None = None,
    estimation: EstimationFacts | None = None,
    predecessor: Predecessor | None = None,
    importances: dict[str, float] | None = None,
    drift: DriftResult | None = None,
    quality: QualityResult | None = None,
) -> MonitorResult:
    """Drift, quality and performance of a window against the reference (pure).

    ``stats`` are the reference's precomputed statistics (:func:`reference_statistics`);
    ``noise`` the primary metric's spread on the version's holdout (drops are judged by it);
    ``estimation`` what estimating the primary metric needs (labeled rows measured, the others
    estimated, with a band); ``predecessor`` the serving version against the champion it
    replaced on the window's labeled rows (:func:`predecessor_comparison`); ``importances``
    each feature's permutation importance (``drift_rule: weighted`` weighs drift by it);
    ``drift`` the window's drift when computed elsewhere (from merged partition statistics,
    :mod:`monitoring.partitions`, with :func:`drift_columns`), else computed here; ``quality``
    likewise. A window read without its features needs both (and estimates a regression's
    error on its ``sample``).
    """
    mon = config.monitoring
    frame = window.frame
    if len(frame) < mon.min_window_rows:
        return make_result(
            window_rows=len(frame), min_window_rows=mon.min_window_rows, policy=mon.policy
        )
    if not window.has_features and (drift is None or quality is None):
        raise ValueError(
            "a window read without its features needs its drift and quality computed from the "
            "log (flows.partitioned.column_checks)"
        )
    numeric, categorical = info.spec.numeric, info.spec.categorical
    classification = info.task == "classification"
    if drift is None:
        drift = compute_drift(
            reference=reference,
            current=frame,
            config=mon.drift,
            reference_stats=stats,
            **drift_columns(info),
        )
    if quality is None:
        quality = compute_quality(
            reference=reference,
            current=frame[list(info.spec.columns)],
            numeric=numeric,
            categorical=categorical,
            config=mon.quality,
            reference_stats=stats,
        )
    metric = config.promotion.metric
    labeled = window.labeled_rows(config.target)
    binary = classification and len(info.classes) == 2
    positive = info.classes[-1] if binary else 1
    performance = None
    if len(labeled):
        performance = compute_performance(
            current=labeled,
            reference=reference,
            target=config.target,
            task=info.task,  # type: ignore[arg-type]
            metric=metric,
            probability=PROBABILITY_COLUMN if classification else None,
            positive_label=positive,
            reference_value=holdout_value,
            classes=info.classes if classification else (),
            probabilities=PROBABILITIES_COLUMN,
        )
    estimated = None
    if estimation is not None and estimation.metric == metric:
        # a regression's error model needs the features: a window read without them is
        # estimated on its newest rows (`sample`)
        estimated = window_estimate(
            window.report_rows() if estimation.kind == "regression" else frame,
            estimation,
            target=config.target,
            spec=info.spec,
            reference_value=holdout_value,
            probabilities=PROBABILITIES_COLUMN,
        )
    return make_result(
        window_rows=len(frame),
        min_window_rows=mon.min_window_rows,
        policy=mon.policy,
        drift=drift,
        quality=quality,
        performance=performance,
        estimated_performance=estimated,
        noise=noise,
        predecessor=predecessor,
        feature_importances=importances,
        floor=config.promotion.floor,
    )


def drift_columns(info: VersionInfo) -> dict[str, Any]:
    """Which columns of a window the drift check compares, and how (the keyword arguments of
    :func:`monitoring.drift.compute_drift` and :func:`monitoring.partitions.drift_from_partitions`
    besides the data): the features and the prediction column."""
    classification = info.task == "classification"
    return {
        "numeric": info.spec.numeric,
        "categorical": info.spec.categorical,
        "prediction": PREDICTION_COLUMN,
        "prediction_kind": "categorical" if classification else "numeric",
    }


def needs_drift(config: ProjectConfig, ref: VersionReference | None, window: Window) -> bool:
    """Whether :func:`judge` computes drift for this window (a version served it and it has
    at least ``monitoring.min_window_rows`` rows)."""
    return ref is not None and len(window.frame) >= config.monitoring.min_window_rows


def judge(
    config: ProjectConfig,
    ref: VersionReference | None,
    window: Window,
    *,
    drift: DriftResult | None = None,
    quality: QualityResult | None = None,
) -> MonitorResult:
    """The window against the reference of the version that served it (pure): drift, quality,
    performance and its comparison with the predecessor; an empty result before any version.
    ``drift`` and ``quality`` are the window's when computed elsewhere (the partitioned
    engine, the column tasks)."""
    if ref is None:
        return make_result(
            window_rows=0,
            min_window_rows=config.monitoring.min_window_rows,
            policy=config.monitoring.policy,
        )
    return evaluate_window(
        config,
        ref.info,
        ref.frame,
        window,
        holdout_value=ref.holdout_value,
        stats=ref.stats,
        noise=ref.noise.get(config.promotion.metric),
        estimation=ref.estimation,
        predecessor=predecessor_comparison(ref, window, config),
        importances=ref.importances,
        drift=drift,
        quality=quality,
    )


def performance_values(result: MonitorResult, estimation_error: float | None) -> dict[str, float]:
    """The primary metric's figures for the dashboards: measured on the labeled rows, estimated
    for the whole window with its band, and how far an earlier estimate was from the labels."""
    out: dict[str, float] = {}
    est, perf = result.estimated_performance, result.performance
    if est is not None:
        out[f"estimated_{est.metric}"] = est.value
        out["performance.estimated"] = est.value
        out["performance.estimated_low"] = est.low
        out["performance.estimated_high"] = est.high
    if perf is not None:
        out["performance.measured"] = perf.value
    if estimation_error is not None:
        out["performance.estimation_error"] = estimation_error
    return {k: float(v) for k, v in out.items() if v == v}


def logged_scores(frame: pd.DataFrame, info: VersionInfo, target: str) -> HoldoutScores:
    """What the serving version answered on labeled window rows, as scores on those rows."""
    X = prepare_features(frame, info.spec).reset_index(drop=True)
    y = frame[target].to_numpy()
    if info.task == "regression":
        prediction = frame[PREDICTION_COLUMN].to_numpy(dtype=float)
        return HoldoutScores(X, y, prediction, None, (), info.task, "live rows")
    if len(info.classes) == 2:
        p = frame[PROBABILITY_COLUMN].to_numpy(dtype=float)
        proba = np.column_stack([1.0 - p, p])
    else:
        proba = probability_matrix(frame[PROBABILITIES_COLUMN].to_numpy(), info.classes)
    prediction = frame[PREDICTION_COLUMN].to_numpy()
    return HoldoutScores(X, y, prediction, proba, tuple(info.classes), info.task, "live rows")


def predecessor_comparison(
    ref: VersionReference, window: Window, config: ProjectConfig
) -> Predecessor | None:
    """The serving version against the champion it replaced, on its newest labeled rows
    (pure: both models are loaded); None without a predecessor or enough labels."""
    info = ref.info
    if ref.predecessor_model is None or ref.predecessor is None:
        return None
    labeled = window.compared_rows(config.target)
    if len(labeled) < comparison_rows(config):
        return None
    served = logged_scores(labeled, info, config.target)
    if served.proba is not None and not np.isfinite(served.proba).all():
        return None
    before = scores_of(
        ref.predecessor_model,
        served.X,
        served.y,
        task=info.task,
        classes=info.classes or None,
        source="live rows",
    )
    metric = config.promotion.metric
    difference = compare(served, before, metric)
    return Predecessor(ref.predecessor, metric, difference, before.metric(metric))


def comparison_rows(config: ProjectConfig) -> int:
    """Labeled rows the comparison with the predecessor needs: enough for the `regression`
    check or for a rollback, whichever needs fewer (each then asks for its own number)."""
    rollback = config.promotion.rollback
    needed = config.monitoring.policy.min_labeled_rows
    return min(needed, rollback.min_labeled_rows) if rollback.enabled else needed


def breakdown_metrics(perf: PerformanceResult) -> dict[str, float]:
    """A result's breakdown as MLflow metric names (``quality.f1_macro``, ``quality.recall.a``)."""
    return {
        "quality." + re.sub(r"[^\w\-. /]", "_", name): value
        for name, value in perf.breakdown.items()
    }


def verdict_markdown(outcome: MonitorOutcome) -> str:
    result = outcome.result
    lines = [
        f"### {outcome.model_name} v{outcome.version}: {result.status}",
        f"Window: {result.window_rows} rows ({outcome.window.kind}).",
        f"- alert: **{'yes' if outcome.alert.yes else 'no'}**: {outcome.alert.reason}",
        f"- retrain: **{'yes' if outcome.retrain.yes else 'no'}**: {outcome.retrain.reason}",
        "",
    ]
    if result.drift is not None:
        weights = result.feature_importances or {}
        extra = " importance |" if weights else ""
        lines += [
            f"| feature | method | score | threshold | drifted |{extra}",
            "|---|---|---|---|---|" + ("---|" if weights else ""),
        ]
        for c in result.drift.columns:
            weight = (
                f" {weights[c.column]:.4g} |"
                if c.column in weights
                else (" - |" if weights else "")
            )
            lines.append(
                f"| {c.column} | {c.method} | {c.score:.4g} | {c.threshold:g} | {'**yes**' if c.drifted else 'no'} |{weight}"
            )
    for perf in (result.performance, result.estimated_performance):
        if perf is not None:
            how = "estimated" if perf.estimated else f"{perf.labeled_rows} labeled rows"
            lines.append(
                f"\n{perf.metric} ({how}): {perf.value:.4f} vs {perf.reference_value:.4f} (drop {perf.drop:.4f})"
            )
            if perf.breakdown:
                lines += ["", "| figure | value |", "|---|---|"]
                lines += [f"| {k} | {v:.4f} |" for k, v in perf.breakdown.items()]
    return "\n".join(lines)


def run_row(
    outcome: MonitorOutcome, config: ProjectConfig, *, started: datetime, triggered_by: str
) -> dict[str, Any]:
    result = outcome.result
    drift, perf, est = result.drift, result.performance, result.estimated_performance
    return {
        "run_id": outcome.run_id,
        "model_name": config.model_name,
        "model_version": outcome.version,
        "started_at": started,
        "finished_at": outcome.window.end or started,
        "triggered_by": triggered_by,
        "window_kind": outcome.window.kind,
        "window_start": outcome.window.start,
        "window_end": outcome.window.end,
        "window_rows": result.window_rows,
        "labeled_rows": perf.labeled_rows if perf else 0,
        "status": result.status,
        "dataset_drift": drift.dataset_drift if drift else None,
        "drift_share": drift.drift_share if drift else None,
        "drifted_features": list(drift.drifted_features) if drift else [],
        "scores": drift.scores() if drift else {},
        "failed_checks": list(result.failed),
        "condition": result.condition,
        "metric": perf.metric if perf else (est.metric if est else None),
        "metric_value": perf.value if perf else None,
        "performance_drop": perf.drop if perf else (est.drop if est else None),
        "estimated_value": est.value if est else None,
        "alerted": outcome.alert.yes,
        "alert_reason": outcome.alert.reason,
        "retrain": outcome.retrain.yes,
        "retrain_reason": outcome.retrain.reason,
        "details": dict(result.details),
        "severity": result.severity,
        "incident": outcome.alert.incident.to_dict() if outcome.alert.incident else None,
        "incident_id": outcome.alert.step.incident_id if outcome.alert.step else None,
        "incident_event": outcome.alert.event,
        "estimated_low": _finite_or_none(est.low) if est else None,
        "estimated_high": _finite_or_none(est.high) if est else None,
    }


def _finite_or_none(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None


@dataclass(frozen=True)
class VersionReference:
    """What the windows of one model version are compared with (immutable once registered):
    its recorded facts, training snapshot and statistics, its holdout value of the primary
    metric and that metric's noise, and what a retrained version learned from."""

    info: VersionInfo
    frame: pd.DataFrame
    holdout_value: float | None
    stats: ReferenceStats
    noise: dict[str, MetricNoise] = field(default_factory=dict)
    #: the `driftloop.retrain_window` tag of a retrained version (None for a first training)
    retrain_window: dict[str, Any] | None = None
    #: what estimating the primary metric without labels needs (None: not estimable)
    estimation: EstimationFacts | None = None
    #: the champion this version replaced, and its Pipeline (to compare on the same rows)
    predecessor: int | None = None
    predecessor_model: Any = None
    #: each feature's permutation importance on the holdout (None: an older version without it)
    importances: dict[str, float] | None = None


def reference_statistics(info: VersionInfo, reference: pd.DataFrame) -> ReferenceStats:
    """The reference's statistics for drift and quality: features plus the prediction column."""
    classification = info.task == "classification"
    prediction = [PREDICTION_COLUMN] if PREDICTION_COLUMN in reference.columns else []
    return reference_stats(
        reference,
        numeric=[*info.spec.numeric, *([] if classification else prediction)],
        categorical=[*info.spec.categorical, *(prediction if classification else [])],
    )
