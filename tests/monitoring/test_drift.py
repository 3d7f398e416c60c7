"""Drift statistics: verdicts on seeded small frames, agreement with Evidently, edge cases."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from core.config_monitoring import DriftConfig
from monitoring.drift import (
    DriftInputError,
    compute_drift,
    holm_adjust,
    ks_pvalue,
    reference_stats,
    wasserstein,
    weighted_drift,
)

NUM = ("a", "b")
CAT = ("c",)


def make(
    rng: np.random.Generator, n: int, shift: float = 0.0, cat_p=(0.5, 0.3, 0.2)
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a": rng.normal(shift, 1.0, n),
            "b": rng.exponential(1.0, n),
            "c": rng.choice(["x", "y", "z"], n, p=list(cat_p)),
        }
    )


def test_no_drift_passes_on_a_small_seeded_window() -> None:
    rng = np.random.default_rng(0)
    result = compute_drift(
        reference=make(rng, 2000), current=make(rng, 300), numeric=NUM, categorical=CAT
    )
    assert not result.dataset_drift
    assert result.drifted_features == ()
    assert result.drift_share == 0.0
    assert (result.n_reference, result.n_current) == (2000, 300)


def test_injected_numeric_shift_is_detected() -> None:
    rng = np.random.default_rng(1)
    result = compute_drift(
        reference=make(rng, 2000), current=make(rng, 300, shift=0.6), numeric=NUM, categorical=CAT
    )
    assert result.dataset_drift
    assert result.drifted_features == ("a",)
    col = result.column("a")
    assert col.method == "driftloop" and col.score < 0.05 and col.effect >= 0.1


def test_injected_categorical_shift_is_detected() -> None:
    rng = np.random.default_rng(2)
    result = compute_drift(
        reference=make(rng, 2000),
        current=make(rng, 400, cat_p=(0.2, 0.3, 0.5)),
        numeric=NUM,
        categorical=CAT,
    )
    assert result.drifted_features == ("c",)


def test_a_tiny_shift_on_a_huge_window_is_not_flagged_by_default() -> None:
    """Significant but harmless: the minimum effect size keeps it quiet; ks alone flags it."""
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"a": rng.normal(0, 1, 50_000)})
    cur = pd.DataFrame({"a": rng.normal(0.04, 1, 200_000)})
    default = compute_drift(reference=ref, current=cur, numeric=["a"], categorical=[])
    assert default.column("a").score < 0.05  # the shift is real...
    assert not default.dataset_drift  # ...and too small to matter
    ks = compute_drift(
        reference=ref, current=cur, numeric=["a"], categorical=[], config=DriftConfig(method="ks")
    )
    assert ks.dataset_drift


def test_holm_adjustment_matches_the_textbook_procedure() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, 1*0.04, running max
    assert holm_adjust(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_evidently_share_rule_for_named_methods() -> None:
    rng = np.random.default_rng(4)
    cur = make(rng, 500, shift=1.0)
    result = compute_drift(
        reference=make(rng, 3000),
        current=cur,
        numeric=NUM,
        categorical=CAT,
        config=DriftConfig(method="evidently"),
    )
    assert result.drifted_features == ("a",)
    assert result.share_threshold == 0.5
    assert not result.dataset_drift  # one of three is below Evidently's drift_share=0.5


def test_per_column_overrides() -> None:
    rng = np.random.default_rng(5)
    ref, cur = make(rng, 3000), make(rng, 500)
    config = DriftConfig(
        per_column_method={"a": "psi", "c": "chisquare"}, per_column_threshold={"a": 0.5, "b": 0.3}
    )
    result = compute_drift(reference=ref, current=cur, numeric=NUM, categorical=CAT, config=config)
    assert (result.column("a").method, result.column("a").threshold) == ("psi", 0.5)
    assert result.column("c").method == "chisquare"
    assert result.column("b").method == "driftloop" and result.column("b").effect_threshold == 0.3


@pytest.mark.parametrize(
    ("column", "method"), [("c", "ks"), ("c", "wasserstein"), ("a", "chisquare"), ("a", "z")]
)
def test_methods_refuse_the_wrong_kind_of_column(column: str, method: str) -> None:
    rng = np.random.default_rng(6)
    ref = make(rng, 100)
    with pytest.raises(DriftInputError, match=repr(column)):
        compute_drift(
            reference=ref,
            current=ref,
            numeric=NUM,
            categorical=CAT,
            config=DriftConfig(per_column_method={column: method}),
        )


@pytest.mark.parametrize(
    ("method", "numeric", "categorical", "kind", "message"),
    [
        ("wasserstein", ["a"], [], "categorical", "'wasserstein' needs a numeric column; 'label'"),
        ("z", [], ["c"], "numeric", "'z' needs a categorical column; 'label' is numeric"),
    ],
)
def test_a_global_method_that_does_not_fit_the_prediction_is_an_error(
    method: str, numeric: list[str], categorical: list[str], kind: str, message: str
) -> None:
    """Not a TypeError from deep inside a statistic: the prediction column is checked too."""
    ref = pd.DataFrame({"a": [0.5, 1.0, 2.0], "c": ["x", "y", "x"], "label": [0, 1, 0]})
    with pytest.raises(DriftInputError, match=message):
        compute_drift(
            reference=ref,
            current=ref,
            numeric=numeric,
            categorical=categorical,
            config=DriftConfig(method=method),
            prediction="label",
            prediction_kind=kind,
        )


def test_column_in_both_lists_is_an_error() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    with pytest.raises(DriftInputError, match="both numeric and categorical"):
        compute_drift(reference=frame, current=frame, numeric=["a"], categorical=["a"])


def test_missing_and_empty_current_columns_are_skipped_with_a_note() -> None:
    rng = np.random.default_rng(7)
    ref = make(rng, 500)
    cur = make(rng, 100).drop(columns=["b"]).assign(a=np.nan)
    result = compute_drift(reference=ref, current=cur, numeric=NUM, categorical=CAT)
    assert result.column("b").note == "column missing from the current window"
    assert result.column("a").note == "no finite values in the current window"
    assert not result.column("a").drifted and np.isnan(result.column("a").score)
    assert result.column("c").note is None


def test_reference_stats_are_picklable_and_give_the_same_result() -> None:
    rng = np.random.default_rng(8)
    ref, cur = make(rng, 3000), make(rng, 400, shift=0.3)
    stats_ = pickle.loads(pickle.dumps(reference_stats(ref, numeric=NUM, categorical=CAT)))
    direct = compute_drift(reference=ref, current=cur, numeric=NUM, categorical=CAT)
    cached = compute_drift(
        reference=None, current=cur, numeric=NUM, categorical=CAT, reference_stats=stats_
    )
    assert direct == cached


def test_prediction_column_is_tested_apart_from_the_features() -> None:
    rng = np.random.default_rng(9)
    ref = make(rng, 2000).assign(probability=rng.beta(2, 2, 2000))
    cur = make(rng, 500).assign(probability=rng.beta(5, 2, 500))
    result = compute_drift(
        reference=ref, current=cur, numeric=NUM, categorical=CAT, prediction="probability"
    )
    assert result.prediction is not None and result.prediction.drifted
    assert not result.dataset_drift and len(result.columns) == 3


def test_weighted_drift_uses_importances() -> None:
    rng = np.random.default_rng(10)
    result = compute_drift(
        reference=make(rng, 2000), current=make(rng, 500, shift=1.0), numeric=NUM, categorical=CAT
    )
    assert weighted_drift(result, {"a": 3.0, "b": 1.0, "c": 0.0}) == pytest.approx(0.75)
    assert weighted_drift(result, {}) == 0.0


def test_to_dict_is_json_friendly() -> None:
    import json

    rng = np.random.default_rng(11)
    cur = make(rng, 50).assign(a=np.nan)
    result = compute_drift(reference=make(rng, 200), current=cur, numeric=NUM, categorical=CAT)
    text = json.dumps(result.to_dict())
    assert '"score": null' in text


# ---- the statistics against scipy (same floats) -------------------------------------------


def test_wasserstein_and_ks_match_scipy_with_ties() -> None:
    rng = np.random.default_rng(12)
    for n1, n2 in [(50, 70), (3000, 20_000), (12_000, 11_000)]:
        a = np.sort(np.round(rng.normal(size=n1), 1))
        b = np.sort(np.round(rng.normal(0.05, size=n2), 1))
        assert wasserstein(a, b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert ks_pvalue(a, b) == pytest.approx(
                stats.ks_2samp(a, b).pvalue, rel=1e-9, abs=1e-300
            )


def test_blocked_scans_match_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large samples are scanned in blocks; tiny blocks must give the same KS and W1."""
    import monitoring.drift as drift_module

    monkeypatch.setattr(drift_module, "_BLOCK", 7)
    rng = np.random.default_rng(13)
    a = np.sort(np.round(rng.normal(size=3000), 2))
    b = np.sort(np.round(rng.normal(0.1, size=2500), 2))
    assert wasserstein(a, b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12)
    # method="asymp": the exact mode re-rounds d to a multiple of 1/lcm(n1, n2)
    assert drift_module.ks_statistic(a, b) == stats.ks_2samp(a, b, method="asymp").statistic


def test_no_false_alarm_on_the_real_employment_reference(
    employment_reference: pd.DataFrame,
) -> None:
    """A random disjoint slice of the same year, with sparse categories, does not drift."""
    numeric = ["AGEP"]
    categorical = [
        "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC", "NATIVITY",
        "DEAR", "DEYE", "DREM", "SEX", "RAC1P",
    ]  # fmt: skip
    shuffled = employment_reference.sample(frac=1.0, random_state=0)
    reference, current = shuffled.iloc[:20_000], shuffled.iloc[20_000:21_000]
    result = compute_drift(
        reference=reference, current=current, numeric=numeric, categorical=categorical
    )
    assert not result.dataset_drift, result.drifted_features
    older = current.assign(AGEP=current["AGEP"] + 8)  # an older population is caught
    assert compute_drift(
        reference=reference, current=older, numeric=numeric, categorical=categorical
    ).drifted_features == ("AGEP",)
