"""The MLflow model registry as driftloop uses it: aliases, lineage tags, champion history.

Aliases, never stages: `champion` is the version serving traffic, `challenger` the latest candidate
that was refused. The registered model keeps a `driftloop.champion_history` tag (newest last) so
that `rollback` knows where to go back to.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from driftloop.errors import DriftloopError
from pipelines.schema import FeatureSpec

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG = "driftloop."
HISTORY_TAG = TAG + "champion_history"
#: One JSON tag holds what serving and monitoring need to read a version back (task, target,
#: features, classes): one line in the MLflow versions table instead of six.
SPEC_TAG = TAG + "model_spec"
_SPEC_REQUIRED = ("task", "target", "numeric", "categorical")
REFERENCE_ARTIFACT = "reference/reference.parquet"
MODEL_ARTIFACT = "model"
_HISTORY_KEEP = 50


class ModelNotFoundError(DriftloopError, LookupError):
    """The registered model, version or alias does not exist."""


def make_client(tracking_uri: str) -> MlflowClient:
    """Point MLflow at the tracking store and return a client for it."""
    mlflow.set_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(client: MlflowClient, name: str, *, artifact_location: str | None) -> str:
    """Return the experiment id, creating it (with the artifact root) on first use."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def training_experiment(model_name: str) -> str:
    return f"{model_name}-training"


def monitoring_experiment(model_name: str) -> str:
    return f"{model_name}-monitoring"


def _is_missing(exc: MlflowException) -> bool:
    return exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


def get_alias(client: MlflowClient, model_name: str, alias: str = CHAMPION) -> ModelVersion | None:
    """The version behind an alias, or None when the model or alias does not exist."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if _is_missing(exc):
            return None
        raise


def get_version(client: MlflowClient, model_name: str, version: int | str) -> ModelVersion:
    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        if _is_missing(exc):
            raise ModelNotFoundError(
                f"model {model_name!r} has no version {version}; list them with `mlflow ui` or "
                f"`driftloop versions --config ...`"
            ) from None
        raise


def list_versions(client: MlflowClient, model_name: str) -> list[ModelVersion]:
    """All versions of a model, oldest first."""
    versions = client.search_model_versions(f"name = '{model_name}'")
    return sorted(versions, key=lambda v: int(v.version))


def champion_history(client: MlflowClient, model_name: str) -> list[dict[str, Any]]:
    try:
        model = client.get_registered_model(model_name)
    except MlflowException as exc:
        if _is_missing(exc):
            return []
        raise
    raw = model.tags.get(HISTORY_TAG)
    return json.loads(raw) if raw else []


def set_champion(
    client: MlflowClient, model_name: str, version: int | str, *, reason: str, actor: str
) -> str | None:
    """Move the `champion` alias to `version`; returns the previous champion version (or None)."""
    target = get_version(client, model_name, version)
    previous = get_alias(client, model_name, CHAMPION)
    client.set_registered_model_alias(model_name, CHAMPION, target.version)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(model_name, target.version, TAG + "role", "champion")
    client.set_model_version_tag(model_name, target.version, TAG + "decision", reason[:4000])
    if previous is not None and previous.version != target.version:
        client.set_model_version_tag(model_name, previous.version, TAG + "role", "former_champion")
    challenger = get_alias(client, model_name, CHALLENGER)
    if challenger is not None and challenger.version == target.version:
        client.delete_registered_model_alias(model_name, CHALLENGER)
    history = champion_history(client, model_name)
    history.append({"version": int(target.version), "at": now, "by": actor, "reason": reason[:300]})
    client.set_registered_model_tag(model_name, HISTORY_TAG, json.dumps(history[-_HISTORY_KEEP:]))
    return previous.version if previous is not None else None


def mark_challenger(
    client: MlflowClient, model_name: str, version: int | str, *, reason: str
) -> None:
    """Record a refused candidate: alias `challenger` and the refusal reason as tags."""
    client.set_registered_model_alias(model_name, CHALLENGER, str(version))
    client.set_model_version_tag(model_name, str(version), TAG + "role", "challenger")
    client.set_model_version_tag(model_name, str(version), TAG + "decision", reason[:4000])


def rollback_target(history: list[dict[str, Any]], current: int | None) -> int | None:
    """The champion before the current one in the history (pure)."""
    versions = [int(item["version"]) for item in history]
    while versions and current is not None and versions[-1] == current:
        versions.pop()
    return versions[-1] if versions else None


def rollback(client: MlflowClient, model_name: str, *, actor: str) -> tuple[str, str]:
    """Move `champion` back to the previous champion; returns (from_version, to_version)."""
    current = get_alias(client, model_name, CHAMPION)
    if current is None:
        raise ModelNotFoundError(f"model {model_name!r} has no champion to roll back from")
    target = rollback_target(champion_history(client, model_name), int(current.version))
    if target is None:
        raise ModelNotFoundError(
            f"model {model_name!r} has no earlier champion than version {current.version}; "
            "use `driftloop promote --version N` to choose one"
        )
    set_champion(
        client, model_name, target, reason=f"rollback from version {current.version}", actor=actor
    )
    client.set_model_version_tag(model_name, current.version, TAG + "role", "rolled_back")
    return current.version, str(target)


def model_uri(model_name: str, version: int | str) -> str:
    return f"models:/{model_name}/{version}"


def load_model(model_name: str, version: int | str) -> Any:
    """Load a registered scikit-learn Pipeline."""
    return mlflow.sklearn.load_model(model_uri(model_name, version))


def model_spec_tag(
    *,
    task: str,
    target: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    not_null: Sequence[str] = (),
    classes: Sequence[Any] = (),
) -> dict[str, str]:
    """The version tag that records how to read the model's inputs and outputs."""
    spec = {
        "task": task,
        "target": target,
        "numeric": list(numeric),
        "categorical": list(categorical),
        "not_null": list(not_null),
        "classes": list(classes),
    }
    return {SPEC_TAG: json.dumps(spec)}


