"""The MLflow model registry as driftloop uses it: aliases, lineage tags, champion history, and
the only way driftloop registers and loads a model version.

Aliases, never stages: `champion` is the version serving traffic, `challenger` the latest candidate
that was refused. The registered model keeps a `driftloop.champion_history` tag (newest last, one
entry per move, read back after writing) so that `rollback` knows where to go back to.
`champion` moves by compare-and-set (:func:`set_champion_if`: only from the version a decision
was made against, read back after setting); callers hold the champion lock of the driftloop
database around it (``flows.champion``). A version tagged `driftloop.rolled_back` is never
promoted again.

Integrity: :func:`log_model_version` records the SHA-256 of every stored file of the model and of
its reference snapshot on the version (tag `driftloop.integrity`); :func:`load_verified_model`,
:func:`load_model` and :func:`load_reference` download the files, refuse any that differ from
that record (and any model whose `MLmodel` is not skops) before anything is deserialized, and
load with only the types in `pipelines.training.TRUSTED_SKOPS_TYPES`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import skops.io
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.utils.validation import MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH

from core.errors import DriftloopError
from core.spec import FeatureSpec, VersionInfo
from pipelines.training import TRUSTED_SKOPS_TYPES
from registry import integrity

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG = "driftloop."
#: how the challenger did on live traffic, in the shadow of the champion (the newest monitor run)
SHADOW_TAG = TAG + "shadow"
HISTORY_TAG = TAG + "champion_history"
#: One JSON tag holds what serving and monitoring need to read a version back (task, target,
#: features, classes): one line in the MLflow versions table instead of six.
SPEC_TAG = TAG + "model_spec"
_SPEC_REQUIRED = ("task", "target", "numeric", "categorical")
#: One JSON tag per version: {"algorithm": "sha256", "model": {path: digest}, "reference": digest}.
INTEGRITY_TAG = TAG + "integrity"
REFERENCE_ARTIFACT = "reference/reference.parquet"
MODEL_ARTIFACT = "model"
#: Files about the holdout: its out-of-sample scores, noise, calibration, the loss model.
EVALUATION_DIR = "evaluation"
#: The evaluation files: the holdout's out-of-sample scores and each metric's noise on them.
HOLDOUT_FILE = "holdout.parquet"
NOISE_FILE = "noise.json"
#: permutation importance of each feature on the holdout (drift_rule: weighted)
IMPORTANCE_FILE = "importance.json"
_HISTORY_KEEP = 50
logger = logging.getLogger("driftloop.registry")


class ModelNotFoundError(DriftloopError, LookupError):
    """The registered model, version or alias does not exist."""


class ModelIntegrityError(ModelNotFoundError):
    """A version's stored files are not the ones recorded at registration, or it has no record.

    The message names the model, the version and the file; never a local path.
    """

    def __init__(self, model_name: str, version: int | str, problem: str) -> None:
        self.model_name = model_name
        self.version = int(version)
        self.problem = problem
        super().__init__(f"model {model_name!r} version {version}: {problem}")


_RESTORE = (
    "the artifact store was changed after registration: restore the original files, or point "
    "`champion` at a version that passes `driftloop verify` (`driftloop promote --version N`) "
    "and retrain"
)
_RETRAIN = (
    "train a new version with `driftloop train` (or `driftloop retrain`); a version is "
    "recorded only when it is registered"
)


def make_client(tracking_uri: str) -> MlflowClient:
    """A client for the tracking store (and its model registry); sets nothing global."""
    return MlflowClient(tracking_uri=tracking_uri)


#: MLflow's own variable: `mlflow.set_tracking_uri` also writes it, so :func:`tracked` restores it.
_TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


@contextmanager
def tracked(tracking_uri: str) -> Iterator[None]:
    """MLflow's fluent API (`mlflow.start_run`, `mlflow.log_*`, `mlflow.sklearn.log_model`) on
    this tracking store inside the block; what was there before is back afterwards.

    The fluent API has only a process-wide URI; a flow that logs with it says so here, in one
    visible place, instead of relying on whatever an earlier call left behind.
    """
    before = os.environ.get(_TRACKING_URI_ENV)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        # set_tracking_uri(None) clears MLflow's global and the variable; then the variable as it was
        mlflow.set_tracking_uri(None)
        if before is not None:
            os.environ[_TRACKING_URI_ENV] = before


def log_run_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float]) -> None:
    """Add metrics to a finished run through the client (no active run, no global URI)."""
    now = int(time.time() * 1000)
    client.log_batch(
        run_id, metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()]
    )


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


def origin_version(client: MlflowClient, model_name: str, version: int | str) -> int:
    """The first training a version descends from: follows `driftloop.parent_version` tags
    (set by retraining) back to a version trained on the configured data."""
    seen: set[str] = set()
    current = get_version(client, model_name, version)
    while (parent := current.tags.get(TAG + "parent_version")) and parent not in seen:
        seen.add(parent)
        try:
            current = get_version(client, model_name, parent)
        except ModelNotFoundError:
            break
    return int(current.version)


def champion_history(client: MlflowClient, model_name: str) -> list[dict[str, Any]]:
    try:
        model = client.get_registered_model(model_name)
    except MlflowException as exc:
        if _is_missing(exc):
            return []
        raise
    raw = model.tags.get(HISTORY_TAG)
    return json.loads(raw) if raw else []


class PromotionRefused(DriftloopError, ValueError):
    """A version that may not become champion (it was rolled back); the message says why."""


class ChampionConflict(DriftloopError, RuntimeError):
    """`champion` kept moving while this process tried to move it; trying again may help."""

    transient = True


#: The version tag that marks a version rolled back (its value: why); such a version is never
#: promoted again.
ROLLED_BACK_TAG = TAG + "rolled_back"
#: The champion a candidate was judged against when it took the alias (the gate records it).
JUDGED_AGAINST_TAG = TAG + "judged_against"
#: Attempts to write the champion history until the entry reads back.
_HISTORY_ATTEMPTS = 3


@dataclass(frozen=True)
class AliasMove:
    """What a compare-and-set of `champion` did: ``moved`` when the alias now points at the
    version; otherwise ``found`` is the champion it found instead of ``expected``."""

    moved: bool
    version: int
    expected: int | None
    found: int | None

    def conflict(self) -> str:
        """One sentence on why the alias did not move (empty when it did)."""
        if self.moved:
            return ""
        return (
            f"champion is v{self.found if self.found is not None else '(none)'}, not "
            f"v{self.expected if self.expected is not None else '(none)'} as when v{self.version} "
            "was judged: another promotion came first"
        )


def refuse_rolled_back(mv: ModelVersion) -> None:
    """Raise :class:`PromotionRefused` for a version that was rolled back."""
    why = (mv.tags or {}).get(ROLLED_BACK_TAG)
    if why is not None:
        raise PromotionRefused(
            f"model {mv.name!r} version {mv.version} was rolled back ({why[:200]}); it is not "
            "promoted again: train or retrain a new version"
        )


def _version_of(mv: ModelVersion | None) -> int | None:
    return int(mv.version) if mv is not None else None


def set_champion_if(
    client: MlflowClient,
    model_name: str,
    version: int | str,
    *,
    expected: int | None,
    reason: str,
    actor: str,
) -> AliasMove:
    """Compare-and-set: move `champion` to ``version`` only if it still points at ``expected``
    (None: no champion yet), then read it back.

    MLflow has no transaction, so the read, the compare and the set are a few calls apart; the
    caller serialises driftloop processes around this call (``store.champion_lock``) and the
    read-back catches a writer that moved the alias in between. Tags and the champion history
    are written only when the alias was read back on ``version``.

    Raises:
        ModelNotFoundError: no such version.
        PromotionRefused: the version was rolled back.
    """
    target = get_version(client, model_name, version)
    refuse_rolled_back(target)
    number = int(target.version)
    previous = get_alias(client, model_name, CHAMPION)
    found = _version_of(previous)
    if found != expected:
        return AliasMove(False, number, expected, found)
    client.set_registered_model_alias(model_name, CHAMPION, target.version)
    after = _version_of(get_alias(client, model_name, CHAMPION))
    if after != number:
        return AliasMove(False, number, expected, after)
    _record_promotion(client, model_name, target.version, previous, reason=reason, actor=actor)
    return AliasMove(True, number, expected, found)


def set_champion(
    client: MlflowClient, model_name: str, version: int | str, *, reason: str, actor: str
) -> str | None:
    """Move the `champion` alias to `version` whatever it points at now (a person's choice);
    returns the previous champion version (or None).

    Raises:
        ModelNotFoundError: no such version.
        PromotionRefused: the version was rolled back.
    """
    current = _version_of(get_alias(client, model_name, CHAMPION))
    for _ in range(_HISTORY_ATTEMPTS):
        move = set_champion_if(
            client, model_name, version, expected=current, reason=reason, actor=actor
        )
        if move.moved:
            return str(current) if current is not None else None
        current = move.found
    raise ChampionConflict(
        f"model {model_name!r}: `champion` kept moving while version {version} was promoted "
        "(another process is promoting); try again"
    )


def _record_promotion(
    client: MlflowClient,
    model_name: str,
    version: str,
    previous: ModelVersion | None,
    *,
    reason: str,
    actor: str,
) -> None:
    """The tags of a promotion and its champion-history entry (the alias has moved)."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(model_name, version, TAG + "role", "champion")
    client.set_model_version_tag(model_name, version, TAG + "decision", reason[:4000])
    if previous is not None and previous.version != version:
        client.set_model_version_tag(model_name, previous.version, TAG + "role", "former_champion")
    challenger = get_alias(client, model_name, CHALLENGER)
    if challenger is not None and challenger.version == version:
        client.delete_registered_model_alias(model_name, CHALLENGER)
    entry = {
        "version": int(version),
        "at": now,
        "by": actor,
        "reason": reason[:300],
        "id": uuid.uuid4().hex[:12],
    }
    append_history(client, model_name, entry)


def append_history(client: MlflowClient, model_name: str, entry: Mapping[str, Any]) -> None:
    """Add an entry to the champion history and read it back, writing again (on what is there
    now) when a concurrent writer replaced the tag in between; at most a few attempts."""
    for _ in range(_HISTORY_ATTEMPTS):
        history = [h for h in champion_history(client, model_name) if h.get("id") != entry["id"]]
        history.append(dict(entry))
        client.set_registered_model_tag(
            model_name, HISTORY_TAG, json.dumps(history[-_HISTORY_KEEP:])
        )
        if any(h.get("id") == entry["id"] for h in champion_history(client, model_name)):
            return
    logger.warning("model %s: champion history entry %s was overwritten", model_name, entry)


def tag_shadow(client: MlflowClient, model_name: str, version: int, sentence: str) -> None:
    """Record on the challenger how it did on live traffic next to the champion (shown by
    `driftloop versions` and in the MLflow UI), from the newest monitor run."""
    client.set_model_version_tag(model_name, str(version), SHADOW_TAG, sentence[:500])


def mark_challenger(
    client: MlflowClient, model_name: str, version: int | str, *, reason: str
) -> None:
    """Record a refused candidate: alias `challenger` and the refusal reason as tags."""
    client.set_registered_model_alias(model_name, CHALLENGER, str(version))
    client.set_model_version_tag(model_name, str(version), TAG + "role", "challenger")
    client.set_model_version_tag(model_name, str(version), TAG + "decision", reason[:4000])


def replaced(history: Sequence[Mapping[str, Any]], version: int) -> int | None:
    """The champion ``version`` replaced the last time it became champion (pure; None when it
    never did, or was the first)."""
    versions = [int(item["version"]) for item in history]
    for index in range(len(versions) - 1, -1, -1):
        if versions[index] == version:
            earlier = [v for v in versions[:index] if v != version]
            return earlier[-1] if earlier else None
    return None


def promoted_at(history: Sequence[Mapping[str, Any]], version: int) -> datetime | None:
    """When ``version`` last became champion, from the history (pure; None if it never did)."""
    for item in reversed(history):
        if int(item["version"]) == version:
            return datetime.fromisoformat(item["at"])
    return None


def predecessor(client: MlflowClient, model_name: str, version: int | str) -> int | None:
    """The champion a version replaced (from the model's champion history)."""
    return replaced(champion_history(client, model_name), int(version))


def rollback_target(
    history: list[dict[str, Any]], current: int | None, *, excluded: Sequence[int] = ()
) -> int | None:
    """The champion before the current one in the history, skipping ``excluded`` versions
    (rolled back ones) (pure)."""
    versions = [int(item["version"]) for item in history]
    while versions and current is not None and versions[-1] == current:
        versions.pop()
    versions = [v for v in versions if v != current and v not in excluded]
    return versions[-1] if versions else None


def rolled_back_versions(client: MlflowClient, model_name: str) -> list[int]:
    """The versions tagged rolled back."""
    return [
        int(mv.version)
        for mv in list_versions(client, model_name)
        if ROLLED_BACK_TAG in (mv.tags or {})
    ]


def roll_back(
    client: MlflowClient,
    model_name: str,
    *,
    current: int,
    target: int,
    reason: str,
    actor: str,
) -> AliasMove:
    """Compare-and-set `champion` from ``current`` back to ``target``; when it moved, tag
    ``current`` rolled back (never promoted again) and both versions with ``reason``."""
    move = set_champion_if(
        client,
        model_name,
        target,
        expected=current,
        reason=f"rollback from version {current}: {reason}",
        actor=actor,
    )
    if move.moved:
        client.set_model_version_tag(model_name, str(current), TAG + "role", "rolled_back")
        client.set_model_version_tag(model_name, str(current), ROLLED_BACK_TAG, reason[:4000])
        client.set_model_version_tag(
            model_name, str(target), TAG + "restored", f"v{current} rolled back: {reason}"[:4000]
        )
    return move


def rollback(client: MlflowClient, model_name: str, *, actor: str) -> tuple[str, str]:
    """Move `champion` back to the previous champion; returns (from_version, to_version)."""
    current = get_alias(client, model_name, CHAMPION)
    if current is None:
        raise ModelNotFoundError(f"model {model_name!r} has no champion to roll back from")
    target = rollback_target(
        champion_history(client, model_name),
        int(current.version),
        excluded=rolled_back_versions(client, model_name),
    )
    if target is None:
        raise ModelNotFoundError(
            f"model {model_name!r} has no earlier champion than version {current.version}; "
            "use `driftloop promote --version N` to choose one"
        )
    move = roll_back(
        client,
        model_name,
        current=int(current.version),
        target=target,
        reason=f"rolled back by {actor}",
        actor=actor,
    )
    if not move.moved:
        raise ChampionConflict(
            f"model {model_name!r}: `champion` moved to v{move.found} while rolling back from "
            f"v{current.version}; check `driftloop versions` and try again"
        )
    return current.version, str(target)


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


def version_info(mv: ModelVersion) -> VersionInfo:
    """What driftloop recorded on a model version, read back from its tags."""
    try:
        spec = read_model_spec(mv.tags)
    except (KeyError, ValueError) as exc:
        raise ModelNotFoundError(
            f"model {mv.name!r} version {mv.version} was not registered by driftloop "
            f"(tag problem: {exc})"
        ) from None
    return VersionInfo(
        model_name=mv.name,
        version=int(mv.version),
        run_id=mv.run_id,
        task=spec["task"],
        target=spec["target"],
        spec=FeatureSpec(numeric=tuple(spec["numeric"]), categorical=tuple(spec["categorical"])),
        not_null=tuple(spec["not_null"]),
        classes=tuple(spec["classes"]),
    )


# --------------------------------------------------------------------------- integrity


@dataclass(frozen=True)
class VerifiedModel:
    """A version whose stored files matched its integrity record, loaded with trusted types only."""

    version: ModelVersion
    pipeline: Any
    #: the MLmodel signature as `ModelSignature.to_dict()` gives it, or None
    signature: dict[str, Any] | None


def trusted_skops_types(pipeline: Any) -> list[str]:
    """The types outside skops' defaults that a pipeline holds, all in TRUSTED_SKOPS_TYPES.

    Raises:
        RuntimeError: the pipeline holds a type driftloop does not trust (it would not load).
    """
    found = set(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))
    unknown = found - TRUSTED_SKOPS_TYPES
    if unknown:
        raise RuntimeError(
            f"the trained pipeline contains types driftloop does not trust: {sorted(unknown)}; "
            "add one to pipelines.training.TRUSTED_SKOPS_TYPES only if loading it cannot run code"
        )
    return sorted(found)


