"""Partition statistics merge exactly: drift from merged partitions equals compute_drift on the
concatenated frame (hypothesis over random partitionings, empty partitions, all-NaN columns,
unseen categories, every method)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.config_monitoring import DriftConfig
from monitoring.drift import (
    ColumnDrift,
    DriftInputError,
    DriftResult,
    combine_drift,
    compute_drift,
    frame_samples,
    reference_stats,
    unadjusted_drift,
)
from monitoring.partitions import (
    ColumnGroup,
    PartitionError,
    column_groups,
    drift_from_partitions,
    merge_partitions,
    partition_stats,
    split_frame,
    split_rows,
)
from monitoring.quality import combine_quality, compute_quality

NUMERIC = ["x", "n", "gone"]
CATEGORICAL = ["k", "blank"]
#: every method, each on the columns it fits (ks and wasserstein numeric, chisquare and z categorical)
CONFIGS = [
    DriftConfig(),
    DriftConfig(method="evidently"),
    DriftConfig(method="psi"),
    DriftConfig(method="kl_div"),
    DriftConfig(method="jensenshannon"),
    DriftConfig(method="ks", per_column_method={"k": "chisquare", "blank": "z", "p": "z"}),
    DriftConfig(method="wasserstein", per_column_method={"k": "z", "blank": "chisquare", "p": "z"}),
    DriftConfig(drift_share=0.5),
]
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
messy = st.one_of(
    finite,
    st.sampled_from([0.0, -0.0, 1.5, float("nan"), float("inf"), -float("inf")]),
)
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def frame(draw, n: int, categories: list[str | None]) -> pd.DataFrame:
    """A window: a messy float column, an int column, an all-NaN float column, a categorical
    column (None is missing), an all-missing categorical column and a categorical prediction."""
    return pd.DataFrame(
        {
            "x": draw(arrays(np.float64, n, elements=messy)),
            "n": draw(arrays(np.int64, n, elements=st.integers(0, 30))),
            "gone": np.full(n, np.nan),
            "k": pd.Series(
                draw(st.lists(st.sampled_from(categories), min_size=n, max_size=n)), dtype=object
            ),
            "blank": pd.Series([None] * n, dtype=object),
            "p": pd.Series(draw(st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n))),
        }
    )


def cuts(draw, n: int) -> list[int]:
    """Random partition boundaries in [0, n], repeats allowed (empty partitions)."""
    inner = draw(st.lists(st.integers(0, n), min_size=0, max_size=6))
    return [0, *sorted(inner), n]


def partitions_of(window: pd.DataFrame, bounds: list[int]) -> list[pd.DataFrame]:
    return [window.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def assert_same(merged: DriftResult, single: DriftResult) -> None:
    assert merged.n_current == single.n_current and merged.n_reference == single.n_reference
    assert merged.drifted_features == single.drifted_features
    assert merged.dataset_drift == single.dataset_drift
    assert merged.drift_share == single.drift_share
    assert merged.share_threshold == single.share_threshold
    pairs = list(zip(merged.columns, single.columns, strict=True))
    if single.prediction is not None:
        pairs.append((merged.prediction, single.prediction))
    for a, b in pairs:
        assert_column(a, b)


def assert_column(a: ColumnDrift, b: ColumnDrift) -> None:
    assert (a.column, a.kind, a.method, a.note, a.drifted) == (
        b.column,
        b.kind,
        b.method,
        b.note,
        b.drifted,
    )
    for x, y in ((a.threshold, b.threshold), (a.score, b.score), (a.effect, b.effect)):
        if x is None or y is None:
            assert x is y
        elif math.isnan(y):
            assert math.isnan(x)
        else:
            assert math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12), (a, b)


def both(reference: pd.DataFrame, parts: list[pd.DataFrame], config: DriftConfig):
    stats = reference_stats(reference, numeric=[*NUMERIC], categorical=[*CATEGORICAL, "p"])
    kwargs = {
        "numeric": NUMERIC,
        "categorical": CATEGORICAL,
        "config": config,
        "prediction": "p",
        "prediction_kind": "categorical",
    }
    summaries = [
        partition_stats(part, numeric=NUMERIC, categorical=[*CATEGORICAL, "p"]) for part in parts
    ]
    merged = drift_from_partitions(reference_stats=stats, partitions=summaries, **kwargs)
    single = compute_drift(
        reference=None, current=pd.concat(parts), reference_stats=stats, **kwargs
    )
    return merged, single


@SETTINGS
@given(data=st.data(), config=st.sampled_from(CONFIGS))
def test_drift_from_any_partitioning_equals_the_single_process_engine(data, config) -> None:
    # the reference never saw "new": the window's unseen category is counted the same way
    reference = frame(data.draw, data.draw(st.integers(1, 60)), ["a", "b", "c", None])
    window = frame(data.draw, data.draw(st.integers(0, 80)), ["a", "b", "new", None])
    parts = partitions_of(window, cuts(data.draw, len(window)))
    merged, single = both(reference, parts, config)
    assert_same(merged, single)


@settings(max_examples=5, deadline=None)
@given(data=st.data(), config=st.sampled_from(CONFIGS[:3]))
def test_large_windows_asymptotic_ks_and_evidently_large_reference(data, config) -> None:
    # above 10,000 rows KS is asymptotic (merged samples scanned by blocks); above 1,000
    # reference rows Evidently picks Wasserstein / Jensen-Shannon
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))

    def big(n: int, shift: float) -> pd.DataFrame:
        out = pd.DataFrame(
            {
                "x": rng.normal(shift, 1, n).round(2),
                "n": rng.integers(0, 50, n),
                "gone": np.full(n, np.nan),
                "k": pd.Series(rng.choice(["a", "b", "c"], n), dtype=object),
                "blank": pd.Series([None] * n, dtype=object),
                "p": pd.Series(rng.integers(0, 2, n)),
            }
        )
        out.loc[rng.random(n) < 0.05, "x"] = np.nan
        return out

    window = big(12_000, data.draw(st.sampled_from([0.0, 0.05])))
    parts = partitions_of(window, cuts(data.draw, len(window)))
    merged, single = both(big(3_000, 0.0), parts, config)
    assert_same(merged, single)


@SETTINGS
@given(data=st.data())
def test_merging_is_associative_and_keeps_every_value(data) -> None:
    window = frame(data.draw, data.draw(st.integers(0, 60)), ["a", "b", None])
    parts = [
        partition_stats(p, numeric=NUMERIC, categorical=CATEGORICAL)
        for p in partitions_of(window, cuts(data.draw, len(window)))
    ]
    whole = partition_stats(window, numeric=NUMERIC, categorical=CATEGORICAL)
    split = data.draw(st.integers(1, len(parts)))
    flat = merge_partitions(parts)
    nested = merge_partitions([merge_partitions(parts[:split]), *parts[split:]])
    for merged in (flat, nested):
        assert merged.n_rows == whole.n_rows
        for col in NUMERIC:
            np.testing.assert_array_equal(
                merged.numeric[col].sorted_values, whole.numeric[col].sorted_values
            )
            assert merged.numeric[col].n_missing == whole.numeric[col].n_missing
        for col in CATEGORICAL:
            assert merged.categorical[col].counts == whole.categorical[col].counts
            assert merged.categorical[col].n_missing == whole.categorical[col].n_missing


def test_statistics_survive_pickling() -> None:
    # partitions are summarised in other processes
    part = partition_stats(
        pd.DataFrame({"x": [1.0, np.nan, 0.5], "k": ["a", None, "a"]}),
        numeric=["x"],
        categorical=["k"],
    )
    again = pickle.loads(pickle.dumps(part))
    np.testing.assert_array_equal(again.numeric["x"].sorted_values, [0.5, 1.0])
    assert again.categorical["k"].counts == {"a": 2} and again.numeric["x"].n_missing == 1


def test_a_column_missing_from_every_partition_is_noted_like_the_single_engine() -> None:
    reference = pd.DataFrame({"x": np.arange(30.0), "k": ["a", "b", "c"] * 10})
    stats = reference_stats(reference, numeric=["x"], categorical=["k"])
    parts = split_frame(pd.DataFrame({"x": np.arange(10.0)}), 3)
    summaries = [partition_stats(p, numeric=["x"], categorical=["k"]) for p in parts]
    result = drift_from_partitions(
        reference_stats=stats, partitions=summaries, numeric=["x"], categorical=["k"]
    )
    assert result.column("k").note == "column missing from the current window"
    assert not result.column("k").drifted


def test_a_non_numeric_column_is_noted_like_the_single_engine() -> None:
    reference = pd.DataFrame({"x": np.arange(30.0)})
    stats = reference_stats(reference, numeric=["x"], categorical=[])
    window = pd.DataFrame({"x": ["1", "2", "3", "4"]})
    summaries = [partition_stats(p, numeric=["x"], categorical=[]) for p in split_frame(window, 2)]
    merged = drift_from_partitions(
        reference_stats=stats, partitions=summaries, numeric=["x"], categorical=[]
    )
    single = compute_drift(
        reference=None, current=window, numeric=["x"], categorical=[], reference_stats=stats
    )
    assert (
        merged.column("x").note
        == single.column("x").note
        == ("current column is not numeric (dtype object)")
    )


def two_parts(**second: object) -> list:
    a = pd.DataFrame({"x": [1.0, 2.0], "k": ["a", "b"]})
    b = pd.DataFrame({"x": [3.0], "k": ["a"]}).assign(**second)
    return [partition_stats(p, numeric=["x"], categorical=["k"]) for p in (a, b)]


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([], "no partition statistics to merge"),
        (
            two_parts(extra=1),
            r"partition 1 has other columns than partition 0 \(differing: \['extra'\]\)",
        ),
        (
            two_parts(x=[3]),
            r"partition 1 has other dtypes than partition 0 \('x' float64 vs int64\)",
        ),
    ],
)
def test_partitions_of_different_windows_are_refused(parts, message: str) -> None:
    with pytest.raises(PartitionError, match=message):
        merge_partitions(parts)


def test_a_column_summarised_as_another_kind_is_refused() -> None:
    stats = reference_stats(pd.DataFrame({"x": [1.0, 2.0]}), numeric=["x"], categorical=[])
    part = partition_stats(pd.DataFrame({"x": [1.0]}), numeric=[], categorical=["x"])
    with pytest.raises(PartitionError, match="'x' is compared as numeric but the partitions"):
        drift_from_partitions(
            reference_stats=stats, partitions=[part], numeric=["x"], categorical=[]
        )


def test_a_column_listed_twice_is_refused() -> None:
    with pytest.raises(PartitionError, match=r"both numeric and categorical: \['x'\]"):
        partition_stats(pd.DataFrame({"x": [1]}), numeric=["x"], categorical=["x"])


@pytest.mark.parametrize(
    ("n_rows", "n_parts", "sizes"),
    [(10, 3, [3, 3, 4]), (2, 4, [0, 1, 0, 1]), (0, 2, [0, 0]), (5, 1, [5])],
)
def test_split_rows_covers_every_row_once_in_order(n_rows, n_parts, sizes) -> None:
    slices = split_rows(n_rows, n_parts)
    assert [s.stop - s.start for s in slices] == sizes
    assert [i for s in slices for i in range(s.start, s.stop)] == list(range(n_rows))


def test_split_into_no_partitions_is_refused() -> None:
    with pytest.raises(PartitionError, match="into 0 partitions: need at least 1"):
        split_rows(10, 0)


# --------------------------------------------------------------------------- column groups


def by_column_groups(reference: pd.DataFrame, window: pd.DataFrame, config, per_group: int):
    """Drift and quality of the window checked in column groups (each group on its own
    columns only, as a task of flows.partitioned.window_statistics does), combined; and the
    same computed once over every column."""
    stats = reference_stats(reference, numeric=[*NUMERIC], categorical=[*CATEGORICAL, "p"])
    groups = column_groups(NUMERIC, CATEGORICAL, prediction=True, per_group=per_group)
    drifts, qualities = [], []
    for group in groups:
        columns = [*group.features(), *(["p"] if group.prediction else [])]
        part = window[[c for c in columns if c in window.columns]]
        drifts.append(
            unadjusted_drift(
                reference=None,
                current_sample=frame_samples(part),
                n_current=len(part),
                numeric=group.numeric,
                categorical=group.categorical,
                config=config,
                prediction="p" if group.prediction else None,
                prediction_kind="categorical",
                reference_stats=stats,
            )
        )
        qualities.append(
            compute_quality(
                reference=None,
                current=part[[c for c in group.features() if c in part.columns]],
                numeric=group.numeric,
                categorical=group.categorical,
                reference_stats=stats,
            )
        )
    single_drift = compute_drift(
        reference=None,
        current=window,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        config=config,
        prediction="p",
        prediction_kind="categorical",
        reference_stats=stats,
    )
    single_quality = compute_quality(
        reference=None,
        current=window[[c for c in (*NUMERIC, *CATEGORICAL) if c in window.columns]],
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        reference_stats=stats,
    )
    return (
        (combine_drift(drifts, config), combine_quality(qualities)),
        (single_drift, single_quality),
    )


@SETTINGS
@given(data=st.data(), config=st.sampled_from(CONFIGS), per_group=st.integers(1, 7))
def test_column_groups_combined_equal_one_check_of_every_column(data, config, per_group) -> None:
    reference = frame(data.draw, data.draw(st.integers(1, 60)), ["a", "b", "c", None])
    window = frame(data.draw, data.draw(st.integers(0, 80)), ["a", "b", "new", None])
    dropped = data.draw(st.sampled_from([None, "x", "k"]))  # a feature the window lacks
    if dropped:
        window = window.drop(columns=[dropped])
    (drift, quality), (single_drift, single_quality) = by_column_groups(
        reference, window, config, per_group
    )
    # each group computes its columns with the same code on the same values: equal, not close
    assert drift.to_dict() == single_drift.to_dict()
    assert quality.to_dict() == single_quality.to_dict()


def test_column_groups_keep_the_order_and_put_the_prediction_last() -> None:
    groups = column_groups(["a", "b", "c"], ["k"], prediction=True, per_group=2)
    assert groups == [
        ColumnGroup(("a", "b"), ()),
        ColumnGroup(("c",), ("k",)),
        ColumnGroup((), (), prediction=True),
    ]
    with pytest.raises(PartitionError, match="0 columns per task"):
        column_groups(["a"], [], prediction=False, per_group=0)
    with pytest.raises(PartitionError, match=r"more than once: \['a'\]"):
        column_groups(["a"], ["a"], prediction=False, per_group=2)


def test_parts_that_do_not_belong_together_are_refused() -> None:
    reference = pd.DataFrame({"x": np.arange(30.0), "k": ["a", "b", "c"] * 10})
    stats = reference_stats(reference, numeric=["x"], categorical=["k"])

    def part(window: pd.DataFrame, numeric, categorical):
        return unadjusted_drift(
            reference=None,
            current_sample=frame_samples(window),
            n_current=len(window),
            numeric=numeric,
            categorical=categorical,
            reference_stats=stats,
        )

    small, large = reference.iloc[:10], reference
    with pytest.raises(DriftInputError, match="different windows"):
        combine_drift([part(small, ["x"], []), part(large, [], ["k"])])
    with pytest.raises(DriftInputError, match=r"columns \['x'\] in more than one part"):
        combine_drift([part(small, ["x"], []), part(small, ["x"], ["k"])])
    with pytest.raises(DriftInputError, match="no drift parts"):
        combine_drift([])
    q = compute_quality(reference=None, current=small, numeric=["x"], categorical=[],
                        reference_stats=stats)  # fmt: skip
    q2 = compute_quality(reference=None, current=large, numeric=[], categorical=["k"],
                         reference_stats=stats)  # fmt: skip
    with pytest.raises(ValueError, match=r"different sizes: \[10, 30\] rows"):
        combine_quality([q, q2])
