"""Feature specs, inference from dtypes, and the typed feature frame."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.spec import FeatureSpec
from pipelines.schema import dataset_frame, infer_features, prepare_features
from pipelines.validation import DataValidationError
from tests.pipelines.conftest import SPEC, make_frame


def test_columns_are_numeric_then_categorical() -> None:
    assert FeatureSpec(numeric=["b", "a"], categorical=("c",)).columns == ("b", "a", "c")


@given(
    st.lists(st.text(min_size=1, max_size=8), max_size=6, unique=True).flatmap(
        lambda names: st.integers(0, len(names)).map(lambda k: (names[:k], names[k:]))
    )
)
def test_spec_round_trips_through_json(split: tuple[list[str], list[str]]) -> None:
    spec = FeatureSpec(numeric=tuple(split[0]), categorical=tuple(split[1]))
    assert FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize(
    ("numeric", "categorical"),
    [(("a", "a"), ()), (("a",), ("a",))],
    ids=["repeated", "both kinds"],
)
def test_spec_rejects_a_column_listed_twice(
    numeric: tuple[str, ...], categorical: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match="'a'"):
        FeatureSpec(numeric=numeric, categorical=categorical)


def test_spec_rejects_a_bare_string() -> None:
    with pytest.raises(TypeError, match="not a string"):
        FeatureSpec(numeric="age", categorical=())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "numeric", "categorical"),
    [
        ({}, ("age", "income"), ("city", "plan")),
        ({"drop": ("income",)}, ("age",), ("city", "plan")),
        ({"numeric": ["age"]}, ("age",), ("income", "city", "plan")),
        ({"categorical": ["plan"]}, ("age", "income"), ("plan",)),
        ({"categorical": ["city", "plan"], "numeric": []}, (), ("city", "plan")),
        ({"numeric": ["income"], "categorical": ["city"]}, ("income",), ("city",)),
    ],
    ids=[
        "inferred",
        "drop",
        "numeric given",
        "categorical given",
        "empty numeric given",
        "both given",
    ],
)
def test_infer_features(
    kwargs: dict, numeric: tuple[str, ...], categorical: tuple[str, ...]
) -> None:
    frame = make_frame(20)
    if "categorical" in kwargs and kwargs["categorical"] == ["plan"]:
        frame = frame.drop(columns=["city"])
    spec = infer_features(frame, target="y", id_column="id", time_column="year", **kwargs)
    assert spec == FeatureSpec(numeric=numeric, categorical=categorical)


def test_infer_treats_bool_as_numeric_and_text_as_categorical() -> None:
    frame = pd.DataFrame(
        {
            "flag": [True, False],
            "name": ["a", "b"],
            "s": pd.array(["x", None], "string"),
            "y": [0, 1],
        }
    )
    assert infer_features(frame, target="y") == FeatureSpec(
        numeric=("flag",), categorical=("name", "s")
    )


def test_infer_names_columns_it_cannot_use() -> None:
    frame = pd.DataFrame(
        {"when": pd.to_datetime(["2020-01-01", "2021-01-01"]), "x": [1, 2], "y": [0, 1]}
    )
    with pytest.raises(DataValidationError, match="'when'.*datetime64.*time_column"):
        infer_features(frame, target="y")


def test_infer_with_categorical_given_rejects_leftover_text() -> None:
    frame = pd.DataFrame({"a": ["x", "y"], "b": ["u", "v"], "n": [1.0, 2.0], "y": [0, 1]})
    with pytest.raises(DataValidationError, match="'b'.*features.categorical"):
        infer_features(frame, target="y", categorical=["a"])


def test_infer_refuses_when_no_feature_remains() -> None:
    with pytest.raises(DataValidationError, match="no feature columns"):
        infer_features(pd.DataFrame({"id": [1], "y": [0]}), target="y", id_column="id")


def test_prepare_types_numbers_as_float_and_categories_as_strings() -> None:
    frame = pd.DataFrame(
        {
            "age": pd.array([30, None, 50], dtype="Int64"),
            "income": ["1.5", "2", None],
            "city": pd.Categorical([16, 3, None]),
            "plan": [1.0, np.nan, 2.0],
            "extra": [1, 2, 3],
        },
        index=[10, 11, 12],
    )
    out = prepare_features(frame, SPEC)
    assert list(out.columns) == ["age", "income", "city", "plan"]
    assert list(out.index) == [10, 11, 12]
    assert out["age"].dtype == np.float64 and out["income"].dtype == np.float64
    assert out["income"].tolist()[:2] == [1.5, 2.0] and np.isnan(out.loc[12, "income"])
    assert out["city"].dtype == object and out["plan"].dtype == object
    assert out["city"].tolist()[:2] == ["16", "3"] and pd.isna(out.loc[12, "city"])
    assert out["plan"].tolist()[0] == "1" and pd.isna(out.loc[11, "plan"])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2], ["1", "2"]),
        ([1.0, 2.5], ["1", "2.5"]),
        (["1", "x"], ["1", "x"]),
        ([True, False], ["True", "False"]),
        (pd.array(["a", None], dtype="string"), ["a", None]),
        ([None, "b"], [None, "b"]),
        (pd.array([7, None], dtype="Int64"), ["7", None]),
    ],
)
def test_categorical_values_become_strings_and_missing_stays_missing(
    values: list, expected: list
) -> None:
    spec = FeatureSpec(numeric=(), categorical=("c",))
    out = prepare_features(pd.DataFrame({"c": values}), spec)["c"]
    assert [None if pd.isna(v) else v for v in out] == expected
    assert all(isinstance(v, str) for v in out.dropna())


def test_prepare_does_not_modify_its_input() -> None:
    frame = make_frame(10)
    before = frame.copy()
    prepare_features(frame, SPEC)
    pd.testing.assert_frame_equal(frame, before)


def test_prepare_lists_every_missing_and_non_numeric_column() -> None:
    frame = pd.DataFrame(
        {"age": ["1", "old", "x"], "income": [1.0, np.inf, 2.0], "plan": ["a", "b", "c"]}
    )
    with pytest.raises(DataValidationError) as err:
        prepare_features(frame, SPEC)
    found = {(p.column, p.rows) for p in err.value.problems}
    assert found == {("city", ()), ("age", (1, 2)), ("income", (1,))}
    assert "(3 problems)" in str(err.value)


def test_prepare_names_a_repeated_column() -> None:
    frame = pd.DataFrame([[1.0, 2.0, "a", "b"]], columns=["age", "age", "city", "plan"]).assign(
        income=1.0
    )
    with pytest.raises(DataValidationError, match="'age': column name appears more than once"):
        prepare_features(frame, SPEC)


@pytest.mark.parametrize(
    ("labels", "dtype"),
    [
        (np.array([0, 1, 1], dtype=np.int64), "float64"),
        (pd.Series([3, 1, 2], dtype="int32", index=[7, 8, 9]), "float64"),
        (np.array([0.5, 1.5, 2.5]), "float64"),
        (np.array(["no", "yes", "no"], dtype=object), "object"),
        (np.array([True, False, True]), "bool"),
    ],
)
def test_dataset_frame_declares_an_integer_target_double(labels: object, dtype: str) -> None:
    X = pd.DataFrame({"age": [30.0, 41.0, np.nan]}, index=[4, 5, 6])
    out = dataset_frame(X, labels, "y")
    assert str(out["y"].dtype) == dtype
    assert out["y"].tolist() == list(np.asarray(labels))  # same values, in row order
    assert list(out.index) == [4, 5, 6] and list(X.columns) == ["age"]  # the input is kept