def log_model_version(
    client: MlflowClient,
    *,
    model_name: str,
    pipeline: Any,
    reference: pd.DataFrame,
    signature: Any = None,
    input_example: pd.DataFrame | None = None,
    tags: Mapping[str, str] | None = None,
    evaluation: Mapping[str, bytes] | None = None,
) -> int:
    """Register a fitted Pipeline as a new version, with its integrity record; returns the version.

    Runs inside `mlflow.start_run()` (`client` on the same tracking store): logs the reference
    snapshot (`reference/reference.parquet`), the `evaluation` files (name -> bytes, under
    `evaluation/`: the holdout's out-of-sample scores and what monitoring derives from them) and
    the model (skops, trusted types checked), then downloads them back from the artifact store
    and records the digests of what it holds in the `driftloop.integrity` tag, then sets `tags`.
    """
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_model_version must run inside mlflow.start_run()")
    folder, filename = REFERENCE_ARTIFACT.rsplit("/", 1)
    with tempfile.TemporaryDirectory(prefix="driftloop-reference-") as tmp:
        path = Path(tmp) / filename
        reference.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=folder)
        for name, data in (evaluation or {}).items():
            if not integrity.safe_relative(name) or "/" in name:
                raise ValueError(f"evaluation file names are plain names, got {name!r}")
            (Path(tmp) / name).write_bytes(data)
            mlflow.log_artifact(str(Path(tmp) / name), artifact_path=EVALUATION_DIR)
    info = mlflow.sklearn.log_model(
        pipeline,
        name=MODEL_ARTIFACT,
        signature=signature,
        input_example=input_example,
        registered_model_name=model_name,
        serialization_format=integrity.SKOPS_FORMAT,
        skops_trusted_types=trusted_skops_types(pipeline),
        # scikit-learn and skops pinned to what is installed: MLflow's own inference of the
        # requirements loads the model in a subprocess (~4 s per registration) to find the same
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
    )
    version = str(info.registered_model_version)
    client.set_model_version_tag(
        model_name,
        version,
        INTEGRITY_TAG,
        _record_stored_files(client, model_name, version, evaluation=evaluation is not None),
    )
    for key, value in (tags or {}).items():
        client.set_model_version_tag(model_name, version, key, value)
    return int(version)


