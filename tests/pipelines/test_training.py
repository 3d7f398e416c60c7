"""Pipelines, holdout splits and the cross-validated search over candidate families."""

from __future__ import annotations

import json
import typing

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.base import is_classifier, is_regressor
from sklearn.pipeline import Pipeline

from core import spec as core_spec
from core.config import Family
from core.spec import FeatureSpec
from pipelines.schema import prepare_features
from pipelines.training import (
    FAMILIES,
    NATIVE_SKOPS_TYPES,
    TRUSTED_SKOPS_TYPES,
    ModelSpecError,
    build_pipeline,
    families_for,
    split_holdout,
    train_model,
)
from pipelines.validation import DataValidationError
from tests.pipelines.conftest import SPEC, make_frame

FAST = {"hist_gradient_boosting": {"max_iter": 20}, "random_forest": {"n_estimators": 10}}
FAMILY_TASKS = [(f, t) for f, tasks in FAMILIES.items() for t in tasks]


def xy(frame: pd.DataFrame, spec: FeatureSpec = SPEC) -> tuple[pd.DataFrame, pd.Series]:
    return prepare_features(frame, spec), frame["y"]


@pytest.mark.parametrize(("family", "task"), FAMILY_TASKS)
def test_every_family_fits_and_handles_unseen_categories_and_missing_values(
    family: str, task: str
) -> None:
    X, y = xy(make_frame(120, task=task))
    pipeline = build_pipeline(SPEC, task=task, family=family, params=FAST.get(family), seed=1).fit(
        X, y
    )

    assert list(pipeline.named_steps) == ["preprocess", "model"]
    assert is_classifier(pipeline) if task == "classification" else is_regressor(pipeline)
    odd = pd.DataFrame(
        {
            "age": [np.nan, 30.0],
            "income": [40.0, np.nan],
            "city": ["tokyo", np.nan],
            "plan": [np.nan, "zzz"],
        }
    )
    predictions = pipeline.predict(odd)
    assert len(predictions) == 2
    if task == "classification":
        proba = pipeline.predict_proba(odd)
        assert np.allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("family", "task"), [("logistic", "regression"), ("linear", "classification")]
)
def test_a_family_that_does_not_fit_the_task_is_refused(family: str, task: str) -> None:
    with pytest.raises(ModelSpecError, match=f"{family}.*does not fit task '{task}'"):
        build_pipeline(SPEC, task=task, family=family)


def test_unknown_family_and_parameter_are_named() -> None:
    with pytest.raises(ModelSpecError, match="unknown model family 'xgboost'"):
        build_pipeline(SPEC, task="classification", family="xgboost")
    with pytest.raises(ModelSpecError, match=r"unknown parameter\(s\) \['gamma'\].*'C'"):
        build_pipeline(SPEC, task="classification", family="logistic", params={"gamma": 1})


def test_params_accept_plain_and_pipeline_names() -> None:
    pipeline = build_pipeline(
        SPEC,
        task="classification",
        family="logistic",
        params={"C": 0.5, "model__tol": 1e-3, "preprocess__cat__encode__min_frequency": 2},
    )
    assert pipeline.get_params()["model__C"] == 0.5
    assert pipeline.get_params()["model__tol"] == 1e-3
    assert pipeline.get_params()["preprocess__cat__encode__min_frequency"] == 2


def test_a_spec_with_only_one_kind_of_feature_builds() -> None:
    frame = make_frame(60)
    for spec in (
        FeatureSpec(numeric=("age",), categorical=()),
        FeatureSpec(numeric=(), categorical=("city",)),
    ):
        build_pipeline(spec, task="classification", family="logistic").fit(
            prepare_features(frame, spec), frame["y"]
        )
    with pytest.raises(ModelSpecError, match="no columns"):
        build_pipeline(
            FeatureSpec(numeric=(), categorical=()), task="classification", family="logistic"
        )


def test_the_families_built_are_the_families_the_config_accepts() -> None:
    assert {f: tuple(tasks) for f, tasks in FAMILIES.items()} == core_spec.FAMILY_TASKS
    assert set(typing.get_args(Family)) == set(core_spec.FAMILY_TASKS)


def test_families_for_each_task() -> None:
    assert families_for("classification") == ["logistic", "random_forest", "hist_gradient_boosting"]
    assert families_for("regression") == ["linear", "random_forest", "hist_gradient_boosting"]


