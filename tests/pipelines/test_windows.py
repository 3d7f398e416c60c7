"""The change point, the judged rows and the candidate windows of a retraining (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.windows import candidate_windows, change_point, gate_size, row_losses


def losses(*parts: tuple[int, float], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.exponential(mean, size=n) for n, mean in parts])


def test_no_change_is_found_in_stationary_losses_at_most_rarely() -> None:
    found = sum(change_point(losses((5000, 0.5), seed=s)) is not None for s in range(100))
    assert found <= 3  # alpha 0.01, and autocorrelation-free losses


@pytest.mark.parametrize("at", [1000, 4000, 4800])
def test_an_abrupt_change_is_located(at: int) -> None:
    point = change_point(losses((at, 0.4), (5000 - at, 1.2)))
    assert point is not None and abs(point.index - at) < 60
    assert point.mean_after > point.mean_before and point.statistic > point.threshold


def test_the_newest_regime_is_found_when_the_old_concept_comes_back() -> None:
    point = change_point(losses((3000, 0.4), (1500, 1.2), (500, 0.4)))
    assert point is not None and abs(point.index - 4500) < 60


def test_a_change_for_the_better_starts_a_regime_too() -> None:
    # a model trained after a change of concept: wrong before it, right after it
    point = change_point(losses((3000, 1.2), (2000, 0.4)))
    assert (
        point is not None and abs(point.index - 3000) < 60 and point.mean_after < point.mean_before
    )


def test_too_few_rows_or_a_constant_loss_have_no_change() -> None:
    assert change_point(np.ones(5000)) is None
    assert change_point(losses((150, 0.4), (40, 2.0))) is None


def test_row_losses_are_capped_log_loss_or_absolute_error() -> None:
    assert row_losses(
        "classification", [1, 0], probability_of_truth=np.array([1.0, 0.0])
    ).tolist() == [
        pytest.approx(0.0),
        pytest.approx(-np.log(1e-4)),
    ]
    assert row_losses("regression", [3.0, -1.0], prediction=np.array([1.0, 1.0])).tolist() == [
        2.0,
        2.0,
    ]


@pytest.mark.parametrize(
    ("labeled", "since", "expected"),
    [
        (50_000, None, 5000),  # the monitor's window
        (6000, None, 3000),  # at most half the labeled rows
        (50_000, 2000, 1000),  # at most half the rows since the change
        (50_000, 100, 200),  # but at least min_rows
        (300, 100, 150),  # unless there are not enough rows at all
    ],
)
def test_gate_size(labeled: int, since: int | None, expected: int) -> None:
    assert gate_size(labeled, window_rows=5000, rows_since_change=since, min_rows=200) == expected


def test_candidate_windows_follow_the_change_and_the_sizes() -> None:
    windows = candidate_windows(20_000, change=18_000, sizes=[2000, 8000, 40_000], min_rows=200)
    names = [w.name for w in windows]
    assert names == [
        "since the change (2000 rows)",
        "reference + since the change (2000 rows)",
        "last 8000 rows",
        "all 20000 live rows",
        "reference + all 20000 live rows",
    ]  # "last 2000" equals "since the change"; 40,000 exceeds the rows
    assert [w.rows(20_000) for w in windows] == [2000, 2000, 8000, 20_000, 20_000]
    assert [w.with_reference for w in windows] == [False, True, False, False, True]


def test_without_a_change_or_the_reference_fewer_windows() -> None:
    windows = candidate_windows(5000, change=None, sizes=[2000], reference=False)
    assert [w.name for w in windows] == ["last 2000 rows", "all 5000 live rows"]
    short = candidate_windows(5000, change=4950, sizes=[], min_rows=200)
    assert "since the change (50 rows)" not in [w.name for w in short]
    assert "reference + since the change (50 rows)" in [w.name for w in short]
