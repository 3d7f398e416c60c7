"""The compiled fast path: equal to the scikit-learn Pipeline, or not used (with the reason)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression

from core.spec import FeatureSpec
from pipelines.training import build_pipeline
from serving.fastpath import TOLERANCE, compile_pipeline, probe_columns, verify
from serving.model import reference_columns, with_fast_path
from tests.serving.conftest import CATEGORICAL, NUMERIC, check_rows, served

SPEC = FeatureSpec(numeric=tuple(NUMERIC), categorical=tuple(CATEGORICAL))


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
    split_data: Any, family: str, options: dict[str, Any]
) -> None:
    X, y, check = split_data
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


def test_fast_path_equals_a_ridge_regression_pipeline(split_data: Any) -> None:
    X, _, check = split_data
    target = X[NUMERIC[0]].to_numpy()  # age from the categorical features
    spec = FeatureSpec(numeric=(), categorical=tuple(CATEGORICAL))
    pipeline = build_pipeline(spec, task="regression", family="linear").fit(X[CATEGORICAL], target)
    model = dataclasses.replace(served(pipeline, task="regression"), numeric=())
    model = with_fast_path(model, reference_columns(check, [], CATEGORICAL, len(check)))
    assert model.fast is not None, model.scorer_note
    columns = reference_columns(check, [], CATEGORICAL, len(check))
    got = np.asarray(model.score_columns(columns).predictions)
    assert np.max(np.abs(got - pipeline.predict(model.frame(columns)))) < TOLERANCE


def test_an_unsupported_estimator_keeps_the_pipeline_and_says_why(split_data: Any) -> None:
    X, y, check = split_data
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


def test_a_pipeline_the_fast_path_does_not_match_falls_back(split_data: Any) -> None:
    X, y, check = split_data
    pipeline = build_pipeline(SPEC, task="classification", family="logistic")
    pipeline.steps[-1] = ("model", LogisticRegression(max_iter=1000))
    pipeline.fit(X, y)
    model = with_fast_path(served(pipeline), check_rows(check))
    assert model.fast is None
    assert "not equal" in model.scorer_note and "max abs difference" in model.scorer_note


def test_verify_names_the_difference_of_a_wrong_fast_path(split_data: Any) -> None:
    X, y, check = split_data
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


def test_probe_rows_visit_every_known_category_an_unseen_one_and_nulls(split_data: Any) -> None:
    X, y, _ = split_data
    pipeline = build_pipeline(SPEC, task="classification", family="logistic").fit(X, y)
    fast = compile_pipeline(pipeline, numeric=NUMERIC, categorical=CATEGORICAL)
    columns = probe_columns(fast)
    for name in CATEGORICAL:
        seen = set(columns[name])
        assert set(X[name].astype(str)) <= seen and None in seen
        assert any(v is not None and v not in set(X[name].astype(str)) for v in seen)
    assert None in columns[NUMERIC[0]]


def test_a_null_category_is_imputed_as_in_training(split_data: Any) -> None:
    X, y, check = split_data
    pipeline = build_pipeline(SPEC, task="classification", family="logistic").fit(X, y)
    model = served(pipeline)
    columns = check_rows(check.head(1))
    columns["SCHL"] = [None]
    training_like = X.head(0).copy()
    training_like.loc[0] = [columns[c][0] for c in NUMERIC + CATEGORICAL]
    training_like["SCHL"] = np.nan
    want = pipeline.predict_proba(training_like)
    assert np.allclose(model.pipeline_scores(columns), want)