#: The skops types registration and loading trust, less those only native categories need.
FLOW_TRUSTED_TYPES = TRUSTED_SKOPS_TYPES - set(NATIVE_SKOPS_TYPES)


@pytest.mark.parametrize(
    ("family", "task", "native"),
    [(f, t, False) for f, t in FAMILY_TASKS]
    + [("hist_gradient_boosting", t, True) for t in ("classification", "regression")],
)
def test_fitted_pipelines_round_trip_through_skops(family: str, task: str, native: bool) -> None:
    """MLflow's skops format can store and reload every family with the types the flow trusts."""
    X, y = xy(make_frame(80, task=task))
    pipeline = build_pipeline(
        SPEC, task=task, family=family, params=FAST.get(family), native_categorical=native
    ).fit(X, y)
    data = skops.io.dumps(pipeline)
    untrusted = set(skops.io.get_untrusted_types(data=data))
    allowed = FLOW_TRUSTED_TYPES | (set(NATIVE_SKOPS_TYPES) if native else set())
    assert untrusted <= allowed, untrusted - allowed
    loaded = skops.io.loads(data, trusted=sorted(untrusted))
    np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_native_categorical_boosting_handles_unseen_and_missing_categories(task: str) -> None:
    X, y = xy(make_frame(150, task=task))
    pipeline = build_pipeline(
        SPEC,
        task=task,
        family="hist_gradient_boosting",
        params={"max_iter": 20},
        native_categorical=True,
    ).fit(X, y)
    assert pipeline.named_steps["model"].is_categorical_.tolist() == [False, False, True, True]
    odd = pd.DataFrame(
        {
            "age": [50.0, 50.0],
            "income": [50.0, 50.0],
            "city": ["tokyo", np.nan],
            "plan": ["a", "zzz"],
        }
    )
    assert np.isfinite(pipeline.predict(odd).astype(float)).all()
    assert (
        build_pipeline(
            SPEC,
            task=task,
            family="linear" if task == "regression" else "logistic",
            native_categorical=True,
        )
        .get_params()["preprocess__cat__encode"]
        .__class__.__name__
        == "OneHotEncoder"
    )


# --- split_holdout ---------------------------------------------------------------------------


def test_random_split_is_stratified_reproducible_and_keeps_rows() -> None:
    frame = make_frame(100).assign(y=[0] * 80 + [1] * 20)
    train, holdout = split_holdout(frame, target="y", task="classification", test_size=0.2, seed=3)
    again = split_holdout(frame, target="y", task="classification", test_size=0.2, seed=3)

    assert len(holdout) == 20 and len(train) == 80
    assert holdout["y"].sum() == 4  # the 20% minority share, exactly
    assert sorted([*train.index, *holdout.index]) == list(range(100))
    pd.testing.assert_frame_equal(holdout, again[1])


def test_time_split_holds_out_the_latest_rows() -> None:
    frame = make_frame(40).assign(year=np.tile([2022, 2019, 2021, 2020], 10))
    train, holdout = split_holdout(
        frame, target="y", task="classification", test_size=0.25, seed=0, time_column="year"
    )
    assert set(holdout["year"]) == {2022} and len(holdout) == 10
    assert train["year"].max() == 2021
    assert list(holdout.index) == sorted(holdout.index)


def test_time_split_ties_go_by_original_order() -> None:
    frame = pd.DataFrame({"t": [1, 2, 2, 2, 1], "y": [0, 1, 0, 1, 0]})
    train, holdout = split_holdout(
        frame, target="y", task="classification", test_size=0.4, seed=0, time_column="t"
    )
    assert list(holdout.index) == [2, 3]


def test_single_time_value_falls_back_to_a_stratified_random_split() -> None:
    frame = make_frame(100).assign(year=2015, y=[0] * 70 + [1] * 30)
    train, holdout = split_holdout(
        frame, target="y", task="classification", test_size=0.2, seed=0, time_column="year"
    )
    assert len(holdout) == 20 and holdout["y"].sum() == 6
    assert holdout.index.max() > 80 > holdout.index.min()  # drawn from everywhere, not the tail


def test_a_holdout_too_small_for_the_classes_is_refused() -> None:
    frame = make_frame(12, classes=3).assign(y=[0, 1, 2] * 4)
    with pytest.raises(DataValidationError, match="cannot hold all 3 classes"):
        split_holdout(frame, target="y", task="classification", test_size=0.1, seed=0)


