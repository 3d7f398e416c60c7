"""Drift scenarios: the untouched head, the injected tail, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.scenarios import OLDER_KEPT, SCENARIOS, ScenarioError, apply_scenario


def _live(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "AGEP": rng.integers(16, 90, n).astype(float),
            "SCHL": pd.Categorical(rng.integers(0, 25, n).astype(str)),
            "year": rng.integers(2016, 2019, n),
        }
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_head_is_untouched_and_no_row_is_repeated(scenario: str) -> None:
    live = _live()
    out = apply_scenario(live, scenario, start_fraction=0.5)
    head = out.iloc[:100]
    assert head["AGEP"].tolist() == live["AGEP"].iloc[:100].tolist()
    assert head["SCHL"].astype(str).tolist() == live["SCHL"].astype(str).iloc[:100].tolist()
    assert not out["id"].duplicated().any()
    assert out["id"].is_monotonic_increasing  # time order kept
    assert live["SCHL"].dtype == "category"  # the input is not mutated


@pytest.mark.parametrize("scenario", ["none", "gradual", "broken-feature"])
def test_length_kept(scenario: str) -> None:
    assert len(apply_scenario(_live(), scenario, start_fraction=0.5)) == 200


def test_none_changes_nothing() -> None:
    live = _live()
    pd.testing.assert_frame_equal(apply_scenario(live, "none"), live)


def test_broken_feature_blanks_age_after_the_change() -> None:
    out = apply_scenario(_live(), "broken-feature", start_fraction=0.5)
    assert out["AGEP"].iloc[100:].isna().all() and out["AGEP"].iloc[:100].notna().all()


def test_sudden_changes_the_form_and_shifts_to_the_young() -> None:
    live = _live(4000)
    out = apply_scenario(live, "sudden", start_fraction=0.5, seed=3)
    tail = out.iloc[2000:].set_index("id")
    original = live.set_index("id").loc[tail.index]
    assert (tail["AGEP"] == original["year"] - original["AGEP"]).all()
    assert (24 - original["SCHL"].astype(int) == tail["SCHL"].astype(int)).all()
    young_before = (live["AGEP"].iloc[2000:] < 30).mean()
    assert (original["AGEP"] < 30).mean() > young_before + 0.2
    older = (live["AGEP"].iloc[2000:] >= 30).sum()
    assert abs((original["AGEP"] >= 30).sum() / older - OLDER_KEPT) < 0.05


def test_gradual_grows_the_changed_share() -> None:
    live = _live(4000)
    out = apply_scenario(live, "gradual", start_fraction=0.0, seed=2)
    changed = out["AGEP"] != live["AGEP"]
    assert changed.iloc[:1000].mean() < 0.2 < 0.8 < changed.iloc[3000:].mean()
    moved = out[changed]
    before = live.loc[changed]
    assert (moved["AGEP"] == before["year"] - before["AGEP"]).all()
    assert (24 - before["SCHL"].astype(int) == moved["SCHL"].astype(int)).all()
    kept = ~changed
    assert (out.loc[kept, "SCHL"].astype(str) == live.loc[kept, "SCHL"].astype(str)).all()


def test_errors_name_the_problem() -> None:
    with pytest.raises(ScenarioError, match="unknown scenario 'chaos'"):
        apply_scenario(_live(), "chaos")
    with pytest.raises(ScenarioError, match="needs columns \\['AGEP'\\]"):
        apply_scenario(pd.DataFrame({"x": [1.0]}), "broken-feature")
    with pytest.raises(ScenarioError, match="needs columns \\['year'\\]"):
        apply_scenario(_live().drop(columns="year"), "sudden")
    with pytest.raises(ScenarioError, match="start_fraction"):
        apply_scenario(_live(), "gradual", start_fraction=1.0)