def _record_stored_files(
    client: MlflowClient, model_name: str, version: str, *, evaluation: bool
) -> str:
    """The integrity record (JSON) of the files the artifact store holds for a new version."""
    mv = get_version(client, model_name, version)
    with tempfile.TemporaryDirectory(prefix="driftloop-record-") as tmp:
        local = _download_model(client, mv, Path(tmp) / "model")
        files = integrity.tree_digests(local, skip=integrity.MLFLOW_WRITTEN)
        try:  # what could not be loaded is not registered
            integrity.skops_model_file((local / integrity.MLMODEL).read_text(), files)
        except (integrity.IntegrityProblem, OSError) as exc:
            raise RuntimeError(f"model {model_name!r} version {version}: {exc}") from None
        reference = integrity.file_digest(_download_reference(client, mv, Path(tmp) / "ref"))
        stored = _download_evaluation(client, mv, Path(tmp) / "eval") if evaluation else None
        digests = integrity.tree_digests(stored) if stored is not None else None
    raw = integrity.IntegrityRecord(model=files, reference=reference, evaluation=digests).to_json()
    if len(raw) > MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH:
        raise RuntimeError(
            f"model {model_name!r} version {version}: the integrity record of its {len(files)} "
            f"files is {len(raw)} characters, over MLflow's tag limit "
            f"({MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH}); log fewer files with the model"
        )
    return raw


