"""Each named statistic agrees with Evidently 0.7's DataDriftPreset, column by column.

The real Evidently Report runs here on small seeded frames; the scores must match to 1e-9 and
the verdicts exactly, including Evidently's automatic method choice by reference size.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from core.config_monitoring import DriftConfig
from monitoring.drift import compute_drift

NUM = ["a", "b", "e"]
CAT = ["c", "d"]


def frames(n_ref: int, n_cur: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def one(n: int, drift: bool) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "a": rng.normal(0.15 if drift else 0.0, 1.0, n),  # continuous
                "b": rng.integers(0, 4, n).astype(float),  # numeric with 4 values
                "e": rng.exponential(1.1 if drift else 1.0, n),
                "c": rng.choice(
                    list("abcdf" if drift else "abcde"), n, p=[0.4, 0.3, 0.2, 0.05, 0.05]
                ),
                "d": rng.choice(["x", "y"], n, p=[0.45, 0.55] if drift else [0.5, 0.5]),
            }
        )

    ref, cur = one(n_ref, False), one(n_cur, True)
    ref.loc[::7, "a"] = np.nan  # missing values are dropped by both
    cur.loc[::5, "c"] = None
    # +-inf is dropped like NaN. (Evidently's dataset-level count drops it only from columns that
    # also hold a NaN, its per-column ValueDrift always; driftloop follows ValueDrift. So the
    # inf goes in a column with a NaN, where both of Evidently's paths agree.)
    cur.loc[3, "e"] = np.inf
    cur.loc[4, "e"] = np.nan
    return ref, cur


def evidently_columns(ref: pd.DataFrame, cur: pd.DataFrame, **preset) -> tuple[dict, float]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUM, categorical_columns=CAT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset(**preset)]).run(
            current_data=Dataset.from_pandas(cur, data_definition=definition),
            reference_data=Dataset.from_pandas(ref, data_definition=definition),
        )
    columns, share = {}, float("nan")
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            columns[config["column"]] = (config["method"], config["threshold"], metric["value"])
        elif config["type"].endswith("DriftedColumnsCount"):
            share = metric["value"]["share"]
    return columns, share


DISPLAY = {
    "ks": "K-S p_value",
    "chisquare": "chi-square p_value",
    "z": "Z-test p_value",
    "wasserstein": "Wasserstein distance (normed)",
    "jensenshannon": "Jensen-Shannon distance",
    "psi": "PSI",
    "kl_div": "Kullback-Leibler divergence",
}


def verdict(method: str, score: float, threshold: float) -> bool:
    if method == "ks":
        return score <= threshold
    if method in ("chisquare", "z"):
        return score < threshold
    return score >= threshold


@pytest.mark.slow
@pytest.mark.parametrize(("n_ref", "n_cur"), [(600, 250), (4000, 900)])
@pytest.mark.parametrize(
    ("preset", "config"),
    [
        ({}, DriftConfig(method="evidently")),
        ({"method": "psi"}, DriftConfig(method="psi")),
        ({"method": "kl_div"}, DriftConfig(method="kl_div")),
        (
            {"method": "jensenshannon", "threshold": 0.05},
            DriftConfig(method="jensenshannon", threshold=0.05),
        ),
        (
            {"num_method": "ks", "cat_method": "chisquare"},
            DriftConfig(
                method="evidently",
                per_column_method={
                    "a": "ks",
                    "b": "ks",
                    "e": "ks",
                    "c": "chisquare",
                    "d": "chisquare",
                },
            ),
        ),
        (
            {"num_method": "wasserstein", "cat_method": "z"},
            DriftConfig(
                method="evidently",
                per_column_method={
                    "a": "wasserstein",
                    "b": "wasserstein",
                    "e": "wasserstein",
                    "c": "z",
                    "d": "z",
                },
            ),
        ),
    ],
    ids=["auto", "psi", "kl_div", "jensenshannon", "ks+chisquare", "wasserstein+z"],
)
def test_scores_and_verdicts_match_evidently(
    n_ref: int, n_cur: int, preset: dict, config: DriftConfig
) -> None:
    ref, cur = frames(n_ref, n_cur, seed=n_ref)
    theirs, share = evidently_columns(ref, cur, **preset)
    ours = compute_drift(reference=ref, current=cur, numeric=NUM, categorical=CAT, config=config)
    assert set(theirs) == set(NUM + CAT)
    for col in ours.columns:
        method, threshold, score = theirs[col.column]
        assert method in (DISPLAY[col.method], col.method), (
            col.column
        )  # name if given, else display
        assert col.threshold == pytest.approx(threshold)
        assert col.score == pytest.approx(score, rel=1e-9, abs=1e-12), col.column
        assert col.drifted == verdict(col.method, score, threshold), col.column
    assert ours.drift_share == pytest.approx(share)
    assert ours.dataset_drift == (share >= 0.5)
