"""The served model: a registered scikit-learn Pipeline plus what driftloop recorded about it.

Loads `models:/<name>@champion` (or a version) from the MLflow registry through
`registry`, the one MLflow adapter: it finds the version and its alias, reads the
`driftloop.*` tags (task, target, feature lists, not-null features, classes) as a
`registry.VersionInfo`, and verifies the stored files against the version's integrity record
before anything is deserialized. Scores column-wise inputs without per-request DataFrame work
beyond one frame per micro-batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from core.spec import FeatureSpec
from registry import (
    CHAMPION,
    SPEC_TAG,
    ModelNotFoundError,
    get_alias,
    get_version,
    load_reference,
    load_verified_model,
    version_info,
)
from serving.fastpath import (
    FastPipeline,
    UnsupportedPipeline,
    compile_pipeline,
    probe_columns,
    verify,
)

#: Reference rows the fast path is checked on at load time, at most.
MAX_CHECK_ROWS = 5000
logger = logging.getLogger("driftloop.serving")


class ModelLoadError(ModelNotFoundError):
    """The alias is missing, or the version was not registered by driftloop (or its tags do not
    match its pipeline): a :class:`registry.ModelNotFoundError`, like a missing version
    or a version that fails its integrity check."""


class ModelScoringError(ValueError):
    """The model refused inputs that passed validation (e.g. a category it cannot encode)."""


@dataclass(frozen=True)
class Scores:
    """Model outputs for a block of rows."""

    predictions: list[Any]
    #: probability per row: positive class (binary) or the top class (multiclass); None otherwise
    probability: list[float] | None = None
    #: per-row {class label as str: probability}; None for regressors
    probabilities: list[dict[str, float]] | None = None


@dataclass(frozen=True, eq=False)
class ServedModel:
    """A loaded model version and the contract it was registered with."""

    name: str
    version: int
    run_id: str
    task: str
    target: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    not_null: frozenset[str]
    classes: tuple[Any, ...]
    pipeline: Any
    signature: dict[str, Any] | None = None
    alias: str | None = None
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: the compiled numpy scorer, set only once verified equal to the pipeline
    fast: FastPipeline | None = None
    #: why the fast path is or is not used (GET /model shows it)
    scorer_note: str = "scikit-learn pipeline (fast path not tried)"
    #: largest finite magnitude of each numeric feature in the reference snapshot (NaN: unknown)
    magnitudes: Mapping[str, float] = field(default_factory=dict)
    #: one real row of the reference snapshot, as a /predict record (None: no snapshot)
    example: Mapping[str, Any] | None = None

    @property
    def scorer(self) -> str:
        return "fast numpy path" if self.fast is not None else "scikit-learn pipeline"

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    @property
    def spec(self) -> FeatureSpec:
        """The feature columns as training and monitoring name them (numeric, categorical)."""
        return FeatureSpec(numeric=self.numeric, categorical=self.categorical)

    @property
    def column_order(self) -> list[str]:
        """The order the pipeline was fitted with (sklearn checks it), else numeric + categorical."""
        fitted = getattr(self.pipeline, "feature_names_in_", None)
        return [str(c) for c in fitted] if fitted is not None else list(self.features)

    def frame(self, columns: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
        """A feature frame typed like training: numeric float64, categorical object str."""
        data: dict[str, Any] = {}
        numeric = set(self.numeric)
        for name in self.column_order:
            values = columns[name]
            if name in numeric:
                data[name] = np.asarray(values, dtype=np.float64)
            else:  # null categories become NaN, as in training frames, so the imputer fills them
                array = np.empty(len(values), dtype=object)
                array[:] = [np.nan if v is None else v for v in values]
                data[name] = array
        return pd.DataFrame(data, copy=False)

    def score_columns(self, columns: Mapping[str, Sequence[Any]]) -> Scores:
        """Score column-wise inputs (validated: floats/None and str/None)."""
        if self.fast is None:
            return self.score_frame(self.frame(columns))
        n = len(columns[self.features[0]]) if self.features else 0
        if self.task == "classification":
            return self._class_scores(self.fast.score(columns, n))
        return Scores(predictions=self.fast.score(columns, n).tolist())

    def pipeline_scores(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """The pipeline's probabilities (classifiers) or values (regressors) for columns."""
        X = self.frame(columns)
        if self.task == "classification":
            return np.asarray(self.pipeline.predict_proba(X), dtype=np.float64)
        return np.asarray(self.pipeline.predict(X), dtype=np.float64)

    def score_frame(self, X: pd.DataFrame) -> Scores:
        """Score a feature frame built by :meth:`frame` (or typed the same way)."""
        try:
            if self.task == "classification":
                proba = np.asarray(self.pipeline.predict_proba(X), dtype=np.float64)
                return self._class_scores(proba)
            values = np.asarray(self.pipeline.predict(X), dtype=np.float64)
        except ValueError as exc:
            raise ModelScoringError(
                f"model {self.name} v{self.version} cannot score the input: {exc}"
            ) from exc
        return Scores(predictions=[float(v) for v in values])

    def _class_scores(self, proba: np.ndarray) -> Scores:
        classes = self.classes
        top = proba.argmax(axis=1)
        predictions = [classes[i] for i in top.tolist()]
        if proba.shape[1] == 2:
            probability = proba[:, 1].tolist()
        else:
            probability = proba[np.arange(len(top)), top].tolist()
        keys = [str(c) for c in classes]
        probabilities = [dict(zip(keys, row, strict=True)) for row in proba.tolist()]
        return Scores(predictions=predictions, probability=probability, probabilities=probabilities)

    def describe(self) -> dict[str, Any]:
        """What GET /model answers."""
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "task": self.task,
            "target": self.target,
            "features": {
                "numeric": list(self.numeric),
                "categorical": list(self.categorical),
                "not_null": sorted(self.not_null),
            },
            "classes": list(self.classes) if self.task == "classification" else None,
            "signature": self.signature,
            "example": None if self.example is None else dict(self.example),
            "loaded_at": self.loaded_at.isoformat(),
            "scorer": self.scorer,
            "scorer_note": self.scorer_note,
        }

    def example_columns(self) -> dict[str, list[Any]]:
        """One synthetic row (zeros / the first known category) to warm up and check the model."""
        columns: dict[str, list[Any]] = {name: [0.0] for name in self.numeric}
        categories = _fitted_categories(self.pipeline)
        for name in self.categorical:
            known = categories.get(name)
            columns[name] = [str(known[0]) if known else None]
        return columns


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _fitted_categories(pipeline: Any) -> dict[str, list[Any]]:
    """Categories the fitted OneHot/Ordinal encoders know, by input column (best effort)."""
    found: dict[str, list[Any]] = {}
    steps = getattr(pipeline, "steps", [])
    for _, step in steps:
        for _, transformer, cols in getattr(step, "transformers_", []):
            encoder = transformer
            if hasattr(transformer, "steps"):
                encoder = transformer.steps[-1][1]
            categories = getattr(encoder, "categories_", None)
            if categories is None or not isinstance(cols, (list, tuple, np.ndarray)):
                continue
            for col, cats in zip(cols, categories, strict=False):
                values = [c for c in cats if not (isinstance(c, float) and math.isnan(c))]
                found[str(col)] = values
    return found