def test_regression_split() -> None:
    frame = make_frame(50, task="regression")
    train, holdout = split_holdout(frame, target="y", task="regression", test_size=0.2, seed=0)
    assert (len(train), len(holdout)) == (40, 10)


# --- train_model -----------------------------------------------------------------------------


def search(X: pd.DataFrame, y: pd.Series, candidates: list[dict], **kwargs: object):
    options = {
        "spec": SPEC,
        "task": "classification",
        "cv_folds": 3,
        "search_iterations": 2,
        "seed": 5,
    }
    return train_model(X, y, candidates=candidates, **{**options, **kwargs})


def test_training_is_deterministic() -> None:
    X, y = xy(make_frame(200))
    candidates = [
        {"family": "logistic", "search": {"C": [0.01, 0.1, 1.0, 10.0]}},
        {
            "family": "random_forest",
            "search": {"max_depth": [3, 5, None]},
            "params": {"n_estimators": 15},
        },
    ]
    first, second = search(X, y, candidates), search(X, y, candidates)

    np.testing.assert_array_equal(first.pipeline.predict_proba(X), second.pipeline.predict_proba(X))
    assert (first.family, first.params, first.cv_score) == (
        second.family,
        second.params,
        second.cv_score,
    )
    pd.testing.assert_frame_equal(
        first.candidates.drop(columns=["fit_seconds", "search_seconds"]),
        second.candidates.drop(columns=["fit_seconds", "search_seconds"]),
    )


def xor_frame(n: int = 240) -> pd.DataFrame:
    """The label is city XOR plan: no additive (logistic) model can learn it, trees can."""
    rng = np.random.default_rng(0)
    city = rng.choice(["paris", "lyon"], n)
    plan = rng.choice(["a", "b"], n)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.normal(50, 5, n),
            "city": city,
            "plan": plan,
            "y": ((city == "paris") ^ (plan == "a")).astype(int),
        }
    )


@pytest.mark.parametrize("order", [1, -1], ids=["logistic first", "forest first"])
def test_the_family_with_the_best_cv_score_wins(order: int) -> None:
    X, y = xy(xor_frame())
    candidates = [
        {"family": "logistic", "search": {"C": [0.1, 1.0]}},
        {"family": "random_forest", "params": {"n_estimators": 20, "max_depth": 4}},
    ][::order]

    result = search(X, y, candidates)

    assert result.family == "random_forest"
    table = result.candidates.set_index("family")
    assert list(result.candidates["family"]) == [c["family"] for c in candidates]
    assert table.loc["random_forest", "cv_score"] > 0.95 > 0.7 > table.loc["logistic", "cv_score"]
    assert table["selected"].to_dict() == {"logistic": False, "random_forest": True}
    assert json.loads(table.loc["random_forest", "params"]) == {"max_depth": 4, "n_estimators": 20}
    assert result.params == {"n_estimators": 20, "max_depth": 4}
    assert (
        result.cv_score == table.loc["random_forest", "cv_score"] and result.cv_metric == "roc_auc"
    )
    assert set(result.candidates.columns) >= {
        "family",
        "params",
        "cv_score",
        "cv_std",
        "fit_seconds",
    }


def test_small_grid_is_exhaustive_and_large_grid_is_sampled() -> None:
    X, y = xy(make_frame(150))
    small = search(
        X, y, [{"family": "logistic", "search": {"C": [0.001, 1.0]}}], search_iterations=2
    )
    assert small.params == {"C": 1.0}  # the exhaustive search saw the better value
    grid = {"C": [0.01, 0.1, 1.0, 10.0], "tol": [1e-4, 1e-3]}
    sampled = search(X, y, [{"family": "logistic", "search": grid}], search_iterations=3, seed=1)
    assert sampled.params["C"] in grid["C"] and sampled.params["tol"] in grid["tol"]


@pytest.mark.parametrize(
    ("metric", "sign"),
    [("roc_auc", 1), ("log_loss", 1), ("accuracy", 1), ("f1", 1), ("brier", 1)],
)
def test_cv_score_is_reported_in_the_metric_units(metric: str, sign: int) -> None:
    X, y = xy(make_frame(150))
    result = search(X, y, [{"family": "logistic"}], cv_metric=metric)
    assert result.cv_metric == metric
    assert 0.0 < result.cv_score * sign < 1.0


