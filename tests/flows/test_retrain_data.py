"""Which labeled live rows a challenger trains on (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from flows.retrain import RetrainRefused, retrain_data
from monitoring.config import RetrainConfig
from pipelines.schema import FeatureSpec

SPEC = FeatureSpec(numeric=("x",), categorical=("c",))


def labeled(n: int) -> pd.DataFrame:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return pd.DataFrame(
        {
            "x": np.arange(n, dtype=float),
            "c": ["a", "b"] * (n // 2),
            "y": [0, 1] * (n // 2),
            "ts": [start + timedelta(minutes=i) for i in range(n)],
        }
    )


def test_rows_with_numbers_too_large_to_train_on_are_left_out_and_counted() -> None:
    rows = labeled(1000)
    rows.loc[[10, 500, 900], "x"] = [1.797e308, 2.0**1000, -1e200]
    data = retrain_data(
        rows.head(0), rows, spec=SPEC, target="y", policy=RetrainConfig(min_labeled_rows=100)
    )
    assert data.unusable_rows == 3 and data.live_rows == 997
    assert np.isfinite(pd.concat([data.train, data.holdout])["x"]).all()


def test_too_few_usable_rows_is_refused_with_the_reason() -> None:
    rows = labeled(600)
    rows.loc[:200, "x"] = 1e300
    with pytest.raises(RetrainRefused, match="201 rows left out: numbers too large"):
        retrain_data(rows.head(0), rows, spec=SPEC, target="y", policy=RetrainConfig())
