"""The `monitor` flow: compare the latest window of logged traffic with the champion's reference.

Each run reads a window of the inference log, loads the training snapshot of the exact model
version that served it, computes drift, data quality and performance (measured on the version's
newest labeled rows, which with delayed labels are older than the window, and estimated for the
window itself from probabilities or a loss model), asks the pure policies whether to alert and
whether to retrain, and then acts: a `drift_runs` row, an Evidently snapshot in the workspace, an
MLflow monitoring run with the HTML report, a Prefect markdown artifact, alerts, and the
`driftloop.drift.detected` event that starts the `retrain` deployment (or, with no Prefect server,
the retrain flow in-process).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run
from pydantic import Field
from sqlalchemy.engine import Engine

from driftloop import registry
from driftloop.config import ProjectConfig, load_config
from driftloop.settings import Settings
from flows.retry import transient
from monitoring import incidents, runs, store
from monitoring.alerts import Alert, DeliveryResult, alert_links, deliver, undelivered
from monitoring.drift import ReferenceStats, compute_drift, reference_stats, weighted_drift
from monitoring.estimation import EstimationFacts, window_estimate
from monitoring.performance import PerformanceResult, compute_performance, probability_matrix
from monitoring.policy import (
    FOLLOW_UP,
    AlertDecision,
    Decision,
    MonitorResult,
    Predecessor,
    Refresh,
    RunRecord,
    make_result,
    should_alert,
    should_retrain,
)
from monitoring.quality import compute_quality
from monitoring.reports import run_report, save_html
from monitoring.significance import MetricNoise
from monitoring.workspace import publish_run
from pipelines.holdout import HoldoutScores, compare, scores_of
from pipelines.schema import PREDICTION_COLUMN, PROBABILITY_COLUMN, prepare_features

DRIFT_EVENT = "driftloop.drift.detected"
#: The window's per-class probabilities (multiclass), as `store.read_window` names them.
PROBABILITIES_COLUMN = "probabilities"
#: driftloop's own series on the dashboards (besides per-column ones a run adds).
PANEL_VALUES = (
    "drift_share",
    "dataset_drift",
    "drifted_features",
    "performance.estimated",
    "performance.estimated_low",
    "performance.estimated_high",
    "performance.measured",
    "performance.estimation_error",
)
#: Rows of the window the Evidently report (the human view) samples; verdicts use every row.
REPORT_ROWS = 20_000


def model_resource(model_name: str) -> str:
    return f"driftloop.model.{model_name}"


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

    def labeled_rows(self, target: str) -> pd.DataFrame:
        """The rows performance is measured on: ``labeled`` when read, else the window's own."""
        if self.labeled is not None:
            return self.labeled
        return self.frame[self.frame[target].notna()]


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


def read_served_window(
    engine: Engine,
    config: ProjectConfig,
    info: registry.VersionInfo | None,
    *,
    version: int | None,
    now: datetime,
) -> Window:
    """The configured window of rows served by ``version``, the most recent in the log."""
    mon = config.monitoring
    latest = runs.latest_run(engine, config.model_name)
    since = window_since(
        mon.window.kind,
        now=now,
        hours=mon.window.hours,
        last_end=latest["window_end"] if latest else None,
    )
    if version is None or info is None:
        return Window(pd.DataFrame(), version, mon.window.kind, since, now)
    read = functools.partial(
        store.read_window,
        engine,
        model_name=config.model_name,
        numeric=info.spec.numeric,
        categorical=info.spec.categorical,
        target=config.target,
        until=now,
        version=version,
        probabilities=is_multiclass(info),
    )
    frame = read(since=since, last_n=mon.window.rows if mon.window.kind == "last_rows" else None)
    labeled = read(last_n=mon.window.rows, labeled_only=True)
    start = frame["ts"].min() if len(frame) else since
    return Window(frame, version, mon.window.kind, start, now, labeled=labeled)


def is_multiclass(info: registry.VersionInfo) -> bool:
    return info.task == "classification" and len(info.classes) > 2


