"""What a registered model version's files must be: the integrity record and its checks.

At registration driftloop records the SHA-256 of every file of the logged model directory and of
the reference snapshot, as one JSON tag on the model version. Before anything is loaded, the
stored files are hashed again and compared with that record, and the model's `MLmodel` must
declare the skops format. This module holds the record format and the checks; the MLflow adapter
(`driftloop/registry.py`) downloads the files and calls them. No MLflow import here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from core.errors import DriftloopError

ALGORITHM = "sha256"
#: The only serialization of the sklearn flavor driftloop loads (it refuses pickle/cloudpickle).
SKOPS_FORMAT = "skops"
MLMODEL = "MLmodel"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
#: Stands in for the digest of anything that is not a regular file (a symlink): never matches.
NOT_A_FILE = "not-a-regular-file"
#: Files MLflow itself writes into a stored model directory after registration, which driftloop
#: never reads: downloading `models:/name/N` from a local store (`mlflow models serve`,
#: `mlflow.pyfunc.load_model`) adds `registered_model_meta` (name and version) in the store.
MLFLOW_WRITTEN = frozenset({"registered_model_meta"})


class IntegrityProblem(DriftloopError, ValueError):
    """A record, a file set or an MLmodel that fails a check; the message names what and where."""


@dataclass(frozen=True)
class IntegrityRecord:
    """The digests recorded at registration: model files by relative path, the reference, and
    the evaluation files (holdout scores, noise, calibration, loss model) by relative path."""

    model: Mapping[str, str]
    reference: str
    algorithm: str = ALGORITHM
    evaluation: Mapping[str, str] | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "algorithm": self.algorithm,
            "model": dict(sorted(self.model.items())),
            "reference": self.reference,
        }
        if self.evaluation is not None:
            data["evaluation"] = dict(sorted(self.evaluation.items()))
        return json.dumps(data, separators=(",", ":"))


def parse_record(raw: str) -> IntegrityRecord:
    """The record stored in the version tag.

    Raises:
        IntegrityProblem: not JSON, not sha256, a digest or a path that is not well formed.
    """
    try:
        data = json.loads(raw)
    except ValueError:
        raise IntegrityProblem(f"is not valid JSON: {raw[:80]!r}") from None
    if not isinstance(data, dict):
        raise IntegrityProblem(f"must be a JSON object, got {raw[:80]!r}")
    if data.get("algorithm") != ALGORITHM:
        raise IntegrityProblem(f"algorithm must be {ALGORITHM!r}, got {data.get('algorithm')!r}")
    model, reference = data.get("model"), data.get("reference")
    if not isinstance(model, dict) or MLMODEL not in model:
        raise IntegrityProblem(f"'model' must map file paths to digests and include {MLMODEL}")
    for path, digest in model.items():
        if not safe_relative(path):
            raise IntegrityProblem(
                f"'model' holds a path that is not a plain relative path: {path!r}"
            )
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise IntegrityProblem(f"'model' holds a malformed digest for {path!r}")
    if not isinstance(reference, str) or not _DIGEST.match(reference):
        raise IntegrityProblem("'reference' must be the sha256 hex digest of the snapshot")
    evaluation = data.get("evaluation")
    if evaluation is not None:
        if not isinstance(evaluation, dict):
            raise IntegrityProblem("'evaluation' must map file paths to digests")
        for path, digest in evaluation.items():
            if not safe_relative(path) or not isinstance(digest, str) or not _DIGEST.match(digest):
                raise IntegrityProblem(f"'evaluation' holds a malformed entry for {path!r}")
    return IntegrityRecord(
        model=dict(model),
        reference=reference,
        evaluation=dict(evaluation) if evaluation is not None else None,
    )


def safe_relative(path: Any) -> bool:
    if not isinstance(path, str) or not path or "\\" in path:
        return False
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts and "." not in pure.parts


def file_digest(path: Path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digests(root: Path, *, skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """{posix path relative to root: digest} of every file under root, but the names in `skip`.

    Symlinks are listed with :data:`NOT_A_FILE` instead of a digest (never followed), so a link
    in place of a recorded file, or one added next to them, fails the comparison. `skip` names
    plain files directly under root.
    """
    found: dict[str, str] = {}
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(directory)
        for name in dirnames:  # os.walk lists a symlinked directory here and does not enter it
            if (base / name).is_symlink():
                found[(base / name).relative_to(root).as_posix()] = NOT_A_FILE
        for name in filenames:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = NOT_A_FILE
            elif rel not in skip:
                found[rel] = file_digest(path)
    return found


def compare(
    recorded: Mapping[str, str], actual: Mapping[str, str], *, prefix: str = ""
) -> list[str]:
    """The differences between the recorded and the stored file set, one line each (pure).

    A file recorded but missing, a file stored but not recorded, and a file whose digest
    differs are each a problem; `prefix` is put in front of every path named (e.g. `model/`).
    """
    problems = [
        f"{prefix}{path} was recorded at registration but is missing from the artifact store"
        for path in sorted(recorded.keys() - actual.keys())
    ]
    problems += [
        f"{prefix}{path} is in the artifact store but was not there at registration"
        for path in sorted(actual.keys() - recorded.keys())
    ]
    problems += [
        f"{prefix}{path} does not match the {ALGORITHM} recorded at registration"
        for path in sorted(recorded.keys() & actual.keys())
        if recorded[path] != actual[path]
    ]
    return problems


def skops_model_file(
    mlmodel_text: str, files: Mapping[str, str]
) -> tuple[str, dict[str, Any] | None]:
    """The skops file named by an `MLmodel` and its signature dict (pure: parses YAML text only).

    Raises:
        IntegrityProblem: no sklearn flavor, a `serialization_format` other than skops, or a
            model file that is not one of the recorded `files`.
    """
    try:
        mlmodel = yaml.safe_load(mlmodel_text)
    except yaml.YAMLError:
        raise IntegrityProblem(f"{MLMODEL} is not valid YAML") from None
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    sklearn = flavors.get("sklearn") if isinstance(flavors, dict) else None
    if not isinstance(sklearn, dict):
        raise IntegrityProblem(
            f"{MLMODEL} has no sklearn flavor; driftloop loads only skops sklearn models"
        )
    fmt = sklearn.get("serialization_format")
    if fmt != SKOPS_FORMAT:
        raise IntegrityProblem(
            f"{MLMODEL} declares serialization_format {fmt!r}; driftloop loads only "
            f"{SKOPS_FORMAT!r} models and never unpickles one"
        )
    model_file = sklearn.get("pickled_model")
    if not safe_relative(model_file) or model_file not in files:
        raise IntegrityProblem(
            f"{MLMODEL} names a model file that is not a recorded file: {model_file!r}"
        )
    signature = mlmodel.get("signature")
    return model_file, signature if isinstance(signature, dict) else None