def read_model_spec(tags: Mapping[str, str]) -> dict[str, Any]:
    """The model spec recorded on a version's tags.

    Raises:
        KeyError: the tag (or a required key in it) is missing: not a driftloop model.
        ValueError: the tag is not a JSON object.
    """
    raw = tags.get(SPEC_TAG)
    if raw is None:
        raise KeyError(SPEC_TAG)
    try:
        spec = json.loads(raw)
    except ValueError:
        raise ValueError(f"tag {SPEC_TAG} is not valid JSON: {raw[:80]!r}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"tag {SPEC_TAG} must hold a JSON object, got {raw[:80]!r}")
    missing = [k for k in _SPEC_REQUIRED if k not in spec]
    if missing:
        raise KeyError(f"{SPEC_TAG} keys {missing}")
    return {"not_null": [], "classes": [], **spec}


@dataclass(frozen=True)
class VersionInfo:
    """What driftloop recorded on a model version, read back from its tags."""

    model_name: str
    version: int
    run_id: str
    task: str
    target: str
    spec: FeatureSpec
    not_null: tuple[str, ...]
    classes: tuple[Any, ...]

    @classmethod
    def from_version(cls, mv: ModelVersion) -> VersionInfo:
        try:
            spec = read_model_spec(mv.tags)
        except (KeyError, ValueError) as exc:
            raise ModelNotFoundError(
                f"model {mv.name!r} version {mv.version} was not registered by driftloop "
                f"(tag problem: {exc})"
            ) from None
        return cls(
            model_name=mv.name,
            version=int(mv.version),
            run_id=mv.run_id,
            task=spec["task"],
            target=spec["target"],
            spec=FeatureSpec(
                numeric=tuple(spec["numeric"]), categorical=tuple(spec["categorical"])
            ),
            not_null=tuple(spec["not_null"]),
            classes=tuple(spec["classes"]),
        )


def load_reference(client: MlflowClient, run_id: str) -> pd.DataFrame:
    """The training snapshot stored with a model version's run."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, REFERENCE_ARTIFACT, tmp)
        except MlflowException as exc:
            raise ModelNotFoundError(
                f"run {run_id} has no reference snapshot ({REFERENCE_ARTIFACT})"
            ) from exc
        return pd.read_parquet(Path(local))