def _download_model(client: MlflowClient, mv: ModelVersion, dst: Path) -> Path:
    """Download a version's model directory via this client's stores (not the global URI)."""
    dst.mkdir(parents=True, exist_ok=True)
    try:
        location = client.get_model_version_download_uri(mv.name, mv.version)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=str(dst), tracking_uri=client.tracking_uri
        )
    except (MlflowException, OSError) as exc:
        logger.warning("model %s version %s: download failed: %s", mv.name, mv.version, exc)
        raise ModelIntegrityError(
            mv.name,
            mv.version,
            f"its {MODEL_ARTIFACT}/ files cannot be downloaded from the artifact store "
            f"({type(exc).__name__}, details in the log); check that the store is reachable",
        ) from None
    return Path(local)


def _download_run_artifact(
    client: MlflowClient, mv: ModelVersion, artifact: str, dst: Path, *, what: str
) -> Path:
    """One artifact of the version's run, downloaded under ``dst``; a failure is the version's
    integrity error naming ``what`` is missing."""
    dst.mkdir(parents=True, exist_ok=True)
    try:
        return Path(client.download_artifacts(mv.run_id, artifact, str(dst)))
    except (MlflowException, OSError) as exc:
        logger.warning("run %s: %s download failed: %s", mv.run_id, artifact, exc)
        raise ModelIntegrityError(
            mv.name,
            mv.version,
            f"{what} of run {mv.run_id} cannot be downloaded from the artifact store "
            f"({type(exc).__name__}, details in the log); restore it or retrain",
        ) from None


