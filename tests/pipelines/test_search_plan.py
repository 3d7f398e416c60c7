"""The search as a plan of single fits (what runs one fit per Dask task) against scikit-learn's
own GridSearchCV / RandomizedSearchCV on the same settings and folds."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

from pipelines.schema import prepare_features
from pipelines.training import (
    FitJob,
    FitScore,
    ModelSpecError,
    choose,
    make_scoring,
    plan_search,
    run_jobs,
    search_jobs,
    train_model,
)
from tests.pipelines.conftest import SPEC, make_frame

CANDIDATES = [
    {"family": "logistic", "search": {"C": [0.01, 0.1, 1.0, 10.0]}},
    {
        "family": "hist_gradient_boosting",
        "params": {"max_iter": 15},
        "search": {"learning_rate": [0.05, 0.1, 0.3], "max_leaf_nodes": [4, 8, 16]},
    },
]


def _plan(frame: pd.DataFrame, *, metric: str = "roc_auc", iterations: int = 4, **kw):
    X = prepare_features(frame, SPEC)
    return plan_search(
        X,
        frame["y"],
        spec=SPEC,
        task="classification",
        candidates=CANDIDATES,
        cv_folds=3,
        search_iterations=iterations,
        seed=7,
        cv_metric=metric,
        **kw,
    )


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss", "brier"])
def test_each_setting_scores_what_scikit_learns_search_scores(metric: str) -> None:
    frame = make_frame(150, seed=3)
    plan = _plan(frame, metric=metric)
    scores = run_jobs(plan, search_jobs(plan))
    scoring, _ = make_scoring(metric, task="classification", classes=plan.classes)
    # the logistic grid (4 settings) is searched whole, the boosting one (9) by 4 draws
    assert [len(s.settings) for s in plan.spaces] == [4, 4]
    for s, space in enumerate(plan.spaces):
        grid = {k: list(v) for k, v in _raw_grid(s).items()}
        common = {"scoring": scoring, "cv": plan.folds, "n_jobs": 1, "refit": False}
        peer = (
            GridSearchCV(space.pipeline, grid, **common)
            if s == 0
            else RandomizedSearchCV(space.pipeline, grid, n_iter=4, random_state=7, **common)
        )
        peer.fit(plan.X, plan.y)
        assert [dict(p) for p in peer.cv_results_["params"]] == space.settings
        ours = np.array(
            [
                np.mean([c.score for c in scores if c.job.space == s and c.job.setting == k])
                for k in range(len(space.settings))
            ]
        )
        np.testing.assert_allclose(ours, peer.cv_results_["mean_test_score"], rtol=1e-12)


def _raw_grid(space: int) -> dict[str, list]:
    return {f"model__{k}": v for k, v in CANDIDATES[space]["search"].items()}


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_the_choice_does_not_depend_on_the_order_scores_come_back_in(seed: int) -> None:
    plan = _PLAN
    shuffled = list(_SCORES)
    random.Random(seed).shuffle(shuffled)
    assert choose(plan, shuffled) == choose(plan, _SCORES)


_PLAN = _plan(make_frame(120, seed=5))
_SCORES = run_jobs(_PLAN, search_jobs(_PLAN))


def test_a_missing_fit_is_an_error_not_a_smaller_search() -> None:
    with pytest.raises(ModelSpecError, match="1 fit"):
        choose(_PLAN, _SCORES[1:])


def test_a_runner_that_returns_the_same_scores_trains_the_same_model() -> None:
    frame = make_frame(150, seed=9)
    X = prepare_features(frame, SPEC)
    common = {
        "spec": SPEC,
        "task": "classification",
        "candidates": CANDIDATES,
        "cv_folds": 3,
        "search_iterations": 4,
        "seed": 1,
    }
    seen: list[FitJob] = []

    def backwards(plan, jobs) -> list[FitScore]:
        seen.extend(jobs)
        return list(reversed(run_jobs(plan, list(reversed(jobs)))))

    local = train_model(X, frame["y"], **common)
    other = train_model(X, frame["y"], runner=backwards, **common)
    assert len(seen) == 2 * 4 * 3
    assert (other.family, other.params, other.cv_score) == (
        local.family,
        local.params,
        local.cv_score,
    )
    np.testing.assert_array_equal(other.pipeline.predict_proba(X), local.pipeline.predict_proba(X))
