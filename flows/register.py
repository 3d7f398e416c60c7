"""Registration and the promotion gate, the steps `train` and `retrain` share.

Both flows build a :class:`Candidate` (the fitted Pipeline, what it learned from, its
out-of-sample scores): `train` from a cross-validated search, `retrain` from live windows.
:func:`register` records it as a new MLflow version, and :func:`gate` judges it against the
champion on the same rows (a paired bootstrap interval) and moves `champion` only if it wins,
and only if `champion` still points at the version it was judged against (compare-and-set,
:mod:`flows.champion`; judged again against a champion that moved meanwhile).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

import registry
from core.config import ProjectConfig
from core.metrics import metric_info, names_for
from core.settings import Settings
from core.spec import FeatureSpec
from flows.approval import ask_approval
from flows.champion import promote_if_unchanged
from flows.retry import transient
from monitoring.estimation import fit_estimation
from monitoring.significance import measure_noise
from pipelines.evaluation import figures_from_outputs, overfit_gap
from pipelines.holdout import HoldoutScores, compare, finite, scores_of
from pipelines.importance import permutation_importances
from pipelines.promotion import (
    PromotionDecision,
    PromotionPolicy,
    should_promote,
)
from pipelines.reference import build_reference
from pipelines.schema import dataset_frame, prepare_features, split_xy

Trigger = Literal["manual", "schedule", "drift", "backtest", "demo", "stack"]


#: Rows used to measure the training-set metrics for the overfitting gap.
_TRAIN_METRIC_ROWS = 20_000


@dataclass(frozen=True)
class Candidate:
    """What a registration records: the fitted Pipeline, the rows it learned from (features and
    target), its scores on rows it never learned from, and how it was chosen."""

    pipeline: Any
    spec: FeatureSpec
    train_frame: pd.DataFrame
    holdout: HoldoutScores
    family: str
    params: dict[str, Any]
    #: how it was chosen, one sentence (the search's CV score, or the window that won)
    chosen_by: str
    #: the table of alternatives (search candidates, or windows with their scores)
    alternatives: pd.DataFrame
    source: str
    #: extra version tags (without the driftloop. prefix)
    tags: dict[str, str] = field(default_factory=dict)


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


@task(retries=2, retry_delay_seconds=3, retry_condition_fn=transient, cache_policy=NO_CACHE)
def champion_on(
    config: ProjectConfig, client: MlflowClient, X: pd.DataFrame, y: Any, classes: tuple[Any, ...]
) -> tuple[int | None, HoldoutScores | None, str | None]:
    """The current champion's scores on the candidate's judged rows; (version, scores, problem)."""
    current = registry.get_alias(client, config.model_name, registry.CHAMPION)
    if current is None:
        return None, None, None
    info = registry.version_info(current)
    champion = registry.load_model(client, config.model_name, current.version)
    try:
        X_champion = prepare_features(X, info.spec)
        scores = scores_of(champion, X_champion, y, task=config.task, classes=classes or None)
        return int(current.version), scores, None
    except Exception as exc:  # a champion that cannot score the new data cannot be compared
        return (
            int(current.version),
            None,
            f"champion v{current.version} cannot score these rows: {exc}",
        )


def evaluation_files(
    holdout: HoldoutScores, *, metric: str, spec: FeatureSpec, seed: int, pipeline: Any
) -> dict[str, bytes]:
    """The files stored with a version: its out-of-sample scores, each metric's noise, each
    feature's permutation importance for the primary metric, and what estimating the primary
    metric without labels needs (calibrator or loss model, band)."""
    noise = {
        name: measure_noise(
            name,
            holdout.y,
            holdout.prediction,
            holdout.proba,
            classes=holdout.classes,
            resamples=100,
        ).to_dict()
        for name in names_for(holdout.task)
        if holdout.kind in metric_info(name).kinds
    }
    payload = {"source": holdout.source, "rows": len(holdout), "noise": noise}
    facts = fit_estimation(
        metric,
        task=holdout.task,
        classes=holdout.classes,
        X=holdout.X,
        y=holdout.y,
        prediction=holdout.prediction,
        proba=holdout.proba,
        numeric=spec.numeric,
        categorical=spec.categorical,
        seed=seed,
    )
    if facts is None:
        get_run_logger().warning(
            "%s cannot be estimated without labels for this model (or its holdout is too "
            "small to calibrate): monitoring will use labels only",
            metric,
        )
    importance = {
        "metric": metric,
        "source": holdout.source,
        "rows": len(holdout),
        "importances": permutation_importances(
            pipeline,
            holdout.X,
            holdout.y,
            metric=metric,
            task=holdout.task,
            classes=holdout.classes,
            seed=seed,
        ),
    }
    return {
        registry.HOLDOUT_FILE: holdout.to_parquet(),
        registry.NOISE_FILE: json.dumps(payload, allow_nan=True).encode(),
        registry.IMPORTANCE_FILE: json.dumps(importance).encode(),
        **(facts.to_files() if facts is not None else {}),
    }


def _classes(pipeline: Any) -> list[Any]:
    classes = getattr(pipeline, "classes_", None)
    return [c.item() if hasattr(c, "item") else c for c in classes] if classes is not None else []


def version_description(
    config: ProjectConfig, candidate: Candidate, metrics: dict[str, float], lineage: dict[str, str]
) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(finite(metrics).items()))
    return (
        f"**{candidate.family}** pipeline for `{config.target}` ({config.task}), trigger "
        f"`{lineage.get('trigger')}`.\n\n{candidate.chosen_by}\n\n"
        f"Params: `{json.dumps(candidate.params, default=str)}`.\n\n"
        f"| holdout metric ({candidate.holdout.source}, {len(candidate.holdout)} rows) | value |\n"
        f"|---|---|\n{rows}\n"
    )


def run_params(
    config: ProjectConfig, candidate: Candidate, lineage: dict[str, str]
) -> dict[str, Any]:
    """The training run's MLflow params: the family and its parameters, the search, the rows."""
    spec, holdout = candidate.spec, candidate.holdout
    return {
        "family": candidate.family,
        **{f"model.{k}": v for k, v in candidate.params.items()},
        "cv_folds": config.model.cv_folds,
        "seed": config.model.seed,
        "train_rows": len(candidate.train_frame),
        "holdout_rows": len(holdout),
        "holdout_source": holdout.source,
        "numeric_features": len(spec.numeric),
        "categorical_features": len(spec.categorical),
        "config_hash": lineage["config_hash"],
    }