def evaluate_window(
    config: ProjectConfig,
    info: registry.VersionInfo,
    reference: pd.DataFrame,
    window: Window,
    *,
    holdout_value: float | None,
    stats: ReferenceStats | None = None,
    noise: MetricNoise | None = None,
    estimation: EstimationFacts | None = None,
    predecessor: Predecessor | None = None,
    importances: dict[str, float] | None = None,
) -> MonitorResult:
    """Drift, quality and performance of a window against the reference (pure).

    ``stats`` are the reference's precomputed statistics (:func:`reference_statistics`);
    ``noise`` the primary metric's spread on the version's holdout (drops are judged by it);
    ``estimation`` what estimating the primary metric needs (labeled rows measured, the others
    estimated, with a band); ``predecessor`` the serving version against the champion it
    replaced on the window's labeled rows (:func:`predecessor_comparison`); ``importances``
    each feature's permutation importance (``drift_rule: weighted`` weighs drift by it).
    """
    mon = config.monitoring
    frame = window.frame
    if len(frame) < mon.min_window_rows:
        return make_result(
            window_rows=len(frame), min_window_rows=mon.min_window_rows, policy=mon.policy
        )
    numeric, categorical = info.spec.numeric, info.spec.categorical
    classification = info.task == "classification"
    drift = compute_drift(
        reference=reference,
        current=frame,
        numeric=numeric,
        categorical=categorical,
        config=mon.drift,
        prediction=PREDICTION_COLUMN,
        prediction_kind="categorical" if classification else "numeric",
        reference_stats=stats,
    )
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
        estimated = window_estimate(
            frame,
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


def logged_scores(frame: pd.DataFrame, info: registry.VersionInfo, target: str) -> HoldoutScores:
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
    labeled = window.labeled_rows(config.target)
    if len(labeled) < config.monitoring.policy.min_labeled_rows:
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
    return Predecessor(ref.predecessor, metric, difference)


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

    info: registry.VersionInfo
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


def reference_statistics(info: registry.VersionInfo, reference: pd.DataFrame) -> ReferenceStats:
    """The reference's statistics for drift and quality: features plus the prediction column."""
    classification = info.task == "classification"
    prediction = [PREDICTION_COLUMN] if PREDICTION_COLUMN in reference.columns else []
    return reference_stats(
        reference,
        numeric=[*info.spec.numeric, *([] if classification else prediction)],
        categorical=[*info.spec.categorical, *(prediction if classification else [])],
    )


@task(retries=2, retry_delay_seconds=3, retry_condition_fn=transient, cache_policy=NO_CACHE)
def load_reference(
    client: MlflowClient, model_name: str, version: int, metric: str
) -> VersionReference:
    """The version's recorded facts, its training snapshot, the snapshot's statistics and its
    holdout value of the metric."""
    mv = registry.get_version(client, model_name, version)
    info = registry.VersionInfo.from_version(mv)
    holdout = mv.tags.get(f"{registry.TAG}holdout_{metric}")
    frame = registry.load_reference(client, model_name, mv.version)
    evaluation = registry.load_evaluation(client, model_name, mv.version)
    window = mv.tags.get(f"{registry.TAG}retrain_window")
    before = registry.predecessor(client, model_name, mv.version)
    return VersionReference(
        info,
        frame,
        float(holdout) if holdout else None,
        reference_statistics(info, frame),
        noise=noise_of(evaluation),
        retrain_window=json.loads(window) if window else None,
        estimation=EstimationFacts.from_files(evaluation),
        predecessor=before,
        predecessor_model=registry.load_model(client, model_name, before) if before else None,
        importances=importances_of(evaluation),
    )


def importances_of(evaluation: dict[str, bytes]) -> dict[str, float] | None:
    """Each feature's permutation importance from a version's evaluation files (None when the
    version was registered without them)."""
    raw = evaluation.get(registry.IMPORTANCE_FILE)
    return None if raw is None else dict(json.loads(raw)["importances"])


def noise_of(evaluation: dict[str, bytes]) -> dict[str, MetricNoise]:
    """Each metric's noise from a version's evaluation files (empty for older versions)."""
    raw = evaluation.get(registry.NOISE_FILE)
    if raw is None:
        return {}
    return {
        name: MetricNoise.from_dict(item)
        for name, item in json.loads(raw).get("noise", {}).items()
        if item.get("std") == item.get("std")  # NaN: undefined on the holdout
    }


def publish(
    outcome: MonitorOutcome,
    config: ProjectConfig,
    settings: Settings,
    client: MlflowClient,
    info: registry.VersionInfo,
    reference: pd.DataFrame,
    *,
    now: datetime,
) -> Published | None:
    """Evidently snapshot in the workspace, HTML report and metrics in MLflow (the human views)."""
    result = outcome.result
    if result.drift is None:
        return None
    labeled_target = config.target if outcome.window.frame[config.target].notna().any() else None
    drift = result.drift
    values: dict[str, float | bool | None] = {
        "drift_share": drift.drift_share,
        "dataset_drift": drift.dataset_drift,
        "drifted_features": float(len(drift.drifted_features)),
    }
    importances = result.feature_importances
    if importances:
        values["weighted_drift_share"] = weighted_drift(drift, importances)
    values.update(performance_values(result, outcome.estimation_error))
    # the per-class probability dicts (multiclass) are driftloop's input, not a report column
    frame = outcome.window.frame.drop(columns=[PROBABILITIES_COLUMN], errors="ignore")
    # Evidently refuses a column that is empty on one side; the quality check already reports it.
    usable = [c for c in info.spec.columns if frame[c].notna().any() and reference[c].notna().any()]
    for column in info.spec.columns:
        if column not in usable:  # absent from Evidently's panels: chart driftloop's own number
            values[f"missing_share.{column}"] = float(frame[column].isna().mean())
    snapshot = run_report(
        reference=reference,
        current=frame,
        numeric=[c for c in info.spec.numeric if c in usable],
        categorical=[c for c in info.spec.categorical if c in usable],
        target=labeled_target,
        task=info.task,  # type: ignore[arg-type]
        per_column_method=None,
        max_rows=REPORT_ROWS,
        driftloop_values=values,
        driftloop_feature_scores={c.column: c.score for c in drift.columns},
        driftloop_feature_importances=importances,
        timestamp=now,
        name=f"{config.model_name} v{outcome.version} {now:%Y-%m-%d %H:%M}",
    )
    snapshot_ref = publish_run(
        settings.workspace,
        config.model_name,
        snapshot,
        features=list(info.spec.columns),
        task=info.task,  # type: ignore[arg-type]
        timestamp=now,
        # every series a run may have, so the panels stay put when a run lacks one
        driftloop_values=tuple(dict.fromkeys([*PANEL_VALUES, *values])),
        driftloop_feature_scores=True,
        driftloop_feature_importances=bool(importances),
    )
    report_dir = Path(tempfile.mkdtemp(prefix="driftloop-report-"))
    html = save_html(snapshot, report_dir / "drift_report.html")
    experiment_id = registry.ensure_experiment(
        client,
        registry.monitoring_experiment(config.model_name),
        artifact_location=settings.artifact_location(),
    )
    with (
        registry.tracked(settings.mlflow_tracking_uri),
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"monitor v{outcome.version} {now:%Y-%m-%d %H:%M}",
        ) as mlflow_run,
    ):
        mlflow.set_tags(
            {
                "driftloop.drift_run_id": outcome.run_id,
                "driftloop.model_version": str(outcome.version),
                "driftloop.status": result.status,
            }
        )
        metrics = {
            "drift_share": drift.drift_share,
            "drifted_features": len(drift.drifted_features),
            "window_rows": result.window_rows,
            "dataset_drift": float(drift.dataset_drift),
        }
        metrics.update({f"drift_score.{c.column}": c.score for c in drift.columns})
        for perf in (result.performance, result.estimated_performance):
            if perf is not None:
                prefix = "estimated_" if perf.estimated else ""
                metrics[f"{prefix}{perf.metric}"] = perf.value
                metrics[f"{prefix}{perf.metric}_drop"] = perf.drop
                metrics.update(breakdown_metrics(perf))
                if perf.estimated:
                    metrics[f"estimated_{perf.metric}_low"] = perf.low
                    metrics[f"estimated_{perf.metric}_high"] = perf.high
        if outcome.estimation_error is not None:
            metrics["estimation_error"] = outcome.estimation_error
        mlflow.log_metrics(
            {k: float(v) for k, v in metrics.items() if v == v},
            timestamp=int(now.timestamp() * 1000),
        )
        mlflow.log_artifact(str(html), artifact_path="reports")
    return Published(
        html,
        (str(experiment_id), mlflow_run.info.run_id),
        (str(snapshot_ref.project_id), str(snapshot_ref.id)),
    )