def test_multiclass_with_string_labels() -> None:
    frame = make_frame(240, classes=3)
    frame["y"] = frame["y"].map({0: "low", 1: "mid", 2: "high"})
    X, y = xy(frame)
    for metric in ("roc_auc", "f1", "brier", "log_loss"):
        result = search(
            X,
            y,
            [{"family": "logistic"}, {"family": "random_forest", "params": {"n_estimators": 10}}],
            cv_metric=metric,
        )
        assert list(result.pipeline.classes_) == ["high", "low", "mid"]
        assert set(result.pipeline.predict(X)) <= {"high", "low", "mid"}
        assert np.isfinite(result.cv_score)


def test_binary_string_labels_use_the_larger_label_as_positive() -> None:
    frame = make_frame(150)
    frame["y"] = frame["y"].map({0: "no", 1: "yes"})
    X, y = xy(frame)
    for metric in ("f1", "brier", "roc_auc"):
        assert np.isfinite(search(X, y, [{"family": "logistic"}], cv_metric=metric).cv_score)


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
def test_regression(metric: str) -> None:
    X, y = xy(make_frame(150, task="regression"))
    result = search(
        X,
        y,
        [
            {"family": "linear", "search": {"alpha": [0.1, 10.0]}},
            {"family": "random_forest", "params": {"n_estimators": 10}},
        ],
        task="regression",
        cv_metric=metric,
    )
    assert result.cv_metric == metric
    assert (result.cv_score > 0.5) if metric == "r2" else (0 < result.cv_score < 3)
    assert result.family == "linear"  # the target is linear in age and city


def test_time_order_sorts_rows_and_uses_time_series_folds() -> None:
    frame = make_frame(160)
    X, y = xy(frame)
    order = np.arange(160)[::-1]
    result = search(X, y, [{"family": "logistic"}], time_order=order)
    assert 0.5 < result.cv_score <= 1.0


def test_search_subsample_uses_all_rows_for_the_refit() -> None:
    X, y = xy(make_frame(300))
    full = search(X, y, [{"family": "logistic", "search": {"C": [1.0]}}])
    sub = search(X, y, [{"family": "logistic", "search": {"C": [1.0]}}], max_search_rows=90)
    assert sub.cv_score != full.cv_score  # the search saw fewer rows
    np.testing.assert_allclose(sub.pipeline.predict_proba(X), full.pipeline.predict_proba(X))


def test_x_and_y_are_matched_by_position() -> None:
    frame = make_frame(150)
    X, y = xy(frame)
    shuffled_index = X.set_axis(np.random.default_rng(0).permutation(150) + 1000)
    a = search(X, y, [{"family": "logistic"}])
    b = search(shuffled_index, y.reset_index(drop=True), [{"family": "logistic"}])
    np.testing.assert_allclose(a.pipeline.predict_proba(X), b.pipeline.predict_proba(X))


@pytest.mark.parametrize(
    ("candidates", "kwargs", "message"),
    [
        ([], {}, "no candidate"),
        ([{"family": "linear"}], {}, "does not fit task 'classification'"),
        (
            [{"family": "logistic", "search": {"alpha": [1]}}],
            {},
            r"unknown parameter\(s\) \['alpha'\]",
        ),
        ([{"family": "logistic", "search": {"C": []}}], {}, r"\['C'\].*empty"),
        (
            [{"family": "logistic"}],
            {"cv_metric": "rmse"},
            "'rmse' does not fit task 'classification'",
        ),
        ([{"family": "logistic"}], {"cv_folds": 1}, "cv_folds must be at least 2"),
    ],
)
def test_bad_search_settings_are_named(candidates: list, kwargs: dict, message: str) -> None:
    X, y = xy(make_frame(60))
    with pytest.raises(ModelSpecError, match=message):
        search(X, y, candidates, **kwargs)


def test_a_class_smaller_than_the_folds_is_refused_with_the_fix() -> None:
    frame = make_frame(60).assign(y=[0] * 58 + [1] * 2)
    with pytest.raises(ModelSpecError, match=r"\[1\].*cv_folds=3"):
        search(*xy(frame), [{"family": "logistic"}])


def test_pipeline_is_a_single_sklearn_pipeline() -> None:
    result = search(*xy(make_frame(90)), [{"family": "logistic"}])
    assert isinstance(result.pipeline, Pipeline)
    assert result.pipeline.named_steps["preprocess"].feature_names_in_.tolist() == list(
        SPEC.columns
    )