def version_tags(
    config: ProjectConfig,
    candidate: Candidate,
    metrics: dict[str, float],
    lineage: dict[str, str],
) -> dict[str, str]:
    """The version's tags: lineage, what the candidate learned from, its family, its holdout
    value of the primary metric and the model spec the service and the monitor read back."""
    spec, metric = candidate.spec, config.promotion.metric
    return {
        **{registry.TAG + k: str(v) for k, v in lineage.items()},
        **{registry.TAG + k: str(v) for k, v in candidate.tags.items()},
        registry.TAG + "family": candidate.family,
        registry.TAG + f"holdout_{metric}": f"{metrics[metric]:.6f}",
        **registry.model_spec_tag(
            task=config.task,
            target=config.target,
            numeric=spec.numeric,
            categorical=spec.categorical,
            not_null=config.features.not_null,
            classes=_classes(candidate.pipeline),
        ),
    }


@task(retries=2, retry_delay_seconds=3, retry_condition_fn=transient, cache_policy=NO_CACHE)
def register(
    config: ProjectConfig,
    settings: Settings,
    client: MlflowClient,
    *,
    candidate: Candidate,
    metrics: dict[str, float],
    train_metrics: dict[str, float],
    lineage: dict[str, str],
) -> tuple[int, str]:
    """Log the run (params, metrics, plots, datasets) and register the model version with its
    reference snapshot, evaluation files and integrity record (`registry.log_model_version`)."""
    spec = candidate.spec
    experiment_id = registry.ensure_experiment(
        client,
        registry.training_experiment(config.model_name),
        artifact_location=settings.artifact_location(),
    )
    X_train, y_train = split_xy(candidate.train_frame, spec, config.target)
    holdout = candidate.holdout
    train_data = mlflow.data.from_pandas(
        dataset_frame(X_train, y_train, config.target),
        source=candidate.source,
        targets=config.target,
        name=f"{config.model_name}-train",
    )
    holdout_data = mlflow.data.from_pandas(
        dataset_frame(holdout.X, holdout.y, config.target),
        source=candidate.source,
        targets=config.target,
        name=f"{config.model_name}-holdout",
    )
    with (
        registry.tracked(settings.mlflow_tracking_uri),
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"{config.model_name}-{lineage.get('trigger', 'manual')}",
        ) as run,
    ):
        mlflow.set_tags({registry.TAG + k: v for k, v in lineage.items()})
        mlflow.log_params(run_params(config, candidate, lineage))
        mlflow.log_metrics({f"holdout_{k}": v for k, v in finite(metrics).items()})
        mlflow.log_metrics({f"train_{k}": v for k, v in finite(train_metrics).items()})
        gap = overfit_gap(
            train_metrics,
            metrics,
            metric=config.promotion.metric,
            higher_is_better=config.higher_is_better,
        )
        mlflow.log_metrics(finite({"overfit_gap": gap}))
        mlflow.log_input(train_data, context="training")
        mlflow.log_input(holdout_data, context="evaluation")
        figures = figures_from_outputs(
            holdout.y, holdout.prediction, holdout.proba, classes=holdout.classes, task=config.task
        )
        for name, figure in figures.items():
            mlflow.log_figure(figure, f"plots/{name}.png")
        with tempfile.TemporaryDirectory() as tmp:
            cand_path = Path(tmp) / "candidates.csv"
            candidate.alternatives.to_csv(cand_path, index=False)
            mlflow.log_artifact(str(cand_path), artifact_path="search")
            (Path(tmp) / "feature_spec.json").write_text(json.dumps(spec.to_dict(), indent=2))
            mlflow.log_artifact(str(Path(tmp) / "feature_spec.json"))
        lineage = {**lineage, "data_digest": train_data.digest}
        # numeric features are float64 (prepare_features), so the signature declares them
        # double: an integer column could not take the missing value serving accepts
        example = X_train.head(5)
        version = registry.log_model_version(
            client,
            model_name=config.model_name,
            pipeline=candidate.pipeline,
            reference=build_reference(
                candidate.pipeline, X_train, y_train, target=config.target, task=config.task
            ),
            signature=infer_signature(example, candidate.pipeline.predict(example)),
            input_example=example,
            evaluation=evaluation_files(
                holdout,
                metric=config.promotion.metric,
                spec=spec,
                seed=config.model.seed,
                pipeline=candidate.pipeline,
            ),
            tags=version_tags(config, candidate, metrics, lineage),
        )
    client.update_model_version(
        config.model_name,
        str(version),
        description=version_description(config, candidate, metrics, lineage),
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


def judgement(
    policy: PromotionPolicy,
    holdout: HoldoutScores,
    metrics: dict[str, float],
    champion: HoldoutScores | None,
    problem: str | None,
) -> PromotionDecision:
    """The gate's decision on the candidate's judged rows against the champion's scores there
    (pure): a paired comparison, or a refusal when the champion could not score them."""
    if problem is not None:
        return PromotionDecision(
            promote=False,
            reason=problem,
            metric=policy.metric,
            candidate=metrics.get(policy.metric, float("nan")),
            champion=None,
        )
    difference = compare(holdout, champion, policy.metric) if champion is not None else None
    return should_promote(
        metrics, champion.metrics() if champion is not None else None, policy, difference
    )


#: Judgements of one candidate at most: the first, and again each time another promotion moved
#: `champion` between the judgement and the compare-and-set.
_JUDGEMENTS = 3


def take_alias(
    config: ProjectConfig,
    settings: Settings,
    client: MlflowClient,
    *,
    candidate: Candidate,
    version: int,
    judged: tuple[PromotionDecision, int | None, HoldoutScores | None],
    actor: str,
) -> tuple[PromotionDecision, int | None, HoldoutScores | None]:
    """Move `champion` to a candidate the gate promoted, only if it still points at the version
    it was judged against (compare-and-set); when another promotion came first, judge the
    candidate again against the new champion. Returns the last (decision, champion version,
    champion scores): a refusal leaves the candidate a challenger with the reason."""
    decision, against, champion = judged
    holdout, policy = candidate.holdout, policy_for(config)
    for _ in range(_JUDGEMENTS):
        if not decision.promote:
            return decision, against, champion
        move = promote_if_unchanged(
            settings,
            client,
            config.model_name,
            version,
            expected=against,
            reason=decision.reason,
            actor=actor,
        )
        if move.moved:
            return decision, against, champion
        conflict = move.conflict()
        get_run_logger().warning("%s v%s: %s; judging again", config.model_name, version, conflict)
        against, champion, problem = champion_on(
            config, client, holdout.X, holdout.y, holdout.classes
        )
        again = judgement(policy, holdout, holdout.metrics(), champion, problem)
        decision = dataclasses.replace(again, reason=f"judged again ({conflict}): {again.reason}")
    reason = (
        f"not promoted: `champion` moved during each of {_JUDGEMENTS} judgements ({conflict}); "
        "kept as challenger"
    )
    return dataclasses.replace(decision, promote=False, reason=reason), against, champion


def gate(
    config: ProjectConfig,
    settings: Settings,
    client: MlflowClient,
    *,
    candidate: Candidate,
    lineage: dict[str, str],
) -> TrainOutcome:
    """Register the candidate and move `champion` to it only if it beats the champion on the
    candidate's judged rows by more than noise (and reaches the floor) and that champion still
    holds the alias (:func:`take_alias`); record why either way."""
    logger = get_run_logger()
    holdout = candidate.holdout
    metrics = holdout.metrics()
    sample = candidate.train_frame.sample(
        min(len(candidate.train_frame), _TRAIN_METRIC_ROWS), random_state=config.model.seed
    )
    X_sample, y_sample = split_xy(sample, candidate.spec, config.target)
    train_metrics = scores_of(
        candidate.pipeline, X_sample, y_sample, task=config.task, classes=holdout.classes or None
    ).metrics()
    champion_version, champion, problem = champion_on(
        config, client, holdout.X, holdout.y, holdout.classes
    )
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
        candidate=candidate,
        metrics=metrics,
        train_metrics=train_metrics,
        lineage=lineage,
    )
    policy = policy_for(config)
    decision = judgement(policy, holdout, metrics, champion, problem)
    if decision.promote and config.promotion.approval == "manual":
        decision = ask_approval(
            config, settings, client, version=version, decision=decision, against=champion_version
        )
    decision, champion_version, champion = take_alias(
        config,
        settings,
        client,
        candidate=candidate,
        version=version,
        judged=(decision, champion_version, champion),
        actor=lineage.get("trigger", "manual"),
    )
    champion_metrics = champion.metrics() if champion is not None else None
    if champion_metrics:
        registry.log_run_metrics(
            client,
            run_id,
            {f"champion_holdout_{k}": v for k, v in finite(champion_metrics).items()},
        )
    if not decision.promote:
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
