"""The reference snapshot monitoring compares live traffic with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.spec import PREDICTION_COLUMN, PROBABILITY_COLUMN
from pipelines.reference import build_reference
from pipelines.schema import prepare_features
from pipelines.training import build_pipeline
from tests.pipelines.conftest import SPEC, make_frame


def fitted(task: str, classes: int = 2):
    frame = make_frame(90, task=task, classes=classes)
    frame.index = frame.index + 500  # a non-default index must not misalign anything
    X = prepare_features(frame, SPEC)
    family = "logistic" if task == "classification" else "linear"
    return build_pipeline(SPEC, task=task, family=family).fit(X, frame["y"]), X, frame["y"]


def test_binary_reference_has_features_target_prediction_and_positive_probability() -> None:
    pipeline, X, y = fitted("classification")
    before = X.copy()
    reference = build_reference(
        pipeline, X, y.reset_index(drop=True), target="y", task="classification"
    )

    assert list(reference.columns) == [*SPEC.columns, "y", PREDICTION_COLUMN, PROBABILITY_COLUMN]
    assert list(reference.index) == list(range(90))
    np.testing.assert_array_equal(reference["y"], y.to_numpy())
    np.testing.assert_array_equal(reference[PREDICTION_COLUMN], pipeline.predict(X))
    np.testing.assert_allclose(reference[PROBABILITY_COLUMN], pipeline.predict_proba(X)[:, 1])
    pd.testing.assert_frame_equal(X, before)
    assert reference[list(SPEC.categorical)].dtypes.eq(object).all()


def test_multiclass_probability_is_the_top_class_probability() -> None:
    pipeline, X, y = fitted("classification", classes=3)
    reference = build_reference(pipeline, X, y, target="y", task="classification")
    np.testing.assert_allclose(reference[PROBABILITY_COLUMN], pipeline.predict_proba(X).max(axis=1))
    assert set(reference[PREDICTION_COLUMN]) <= {0, 1, 2}


def test_regression_reference_has_no_probability() -> None:
    pipeline, X, y = fitted("regression")
    reference = build_reference(pipeline, X, y, target="y", task="regression")
    assert list(reference.columns) == [*SPEC.columns, "y", PREDICTION_COLUMN]
    np.testing.assert_allclose(reference[PREDICTION_COLUMN], pipeline.predict(X))


@pytest.mark.parametrize("clash", ["y", PREDICTION_COLUMN, PROBABILITY_COLUMN])
def test_a_feature_named_like_a_reference_column_is_refused(clash: str) -> None:
    pipeline, X, y = fitted("classification")
    with pytest.raises(ValueError, match=clash):
        build_reference(pipeline, X.assign(**{clash: 1.0}), y, target="y", task="classification")


def test_lengths_must_match() -> None:
    pipeline, X, y = fitted("classification")
    with pytest.raises(ValueError, match="90 rows but y has 89"):
        build_reference(pipeline, X, y.iloc[1:], target="y", task="classification")