def with_fast_path(
    model: ServedModel, check_rows: Mapping[str, Sequence[Any]] | None = None
) -> ServedModel:
    """The model with its compiled fast path when it equals the pipeline, else unchanged.

    The check runs on synthetic rows (every known category, an unseen one, missing values,
    spread numbers) plus `check_rows` (the reference snapshot). The reason for the outcome is
    logged and kept in `scorer_note`.
    """
    try:
        fast = compile_pipeline(
            model.pipeline, numeric=model.numeric, categorical=model.categorical
        )
    except UnsupportedPipeline as exc:
        return _keep_pipeline(model, f"no fast path: {exc}")
    columns = probe_columns(fast)
    probes = len(next(iter(columns.values()), []))
    reference = len(next(iter(check_rows.values()), [])) if check_rows else 0
    if check_rows:
        columns = {name: list(columns[name]) + list(check_rows[name]) for name in columns}
    what = f"{reference} reference rows and {probes} probe rows"
    problem = verify(fast, lambda: model.pipeline_scores(columns), columns)
    if problem is not None:
        return _keep_pipeline(model, f"fast path not used, not equal on {what}: {problem}")
    note = f"fast numpy path ({fast.kind}), verified equal to the pipeline on {what}"
    logger.warning("model %s v%s: %s", model.name, model.version, note)
    return replace(model, fast=fast, scorer_note=note)


