"""A retraining's challengers: the champion's configuration fitted on each candidate window and
judged on the newest labeled rows, which none of them learned from (pure: pandas, scikit-learn).

:func:`plan_retraining` decides the judged rows and the windows from the champion's per-row
losses (:mod:`pipelines.windows`); :func:`fit_candidates` fits an unfitted copy of the champion's
Pipeline (same preprocessing, family and hyperparameters) on each window and scores it; the best
window's rule, refitted through the judged rows, is the challenger (:func:`refit`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from core.config import ProjectConfig
from core.errors import DriftloopError
from core.metrics import higher_is_better
from core.spec import FeatureSpec
from pipelines.evaluation import score_metric
from pipelines.schema import prepare_features
from pipelines.validation import usable_numbers
from pipelines.windows import (
    ChangePoint,
    Window,
    candidate_windows,
    change_point,
    gate_size,
    row_losses,
)

#: Multiples of the judged rows tried as "last N rows" windows (besides the change and all rows).
WINDOW_MULTIPLES = (2, 8)


@dataclass(frozen=True)
class RetrainPlan:
    """What a retraining trains on and is judged on, among ``labeled`` rows (oldest first):
    live rows ``[0, train_rows)`` feed the windows, the newest ``gate_rows`` judge."""

    labeled: int
    train_rows: int
    gate_rows: int
    change: ChangePoint | None
    windows: tuple[Window, ...]

    @property
    def rows_since_change(self) -> int | None:
        return None if self.change is None else self.labeled - self.change.index

    def describe(self) -> str:
        where = (
            f"a change detected {self.rows_since_change} labeled rows ago"
            if self.change is not None
            else "no change detected in the champion's losses"
        )
        return (
            f"{self.labeled} labeled live rows, {where}; the newest {self.gate_rows} judge, "
            f"{len(self.windows)} windows tried"
        )


def plan_retraining(
    losses: np.ndarray,
    *,
    window_rows: int,
    gate_rows: int | None = None,
    min_rows: int = 200,
    reference: bool = True,
    sizes: Sequence[int] | None = None,
) -> RetrainPlan:
    """The judged rows and candidate windows for ``losses``, the champion's per-row losses on
    the labeled live rows in time order (pure)."""
    n = len(losses)
    change = change_point(losses, min_segment=max(50, min_rows // 2))
    since = None if change is None else n - change.index
    gate = (
        gate_rows
        if gate_rows is not None
        else gate_size(n, window_rows=window_rows, rows_since_change=since, min_rows=min_rows)
    )
    gate = max(1, min(gate, n - 1))
    train_rows = n - gate
    multiples = sizes if sizes is not None else [m * gate for m in WINDOW_MULTIPLES]
    windows = candidate_windows(
        train_rows,
        change=None if change is None or change.index >= train_rows else change.index,
        sizes=multiples,
        min_rows=min(min_rows, train_rows),
        reference=reference,
    )
    return RetrainPlan(n, train_rows, gate, change, tuple(windows))


@dataclass(frozen=True)
class Rows:
    """Feature frame and target of some rows, aligned by position."""

    X: pd.DataFrame
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.X)

    def slice(self, start: int, stop: int) -> Rows:
        return Rows(self.X.iloc[start:stop].reset_index(drop=True), self.y[start:stop])


def _window_rows(window: Window, live: Rows, stop: int, reference: Rows | None) -> Rows:
    part = live.slice(window.start, stop)
    if window.with_reference and reference is not None and len(reference):
        return Rows(
            pd.concat([reference.X, part.X], ignore_index=True),
            np.concatenate([reference.y, part.y]),
        )
    return part


def outputs(pipeline: Any, X: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(predictions, probabilities or None) of a fitted Pipeline."""
    if task == "regression":
        return np.asarray(pipeline.predict(X), dtype=float), None
    proba = np.asarray(pipeline.predict_proba(X), dtype=float)
    classes = np.asarray(pipeline.classes_)
    return classes[np.argmax(proba, axis=1)], proba


def aligned_proba(proba: np.ndarray, fitted: Sequence[Any], classes: Sequence[Any]) -> np.ndarray:
    """Probabilities re-ordered to ``classes`` (a window may lack a class: its column is 0)."""
    out = np.zeros((proba.shape[0], len(classes)))
    index = {c: i for i, c in enumerate(fitted)}
    for j, c in enumerate(classes):
        if c in index:
            out[:, j] = proba[:, index[c]]
    return out


