"""Tiny inline datasets for the pure pipeline tests."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from core.spec import FeatureSpec

SPEC = FeatureSpec(numeric=("age", "income"), categorical=("city", "plan"))


def make_frame(
    n: int = 120, *, task: str = "classification", classes: int = 2, seed: int = 0
) -> pd.DataFrame:
    """A small frame whose target depends on `age` and `city`, with an id and a year column."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype(float)
    income = rng.normal(50, 15, n)
    city = rng.choice(["paris", "lyon", "nice"], n)
    plan = rng.choice(["a", "b"], n)
    signal = (age - 48) / 18 + np.where(city == "paris", 1.0, -0.5) + rng.normal(0, 0.5, n)
    if task == "regression":
        target: np.ndarray = 3.0 * signal + 10.0
    elif classes == 2:
        target = (signal > 0).astype(int)
    else:
        target = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "age": age,
            "income": income,
            "city": pd.Categorical(city),
            "plan": plan,
            "year": np.repeat([2019, 2020, 2021, 2022], -(-n // 4))[:n],
            "y": target,
        }
    )


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Fit with one OpenMP/BLAS thread, as train_model does: the 2 cores are shared."""
    with threadpool_limits(limits=1):
        yield
