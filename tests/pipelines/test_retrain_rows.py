"""Which labeled live rows a challenger may learn from (pure part of the retrain flow)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from core.spec import FeatureSpec
from pipelines.retraining import live_rows

SPEC = FeatureSpec(numeric=("x",), categorical=("c",))


def labeled(n: int) -> pd.DataFrame:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    frame = pd.DataFrame(
        {
            "x": np.arange(n, dtype=float),
            "c": ["a", "b"] * (n // 2),
            "y": [0, 1] * (n // 2),
            "ts": [start + timedelta(minutes=i) for i in range(n)],
        }
    )
    return frame.iloc[::-1].reset_index(drop=True)  # newest first: the flow sorts by time


def test_rows_with_numbers_too_large_to_train_on_are_left_out_and_counted() -> None:
    rows = labeled(1000)
    rows.loc[[10, 500, 900], "x"] = [1.797e308, 2.0**1000, -1e200]
    live, times, unusable = live_rows(rows, SPEC, "y")
    assert unusable == 3 and len(live) == 997 == len(times)
    assert np.isfinite(live.X["x"]).all()
    assert times.is_monotonic_increasing  # oldest first
