"""A version's scores on rows it never learned from: the basis of everything the monitor knows
about how well the version should do (reference value, noise, calibration, estimation).

For a first training these are the holdout split off the training data; for a retraining, the
newest labeled live rows, scored by the window rule's model before it was refitted through them.
Stored with the version as one Parquet file (features, target, prediction and per-class
probabilities under reserved names). Pure: pandas and numpy.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.metrics import METRICS, higher_is_better, kind_of
from pipelines.evaluation import expected_calibration_error, score_metric
from pipelines.promotion import Difference, paired_difference

TARGET = "driftloop.target"
PREDICTION = "driftloop.prediction"
PROBA = "driftloop.proba."


@dataclass(frozen=True)
class HoldoutScores:
    """Features, labels and a model's out-of-sample outputs on the same rows.

    ``proba`` is n x k in the order of ``classes`` (classifiers), None for regressors.
    """

    X: pd.DataFrame
    y: np.ndarray
    prediction: np.ndarray
    proba: np.ndarray | None
    classes: tuple[Any, ...]
    task: str
    #: where the rows come from, for people ("holdout", "newest labeled live rows")
    source: str = "holdout"

    def __len__(self) -> int:
        return len(self.y)

    @property
    def kind(self) -> str:
        return kind_of(self.task, len(self.classes))

    def metric(self, name: str, rows: np.ndarray | None = None) -> float:
        """A registry metric on all rows (or on the positions ``rows``)."""
        pick = slice(None) if rows is None else rows
        return score_metric(
            name,
            self.y[pick],
            self.prediction[pick],
            None if self.proba is None else self.proba[pick],
            classes=self.classes,
        )

    def metrics(self) -> dict[str, float]:
        """Every registry metric that applies, plus the expected calibration error."""
        out = {name: self.metric(name) for name, m in METRICS.items() if self.kind in m.kinds}
        if self.proba is not None:
            if len(self.classes) == 2:
                positive = (self.y == self.classes[-1]).astype(float)
                out["ece"] = expected_calibration_error(self.proba[:, 1], positive)
            else:
                correct = (self.prediction == self.y).astype(float)
                out["ece"] = expected_calibration_error(self.proba.max(axis=1), correct)
        return out

    def to_parquet(self) -> bytes:
        frame = self.X.reset_index(drop=True).copy()
        frame[TARGET] = self.y
        frame[PREDICTION] = self.prediction
        if self.proba is not None:
            for j in range(self.proba.shape[1]):
                frame[f"{PROBA}{j}"] = self.proba[:, j]
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()

    @classmethod
    def from_parquet(
        cls, data: bytes, *, classes: Sequence[Any], task: str, source: str = "holdout"
    ) -> HoldoutScores:
        frame = pd.read_parquet(io.BytesIO(data))
        proba_columns = [c for c in frame.columns if c.startswith(PROBA)]
        proba_columns.sort(key=lambda c: int(c.removeprefix(PROBA)))
        reserved = {TARGET, PREDICTION, *proba_columns}
        return cls(
            X=frame[[c for c in frame.columns if c not in reserved]],
            y=frame[TARGET].to_numpy(),
            prediction=frame[PREDICTION].to_numpy(),
            proba=frame[proba_columns].to_numpy(dtype=float) if proba_columns else None,
            classes=tuple(classes),
            task=task,
            source=source,
        )


def scores_of(
    pipeline: Any,
    X: pd.DataFrame,
    y: Sequence[Any] | np.ndarray,
    *,
    task: str,
    classes: Sequence[Any] | None = None,
    source: str = "holdout",
) -> HoldoutScores:
    """A fitted Pipeline's outputs on rows it did not learn from (probabilities re-ordered to
    ``classes``, default the pipeline's own)."""
    y = np.asarray(y)
    if task == "regression":
        return HoldoutScores(
            X, y, np.asarray(pipeline.predict(X), dtype=float), None, (), task, source
        )
    fitted = [c.item() if hasattr(c, "item") else c for c in pipeline.classes_]
    order = list(classes) if classes is not None else fitted
    raw = np.asarray(pipeline.predict_proba(X), dtype=float)
    proba = np.zeros((len(X), len(order)))
    index = {c: i for i, c in enumerate(fitted)}
    for j, c in enumerate(order):
        if c in index:
            proba[:, j] = raw[:, index[c]]
    prediction = np.asarray(order, dtype=object)[np.argmax(proba, axis=1)]
    if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in order):
        prediction = prediction.astype(np.int64)
    return HoldoutScores(X, y, prediction, proba, tuple(order), task, source)


def finite(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics with a defined value (MLflow refuses NaN)."""
    return {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)}


def compare(candidate: HoldoutScores, incumbent: HoldoutScores, metric: str) -> Difference:
    """``candidate`` minus ``incumbent`` on the same rows (positive = better, whatever the
    metric's direction), with its paired bootstrap interval."""
    scores = {"candidate": candidate, "champion": incumbent}
    return paired_difference(
        lambda who, rows: scores[who].metric(metric, rows),
        len(candidate),
        higher_is_better=higher_is_better(metric),
    )
