"""The `train` flow: ingest, train, evaluate, register in MLflow, and gate the `champion` alias.

The same steps serve `retrain` (flows/retrain.py), which passes its own training frame, holdout
slice and lineage tags to :func:`train_and_gate`.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import Field

from driftloop import registry
from driftloop.config import ProjectConfig, load_config
from driftloop.settings import Settings
from flows.ingest import Ingested, ingest_config
from flows.retry import transient
from pipelines.evaluation import evaluate, evaluation_figures, overfit_gap
from pipelines.promotion import PromotionDecision, PromotionPolicy, should_promote
from pipelines.reference import build_reference
from pipelines.schema import FeatureSpec, prepare_features
from pipelines.training import TrainingResult, split_holdout, train_model

Trigger = Literal["manual", "schedule", "drift", "backtest", "demo", "stack"]

#: Rows used to measure the training-set metrics for the overfitting gap.
_TRAIN_METRIC_ROWS = 20_000


@dataclass(frozen=True)
class TrainOutcome:
    """What a training run produced and decided."""

    model_name: str
    version: int
    run_id: str
    promoted: bool
    reason: str
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    previous_champion: int | None
    lineage: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def policy_for(config: ProjectConfig) -> PromotionPolicy:
    return PromotionPolicy(
        metric=config.promotion.metric,
        higher_is_better=config.higher_is_better,
        min_improvement=config.promotion.min_improvement,
        floor=config.promotion.floor,
    )


def git_commit(cwd: Path) -> str:
    """The repository commit of the code doing the training ('unknown' outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def split_xy(frame: pd.DataFrame, spec: FeatureSpec, target: str) -> tuple[pd.DataFrame, pd.Series]:
    return prepare_features(frame, spec), frame[target].reset_index(drop=True)


@task(cache_policy=NO_CACHE)
def fit(config: ProjectConfig, train_frame: pd.DataFrame, spec: FeatureSpec) -> TrainingResult:
    """Search the configured candidate families with cross-validation and refit the best."""
    X, y = split_xy(train_frame, spec, config.target)
    order = train_frame[config.time_column].to_numpy() if config.time_column else None
    if order is not None and pd.Series(order).nunique() < 2:
        order = None
    return train_model(
        X,
        y,
        spec=spec,
        task=config.task,
        candidates=[c.model_dump() for c in config.model.candidates],
        cv_folds=config.model.cv_folds,
        search_iterations=config.model.search_iterations,
        seed=config.model.seed,
        cv_metric=config.promotion.metric,
        time_order=order,
        max_search_rows=config.model.max_train_rows,
        native_categorical=config.model.native_categorical,
    )


@task(cache_policy=NO_CACHE)
def score(
    config: ProjectConfig, pipeline: Any, frame: pd.DataFrame, spec: FeatureSpec
) -> dict[str, float]:
    """Task-appropriate metrics of a fitted pipeline on a frame."""
    X, y = split_xy(frame, spec, config.target)
    return evaluate(pipeline, X, y, task=config.task)


@task(retries=2, retry_delay_seconds=3, retry_condition_fn=transient, cache_policy=NO_CACHE)
def champion_scores(
    config: ProjectConfig, client: MlflowClient, holdout: pd.DataFrame
) -> tuple[int | None, dict[str, float] | None, str | None]:
    """Evaluate the current champion on the same holdout; (version, metrics, problem)."""
    current = registry.get_alias(client, config.model_name, registry.CHAMPION)
    if current is None:
        return None, None, None
    info = registry.VersionInfo.from_version(current)
    champion = registry.load_model(client, config.model_name, current.version)
    try:
        X, y = split_xy(holdout, info.spec, config.target)
        return int(current.version), evaluate(champion, X, y, task=config.task), None
    except Exception as exc:  # a champion that cannot score the new data cannot be compared
        return (
            int(current.version),
            None,
            f"champion v{current.version} cannot score this holdout: {exc}",
        )


def _classes(pipeline: Any) -> list[Any]:
    classes = getattr(pipeline, "classes_", None)
    return [c.item() if hasattr(c, "item") else c for c in classes] if classes is not None else []


def version_description(
    config: ProjectConfig,
    result: TrainingResult,
    metrics: dict[str, float],
    lineage: dict[str, str],
) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items()))
    return (
        f"**{result.family}** pipeline for `{config.target}` ({config.task}), trigger `{lineage.get('trigger')}`.\n\n"
        f"Best params: `{json.dumps(result.params, default=str)}`; cv {result.cv_metric} {result.cv_score:.4f}.\n\n"
        f"| holdout metric | value |\n|---|---|\n{rows}\n"
    )