@dataclass(frozen=True)
class Published:
    """Where a run's human views went: the HTML report, the MLflow monitoring run (experiment
    id, run id) and the Evidently snapshot (project id, snapshot id)."""

    html: Path
    mlflow_run: tuple[str, str]
    snapshot: tuple[str, str]


def links_of(
    outcome: MonitorOutcome,
    config: ProjectConfig,
    settings: Settings,
    published: Published | None,
    flow_run_id: str | None,
) -> dict[str, str]:
    """The alert's links for this run (pure)."""
    return alert_links(
        model_name=config.model_name,
        version=outcome.version,
        drift_run_id=outcome.run_id,
        mlflow_ui_url=settings.mlflow_ui_url,
        mlflow_run=published.mlflow_run if published else None,
        evidently_ui_url=settings.evidently_ui_url,
        snapshot=published.snapshot if published else None,
        prefect_api_url=settings.prefect_api_url,
        flow_run_id=flow_run_id,
    )


def send_alert(outcome: MonitorOutcome, config: ProjectConfig) -> list[DeliveryResult]:
    """Tell people about the run's incident event (opened, escalated, calmed, resolved); returns
    what became of it at each webhook."""
    step = outcome.alert.step
    assert step is not None and step.event is not None
    event = step.event
    kind = {"opened": "harm" if step.event_severity == "critical" else "drift"}.get(event, event)
    what = ", ".join(outcome.result.failed) or "every check passes"
    alert = Alert(
        kind=kind,
        model_name=config.model_name,
        severity="critical" if step.event_severity == "critical" else "warning",
        title=f"{config.model_name} v{outcome.version}: incident {event}: {what}",
        message=outcome.alert.reason,
        details={**outcome.summary(), "links": dict(outcome.links)},
        condition_key=step.incident_id or "",
    )
    logger = get_run_logger()
    results = deliver(alert, config.alerts)
    for delivery in results:
        logger.info("alert delivery: %s", delivery)
    if config.alerts.prefect_blocks:
        from flows.notify import notify_blocks

        notify_blocks(alert, config.alerts.prefect_blocks)
    return results


