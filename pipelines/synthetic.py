"""Generated streams with drift of every kind, for the loop's benchmark and tests.

Each stream is a training frame and a live frame in time order (with its labels), from one
generator with a known concept: a classification target drawn from a logistic model of eight
numeric and two categorical features, or a regression target from a linear model with noise.
What changes in the live rows, from ``change`` (a share of the live rows) on:

=================  =============================================================================
``none``           nothing
``harmless``       the distribution of features the target does not depend on (drift, no harm)
``unfixable``      the features move towards the decision boundary: more ambiguous rows, so any
                   model scores worse and retraining cannot help
``abrupt``         the concept: the relationship between features and target changes at once
``gradual``        the same change, rolled out to a growing share of rows over a span
``recurring``      the concept changes, then the old one comes back
``regression``     a regression target whose coefficients change at once
=================  =============================================================================

Pure numpy/pandas; the same seed gives the same stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SCENARIOS = ("none", "harmless", "unfixable", "abrupt", "gradual", "recurring", "regression")
NUMERIC = [f"x{i}" for i in range(8)]
CATEGORICAL = ["c0", "c1"]
#: Features the concept uses (the others are noise the harmless shift moves).
USED = ["x0", "x1", "x2", "x3", "c0"]
_LEVELS = ["a", "b", "c", "d"]


@dataclass(frozen=True)
class Stream:
    """A generated stream: what to train on, what arrives live, and where the change starts."""

    scenario: str
    task: str
    train: pd.DataFrame
    live: pd.DataFrame
    labels: pd.DataFrame
    change_row: int | None

    @property
    def target(self) -> str:
        return "y"


def _features(rng: np.random.Generator, n: int) -> pd.DataFrame:
    data = {name: rng.standard_normal(n) for name in NUMERIC}
    data["c0"] = rng.choice(_LEVELS, size=n, p=[0.4, 0.3, 0.2, 0.1])
    data["c1"] = rng.choice(_LEVELS, size=n)
    return pd.DataFrame(data)


_CAT_EFFECT = {"a": -0.6, "b": 0.0, "c": 0.5, "d": 1.0}


def _score(frame: pd.DataFrame, weights: np.ndarray) -> np.ndarray:
    x = frame[["x0", "x1", "x2", "x3"]].to_numpy()
    base = x @ weights + 0.8 * x[:, 0] * x[:, 1]
    return base + frame["c0"].map(_CAT_EFFECT).to_numpy()


#: The concept before and after a change (coefficients of x0..x3).
CONCEPT_A = np.array([1.5, -1.0, 0.8, 0.0])
CONCEPT_B = np.array([-1.2, 0.2, 0.8, 1.5])


def _labels(rng: np.random.Generator, score: np.ndarray, task: str) -> np.ndarray:
    if task == "regression":
        return 10.0 * score + rng.normal(0.0, 3.0, size=score.size)
    return (rng.random(score.size) < 1.0 / (1.0 + np.exp(-2.0 * score))).astype(int)


def generate(
    scenario: str,
    *,
    train_rows: int = 10_000,
    live_rows: int = 50_000,
    change: float = 0.4,
    span: float = 0.2,
    seed: int = 0,
) -> Stream:
    """One stream of the given scenario (see the module docstring).

    ``change`` is where the live rows start to change (a share of them); ``span`` how long the
    gradual change takes and how long the recurring concept is away (shares of the live rows).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {SCENARIOS}")
    rng = np.random.default_rng(seed)
    task = "regression" if scenario == "regression" else "classification"
    train = _features(rng, train_rows)
    train["y"] = _labels(rng, _score(train, CONCEPT_A), task)
    live = _features(rng, live_rows)
    start = int(change * live_rows)
    after = np.arange(live_rows) >= start
    new_concept = np.zeros(live_rows, dtype=bool)
    if scenario == "harmless":
        live.loc[after, "x5"] += 1.5
        live.loc[after, "x6"] *= 2.0
        live.loc[after, "c1"] = rng.choice(["a", "d"], size=int(after.sum()))
    elif scenario == "unfixable":
        # squeeze the used features towards the boundary: same concept, less separable rows
        for name in ("x0", "x1", "x2"):
            live.loc[after, name] *= 0.35
    elif scenario in ("abrupt", "regression"):
        new_concept = after
    elif scenario == "gradual":
        ramp = np.clip((np.arange(live_rows) - start) / max(1, int(span * live_rows)), 0, 1)
        new_concept = rng.random(live_rows) < ramp
    elif scenario == "recurring":
        back = start + int(span * live_rows)
        new_concept = after & (np.arange(live_rows) < back)
    score = np.where(new_concept, _score(live, CONCEPT_B), _score(live, CONCEPT_A))
    y = _labels(rng, score, task)
    live.insert(0, "id", np.arange(live_rows))
    train.insert(0, "id", -1 - np.arange(train_rows))
    labels = pd.DataFrame({"id": live["id"], "y": y})
    return Stream(scenario, task, train, live, labels, None if scenario == "none" else start)