@dataclass(frozen=True)
class Scored:
    """A fitted model's outputs on the judged rows and its primary metric there."""

    name: str
    pipeline: Any
    prediction: np.ndarray
    proba: np.ndarray | None
    score: float
    train_rows: int
    error: str | None = None


@dataclass(frozen=True)
class Judge:
    """How the judged rows are scored: the task, metric and the model's classes."""

    task: str
    metric: str
    classes: tuple[Any, ...] = ()
    gate: Rows = field(default_factory=lambda: Rows(pd.DataFrame(), np.array([])))

    def score(self, prediction: np.ndarray, proba: np.ndarray | None, rows: np.ndarray) -> float:
        return score_metric(
            self.metric,
            self.gate.y[rows],
            prediction[rows],
            None if proba is None else proba[rows],
            classes=self.classes,
        )

    def scored(self, name: str, pipeline: Any, train_rows: int) -> Scored:
        prediction, proba = outputs(pipeline, self.gate.X, self.task)
        if proba is not None:
            proba = aligned_proba(proba, list(pipeline.classes_), self.classes)
        everything = np.arange(len(self.gate))
        return Scored(
            name, pipeline, prediction, proba, self.score(prediction, proba, everything), train_rows
        )


def fit_candidates(
    template: Any,
    plan: RetrainPlan,
    *,
    live: Rows,
    reference: Rows | None,
    judge: Judge,
) -> list[Scored]:
    """The champion's configuration (an unfitted clone of ``template``) fitted on each window of
    ``plan`` and scored on the judged rows. A window the estimator cannot fit (e.g. one class
    only) is kept with its error and a NaN score."""
    out = []
    for window in plan.windows:
        rows = _window_rows(window, live, plan.train_rows, reference)
        try:
            pipeline = clone(template).fit(rows.X, rows.y)
            out.append(judge.scored(window.name, pipeline, len(rows)))
        except ValueError as exc:
            out.append(Scored(window.name, None, np.array([]), None, math.nan, len(rows), str(exc)))
    return out


def best(candidates: Sequence[Scored], metric: str) -> Scored | None:
    """The candidate with the best finite score (None when none has one)."""
    usable = [c for c in candidates if math.isfinite(c.score)]
    if not usable:
        return None
    sign = 1.0 if higher_is_better(metric) else -1.0
    return max(usable, key=lambda c: sign * c.score)


def refit(template: Any, window: Window, *, live: Rows, reference: Rows | None) -> tuple[Any, int]:
    """The chosen window's rule fitted through the judged rows (all live rows from the window's
    start); returns the pipeline and the rows it learned from."""
    rows = _window_rows(window, live, len(live), reference)
    return clone(template).fit(rows.X, rows.y), len(rows)


def champion_losses(champion: Any, live: Rows, task: str) -> np.ndarray:
    """The fitted champion's per-row losses on the labeled live rows (time order kept)."""
    if task == "regression":
        return row_losses(task, live.y, prediction=np.asarray(champion.predict(live.X)))
    proba = np.asarray(champion.predict_proba(live.X), dtype=float)
    index = {c: i for i, c in enumerate(np.asarray(champion.classes_).tolist())}
    position = np.array([index.get(v, -1) for v in np.asarray(live.y).tolist()])
    truth = np.where(position >= 0, proba[np.arange(len(live)), np.maximum(position, 0)], 0.0)
    return row_losses(task, live.y, probability_of_truth=truth)


@dataclass(frozen=True)
class RetrainSettings:
    """How a challenger is built (``monitoring.retrain`` plus the monitor window's size)."""

    data_policy: str = "adaptive"
    max_live_rows: int = 50_000
    include_reference: bool = True
    gate_rows: int | None = None
    window_rows: int = 5000
    min_rows: int = 200


@dataclass(frozen=True)
class Challenger:
    """A retraining's outcome before the gate: the plan, every candidate's score on the judged
    rows, the winner, and the winner's rule refitted through the judged rows (``pipeline``).
    ``deferred`` says why nothing was built yet (too few rows since a fresh change)."""

    plan: RetrainPlan
    candidates: tuple[Scored, ...]
    winner: Scored | None
    window: Window | None
    pipeline: Any
    learned_rows: int
    gate: Rows
    deferred: str | None = None

    def table(self) -> pd.DataFrame:
        """One row per candidate window: its rows, score on the judged rows, error, chosen."""
        return pd.DataFrame(
            [
                {
                    "window": c.name,
                    "train_rows": c.train_rows,
                    "score": c.score,
                    "error": c.error or "",
                    "selected": self.winner is not None and c.name == self.winner.name,
                }
                for c in self.candidates
            ]
        )