@task(retries=2, retry_delay_seconds=3, retry_condition_fn=transient, cache_policy=NO_CACHE)
def register(
    config: ProjectConfig,
    settings: Settings,
    client: MlflowClient,
    *,
    ingested: Ingested,
    train_frame: pd.DataFrame,
    holdout: pd.DataFrame,
    result: TrainingResult,
    metrics: dict[str, float],
    train_metrics: dict[str, float],
    lineage: dict[str, str],
) -> tuple[int, str]:
    """Log the run (params, metrics, plots, datasets) and register the model version with its
    reference snapshot and integrity record (`registry.log_model_version`)."""
    spec = ingested.spec
    experiment_id = registry.ensure_experiment(
        client,
        registry.training_experiment(config.model_name),
        artifact_location=settings.artifact_location(),
    )
    X_train, y_train = split_xy(train_frame, spec, config.target)
    X_hold, y_hold = split_xy(holdout, spec, config.target)
    train_data = mlflow.data.from_pandas(
        X_train.assign(**{config.target: y_train.to_numpy()}),
        source=ingested.source,
        targets=config.target,
        name=f"{config.model_name}-train",
    )
    holdout_data = mlflow.data.from_pandas(
        X_hold.assign(**{config.target: y_hold.to_numpy()}),
        source=ingested.source,
        targets=config.target,
        name=f"{config.model_name}-holdout",
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run(
        run_name=f"{config.model_name}-{lineage.get('trigger', 'manual')}"
    ) as run:
        mlflow.set_tags({registry.TAG + k: v for k, v in lineage.items()})
        mlflow.log_params(
            {
                "family": result.family,
                **{f"model.{k}": v for k, v in result.params.items()},
                "cv_metric": result.cv_metric,
                "cv_folds": config.model.cv_folds,
                "seed": config.model.seed,
                "train_rows": len(train_frame),
                "holdout_rows": len(holdout),
                "numeric_features": len(spec.numeric),
                "categorical_features": len(spec.categorical),
                "config_hash": lineage["config_hash"],
            }
        )
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()})
        mlflow.log_metrics({f"train_{k}": v for k, v in train_metrics.items()})
        gap = overfit_gap(
            train_metrics,
            metrics,
            metric=config.promotion.metric,
            higher_is_better=config.higher_is_better,
        )
        mlflow.log_metrics({"cv_score": result.cv_score, "overfit_gap": gap})
        mlflow.log_input(train_data, context="training")
        mlflow.log_input(holdout_data, context="evaluation")
        for name, figure in evaluation_figures(
            result.pipeline, X_hold, y_hold, task=config.task
        ).items():
            mlflow.log_figure(figure, f"plots/{name}.png")
        with tempfile.TemporaryDirectory() as tmp:
            cand_path = Path(tmp) / "candidates.csv"
            result.candidates.to_csv(cand_path, index=False)
            mlflow.log_artifact(str(cand_path), artifact_path="search")
            (Path(tmp) / "feature_spec.json").write_text(json.dumps(spec.to_dict(), indent=2))
            mlflow.log_artifact(str(Path(tmp) / "feature_spec.json"))
        lineage = {**lineage, "data_digest": train_data.digest}
        example = X_train.head(5)
        version = registry.log_model_version(
            client,
            model_name=config.model_name,
            pipeline=result.pipeline,
            reference=build_reference(
                result.pipeline, X_train, y_train, target=config.target, task=config.task
            ),
            signature=infer_signature(example, result.pipeline.predict(example)),
            input_example=example,
            tags={
                **{registry.TAG + k: str(v) for k, v in lineage.items()},
                registry.TAG + "family": result.family,
                registry.TAG
                + f"holdout_{config.promotion.metric}": f"{metrics[config.promotion.metric]:.6f}",
                **registry.model_spec_tag(
                    task=config.task,
                    target=config.target,
                    numeric=spec.numeric,
                    categorical=spec.categorical,
                    not_null=config.features.not_null,
                    classes=_classes(result.pipeline),
                ),
            },
        )
    client.update_model_version(
        config.model_name,
        str(version),
        description=version_description(config, result, metrics, lineage),
    )
    return version, run.info.run_id