def _download_reference(client: MlflowClient, mv: ModelVersion, dst: Path) -> Path:
    return _download_run_artifact(client, mv, REFERENCE_ARTIFACT, dst, what=REFERENCE_ARTIFACT)


def _download_evaluation(client: MlflowClient, mv: ModelVersion, dst: Path) -> Path:
    return _download_run_artifact(client, mv, EVALUATION_DIR, dst, what=f"{EVALUATION_DIR}/")


def load_evaluation(client: MlflowClient, model_name: str, version: int | str) -> dict[str, bytes]:
    """The version's evaluation files (name -> bytes), read only once every digest matched the
    record; empty for a version registered without them.

    Raises:
        ModelNotFoundError: no such version.
        ModelIntegrityError: no record, or a file missing, added or changed.
    """
    mv = get_version(client, model_name, version)
    record = _record(mv)
    if record.evaluation is None:
        return {}
    with tempfile.TemporaryDirectory(prefix="driftloop-evaluation-") as tmp:
        local = _download_evaluation(client, mv, Path(tmp))
        problems = integrity.compare(
            record.evaluation, integrity.tree_digests(local), prefix=f"{EVALUATION_DIR}/"
        )
        if problems:
            raise _mismatch(mv, problems)
        return {name: (local / name).read_bytes() for name in record.evaluation}


