"""Training-data validation: every problem named, all reported at once, warnings kept apart."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.spec import FeatureSpec
from pipelines.schema import prepare_features
from pipelines.validation import (
    DataValidationError,
    Problem,
    ValidationReport,
    validate_training_data,
)
from tests.pipelines.conftest import SPEC, make_frame


def run(
    frame: pd.DataFrame,
    *,
    task: str = "classification",
    min_rows: int = 10,
    spec: FeatureSpec = SPEC,
) -> ValidationReport:
    return validate_training_data(
        frame,
        spec=spec,
        target="y",
        task=task,
        min_rows=min_rows,
        id_column="id",
        time_column="year",
    )


def test_clean_data_passes_without_warnings() -> None:
    report = run(make_frame(40))
    assert report == ValidationReport(rows=40, warnings=())


def _set(column: str, rows: list[int], value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame[column] = frame[column].astype(object)
        for row in rows:
            frame.loc[row, column] = value
        return frame

    return edit


CASES: list[
    tuple[str, Callable[[pd.DataFrame], pd.DataFrame], str, str | None, tuple[int, ...]]
] = [
    ("empty", lambda f: f.iloc[:0], "no rows", None, ()),
    ("too few rows", lambda f: f.iloc[:5], "fewer than min_rows=10", None, ()),
    (
        "missing feature",
        lambda f: f.drop(columns=["city"]),
        "feature column is missing",
        "city",
        (),
    ),
    ("missing target", lambda f: f.drop(columns=["y"]), "target column is missing", "y", ()),
    ("missing id", lambda f: f.drop(columns=["id"]), "id column is missing", "id", ()),
    ("missing time", lambda f: f.drop(columns=["year"]), "time column is missing", "year", ()),
    ("unlabelled rows", _set("y", [3, 7], None), "2 missing value(s)", "y", (3, 7)),
    ("one class", lambda f: f.assign(y=1), "1 class(es)", "y", ()),
    ("singleton class", _set("y", [4], 2), "single row (2)", "y", ()),
    (
        "continuous target",
        lambda f: f.assign(y=np.linspace(0, 1, len(f))),
        "looks continuous",
        "y",
        (),
    ),
    ("mixed label types", _set("y", [0, 1], "one"), "mixes label types", "y", ()),
    (
        "text in numeric",
        _set("age", [2, 5], "old"),
        "2 value(s) that are not numbers",
        "age",
        (2, 5),
    ),
    ("infinite numeric", _set("income", [6], np.inf), "infinite", "income", (6,)),
    (
        "huge numeric",
        _set("income", [3, 4], 1.797e308),
        "larger in magnitude than 1e+150",
        "income",
        (3, 4),
    ),
    ("all missing feature", lambda f: f.assign(plan=None), "missing in every row", "plan", ()),
    ("duplicate ids", _set("id", [8, 9], 0), "2 duplicate id(s)", "id", (8, 9)),
    ("missing ids", _set("id", [1], None), "id column has 1 missing", "id", (1,)),
    ("missing times", _set("year", [2], None), "time column has 1 missing", "year", (2,)),
    ("unorderable times", _set("year", [2], "soon"), "cannot be ordered", "year", ()),
]


@pytest.mark.parametrize(
    ("edit", "phrase", "column", "rows"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_failure_is_named(
    edit: Callable[[pd.DataFrame], pd.DataFrame],
    phrase: str,
    column: str | None,
    rows: tuple[int, ...],
) -> None:
    with pytest.raises(DataValidationError) as err:
        run(edit(make_frame(40)))
    matching = [p for p in err.value.problems if phrase in p.problem]
    assert matching, err.value.problems
    assert matching[0].column == column
    assert matching[0].rows == rows
    assert phrase in str(err.value)


@pytest.mark.parametrize(
    ("values", "phrase"),
    [
        (["a", "b"] * 20, "must be numeric"),
        ([1.0, np.inf] * 20, "infinite"),
        ([1.0, -1e200] * 20, "larger in magnitude"),
        ([True, False] * 20, "must be numeric"),
    ],
)
def test_regression_target_must_be_numbers(values: list, phrase: str) -> None:
    with pytest.raises(DataValidationError, match=phrase):
        run(make_frame(40, task="regression").assign(y=values), task="regression")


def test_regression_accepts_a_continuous_target() -> None:
    assert run(make_frame(40, task="regression"), task="regression").rows == 40


def test_all_problems_are_reported_at_once() -> None:
    frame = make_frame(40).drop(columns=["city"])
    frame["y"] = frame["y"].astype(object)
    frame.loc[[0, 1], "y"] = None
    frame["age"] = frame["age"].astype(object)
    frame.loc[5, "age"] = "n/a"
    frame.loc[3, "id"] = 2

    with pytest.raises(DataValidationError) as err:
        run(frame)

    message = str(err.value)
    assert message.startswith("training data failed validation (4 problems):\n  - ")
    assert [p.column for p in err.value.problems] == ["city", "y", "id", "age"]
    for line in (
        "column 'city': feature",
        "column 'y': target has 2 missing",
        "(e.g. rows 0, 1)",
        "column 'id'",
        "'age'",
    ):
        assert line in message


def test_feature_listed_as_target_is_an_error() -> None:
    spec = FeatureSpec(numeric=("age", "y"), categorical=())
    with pytest.raises(DataValidationError, match="target is also listed as a feature"):
        run(make_frame(40), spec=spec)


def test_duplicate_column_names_are_an_error() -> None:
    frame = make_frame(40)
    frame.columns = ["id", "age", "age", "city", "plan", "year", "y"]
    with pytest.raises(DataValidationError, match="'age'.*more than once"):
        run(frame)


def test_duplicates_constant_and_mostly_missing_columns_are_warnings() -> None:
    frame = make_frame(40).assign(plan="a", age=np.arange(40.0))
    frame.loc[frame.index[:30], "income"] = np.nan
    frame = pd.concat([frame, frame.iloc[[0, 1]].assign(id=[100, 101])], ignore_index=True)

    report = run(frame)

    assert report.rows == 42
    by_column = {w.column: w for w in report.warnings}
    assert set(by_column) == {"plan", None, "income"}
    assert "constant" in by_column["plan"].problem
    assert "76% of values are missing" in by_column["income"].problem
    assert by_column[None].rows == (40, 41)
    assert "2 row(s) repeat" in by_column[None].problem


def test_rows_are_positions_and_at_most_five() -> None:
    frame = make_frame(40)
    frame.index = frame.index + 1000
    frame["age"] = frame["age"].astype(object)
    frame.loc[frame.index[10:20], "age"] = "?"
    with pytest.raises(DataValidationError) as err:
        run(frame)
    assert err.value.problems == [
        Problem("age", err.value.problems[0].problem, (10, 11, 12, 13, 14))
    ]


def test_the_input_is_not_modified() -> None:
    frame = make_frame(40)
    before = frame.copy()
    run(frame)
    pd.testing.assert_frame_equal(frame, before)


_cells = st.one_of(
    st.none(),
    st.just(np.nan),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(["a", "b", "1.5", "", "x y"]),
    st.text(max_size=3),
)


@st.composite
def malformed_frames(draw: st.DrawFn) -> pd.DataFrame:
    """Frames with some of the expected columns, each of a random kind of values (mixed or not)."""
    n = draw(st.integers(0, 14))
    columns = draw(
        st.lists(
            st.sampled_from(["id", "age", "income", "city", "plan", "year", "y", "junk"]),
            unique=True,
        )
    )
    frame = {}
    for column in columns:
        kind = draw(st.sampled_from(["cells", "ints", "floats", "text", "category"]))
        if kind == "cells":
            values = draw(st.lists(_cells, min_size=n, max_size=n))
            frame[column] = pd.Series(values, dtype=object)
        elif kind == "ints":
            frame[column] = pd.Series(
                draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype="int64"
            )
        elif kind == "floats":
            frame[column] = pd.Series(
                draw(st.lists(st.floats(), min_size=n, max_size=n)), dtype=float
            )
        elif kind == "text":
            frame[column] = pd.Series(
                draw(st.lists(st.sampled_from(["a", "b", None]), min_size=n, max_size=n)),
                dtype=object,
            )
        else:
            frame[column] = pd.Categorical(
                draw(st.lists(st.sampled_from(["p", "q", None]), min_size=n, max_size=n))
            )
    return pd.DataFrame(frame, index=range(n))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frame=malformed_frames(),
    task=st.sampled_from(["classification", "regression"]),
    min_rows=st.integers(1, 6),
)
def test_random_frames_pass_or_raise_data_validation_error(
    frame: pd.DataFrame, task: str, min_rows: int
) -> None:
    try:
        report = run(frame, task=task, min_rows=min_rows)
    except DataValidationError as err:
        assert err.problems and all(isinstance(p, Problem) for p in err.problems)
        assert len(str(err).splitlines()) == len(err.problems) + 1
        return
    assert report.rows == len(frame) >= min_rows
    prepared = prepare_features(frame, SPEC)  # what passed validation can be typed for the model
    assert list(prepared.columns) == list(SPEC.columns)


@st.composite
def valid_frames(draw: st.DrawFn) -> pd.DataFrame:
    """Well-formed frames with random missing feature values and odd (but valid) value types."""
    n = draw(st.integers(12, 40))
    frame = make_frame(n, seed=draw(st.integers(0, 1000)))
    frame["y"] = [0, 1] * (n // 2) + [0] * (n % 2)
    for column in SPEC.columns:
        holes = draw(st.lists(st.integers(0, n - 1), max_size=n // 2, unique=True))
        frame[column] = frame[column].astype(object)
        frame.loc[holes, column] = draw(st.sampled_from([None, np.nan, pd.NA]))
    frame["plan"] = frame["plan"].map(draw(st.sampled_from([str, lambda v: v])), na_action="ignore")
    if draw(st.booleans()):
        frame["age"] = frame["age"].map(lambda v: str(v), na_action="ignore")  # numbers as text
    return frame


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=valid_frames())
def test_data_that_passes_validation_trains_and_predicts(frame: pd.DataFrame) -> None:
    from pipelines.training import build_pipeline

    report = run(frame)
    assert report.rows == len(frame)
    X = prepare_features(frame, SPEC)
    pipeline = build_pipeline(SPEC, task="classification", family="logistic").fit(X, frame["y"])
    assert pipeline.predict_proba(X).shape == (len(frame), 2)


def test_usable_numbers_marks_rows_training_can_use() -> None:
    from pipelines.validation import usable_numbers

    frame = pd.DataFrame(
        {"a": [1.0, np.nan, 1e151, 2.0], "b": [1.0, 2.0, 3.0, -np.inf], "c": ["x"] * 4}
    )
    assert usable_numbers(frame, ["a", "b"]).tolist() == [True, True, False, False]
    assert usable_numbers(frame, []).all()
