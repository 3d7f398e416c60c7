"""`driftloop demo` end to end on a sample of the shipped traffic: real server, registry and log.

Every 5th live row, small model searches: drift that hurts is detected, a retraining promotes a
better model and the server hot-swaps to it; the untouched traffic retrains nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from flows.demo import DemoError, Row, in_time_order, load_traffic, run_demo

#: Demo settings scaled to a fifth of the traffic and a fast model search.
SMALL: dict[str, object] = {
    "model": {
        "candidates": [
            {"family": "hist_gradient_boosting", "search": {"max_leaf_nodes": [15, 31]}}
        ],
        "cv_folds": 2,
        "search_iterations": 1,
        "max_train_rows": 4000,
    },
    "monitoring": {"retrain": {"max_live_rows": 8000, "min_labeled_rows": 2000}},
}


@pytest.fixture
def demo_env(tmp_path: Path, mlflow_env: dict[str, str]) -> Iterator[Path]:
    """The demo passes its settings down: it leaves the environment as it found it."""
    before = _store_variables()
    yield tmp_path
    assert _store_variables() == before


def _store_variables() -> dict[str, str]:
    """The variables Settings reads its stores and Prefect server from."""
    names = ("MLFLOW_TRACKING_URI", "DRIFTLOOP_ARTIFACT_ROOT", "DRIFTLOOP_DATABASE_URL")
    return {
        k: v
        for k, v in os.environ.items()
        if k in (*names, "DRIFTLOOP_WORKSPACE", "PREFECT_API_URL")
    }


def _demo(tmp_path: Path, scenario: str) -> list[Row]:
    return run_demo(
        scenario,
        monitor_every=6000,
        sample_every=5,
        out_dir=tmp_path / "report",
        state=tmp_path / "state",
        echo=lambda *_: None,
        overrides=SMALL,
    )


def test_sudden_drift_retrains_promotes_and_hot_swaps(demo_env: Path) -> None:
    rows = _demo(demo_env, "sudden")

    change = next(i for i, r in enumerate(rows) if r.rows_sent > 41779 * 0.4)
    assert not any(r.retrain for r in rows[:change])
    assert any(r.alert and r.retrain for r in rows[change:])
    assert rows[0].champion == 1 and rows[-1].champion > 1  # promoted and served
    last = rows[-1]
    assert last.serving_accuracy > last.frozen_accuracy + 0.1
    assert (demo_env / "report" / "timeline.png").stat().st_size > 0
    assert (demo_env / "report" / "latest_drift_report.html").exists()


def test_untouched_traffic_retrains_nothing(demo_env: Path) -> None:
    rows = _demo(demo_env, "none")

    assert rows and not any(r.retrain for r in rows)
    assert {r.champion for r in rows} == {1}


def test_load_traffic_keeps_the_change_row_of_the_input() -> None:
    traffic, truth, change_at = load_traffic("sudden", 5)
    assert change_at == int(41779 * 0.4)
    assert len(traffic) < 41779 and truth.notna().all()
    with pytest.raises(DemoError, match="sample_every must be at least 1"):
        load_traffic("none", 0)


def test_in_time_order_sorts_years_and_mixes_rows_within_a_year() -> None:
    live = pd.DataFrame({"id": range(8), "year": [2017, 2016] * 4})
    out = in_time_order(live, seed=1)
    assert out["year"].is_monotonic_increasing
    assert sorted(out["id"]) == list(range(8))
    assert not out["id"].is_monotonic_increasing  # file order within a year is not time
    assert live["id"].tolist() == list(range(8))  # the input is not mutated
