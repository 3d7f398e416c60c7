"""The `retrain` flow: a challenger from recent labeled traffic, promoted only if it is better.

Started by the `driftloop.drift.detected` event (the deployment trigger in prefect.yaml), by the
monitor in-process when no Prefect server is configured, or by a person. The challenger trains on
the policy's data (the champion's reference plus recent labeled live rows, sliding or expanding)
and is compared with the champion on the most recent labeled slice, which neither trained on,
through the same `should_promote` gate as the first training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pandas as pd
from prefect import flow, get_run_logger
from pydantic import Field

from driftloop import registry
from driftloop.config import ProjectConfig, load_config
from driftloop.errors import DriftloopError
from driftloop.settings import Settings
from flows.ingest import ingest_config
from flows.train import train_and_gate
from monitoring import store
from monitoring.config import RetrainConfig
from pipelines.schema import FeatureSpec
from pipelines.validation import usable_numbers

#: Share of the labeled live rows (the newest) held out to compare challenger and champion.
HOLDOUT_SHARE = 0.25


class RetrainRefused(DriftloopError, RuntimeError):
    """Retraining cannot start (no champion, too few labeled rows); the message says why."""


@dataclass(frozen=True)
class RetrainData:
    train: pd.DataFrame
    holdout: pd.DataFrame
    live_rows: int
    #: labeled live rows left out because a numeric value cannot be trained on
    unusable_rows: int = 0


def retrain_data(
    reference: pd.DataFrame,
    labeled: pd.DataFrame,
    *,
    spec: FeatureSpec,
    target: str,
    policy: RetrainConfig,
    holdout_share: float = HOLDOUT_SHARE,
) -> RetrainData:
    """Split labeled live rows (oldest first) into train and the newest holdout slice (pure).

    Rows with a numeric value training cannot use (infinite, or beyond
    ``pipelines.validation.MAX_ABS_NUMBER``; older logs may hold them) are left out and counted.
    Raises RetrainRefused when there are fewer usable labeled rows than the policy's minimum.
    """
    usable = usable_numbers(labeled, spec.numeric)
    unusable = int((~usable).sum())
    labeled = labeled.loc[usable]
    if len(labeled) < policy.min_labeled_rows:
        raise RetrainRefused(
            f"only {len(labeled)} usable labeled live rows, {policy.min_labeled_rows} needed "
            "(monitoring.retrain.min_labeled_rows); post labels to /feedback"
            + (f" ({unusable} rows left out: numbers too large to train on)" if unusable else "")
        )
    columns = [*spec.columns, target]
    live = labeled.sort_values("ts", kind="stable")[columns].reset_index(drop=True)
    if policy.data_policy == "sliding":
        live = live.tail(policy.max_live_rows).reset_index(drop=True)
    cut = len(live) - max(1, int(len(live) * holdout_share))
    holdout, recent = live.iloc[cut:].reset_index(drop=True), live.iloc[:cut]
    parts = [reference[columns]] if policy.include_reference else []
    train = pd.concat([*parts, recent], ignore_index=True)
    return RetrainData(train=train, holdout=holdout, live_rows=len(live), unusable_rows=unusable)


def retrain_config(config: ProjectConfig, spec: FeatureSpec) -> ProjectConfig:
    """The config for training on logged rows: the champion's features, no id or time column."""
    features = config.features.model_copy(
        update={"numeric": list(spec.numeric), "categorical": list(spec.categorical), "drop": []}
    )
    return config.model_copy(update={"features": features, "id_column": None, "time_column": None})


def retrain_once(
    config: ProjectConfig,
    settings: Settings,
    *,
    drift_run_id: str,
    reason: str,
    trigger: str = "drift",
) -> dict[str, Any]:
    """Build the challenger and gate it; returns the training outcome as a dict."""
    client = registry.make_client(settings.mlflow_tracking_uri)
    champion = registry.get_alias(client, config.model_name, registry.CHAMPION)
    if champion is None:
        raise RetrainRefused(
            f"model {config.model_name!r} has no champion to retrain from; run `driftloop train` first"
        )
    info = registry.VersionInfo.from_version(champion)
    reference = registry.load_reference(client, config.model_name, champion.version)
    engine = store.make_engine(settings.database_url)
    try:
        labeled = store.read_window(
            engine,
            model_name=config.model_name,
            numeric=info.spec.numeric,
            categorical=info.spec.categorical,
            target=config.target,
            labeled_only=True,
        )
    finally:
        engine.dispose()
    data = retrain_data(
        reference, labeled, spec=info.spec, target=config.target, policy=config.monitoring.retrain
    )
    cfg = retrain_config(config, info.spec)
    ingested = ingest_config(cfg, frame=data.train)
    outcome = train_and_gate(
        cfg,
        settings,
        ingested=ingested,
        holdout=data.holdout,
        lineage={
            "trigger": trigger,
            "drift_run_id": drift_run_id or "none",
            "retrain_reason": reason[:500],
            "window": f"{data.live_rows} labeled live rows ({config.monitoring.retrain.data_policy}), newest {len(data.holdout)} held out"
            + (f", {data.unusable_rows} unusable rows left out" if data.unusable_rows else ""),
            "parent_version": str(info.version),
        },
    )
    return outcome.to_dict()


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
    outcome = retrain_once(
        config,
        Settings(),
        drift_run_id=drift_run_id,
        reason=reason,
        trigger="drift" if drift_run_id else "manual",
    )
    get_run_logger().info(
        "retrain of %s: v%s %s", config.model_name, outcome["version"], outcome["reason"]
    )
    return outcome