def monitor_once(
    config: ProjectConfig,
    settings: Settings,
    *,
    now: datetime | None = None,
    triggered_by: str = "schedule",
    publish_views: bool = True,
    deliver_alerts: bool = True,
    references: dict[int, VersionReference] | None = None,
) -> MonitorOutcome:
    """One monitor run: read, judge, record, publish, alert. Retraining is left to the caller.

    Args:
        references: a cache of loaded references by version, for a caller that monitors many
            times in one process (the backtest); loaded versions are added to it.
    """
    logger = get_run_logger()
    now = now or datetime.now(UTC)

    client = registry.make_client(settings.mlflow_tracking_uri)
    engine = store.make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    try:
        store.upgrade_database(settings.database_url)
        version = runs.latest_served_version(engine, config.model_name)
        ref = None
        if version is not None:
            cache = {} if references is None else references
            if version not in cache:
                cache[version] = load_reference(
                    client, config.model_name, version, config.promotion.metric
                )
            ref = cache[version]
        info, reference = (ref.info, ref.frame) if ref else (None, None)
        window = read_served_window(engine, config, info, version=version, now=now)
        if ref is None:
            result = make_result(
                window_rows=0,
                min_window_rows=config.monitoring.min_window_rows,
                policy=config.monitoring.policy,
            )
        else:
            result = evaluate_window(
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
            )
        history = runs.recent_history(engine, config.model_name, now=now)
        policy = config.monitoring.policy
        run_id = runs.new_run_id()
        alert = should_alert(result, history, policy, now, new_incident_id=run_id)
        outcome = MonitorOutcome(
            run_id=run_id,
            model_name=config.model_name,
            version=window.version,
            result=result,
            alert=alert,
            retrain=should_retrain(
                result,
                history,
                policy,
                now,
                incident=alert.incident,
                refresh=refresh_of(ref, engine, config.model_name),
                max_live_rows=config.monitoring.retrain.max_live_rows,
                window_rows=config.monitoring.window.rows,
                labels_since_refusal=labels_since_refusal(engine, config.model_name, history),
            ),
            window=window,
            report_path=None,
        )
        runs.record_run(engine, run_row(outcome, config, started=now, triggered_by=triggered_by))
        if ref is not None:
            error = realize_estimates(engine, config, ref, now=now)
            outcome = dataclasses.replace(outcome, estimation_error=error)
    finally:
        engine.dispose()
    logger.info(
        "%s: %s; alert: %s; retrain: %s",
        config.model_name,
        result.status,
        outcome.alert.reason,
        outcome.retrain.reason,
    )
    create_markdown_artifact(
        verdict_markdown(outcome),
        key=f"{config.model_name.lower().replace('_', '-')}-monitor",
        description="monitor verdict",
    )
    published = None
    if publish_views and info is not None and reference is not None:
        try:
            published = publish(outcome, config, settings, client, info, reference, now=now)
            if published is not None:
                outcome = dataclasses.replace(outcome, report_path=published.html)
        except Exception:  # the verdict is stored and acted on even when a view cannot be drawn
            logger.exception("publishing the Evidently report of run %s failed", outcome.run_id)
    outcome = dataclasses.replace(
        outcome, links=links_of(outcome, config, settings, published, current_flow_run_id())
    )
    step = outcome.alert.step
    if (
        deliver_alerts
        and step is not None
        and incidents.delivered(step, deliver_warnings=config.alerts.deliver_warnings)
    ):
        outcome = dataclasses.replace(outcome, deliveries=tuple(send_alert(outcome, config)))
    return outcome


