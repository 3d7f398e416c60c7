"""Properties of the drift statistics (hypothesis): ranges, identity, edge cases, scipy parity."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from core.config_monitoring import DriftConfig
from monitoring.drift import compute_drift, holm_adjust, ks_pvalue, ks_statistic, wasserstein

METHODS = ["driftloop", "evidently", "psi", "kl_div", "jensenshannon"]
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
messy = st.one_of(finite, st.just(float("nan")), st.just(float("inf")), st.just(-float("inf")))
sample = arrays(np.float64, st.integers(1, 60), elements=finite)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(a=sample, b=sample)
def test_wasserstein_and_ks_match_scipy(a: np.ndarray, b: np.ndarray) -> None:
    a, b = np.sort(a), np.sort(b)
    assert math.isclose(
        wasserstein(a, b), stats.wasserstein_distance(a, b), rel_tol=1e-9, abs_tol=1e-9
    )
    assert ks_statistic(a, b) == stats.ks_2samp(a, b, method="asymp").statistic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert 0.0 <= ks_pvalue(a, b) <= 1.0


@SETTINGS
@given(a=sample, b=sample)
def test_wasserstein_is_symmetric(a: np.ndarray, b: np.ndarray) -> None:
    a, b = np.sort(a), np.sort(b)
    assert math.isclose(wasserstein(a, b), wasserstein(b, a), rel_tol=1e-9, abs_tol=1e-9)


@SETTINGS
@given(p=st.lists(st.floats(0, 1), min_size=0, max_size=30))
def test_holm_adjusted_p_values_are_valid(p: list[float]) -> None:
    adjusted = holm_adjust(p)
    assert adjusted.shape == (len(p),)
    assert np.all(adjusted >= np.asarray(p) - 1e-15) and np.all(adjusted <= 1.0)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adjusted[order]) >= 0)  # monotone in the raw p-values


def frames(draw, n_min: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    def one(n: int) -> pd.DataFrame:
        x = draw(arrays(np.float64, n, elements=messy))
        c = draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n))
        return pd.DataFrame({"x": x, "k": pd.Series(c, dtype=object)})

    return one(draw(st.integers(n_min, 40))), one(draw(st.integers(n_min, 40)))


@SETTINGS
@given(data=st.data(), method=st.sampled_from(METHODS))
def test_no_exception_on_nan_inf_empty_or_constant_columns(data, method: str) -> None:
    ref, cur = frames(data.draw)
    result = compute_drift(
        reference=ref,
        current=cur,
        numeric=["x"],
        categorical=["k"],
        config=DriftConfig(method=method),
    )
    for col in result.columns:
        assert isinstance(col.drifted, bool)
        if col.note is not None:
            assert not col.drifted and math.isnan(col.score)
        elif col.method in ("ks", "chisquare", "z", "driftloop"):
            assert 0.0 <= col.score <= 1.0 or math.isnan(col.score)
        else:
            assert col.score >= 0.0 or math.isnan(col.score)
    assert 0.0 <= result.drift_share <= 1.0


@SETTINGS
@given(data=st.data(), method=st.sampled_from(METHODS))
def test_a_window_identical_to_the_reference_never_drifts(data, method: str) -> None:
    ref, _ = frames(data.draw, n_min=1)
    result = compute_drift(
        reference=ref,
        current=ref.copy(),
        numeric=["x"],
        categorical=["k"],
        config=DriftConfig(method=method),
    )
    assert not result.dataset_drift
    for col in result.columns:
        if col.note is None and col.method in ("wasserstein", "jensenshannon", "psi", "kl_div"):
            assert abs(col.score) < 1e-9
        if col.method == "driftloop" and col.effect is not None:
            assert abs(col.effect) < 1e-9


@SETTINGS
@given(value=finite, other=finite, n=st.integers(1, 50), m=st.integers(1, 50))
def test_constant_columns(value: float, other: float, n: int, m: int) -> None:
    ref = pd.DataFrame({"x": [value] * n})
    cur = pd.DataFrame({"x": [other] * m})
    result = compute_drift(reference=ref, current=cur, numeric=["x"], categorical=[])
    col = result.column("x")
    assert col.effect == abs(other - value) / 0.001 or math.isclose(
        col.effect, abs(other - value) / 0.001, rel_tol=1e-9
    )
    if value == other:
        assert not col.drifted