def _record(mv: ModelVersion) -> integrity.IntegrityRecord:
    raw = (mv.tags or {}).get(INTEGRITY_TAG)
    if raw is None:
        raise ModelIntegrityError(
            mv.name,
            mv.version,
            f"has no integrity record (tag {INTEGRITY_TAG}), so its files cannot be checked and "
            f"it is not loaded; {_RETRAIN}",
        )
    try:
        return integrity.parse_record(raw)
    except integrity.IntegrityProblem as exc:
        raise ModelIntegrityError(
            mv.name, mv.version, f"its integrity record (tag {INTEGRITY_TAG}) {exc}; {_RETRAIN}"
        ) from None


def _mismatch(mv: ModelVersion, problems: list[str]) -> ModelIntegrityError:
    shown = "; ".join(problems[:3]) + (
        f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    )
    return ModelIntegrityError(mv.name, mv.version, f"{shown}; {_RESTORE}")


def _verified_model_file(
    client: MlflowClient, mv: ModelVersion, dst: Path
) -> tuple[Path, dict[str, Any] | None]:
    """Download the model directory into dst and check it: (its skops file, the raw signature).

    Nothing from the download is deserialized before every file matched the record and the
    MLmodel declared skops with types driftloop trusts.
    """
    record = _record(mv)
    local = _download_model(client, mv, dst)
    stored = integrity.tree_digests(local, skip=integrity.MLFLOW_WRITTEN)
    problems = integrity.compare(record.model, stored, prefix=f"{MODEL_ARTIFACT}/")
    if problems:
        raise _mismatch(mv, problems)
    try:
        model_file, signature = integrity.skops_model_file(
            (local / integrity.MLMODEL).read_text(), record.model
        )
    except integrity.IntegrityProblem as exc:
        raise ModelIntegrityError(
            mv.name, mv.version, f"{MODEL_ARTIFACT}/{exc}; {_RETRAIN}"
        ) from None
    path = local / model_file
    untrusted = set(skops.io.get_untrusted_types(file=path)) - TRUSTED_SKOPS_TYPES
    if untrusted:
        raise ModelIntegrityError(
            mv.name,
            mv.version,
            f"{MODEL_ARTIFACT}/{model_file} holds types driftloop does not trust: "
            f"{sorted(untrusted)}; {_RETRAIN}",
        )
    return path, signature


