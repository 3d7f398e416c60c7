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
from driftloop.settings import Settings
from flows.ingest import ingest_config
from flows.train import train_and_gate
from monitoring import store
from monitoring.config import RetrainConfig
from pipelines.schema import FeatureSpec

#: Share of the labeled live rows (the newest) held out to compare challenger and champion.
HOLDOUT_SHARE = 0.25


class RetrainRefused(RuntimeError):
    """Retraining cannot start (no champion, too few labeled rows); the message says why."""


@dataclass(frozen=True)
class RetrainData:
    train: pd.DataFrame
    holdout: pd.DataFrame
    live_rows: int


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

    Raises RetrainRefused when there are fewer labeled rows than the policy's minimum.
    """
    if len(labeled) < policy.min_labeled_rows:
        raise RetrainRefused(
            f"only {len(labeled)} labeled live rows, {policy.min_labeled_rows} needed "
            "(monitoring.retrain.min_labeled_rows); post labels to /feedback"
        )
    columns = [*spec.columns, target]
    live = labeled.sort_values("ts", kind="stable")[columns].reset_index(drop=True)
    if policy.data_policy == "sliding":
        live = live.tail(policy.max_live_rows).reset_index(drop=True)
    cut = len(live) - max(1, int(len(live) * holdout_share))
    holdout, recent = live.iloc[cut:].reset_index(drop=True), live.iloc[:cut]
    parts = [reference[columns]] if policy.include_reference else []
    train = pd.concat([*parts, recent], ignore_index=True)
    return RetrainData(train=train, holdout=holdout, live_rows=len(live))


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
            "window": f"{data.live_rows} labeled live rows ({config.monitoring.retrain.data_policy}), newest {len(data.holdout)} held out",
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
