"""The `train` flow: ingest, train, evaluate, register in MLflow, and gate the `champion` alias.

Registration and the gate are the steps it shares with `retrain`, in flows/register.py.
"""

from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

import registry
from core.config import ProjectConfig, load_config
from core.settings import Settings
from core.spec import FeatureSpec
from flows.ingest import Ingested, ingest_config
from flows.register import (
    Candidate,
    TrainOutcome,
    Trigger,
    gate,
)
from pipelines.holdout import scores_of
from pipelines.schema import split_xy
from pipelines.training import (
    JobRunner,
    TrainingResult,
    check_candidates,
    split_holdout,
    train_model,
)


def search(
    config: ProjectConfig,
    train_frame: pd.DataFrame,
    spec: FeatureSpec,
    *,
    runner: JobRunner | None = None,
) -> TrainingResult:
    """Search the configured candidate families with cross-validation and refit the best;
    ``runner`` runs the search's fits (default: in this process)."""
    X, y = split_xy(train_frame, spec, config.target)
    order = train_frame[config.time_column].to_numpy() if config.time_column else None
    if order is not None and pd.Series(order).nunique() < 2:
        order = None
    return train_model(
        X,
        y,
        spec=spec,
        task=config.task,
        candidates=candidate_specs(config),
        cv_folds=config.model.cv_folds,
        search_iterations=config.model.search_iterations,
        seed=config.model.seed,
        cv_metric=config.promotion.metric,
        time_order=order,
        max_search_rows=config.model.max_train_rows,
        native_categorical=config.model.native_categorical,
        runner=runner,
    )


@task(cache_policy=NO_CACHE)
def fit(config: ProjectConfig, train_frame: pd.DataFrame, spec: FeatureSpec) -> TrainingResult:
    """Search the configured candidate families with cross-validation and refit the best."""
    return search(config, train_frame, spec)


def fit_searched(
    config: ProjectConfig, train_frame: pd.DataFrame, spec: FeatureSpec
) -> TrainingResult:
    """The search in this flow's process (one ``fit`` task), or with ``model.search_on_dask``
    one ``fit-and-score`` task per fit on Dask (:mod:`flows.search`) and the refit here."""
    if not config.model.search_on_dask:
        return fit(config, train_frame, spec)
    from flows.search import dask_jobs  # imports dask only when used

    return search(config, train_frame, spec, runner=dask_jobs(Settings().dask_address))


def searched_candidate(
    config: ProjectConfig, ingested: Ingested, train_frame: pd.DataFrame, holdout: pd.DataFrame
) -> Candidate:
    """The configured search's winner on ``train_frame``, scored on ``holdout``."""
    result = fit_searched(config, train_frame, ingested.spec)
    get_run_logger().info(
        "best family %s (cv %s %.4f)", result.family, result.cv_metric, result.cv_score
    )
    X_hold, y_hold = split_xy(holdout, ingested.spec, config.target)
    return Candidate(
        pipeline=result.pipeline,
        spec=ingested.spec,
        train_frame=train_frame,
        holdout=scores_of(result.pipeline, X_hold, y_hold.to_numpy(), task=config.task),
        family=result.family,
        params=result.params,
        chosen_by=f"Chosen by cross-validation: {result.cv_metric} {result.cv_score:.4f}.",
        alternatives=result.candidates,
        source=ingested.source,
    )


def candidate_specs(config: ProjectConfig) -> list[dict[str, Any]]:
    """The config's ``model.candidates`` as the plain mappings training takes."""
    return [c.model_dump() for c in config.model.candidates]


def train_and_gate(
    config: ProjectConfig,
    settings: Settings,
    *,
    ingested: Ingested,
    holdout: pd.DataFrame | None = None,
    lineage: dict[str, str],
) -> TrainOutcome:
    """Search on the ingested frame, register the winner, and move `champion` only if it wins.

    With no holdout given, a fresh one is split from the ingested frame (time-aware when
    `time_column` is set). Candidate and champion are scored on that same holdout.
    """
    check_candidates(config.task, candidate_specs(config))
    client = registry.make_client(settings.mlflow_tracking_uri)
    if holdout is None:
        train_frame, holdout = split_holdout(
            ingested.frame,
            target=config.target,
            task=config.task,
            test_size=config.model.test_size,
            seed=config.model.seed,
            time_column=config.time_column,
        )
    else:
        train_frame = ingested.frame
    candidate = searched_candidate(config, ingested, train_frame, holdout)
    return gate(config, settings, client, candidate=candidate, lineage=lineage)


@flow(name="train", log_prints=True)
def train(
    config_path: Annotated[
        str, Field(description="path to driftloop.yaml, relative to the working directory")
    ] = "driftloop.yaml",
    trigger: Annotated[
        Trigger, Field(description="why this training runs; recorded on the model version")
    ] = "manual",
) -> dict[str, Any]:
    """Ingest and validate the configured data, train, evaluate, register, and gate the champion."""
    config = load_config(config_path)
    check_candidates(config.task, candidate_specs(config))
    settings = Settings()
    ingested = ingest_config(config)
    outcome = train_and_gate(config, settings, ingested=ingested, lineage={"trigger": trigger})
    print(
        f"{outcome.model_name} v{outcome.version}: {'PROMOTED' if outcome.promoted else 'not promoted'} - {outcome.reason}"
    )
    return outcome.to_dict()