def _verified_reference(client: MlflowClient, mv: ModelVersion, dst: Path) -> Path:
    record = _record(mv)
    local = _download_reference(client, mv, dst)
    if integrity.file_digest(local) != record.reference:
        raise _mismatch(
            mv,
            [
                f"{REFERENCE_ARTIFACT} does not match the {integrity.ALGORITHM} recorded at registration"
            ],
        )
    return local


def load_verified_model(client: MlflowClient, model_name: str, version: int | str) -> VerifiedModel:
    """Download a version's model, verify it against its integrity record, and load it.

    Raises:
        ModelNotFoundError: no such version.
        ModelIntegrityError: no record, a missing, extra or changed file, a format other than
            skops, or an untrusted type; the message names the version and the file.
    """
    mv = get_version(client, model_name, version)
    with tempfile.TemporaryDirectory(prefix="driftloop-model-") as tmp:
        path, signature = _verified_model_file(client, mv, Path(tmp))
        pipeline = skops.io.load(path, trusted=sorted(TRUSTED_SKOPS_TYPES))
    return VerifiedModel(
        version=mv,
        pipeline=pipeline,
        signature=ModelSignature.from_dict(signature).to_dict() if signature else None,
    )


def load_model(client: MlflowClient, model_name: str, version: int | str) -> Any:
    """A registered scikit-learn Pipeline, verified (see :func:`load_verified_model`)."""
    return load_verified_model(client, model_name, version).pipeline


def load_reference(client: MlflowClient, model_name: str, version: int | str) -> pd.DataFrame:
    """The training snapshot of a version, read only once its digest matched the record.

    Raises:
        ModelNotFoundError: no such version.
        ModelIntegrityError: no record, or the snapshot is missing or changed.
    """
    mv = get_version(client, model_name, version)
    with tempfile.TemporaryDirectory(prefix="driftloop-reference-") as tmp:
        return pd.read_parquet(_verified_reference(client, mv, Path(tmp)))


def verify_version(client: MlflowClient, model_name: str, version: int | str) -> None:
    """Check a version's model files and reference against its record, loading nothing.

    Raises:
        ModelNotFoundError: no such version.
        ModelIntegrityError: the first problem found (see :func:`load_verified_model`).
    """
    mv = get_version(client, model_name, version)
    with tempfile.TemporaryDirectory(prefix="driftloop-verify-") as tmp:
        _verified_model_file(client, mv, Path(tmp) / "model")
        _verified_reference(client, mv, Path(tmp) / "ref")
    load_evaluation(client, model_name, version)