def current_flow_run_id() -> str | None:
    """The Prefect flow run this code runs in (None outside one)."""
    from prefect.runtime import flow_run

    run_id = flow_run.id
    return str(run_id) if run_id else None


#: Share of an earlier window's rows that must be labeled before its estimate is checked.
REALIZED_SHARE = 0.95


def realize_estimates(
    engine: Engine, config: ProjectConfig, ref: VersionReference, *, now: datetime
) -> float | None:
    """Earlier runs' estimates of this version whose windows are now labeled: record what was
    measured on them; returns the newest estimate-minus-measured error (None: none yet)."""
    info, error = ref.info, None
    for run in runs.awaiting_realization(engine, config.model_name, info.version, before=now):
        span = {
            "model_name": config.model_name,
            "since": run["window_start"],
            "until": run["window_end"],
            "version": info.version,
        }
        total = store.count_rows(engine, **span)
        if (
            total == 0
            or store.count_rows(engine, **span, labeled_only=True) < REALIZED_SHARE * total
        ):
            continue
        rows = store.read_window(
            engine,
            **span,
            numeric=info.spec.numeric,
            categorical=info.spec.categorical,
            target=config.target,
            labeled_only=True,
            probabilities=is_multiclass(info),
        )
        value = compute_performance(
            current=rows,
            reference=None,
            target=config.target,
            task=info.task,  # type: ignore[arg-type]
            metric=run["metric"],
            probability=PROBABILITY_COLUMN if info.task == "classification" else None,
            positive_label=info.classes[-1] if len(info.classes) == 2 else 1,
            reference_value=0.0,
            classes=info.classes if info.task == "classification" else (),
            probabilities=PROBABILITIES_COLUMN,
        ).value
        if value == value:
            runs.record_realized(engine, run["run_id"], value)
            error = run["estimated_value"] - value
    return error


