"""The compiled fast path: equal to the scikit-learn Pipeline, or not used (with the reason)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression

from pipelines.schema import FeatureSpec
from pipelines.training import build_pipeline
from serving.fastpath import TOLERANCE, compile_pipeline, probe_columns, verify
from serving.microbatch import MicroBatcher
from serving.model import ServedModel, reference_columns, with_fast_path
from tests.conftest import DATA
from tests.serving.conftest import CATEGORICAL, NUMERIC, TARGET

SPEC = FeatureSpec(numeric=tuple(NUMERIC), categorical=tuple(CATEGORICAL))


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    frame = pd.read_parquet(DATA / "reference_2015.parquet").sample(2000, random_state=3)
    train, check = frame.iloc[:1500], frame.iloc[1500:]
    return train[NUMERIC + CATEGORICAL], train[TARGET], check


def served(pipeline: Any, *, task: str = "classification") -> ServedModel:
    classes = tuple(pipeline.classes_.tolist()) if task == "classification" else ()
    return ServedModel(
        name="employment",
        version=1,
        run_id="run",
        task=task,
        target=TARGET,
        numeric=tuple(NUMERIC),
        categorical=tuple(CATEGORICAL),
        not_null=frozenset(),
        classes=classes,
        pipeline=pipeline,
    )


def check_rows(check: pd.DataFrame) -> dict[str, list[Any]]:
    return reference_columns(check, NUMERIC, CATEGORICAL, len(check))


@pytest.mark.parametrize(
    ("family", "options"),
    [
        ("logistic", {}),  # sparse one-hot with infrequent categories grouped
        ("hist_gradient_boosting", {}),  # dense one-hot
        ("hist_gradient_boosting", {"native_categorical": True}),  # ordinal codes, bitset splits
        ("hist_gradient_boosting", {"params": {"max_leaf_nodes": 63, "learning_rate": 0.2}}),
    ],
)
def test_fast_path_equals_the_pipeline_on_held_out_rows(
    data: Any, family: str, options: dict[str, Any]
) -> None:
    X, y, check = data
    pipeline = build_pipeline(SPEC, task="classification", family=family, **options).fit(X, y)
    model = with_fast_path(served(pipeline), check_rows(check))
    assert model.fast is not None, model.scorer_note
    assert model.scorer == "fast numpy path" and "500 reference rows" in model.scorer_note
    columns = check_rows(check)
    columns[CATEGORICAL[0]][:5] = [None, "never-seen", None, "never-seen", None]
    columns[NUMERIC[0]][5:8] = [None, None, None]
    fast = model.score_columns(columns)
    want = pipeline.predict_proba(model.frame(columns))
    got = np.asarray([[p[str(c)] for c in model.classes] for p in fast.probabilities])
    assert np.max(np.abs(got - want)) < TOLERANCE
    assert fast.predictions == [model.classes[i] for i in want.argmax(axis=1)]


def test_fast_path_equals_a_ridge_regression_pipeline(data: Any) -> None:
    X, _, check = data
    target = X[NUMERIC[0]].to_numpy()  # age from the categorical features
    spec = FeatureSpec(numeric=(), categorical=tuple(CATEGORICAL))
    pipeline = build_pipeline(spec, task="regression", family="linear").fit(X[CATEGORICAL], target)
    model = dataclasses.replace(served(pipeline, task="regression"), numeric=())
    model = with_fast_path(model, reference_columns(check, [], CATEGORICAL, len(check)))
    assert model.fast is not None, model.scorer_note
    columns = reference_columns(check, [], CATEGORICAL, len(check))
    got = np.asarray(model.score_columns(columns).predictions)
    assert np.max(np.abs(got - pipeline.predict(model.frame(columns)))) < TOLERANCE


def test_an_unsupported_estimator_keeps_the_pipeline_and_says_why(data: Any) -> None:
    X, y, check = data
    pipeline = build_pipeline(SPEC, task="classification", family="random_forest")
    pipeline.set_params(model__n_estimators=5).fit(X, y)
    model = with_fast_path(served(pipeline), check_rows(check))
    assert model.fast is None and model.scorer == "scikit-learn pipeline"
    assert "RandomForestClassifier" in model.scorer_note
    scores = model.score_columns(check_rows(check))  # still scores, through the pipeline
    want = pipeline.predict_proba(model.frame(check_rows(check)))[:, 1]
    assert np.allclose(scores.probability, want)


class LogisticRegression(SklearnLogisticRegression):
    """Looks like the supported estimator but sharpens its probabilities (a custom subclass)."""

    def predict_proba(self, X: Any) -> np.ndarray:
        logits = self.decision_function(X) * 2.0
        p = 1.0 / (1.0 + np.exp(-logits))
        return np.column_stack([1 - p, p])


def test_a_pipeline_the_fast_path_does_not_match_falls_back(data: Any) -> None:
    X, y, check = data
    pipeline = build_pipeline(SPEC, task="classification", family="logistic")
    pipeline.steps[-1] = ("model", LogisticRegression(max_iter=1000))
    pipeline.fit(X, y)
    model = with_fast_path(served(pipeline), check_rows(check))
    assert model.fast is None
    assert "not equal" in model.scorer_note and "max abs difference" in model.scorer_note


def test_verify_names_the_difference_of_a_wrong_fast_path(data: Any) -> None:
    X, y, check = data
    pipeline = build_pipeline(SPEC, task="classification", family="logistic").fit(X, y)
    fast = compile_pipeline(pipeline, numeric=NUMERIC, categorical=CATEGORICAL)
    model = served(pipeline)
    columns = check_rows(check)
    assert verify(fast, lambda: model.pipeline_scores(columns), columns) is None
    shifted = dataclasses.replace(
        fast, model=dataclasses.replace(fast.model, intercept=fast.model.intercept + 1e-3)
    )
    problem = verify(shifted, lambda: model.pipeline_scores(columns), columns)
    assert problem is not None and "max abs difference" in problem


def test_probe_rows_visit_every_known_category_an_unseen_one_and_nulls(data: Any) -> None:
    X, y, _ = data
    pipeline = build_pipeline(SPEC, task="classification", family="logistic").fit(X, y)
    fast = compile_pipeline(pipeline, numeric=NUMERIC, categorical=CATEGORICAL)
    columns = probe_columns(fast)
    for name in CATEGORICAL:
        seen = set(columns[name])
        assert set(X[name].astype(str)) <= seen and None in seen
        assert any(v is not None and v not in set(X[name].astype(str)) for v in seen)
    assert None in columns[NUMERIC[0]]


def test_a_null_category_is_imputed_as_in_training(data: Any) -> None:
    X, y, check = data
    pipeline = build_pipeline(SPEC, task="classification", family="logistic").fit(X, y)
    model = served(pipeline)
    columns = check_rows(check.head(1))
    columns["SCHL"] = [None]
    training_like = X.head(0).copy()
    training_like.loc[0] = [columns[c][0] for c in NUMERIC + CATEGORICAL]
    training_like["SCHL"] = np.nan
    want = pipeline.predict_proba(training_like)
    assert np.allclose(model.pipeline_scores(columns), want)


def test_small_requests_of_a_fast_model_skip_the_scoring_thread(data: Any) -> None:
    X, y, check = data
    pipeline = build_pipeline(SPEC, task="classification", family="logistic").fit(X, y)
    fast_model = with_fast_path(served(pipeline), check_rows(check))
    slow_model = served(pipeline)

    async def run() -> tuple[int, int, list[Any]]:
        batcher = MicroBatcher(max_rows=64, inline_rows=4)
        try:
            await batcher.score(fast_model, check_rows(check.head(2)), 2)
            inline = batcher.inline_calls
            await batcher.score(fast_model, check_rows(check.head(10)), 10)
            await batcher.score(slow_model, check_rows(check.head(2)), 2)
            limits = await asyncio.get_running_loop().run_in_executor(
                batcher._executor, _openmp_threads
            )
            return inline, batcher.calls, limits
        finally:
            await batcher.close()

    inline, threaded, limits = asyncio.run(run())
    assert inline == 1 and threaded == 2
    assert limits and all(n == 1 for n in limits)  # one OpenMP thread on the scoring thread


def _openmp_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]


def test_a_swapped_in_model_is_frozen_out_of_gc_scans(tracking_uri: str) -> None:
    from mlflow import MlflowClient

    from serving.app import ModelHolder
    from tests.serving.conftest import MODEL

    holder = ModelHolder(MlflowClient(tracking_uri=tracking_uri), MODEL)
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        assert holder.refresh()
        assert holder.current is not None and holder.current.scorer == "fast numpy path"
        assert gc.get_freeze_count() > 0  # no full collection rescans the loaded model
    finally:
        gc.freeze()
