"""The `monitor` flow: compare the latest window of logged traffic with the champion's reference.

Each run reads a window of the inference log, loads the training snapshot of the exact model
version that served it, computes drift, data quality and performance (measured on the version's
newest labeled rows, which with delayed labels are older than the window, and estimated for the
window itself from probabilities or a loss model), asks the pure policies whether to alert and
whether to retrain, and then acts: a `drift_runs` row, an Evidently snapshot in the workspace, an
MLflow monitoring run with the HTML report, a Prefect markdown artifact, alerts, and the
`driftloop.drift.detected` event that starts the `retrain` deployment (or, with no Prefect server,
the retrain flow in-process). A champion worse on its labeled rows than the champion it replaced
(`should_roll_back`) is rolled back instead, by compare-and-set, and a `rolled_back` alert sent.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run
from pydantic import Field
from sqlalchemy.engine import Engine

import registry
from core.config import ProjectConfig, load_config
from core.settings import Settings
from core.spec import PROBABILITY_COLUMN
from flows.champion import promote_if_unchanged, roll_back
from flows.retry import transient
from monitoring import incidents, runs, store
from monitoring.alerts import (
    Alert,
    DeliveryResult,
    alert_links,
    deliver,
    rollback_alert,
    undelivered,
)
from monitoring.drift import weighted_drift
from monitoring.estimation import EstimationFacts
from monitoring.performance import compute_performance
from monitoring.policy import (
    FOLLOW_UP,
    Decision,
    MonitorResult,
    Refresh,
    RunRecord,
    should_alert,
    should_retrain,
    should_roll_back,
)
from monitoring.reports import run_report, save_html
from monitoring.shadow import (
    ShadowComparison,
    read_pairs,
    shadow_comparison,
    should_promote_shadow,
)
from monitoring.significance import MetricNoise
from monitoring.verdict import (
    PROBABILITIES_COLUMN,
    MonitorOutcome,
    VersionReference,
    Window,
    breakdown_metrics,
    is_multiclass,
    judge,
    needs_drift,
    performance_values,
    reference_statistics,
    run_row,
    verdict_markdown,
    window_since,
)
from monitoring.workspace import publish_run

DRIFT_EVENT = "driftloop.drift.detected"
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
    "shadow.champion",
    "shadow.challenger",
)
#: Rows of the window the Evidently report (the human view) samples; verdicts use every row.
REPORT_ROWS = 20_000
#: A window read without its features (``monitoring.columns_per_task``): at most this many of
#: the newest labeled rows are read with them, to compare versions on (:func:`compared_rows`).
COMPARED_ROWS = 100_000


def model_resource(model_name: str) -> str:
    return f"driftloop.model.{model_name}"


def compact_served_log(
    engine: Engine, config: ProjectConfig, info: registry.VersionInfo
) -> store.CompactionOutcome:
    """Put the log rows no segment holds yet into columnar segments (with this version's
    features), so this run and the next read them fast."""
    settings = config.monitoring.compaction
    return store.compact_log(
        engine,
        model_name=config.model_name,
        numeric=info.spec.numeric,
        categorical=info.spec.categorical,
        segment_rows=settings.segment_rows,
        settle_timeout=settings.settle_timeout_seconds,
    )


def compaction_sentence(outcome: store.CompactionOutcome) -> str:
    """What a compaction did, in one line."""
    parts = [
        f"{outcome.rows} rows into {outcome.segments} segments",
        f"{outcome.refreshed} segments given late labels",
        f"rows up to id {outcome.covered_to} are columnar",
    ]
    if not outcome.settled:
        parts.append("PostgreSQL transactions still open: the newest rows wait for the next run")
    if outcome.raced:
        parts.append("another compaction wrote the same rows first")
    return "; ".join(parts)


def served_span(
    engine: Engine,
    config: ProjectConfig,
    database_url: str,
    *,
    version: int | None,
    now: datetime,
) -> store.LogWindow:
    """Which rows of the log the configured window is: served by ``version``, the newest
    ``window.rows`` or those since a time, before ``now``."""
    mon = config.monitoring
    latest = runs.latest_run(engine, config.model_name)
    since = window_since(
        mon.window.kind,
        now=now,
        hours=mon.window.hours,
        last_end=latest["window_end"] if latest else None,
    )
    return store.LogWindow(
        database_url=database_url,
        model_name=config.model_name,
        since=since,
        until=now,
        last_n=mon.window.rows if mon.window.kind == "last_rows" else None,
        version=version,
    )


def compared_rows(config: ProjectConfig) -> int:
    """Labeled rows, read with their features, that a version is compared with another on (its
    predecessor, the challenger): ``window.rows``, at most :data:`COMPARED_ROWS` when the window
    is read without its features (``monitoring.columns_per_task``)."""
    rows = config.monitoring.window.rows
    return min(rows, COMPARED_ROWS) if config.monitoring.columns_per_task else rows


def read_served_window(
    engine: Engine,
    config: ProjectConfig,
    info: registry.VersionInfo | None,
    span: store.LogWindow,
    *,
    compare: bool = False,
) -> Window:
    """The rows of ``span`` (:func:`served_span`), the most recent in the log. With
    ``monitoring.columns_per_task``, without their features (and request ids), plus the newest
    :data:`REPORT_ROWS` with them and, when ``compare``, the newest :data:`COMPARED_ROWS`
    labeled rows with them."""
    mon = config.monitoring
    kind, version, now = mon.window.kind, span.version, span.until
    if version is None or info is None:
        return Window(pd.DataFrame(), version, kind, span.since, now)
    whole = not mon.columns_per_task
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
        upto_id=span.upto_id,
    )
    light = (
        read if whole else functools.partial(read, numeric=(), categorical=(), request_ids=False)
    )
    frame = light(since=span.since, last_n=span.last_n)
    labeled = light(last_n=mon.window.rows, labeled_only=True)
    start = frame["ts"].min() if len(frame) else span.since
    if whole:
        return Window(frame, version, kind, start, now, labeled=labeled)
    newest = min(REPORT_ROWS, span.last_n or REPORT_ROWS)
    sample = read(since=span.since, last_n=newest)
    compared = read(last_n=compared_rows(config), labeled_only=True) if compare else None
    return Window(
        frame, version, kind, start, now, labeled=labeled, sample=sample, compared=compared
    )


def judged_window(
    engine: Engine,
    config: ProjectConfig,
    settings: Settings,
    ref: VersionReference | None,
    *,
    version: int | None,
    now: datetime,
) -> tuple[Window, MonitorResult]:
    """The window read and judged against ``ref``: drift in this process, by row partitions
    (``monitoring.partitions``) or, with ``monitoring.columns_per_task``, drift and quality by
    column tasks that read the window's columns from the log while this process reads only its
    outputs and labels (every read pinned to the rows logged so far)."""
    mon = config.monitoring
    span = served_span(engine, config, settings.database_url, version=version, now=now)
    if mon.columns_per_task:
        span = dataclasses.replace(span, upto_id=store.last_log_id(engine))
    compare = ref is not None and ref.predecessor_model is not None
    window = read_served_window(engine, config, ref.info if ref else None, span, compare=compare)
    drift = quality = None
    if ref is not None and needs_drift(config, ref, window):
        if mon.columns_per_task:
            from flows.partitioned import column_checks  # imports dask only when used

            drift, quality = column_checks(config, ref, span, address=settings.dask_address)
        elif mon.partitions:
            from flows.partitioned import partitioned_drift

            drift = partitioned_drift(config, ref, window, address=settings.dask_address)
    return window, judge(config, ref, window, drift=drift, quality=quality)


@task(retries=2, retry_delay_seconds=3, retry_condition_fn=transient, cache_policy=NO_CACHE)
def load_reference(
    client: MlflowClient, model_name: str, version: int, metric: str
) -> VersionReference:
    """The version's recorded facts, its training snapshot, the snapshot's statistics and its
    holdout value of the metric."""
    mv = registry.get_version(client, model_name, version)
    info = registry.version_info(mv)
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


def shadow_of(
    engine: Engine,
    client: MlflowClient,
    config: ProjectConfig,
    ref: VersionReference | None,
    window: Window,
) -> ShadowComparison | None:
    """The `challenger` against the serving version on the labeled live rows both answered (the
    newest :func:`compared_rows`); None without a challenger or enough such rows."""
    if ref is None:
        return None
    found = registry.get_alias(client, config.model_name, registry.CHALLENGER)
    if found is None or int(found.version) == ref.info.version:
        return None
    challenger = registry.version_info(found)
    champion_rows, challenger_rows = read_pairs(
        engine,
        model_name=config.model_name,
        champion=ref.info.version,
        challenger=challenger.version,
        numeric=ref.info.spec.numeric,
        categorical=ref.info.spec.categorical,
        target=config.target,
        last_n=compared_rows(config),
        probabilities=is_multiclass(ref.info),
    )
    return shadow_comparison(
        champion_rows,
        challenger_rows,
        champion=ref.info,
        challenger=challenger,
        target=config.target,
        metric=config.promotion.metric,
        min_rows=config.monitoring.policy.min_labeled_rows,
    )


def promote_on_shadow(
    shadow: ShadowComparison | None,
    config: ProjectConfig,
    settings: Settings,
    client: MlflowClient,
) -> bool:
    """With `promotion.use_shadow`, move `champion` to a challenger that beat it on the same
    labeled live rows (compare-and-set: only if the compared champion still holds it)."""
    rolled_back = shadow is not None and registry.ROLLED_BACK_TAG in (
        client.get_model_version(config.model_name, str(shadow.challenger)).tags or {}
    )
    decision = should_promote_shadow(
        shadow,
        enabled=config.promotion.use_shadow,
        min_improvement=config.promotion.min_improvement,
        rolled_back=rolled_back,
    )
    if not decision.yes or shadow is None:
        return False
    move = promote_if_unchanged(
        settings,
        client,
        config.model_name,
        shadow.challenger,
        expected=shadow.champion,
        reason=decision.reason,
        actor="monitor:shadow",
    )
    get_run_logger().warning("%s: %s (moved: %s)", config.model_name, decision.reason, move.moved)
    return move.moved


def cached_reference(
    client: MlflowClient,
    config: ProjectConfig,
    version: int | None,
    cache: dict[int, VersionReference],
) -> VersionReference | None:
    """The served version's reference, loaded once per version into ``cache`` (None: no version
    has served yet)."""
    if version is None:
        return None
    if version not in cache:
        cache[version] = load_reference(client, config.model_name, version, config.promotion.metric)
    return cache[version]


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
    shown = outcome.window.report_rows()
    labeled_target = config.target if shown[config.target].notna().any() else None
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
    if outcome.shadow is not None:  # the challenger and the champion on the same live rows
        values["shadow.champion"] = outcome.shadow["champion_value"]
        values["shadow.challenger"] = outcome.shadow["challenger_value"]
    # the per-class probability dicts (multiclass) are driftloop's input, not a report column
    frame = shown.drop(columns=[PROBABILITIES_COLUMN], errors="ignore")
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
        ref = cached_reference(client, config, version, {} if references is None else references)
        info, reference = (ref.info, ref.frame) if ref else (None, None)
        if info is not None and config.monitoring.compaction.enabled:
            compacted = compact_served_log(engine, config, info)
            logger.info("log compaction: %s", compaction_sentence(compacted))
        window, result = judged_window(engine, config, settings, ref, version=version, now=now)
        history = runs.recent_history(engine, config.model_name, now=now)
        policy = config.monitoring.policy
        run_id = runs.new_run_id()
        alert = should_alert(result, history, policy, now, new_incident_id=run_id)
        retrain = should_retrain(
            result,
            history,
            policy,
            now,
            incident=alert.incident,
            refresh=refresh_of(ref, engine, config.model_name),
            max_live_rows=config.monitoring.retrain.max_live_rows,
            window_rows=config.monitoring.window.rows,
            labels_since_refusal=labels_since_refusal(engine, config.model_name, history),
        )
        rollback = rollback_decision(client, engine, config, ref, result, now=now)
        if rollback.yes:  # the champion it replaced takes over: nothing to retrain from
            retrain = Decision(
                False, f"no retraining: the champion is rolled back instead ({rollback.reason})"
            )
        outcome = MonitorOutcome(
            run_id=run_id,
            model_name=config.model_name,
            version=window.version,
            result=result,
            alert=alert,
            retrain=retrain,
            window=window,
            report_path=None,
            rollback=rollback,
        )
        shadow = shadow_of(engine, client, config, ref, window)
        row = run_row(outcome, config, started=now, triggered_by=triggered_by)
        if shadow is not None:
            outcome = dataclasses.replace(outcome, shadow=shadow.to_dict())
            row["details"] = {**row["details"], "shadow": shadow.to_dict()}
            registry.tag_shadow(client, config.model_name, shadow.challenger, shadow.sentence())
            logger.info("shadow: %s", shadow.sentence())
        runs.record_run(engine, row)
        if rollback.yes:
            outcome = roll_back_champion(outcome, config, settings, client)
        else:
            promote_on_shadow(shadow, config, settings, client)
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
    if deliver_alerts and outcome.rolled_back_to is not None:
        sent = send_rollback_alert(outcome, config)
        outcome = dataclasses.replace(outcome, deliveries=(*outcome.deliveries, *sent))
    return outcome


def rollback_decision(
    client: MlflowClient,
    engine: Engine,
    config: ProjectConfig,
    ref: VersionReference | None,
    result: MonitorResult,
    *,
    now: datetime,
) -> Decision:
    """Read what a rollback decision needs (the champion, when the judged version became it,
    its labeled rows since, whether its predecessor was rolled back) and ask
    :func:`should_roll_back`."""
    rule = config.promotion.rollback
    before = result.predecessor
    if ref is None or before is None or not rule.enabled:
        return should_roll_back(
            before,
            rule,
            version=None,
            champion=None,
            promoted_at=None,
            labeled_since_promotion=0,
            now=now,
        )
    version = ref.info.version
    current = registry.get_alias(client, config.model_name, registry.CHAMPION)
    since = registry.promoted_at(registry.champion_history(client, config.model_name), version)
    labeled = (
        store.count_rows(
            engine, model_name=config.model_name, since=since, version=version, labeled_only=True
        )
        if since is not None and rule.within_rows is not None
        else 0
    )
    replaced = registry.get_version(client, config.model_name, before.version)
    return should_roll_back(
        before,
        rule,
        version=version,
        champion=int(current.version) if current is not None else None,
        promoted_at=since,
        labeled_since_promotion=labeled,
        now=now,
        min_relative_drop=config.monitoring.policy.min_relative_drop,
        predecessor_rolled_back=registry.ROLLED_BACK_TAG in (replaced.tags or {}),
    )


def roll_back_champion(
    outcome: MonitorOutcome, config: ProjectConfig, settings: Settings, client: MlflowClient
) -> MonitorOutcome:
    """Move `champion` back to the version the judged one replaced (compare-and-set: only if
    the judged version is still champion); tags both versions with the reason."""
    before = outcome.result.predecessor
    assert before is not None and outcome.version is not None
    move = roll_back(
        settings,
        client,
        config.model_name,
        current=outcome.version,
        target=before.version,
        reason=outcome.rollback.reason,
        actor=f"monitor:{outcome.run_id}",
    )
    logger = get_run_logger()
    if not move.moved:
        reason = (
            f"no rollback: `champion` is v{move.found}, no longer v{outcome.version}, when "
            f"moving it back (another move came first); {outcome.rollback.reason}"
        )
        logger.warning("%s: %s", config.model_name, reason)
        return dataclasses.replace(outcome, rollback=Decision(False, reason))
    logger.warning(
        "%s: champion rolled back from v%s to v%s: %s",
        config.model_name,
        outcome.version,
        before.version,
        outcome.rollback.reason,
    )
    return dataclasses.replace(outcome, rolled_back_to=before.version)


def send_rollback_alert(outcome: MonitorOutcome, config: ProjectConfig) -> list[DeliveryResult]:
    """Tell people `champion` went back; returns what became of it at each webhook."""
    assert outcome.version is not None and outcome.rolled_back_to is not None
    alert = rollback_alert(
        config.model_name,
        version=outcome.version,
        restored=outcome.rolled_back_to,
        message=outcome.rollback.reason,
        drift_run_id=outcome.run_id,
        details={"links": dict(outcome.links)},
    )
    results = deliver(alert, config.alerts)
    for delivery in results:
        get_run_logger().info("rollback alert delivery: %s", delivery)
    if config.alerts.prefect_blocks:
        from flows.notify import notify_blocks

        notify_blocks(alert, config.alerts.prefect_blocks)
    return results


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
        rows = store.read_window(  # the outputs and labels the metric needs, no features
            engine,
            **span,
            numeric=(),
            categorical=(),
            target=config.target,
            labeled_only=True,
            probabilities=is_multiclass(info),
            request_ids=False,
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
            from flows.retrain import retrain
            from pipelines.retraining import RetrainRefused

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