def _fixed_plan(losses: np.ndarray, settings: RetrainSettings) -> RetrainPlan:
    """Sliding (the newest rows) or expanding (all rows) as one window, judged on the newest."""
    n = len(losses)
    gate = settings.gate_rows or gate_size(
        n, window_rows=settings.window_rows, rows_since_change=None, min_rows=settings.min_rows
    )
    gate = max(1, min(gate, n - 1))
    train_rows = n - gate
    start = max(0, train_rows - settings.max_live_rows) if settings.data_policy == "sliding" else 0
    name = f"{'reference + ' if settings.include_reference else ''}{settings.data_policy} window of {train_rows - start} rows"
    window = Window(name, start, settings.include_reference)
    return RetrainPlan(n, train_rows, gate, None, (window,))


def build_challenger(
    champion: Any,
    *,
    live: Rows,
    reference: Rows | None,
    task: str,
    metric: str,
    classes: Sequence[Any],
    settings: RetrainSettings,
) -> Challenger:
    """Candidates of the champion's configuration on each window, the best on the newest rows,
    refitted through them. ``live`` holds the labeled live rows, oldest first."""
    losses = champion_losses(champion, live, task)
    if settings.data_policy == "adaptive":
        plan = plan_retraining(
            losses,
            window_rows=settings.window_rows,
            gate_rows=settings.gate_rows,
            min_rows=settings.min_rows,
            reference=settings.include_reference,
        )
    else:
        plan = _fixed_plan(losses, settings)
    gate = live.slice(plan.train_rows, len(live))
    since = plan.rows_since_change
    if since is not None and since < 2 * settings.min_rows:
        why = (
            f"a change was detected {since} labeled rows ago; waiting for "
            f"{2 * settings.min_rows} labeled rows since it to learn from and judge on"
        )
        return Challenger(plan, (), None, None, None, 0, gate, deferred=why)
    judge = Judge(task, metric, tuple(classes), gate)
    candidates = fit_candidates(champion, plan, live=live, reference=reference, judge=judge)
    winner = best(candidates, metric)
    if winner is None:
        return Challenger(plan, tuple(candidates), None, None, None, 0, gate)
    window = next(w for w in plan.windows if w.name == winner.name)
    pipeline, learned = refit(champion, window, live=live, reference=reference)
    return Challenger(plan, tuple(candidates), winner, window, pipeline, learned, gate)


class RetrainRefused(DriftloopError, RuntimeError):
    """Retraining cannot start (no champion, too few labeled rows); the message says why."""


class RetrainDeferred(RetrainRefused):
    """Retraining waits for more labeled rows since a change it detected; not a refusal."""


def retrain_settings(config: ProjectConfig) -> RetrainSettings:
    """The config's `monitoring.retrain` and window size, as retraining takes them."""
    retrain, window = config.monitoring.retrain, config.monitoring.window
    return RetrainSettings(
        data_policy=retrain.data_policy,
        max_live_rows=retrain.max_live_rows,
        include_reference=retrain.include_reference,
        gate_rows=retrain.gate_rows,
        window_rows=window.rows,
    )


def live_rows(labeled: pd.DataFrame, spec: FeatureSpec, target: str) -> tuple[Rows, pd.Series, int]:
    """The usable labeled rows, oldest first, as model inputs; their times; how many were left
    out because a number cannot be trained on (older logs may hold them)."""
    usable = usable_numbers(labeled, spec.numeric)
    kept = labeled.loc[usable].sort_values("ts", kind="stable").reset_index(drop=True)
    rows = Rows(prepare_features(kept, spec).reset_index(drop=True), kept[target].to_numpy())
    return rows, kept["ts"], int((~usable).sum())


def window_tag(challenger: Challenger, times: pd.Series, *, refresh: bool) -> str:
    """The version tag that says what the challenger learned from (read back by the monitor for
    the follow-up retraining after a change)."""
    plan, window = challenger.plan, challenger.window
    start = window.start if window is not None else 0
    since_change = (
        plan.change is not None and window is not None and window.start == plan.change.index
    )
    return json.dumps(
        {
            "window": window.name if window is not None else None,
            "start": times.iloc[start].isoformat() if len(times) else None,
            "live_rows": len(times) - start,
            "since_change": since_change,
            "refresh": refresh,
        }
    )
