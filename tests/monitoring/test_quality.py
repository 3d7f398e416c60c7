"""Data quality of a window: schema, missing values, new categories, out-of-range values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.config_monitoring import QualityConfig
from monitoring.quality import compute_quality

NUM = ["age"]
CAT = ["job"]


@pytest.fixture
def reference() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": np.linspace(18, 80, 200),
            "job": ["a", "b", "c", "d"] * 50,
            "employed": [0, 1] * 100,
        }
    )


def kinds(result) -> set[tuple[str, str | None]]:
    return {(i.kind, i.column) for i in result.issues}


def test_a_clean_window_passes(reference: pd.DataFrame) -> None:
    current = reference.sample(100, random_state=0)
    result = compute_quality(reference=reference, current=current, numeric=NUM, categorical=CAT)
    assert result.passed and result.issues == ()
    assert [c.column for c in result.columns] == ["age", "job"]
    assert result.columns[0].out_of_range_share == 0.0


def test_missing_feature_column_is_an_error(reference: pd.DataFrame) -> None:
    result = compute_quality(
        reference=reference, current=reference.drop(columns=["job"]), numeric=NUM, categorical=CAT
    )
    assert not result.passed
    assert kinds(result) == {("missing_column", "job")}
    assert "'job'" in result.issues[0].message


def test_unexpected_column_is_a_warning_only_when_extras_are_declared(
    reference: pd.DataFrame,
) -> None:
    current = reference.assign(debug=1)
    quiet = compute_quality(reference=reference, current=current, numeric=NUM, categorical=CAT)
    assert quiet.issues == ()
    loud = compute_quality(
        reference=reference,
        current=current,
        numeric=NUM,
        categorical=CAT,
        allowed_extra=["employed"],
    )
    assert kinds(loud) == {("unexpected_column", "debug")} and loud.passed


def test_numeric_column_turned_to_text_is_a_dtype_error(reference: pd.DataFrame) -> None:
    current = reference.assign(age=reference["age"].astype(str))
    result = compute_quality(reference=reference, current=current, numeric=NUM, categorical=CAT)
    assert ("dtype_changed", "age") in kinds(result) and not result.passed


def test_missing_share_above_reference_plus_tolerance(reference: pd.DataFrame) -> None:
    current = reference.copy()
    current.loc[:19, "age"] = np.nan  # 10%
    result = compute_quality(reference=reference, current=current, numeric=NUM, categorical=CAT)
    assert kinds(result) == {("missing_share", "age")}
    assert result.columns[0].missing_share == pytest.approx(0.10)
    tolerant = compute_quality(
        reference=reference,
        current=current,
        numeric=NUM,
        categorical=CAT,
        config=QualityConfig(max_missing_increase=0.2),
    )
    assert tolerant.passed


def test_new_categories_are_named(reference: pd.DataFrame) -> None:
    current = reference.copy()
    current.loc[:9, "job"] = "astronaut"
    result = compute_quality(reference=reference, current=current, numeric=NUM, categorical=CAT)
    assert kinds(result) == {("new_categories", "job")}
    assert result.columns[1].new_categories == ("astronaut",)
    assert result.columns[1].new_category_share == pytest.approx(0.05)
    assert "'astronaut'" in result.issues[0].message


def test_out_of_range_values_against_min_max_and_a_quantile_band(reference: pd.DataFrame) -> None:
    current = reference.copy()
    current.loc[:19, "age"] = 150.0  # 10% outside [18, 80]
    result = compute_quality(reference=reference, current=current, numeric=NUM, categorical=CAT)
    assert kinds(result) == {("out_of_range", "age")}
    assert result.columns[0].out_of_range_share == pytest.approx(0.10)
    # a 10% band: the reference itself has ~10% outside, so 10% + 5% is within the tolerance
    banded = compute_quality(
        reference=reference,
        current=reference,
        numeric=NUM,
        categorical=CAT,
        config=QualityConfig(range_quantiles=(0.05, 0.95)),
    )
    assert banded.passed and banded.columns[0].out_of_range_share == pytest.approx(0.10, abs=0.01)


def test_a_small_reference_range_tolerates_what_its_size_lets_through_by_chance() -> None:
    """800 reference rows that happen to miss 1.4% of their distribution's tails: a window from
    the same distribution is not flagged; the same gap in a reference 20 times larger is."""
    from scipy.stats import norm

    from monitoring.quality import chance_outside_range

    window = pd.DataFrame({"age": norm.ppf(np.linspace(1e-4, 1 - 1e-4, 5000)), "job": "a"})

    def reference_of(rows: int) -> pd.DataFrame:
        return pd.DataFrame({"age": norm.ppf(np.linspace(0.007, 0.993, rows)), "job": "a"})

    small = compute_quality(
        reference=reference_of(800), current=window, numeric=NUM, categorical=CAT
    )
    assert small.passed, small.issues
    assert small.columns[0].out_of_range_share == pytest.approx(0.014, abs=0.001)
    large = compute_quality(
        reference=reference_of(16_000), current=window, numeric=NUM, categorical=CAT
    )
    assert kinds(large) == {("out_of_range", "age")}
    assert chance_outside_range(800) == pytest.approx(0.0115, abs=0.0005)
    assert chance_outside_range(100_000) < 0.0001


def test_empty_window_fails(reference: pd.DataFrame) -> None:
    result = compute_quality(
        reference=reference, current=reference.iloc[:0], numeric=NUM, categorical=CAT
    )
    assert not result.passed and ("empty_window", None) in kinds(result)


def test_band_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="range_quantiles"):
        QualityConfig(range_quantiles=(0.9, 0.1))