def decision_markdown(outcome: TrainOutcome, decision: PromotionDecision) -> str:
    names = sorted(outcome.metrics)
    champ = outcome.champion_metrics or {}
    rows = "\n".join(
        f"| {n} | {outcome.metrics[n]:.4f} | {champ[n]:.4f} |"
        if n in champ
        else f"| {n} | {outcome.metrics[n]:.4f} | - |"
        for n in names
    )
    verdict = "promoted to **champion**" if decision.promote else "kept as **challenger**"
    return (
        f"### {outcome.model_name} v{outcome.version}: {verdict}\n\n{decision.reason}\n\n"
        f"| metric (same holdout) | candidate v{outcome.version} | champion "
        f"{'v' + str(outcome.previous_champion) if outcome.previous_champion else '(none)'} |\n"
        f"|---|---|---|\n{rows}\n"
    )


def train_and_gate(
    config: ProjectConfig,
    settings: Settings,
    *,
    ingested: Ingested,
    holdout: pd.DataFrame | None = None,
    lineage: dict[str, str],
) -> TrainOutcome:
    """Train on the ingested frame, register the candidate, and move `champion` only if it wins.

    With no holdout given, a fresh one is split from the ingested frame (time-aware when
    `time_column` is set). Candidate and champion are scored on that same holdout.
    """
    logger = get_run_logger()
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
    result = fit(config, train_frame, ingested.spec)
    logger.info("best family %s (cv %s %.4f)", result.family, result.cv_metric, result.cv_score)
    metrics = score(config, result.pipeline, holdout, ingested.spec)
    sample = train_frame.sample(
        min(len(train_frame), _TRAIN_METRIC_ROWS), random_state=config.model.seed
    )
    train_metrics = score(config, result.pipeline, sample, ingested.spec)
    champion_version, champion_metrics, problem = champion_scores(config, client, holdout)
    lineage = {
        **lineage,
        "config_hash": config.config_hash(),
        "git_commit": git_commit(config.base_dir),
        "prefect_flow_run_id": str(flow_run.id or "none"),
    }
    version, run_id = register(
        config,
        settings,
        client,
        ingested=ingested,
        train_frame=train_frame,
        holdout=holdout,
        result=result,
        metrics=metrics,
        train_metrics=train_metrics,
        lineage=lineage,
    )
    policy = policy_for(config)
    if problem is not None:
        decision = PromotionDecision(
            promote=False,
            reason=problem,
            metric=policy.metric,
            candidate=metrics.get(policy.metric, float("nan")),
            champion=None,
        )
    else:
        decision = should_promote(metrics, champion_metrics, policy)
    if champion_metrics:
        with mlflow.start_run(run_id=run_id):
            mlflow.log_metrics({f"champion_holdout_{k}": v for k, v in champion_metrics.items()})
    if decision.promote:
        registry.set_champion(
            client,
            config.model_name,
            version,
            reason=decision.reason,
            actor=lineage.get("trigger", "manual"),
        )
    else:
        registry.mark_challenger(client, config.model_name, version, reason=decision.reason)
    outcome = TrainOutcome(
        model_name=config.model_name,
        version=version,
        run_id=run_id,
        promoted=decision.promote,
        reason=decision.reason,
        metrics=metrics,
        champion_metrics=champion_metrics,
        previous_champion=champion_version,
        lineage=lineage,
    )
    key = config.model_name.lower().replace("_", "-")
    create_markdown_artifact(
        decision_markdown(outcome, decision),
        key=f"{key}-promotion",
        description="promotion decision",
    )
    experiment_id = client.get_run(run_id).info.experiment_id
    create_link_artifact(
        f"{settings.mlflow_ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}",
        link_text=f"MLflow run of {config.model_name} v{version}",
        key=f"{key}-mlflow-run",
    )
    logger.info("%s v%s: %s", config.model_name, version, decision.reason)
    return outcome


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
    settings = Settings()
    ingested = ingest_config(config)
    outcome = train_and_gate(config, settings, ingested=ingested, lineage={"trigger": trigger})
    print(
        f"{outcome.model_name} v{outcome.version}: {'PROMOTED' if outcome.promoted else 'not promoted'} - {outcome.reason}"
    )
    return outcome.to_dict()
