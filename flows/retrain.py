"""The `retrain` flow: a challenger from recent labeled traffic, promoted only if it is better.

Started by the `driftloop.drift.detected` event (the deployment trigger in prefect.yaml), by the
monitor in-process when no Prefect server is configured, or by a person. The challenger is the
champion's configuration learned from the labeled live rows that best reflect the present
(``monitoring.retrain.data_policy: adaptive``, see :mod:`pipelines.retraining`): candidates on
several windows (since the change the champion's own losses reveal, the last N rows, with and
without the reference) are judged on the newest labeled rows, which none learned from; the best
window, refitted through those rows, faces the champion on the same rows in the same gate as
the first training. What was tried and why it won is recorded on the new MLflow version.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

import registry
from core.config import ProjectConfig, load_config
from core.settings import Settings
from flows.notify import notify_blocks
from flows.register import Candidate, TrainOutcome, gate
from flows.retry import transient
from monitoring import runs, store
from monitoring.alerts import Alert, AlertError, deliver, retrain_alert
from monitoring.policy import FOLLOW_UP
from pipelines.holdout import scores_of
from pipelines.retraining import (
    Challenger,
    RetrainDeferred,
    RetrainRefused,
    Rows,
    build_challenger,
    live_rows,
    retrain_settings,
    window_tag,
)
from pipelines.schema import prepare_features


def window_candidate(
    config: ProjectConfig,
    info: registry.VersionInfo,
    challenger: Challenger,
    *,
    live: Rows,
    times: pd.Series,
    reference: Rows | None,
    refresh: bool,
) -> Candidate:
    """The challenger as a registration: what it learned from, its scores on the judged rows."""
    window = challenger.window
    assert window is not None and challenger.winner is not None
    part = live.slice(window.start, len(live))
    X = part.X
    y = part.y
    if window.with_reference and reference is not None:
        X = pd.concat([reference.X, X], ignore_index=True)
        y = np.concatenate([reference.y, y])
    winner = challenger.winner
    holdout = scores_of(
        winner.pipeline,
        challenger.gate.X,
        challenger.gate.y,
        task=config.task,
        classes=info.classes or None,
        source="newest labeled live rows",
    )
    family = type(challenger.pipeline.named_steps["model"]).__name__
    return Candidate(
        pipeline=challenger.pipeline,
        spec=info.spec,
        train_frame=X.assign(**{config.target: y}),
        holdout=holdout,
        family=family,
        params={},
        chosen_by=(
            f"Retrained: {challenger.plan.describe()}. The window '{window.name}' scored best "
            f"on the judged rows ({config.promotion.metric} {winner.score:.4f}); its model "
            f"(the champion's configuration) was refitted through them on "
            f"{challenger.learned_rows} rows."
        ),
        alternatives=challenger.table(),
        source="inference log (labeled live rows)",
        tags={"retrain_window": window_tag(challenger, times, refresh=refresh)},
    )


@task(retries=2, retry_delay_seconds=3, retry_condition_fn=transient, cache_policy=NO_CACHE)
def read_labeled(
    settings: Settings, config: ProjectConfig, info: registry.VersionInfo
) -> pd.DataFrame:
    """The newest labeled live rows (every version's), up to what a challenger may use."""
    engine = store.make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    try:
        return store.read_window(
            engine,
            model_name=config.model_name,
            numeric=info.spec.numeric,
            categorical=info.spec.categorical,
            target=config.target,
            labeled_only=True,
            last_n=config.monitoring.retrain.max_live_rows,
        )
    finally:
        engine.dispose()


def record_outcome(settings: Settings, drift_run_id: str, outcome: str) -> None:
    """Tell the monitor's history what became of the retraining its run started."""
    if not drift_run_id:
        return
    engine = store.make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    try:
        runs.record_retrain_outcome(engine, drift_run_id, outcome)
    finally:
        engine.dispose()


def retrain_once(
    config: ProjectConfig,
    settings: Settings,
    *,
    drift_run_id: str,
    reason: str,
    trigger: str = "drift",
) -> dict[str, Any]:
    """Build the challenger and gate it; returns the training outcome as a dict.

    Raises:
        RetrainRefused: no champion, or too few usable labeled rows.
        RetrainDeferred: a change is too recent to learn from (the monitor tries again).
    """
    try:
        outcome = _retrain(
            config, settings, drift_run_id=drift_run_id, reason=reason, trigger=trigger
        )
    except RetrainDeferred:
        record_outcome(settings, drift_run_id, "deferred")
        raise
    except Exception:
        record_outcome(settings, drift_run_id, "failed")
        raise
    record_outcome(settings, drift_run_id, "promoted" if outcome.promoted else "refused")
    return outcome.to_dict()


def retrain_asked(
    config: ProjectConfig, settings: Settings, outcome: Any, *, trigger: str
) -> dict[str, Any]:
    """:func:`retrain_once` for the retraining a monitor run asked for (its run id and reason)."""
    return retrain_once(
        config,
        settings,
        drift_run_id=outcome.run_id,
        reason=outcome.retrain.reason,
        trigger=trigger,
    )


def incident_of(settings: Settings, drift_run_id: str) -> str | None:
    """The monitor incident of the run that asked for the retraining (None: a manual one)."""
    if not drift_run_id:
        return None
    engine = store.make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    try:
        return runs.incident_of(engine, drift_run_id)
    finally:
        engine.dispose()


def outcome_alert(
    config: ProjectConfig,
    result: str,
    outcome: dict[str, Any] | str,
    drift_run_id: str,
    reason: str,
    *,
    incident_id: str | None = None,
) -> Alert:
    """The alert for a retraining's result, from its outcome (or, when it failed, the error)."""
    if isinstance(outcome, str):
        return retrain_alert(
            config.model_name,
            result,
            message=outcome,
            drift_run_id=drift_run_id,
            incident_id=incident_id,
            details={"retrain_reason": reason[:500]},
        )
    return retrain_alert(
        config.model_name,
        result,
        message=outcome["reason"],
        drift_run_id=drift_run_id,
        incident_id=incident_id,
        version=outcome["version"],
        details={
            "retrain_reason": reason[:500],
            "previous_champion": outcome["previous_champion"],
            "mlflow_run_id": outcome["run_id"],
            "metrics": outcome["metrics"],
            "champion_metrics": outcome["champion_metrics"],
        },
    )


def _incident_or_none(settings: Settings, drift_run_id: str) -> str | None:
    """:func:`incident_of` for a retraining that failed: the database may be why it failed,
    and the failure is alerted without the incident then."""
    try:
        return incident_of(settings, drift_run_id)
    except Exception:  # noqa: BLE001 - the alert about the failure matters more
        get_run_logger().exception("the incident of drift run %s could not be read", drift_run_id)
        return None


def announce(config: ProjectConfig, alert: Alert) -> None:
    """Send a retraining's outcome to the configured webhooks and notification blocks; a sink
    that fails is logged, never fatal (the outcome is recorded either way)."""
    logger = get_run_logger()
    try:
        for delivery in deliver(alert, config.alerts):
            logger.info("alert delivery: %s", delivery)
    except AlertError as exc:  # e.g. no webhook secret: the outcome stands
        logger.error("retrain alert not delivered: %s", exc)
    if config.alerts.prefect_blocks:
        for block in notify_blocks(alert, config.alerts.prefect_blocks):
            logger.info("notification block: %s", block)


def _retrain(
    config: ProjectConfig, settings: Settings, *, drift_run_id: str, reason: str, trigger: str
) -> TrainOutcome:
    client = registry.make_client(settings.mlflow_tracking_uri)
    current = registry.get_alias(client, config.model_name, registry.CHAMPION)
    if current is None:
        raise RetrainRefused(
            f"model {config.model_name!r} has no champion to retrain from; run `driftloop train` first"
        )
    info = registry.version_info(current)
    champion = registry.load_model(client, config.model_name, current.version)
    # the data the lineage was first trained on (a retrained champion's own snapshot holds live
    # rows that the candidates read from the log again)
    origin = registry.origin_version(client, config.model_name, current.version)
    snapshot = registry.load_reference(client, config.model_name, origin)
    live, times, unusable = live_rows(
        read_labeled(settings, config, info), info.spec, config.target
    )
    needed = config.monitoring.retrain.min_labeled_rows
    if len(live) < needed:
        raise RetrainRefused(
            f"only {len(live)} usable labeled live rows, {needed} needed "
            "(monitoring.retrain.min_labeled_rows); post labels to /feedback"
            + (f" ({unusable} rows left out: numbers too large to train on)" if unusable else "")
        )
    reference = Rows(
        prepare_features(snapshot, info.spec).reset_index(drop=True),
        snapshot[config.target].to_numpy(),
    )
    challenger = build_challenger(
        champion,
        live=live,
        reference=reference,
        task=config.task,
        metric=config.promotion.metric,
        classes=info.classes,
        settings=retrain_settings(config),
    )
    if challenger.deferred is not None:
        raise RetrainDeferred(f"retraining deferred: {challenger.deferred}")
    if challenger.winner is None:
        errors = "; ".join(f"{c.name}: {c.error}" for c in challenger.candidates if c.error)
        raise RetrainRefused(f"no candidate window could be trained ({errors or 'no window'})")
    get_run_logger().info("retraining %s: %s", config.model_name, challenger.plan.describe())
    candidate = window_candidate(
        config,
        info,
        challenger,
        live=live,
        times=times,
        reference=reference,
        refresh=reason.startswith(FOLLOW_UP),
    )
    window = challenger.window
    return gate(
        config,
        settings,
        client,
        candidate=candidate,
        lineage={
            "trigger": trigger,
            "drift_run_id": drift_run_id or "none",
            "retrain_reason": reason[:500],
            "window": f"{window.name if window else '-'}: {challenger.learned_rows} rows learned, "
            f"judged on the newest {len(challenger.gate)} labeled rows ({challenger.plan.describe()})"
            + (f", {unusable} unusable rows left out" if unusable else ""),
            "parent_version": str(info.version),
        },
    )


@flow(name="retrain", log_prints=True)
def retrain(
    config_path: Annotated[
        str, Field(description="path to driftloop.yaml, relative to the working directory")
    ] = "driftloop.yaml",
    drift_run_id: Annotated[
        str, Field(description="the drift run (drift_runs.run_id) that asked for it")
    ] = "",
    reason: Annotated[str, Field(description="why: recorded on the new model version")] = "manual",
) -> dict[str, Any]:
    """Train a challenger on recent labeled traffic; promote it only if it beats the champion."""
    config = load_config(config_path)
    settings = Settings()
    try:
        outcome = retrain_once(
            config,
            settings,
            drift_run_id=drift_run_id,
            reason=reason,
            trigger="drift" if drift_run_id else "manual",
        )
    except RetrainDeferred:  # not an outcome: the monitor asks again
        raise
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"[:1000]
        incident = _incident_or_none(settings, drift_run_id)
        alert = outcome_alert(config, "failed", failure, drift_run_id, reason, incident_id=incident)
        announce(config, alert)
        raise
    result = "promoted" if outcome["promoted"] else "refused"
    incident = incident_of(settings, drift_run_id)
    announce(
        config, outcome_alert(config, result, outcome, drift_run_id, reason, incident_id=incident)
    )
    get_run_logger().info(
        "retrain of %s: v%s %s", config.model_name, outcome["version"], outcome["reason"]
    )
    return outcome