def labels_since_refusal(
    engine: Engine, model_name: str, history: Sequence[RunRecord]
) -> int | None:
    """Labels that arrived after the newest refused retraining in ``history`` (None: none)."""
    refused = [r for r in history if r.retrained and r.retrain_outcome == "refused"]
    if not refused:
        return None
    latest = max(r.time for r in refused)
    return store.count_labels_since(engine, model_name=model_name, since=latest)


def refresh_of(ref: VersionReference | None, engine: Engine, model_name: str) -> Refresh | None:
    """For a retrained version: how many labeled live rows it learned from and how many have
    arrived since its window started (the follow-up retraining's inputs)."""
    tag = ref.retrain_window if ref is not None else None
    if not tag or not tag.get("start"):
        return None
    since = datetime.fromisoformat(tag["start"])
    available = store.count_rows(engine, model_name=model_name, since=since, labeled_only=True)
    version = ref.info.version
    tried = runs.follow_up_tried(engine, model_name, version, prefix=FOLLOW_UP)
    return Refresh(
        since,
        int(tag["live_rows"]),
        available,
        done=bool(tag.get("refresh")) or tried,
        version=version,
    )


def emit_drift_event(outcome: MonitorOutcome) -> None:
    """Tell Prefect: the `retrain` deployment's trigger matches this event."""
    drift = outcome.result.drift
    emit_event(
        event=DRIFT_EVENT,
        resource={
            "prefect.resource.id": model_resource(outcome.model_name),
            "prefect.resource.name": outcome.model_name,
        },
        related=[
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                "prefect.resource.role": "flow-run",
            }
        ]
        if flow_run.id
        else None,
        payload={
            "drift_run_id": outcome.run_id,
            "model_version": outcome.version,
            "drifted_features": list(drift.drifted_features) if drift else [],
            "scores": drift.scores() if drift else {},
            "reason": outcome.retrain.reason,
        },
    )


@flow(name="monitor", log_prints=True)
def monitor(
    config_path: Annotated[
        str, Field(description="path to driftloop.yaml, relative to the working directory")
    ] = "driftloop.yaml",
) -> dict[str, Any]:
    """Compare the latest logged traffic with the champion's reference; alert and retrain when it matters."""
    config = load_config(config_path)
    settings = Settings()
    outcome = monitor_once(config, settings, triggered_by=f"prefect:{flow_run.id or 'local'}")
    summary = outcome.summary()
    if outcome.retrain.yes:
        if settings.prefect_api_url:
            emit_drift_event(outcome)
            print(
                f"emitted {DRIFT_EVENT} for {config.model_name}: the retrain deployment takes it from here"
            )
        else:
            from flows.retrain import RetrainRefused, retrain

            try:
                retrain(
                    config_path=config_path,
                    drift_run_id=outcome.run_id,
                    reason=outcome.retrain.reason,
                )
            except RetrainRefused as exc:  # recorded on the run; the monitor's verdict stands
                print(f"retraining of {config.model_name} did not start: {exc}")
                summary["retrain_refused"] = str(exc)
    # last, once the verdict is stored and acted on: an alert nobody received fails the run
    error = undelivered(
        outcome.deliveries,
        what=f"the alert of monitor run {outcome.run_id} ({config.model_name} "
        f"v{outcome.version}: {outcome.result.status}, the verdict is stored)",
    )
    if error is not None:
        raise error
    return summary