def _keep_pipeline(model: ServedModel, reason: str) -> ServedModel:
    logger.warning(
        "model %s v%s scored by the scikit-learn pipeline: %s", model.name, model.version, reason
    )
    return replace(model, fast=None, scorer_note=reason)


def training_magnitudes(frame: pd.DataFrame | None, numeric: Sequence[str]) -> dict[str, float]:
    """The largest finite absolute value of each numeric feature in a snapshot (NaN: unknown)."""
    out: dict[str, float] = {}
    for name in numeric:
        if frame is None or name not in frame.columns:
            out[name] = math.nan
            continue
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
        finite = np.abs(values[np.isfinite(values)])
        out[name] = float(finite.max()) if finite.size else math.nan
    return out


def reference_columns(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], limit: int
) -> dict[str, list[Any]]:
    """Rows of a reference snapshot as the service receives them (float/None, str/None)."""
    rows = frame.head(limit)
    columns: dict[str, list[Any]] = {}
    for name in numeric:
        values = rows[name].astype("float64").to_numpy()
        columns[name] = [None if math.isnan(v) else float(v) for v in values]
    for name in categorical:
        columns[name] = [None if pd.isna(v) else str(v) for v in rows[name].tolist()]
    return columns


def example_record(columns: Mapping[str, Sequence[Any]]) -> dict[str, Any] | None:
    """The first row of column-wise values with every feature present (else the first row), as
    one /predict record; None when there are no rows."""
    names = list(columns)
    rows = len(columns[names[0]]) if names else 0
    if rows == 0:
        return None
    complete = (i for i in range(rows) if all(columns[n][i] is not None for n in names))
    index = next(complete, 0)
    return {name: columns[name][index] for name in names}


def load_version(
    client: Any, name: str, version: int | str, *, alias: str | None = None
) -> ServedModel:
    """Load a registered version, verified, with its reference snapshot and driftloop tags.

    Raises:
        ModelNotFoundError: no such version.
        ModelLoadError: not registered by driftloop (no or bad `driftloop.model_spec` tag), or
            its tagged classes differ from its pipeline's.
        ModelIntegrityError: a stored file differs from the version's integrity record (or it
            has none); nothing of it was deserialized.
    """
    mv = get_version(client, name, version)
    try:
        info = version_info(mv)
    except ModelNotFoundError as exc:
        raise ModelLoadError(f"{exc}; register it with `driftloop train`") from None
    verified = load_verified_model(client, name, info.version)
    pipeline = verified.pipeline
    reference = load_reference(client, name, info.version)
    classes: tuple[Any, ...] = ()
    if info.task == "classification":
        fitted = getattr(pipeline, "classes_", None)
        if fitted is None:
            raise ModelLoadError(
                f"model {name!r} version {info.version} is a classifier without classes_"
            )
        classes = tuple(_plain(c) for c in fitted)
        tagged = list(info.classes)
        if tagged and [str(c) for c in tagged] != [str(c) for c in classes]:
            raise ModelLoadError(
                f"model {name!r} version {info.version}: the classes {tagged} in tag {SPEC_TAG} "
                f"do not match the pipeline's classes {list(classes)}"
            )
    numeric, categorical = info.spec.numeric, info.spec.categorical
    check_rows = None
    if set(info.spec.columns) <= set(reference.columns):
        check_rows = reference_columns(reference, numeric, categorical, MAX_CHECK_ROWS)
    model = ServedModel(
        name=name,
        version=info.version,
        run_id=info.run_id,
        task=info.task,
        target=info.target,
        numeric=numeric,
        categorical=categorical,
        not_null=frozenset(info.not_null),
        classes=classes,
        pipeline=pipeline,
        signature=verified.signature,
        alias=alias,
        magnitudes=training_magnitudes(reference, numeric),
        example=None if check_rows is None else example_record(check_rows),
    )
    return with_fast_path(model, check_rows)


def load_alias(client: Any, name: str, alias: str = CHAMPION) -> ServedModel:
    """Load the version an alias points at (`champion` by default)."""
    mv = get_alias(client, name, alias)
    if mv is None:
        raise ModelLoadError(
            f"model {name!r} has no `{alias}` alias in the registry; train one with `driftloop train` "
            f"or set it with `driftloop promote --version N`"
        )
    return load_version(client, name, mv.version, alias=alias)
