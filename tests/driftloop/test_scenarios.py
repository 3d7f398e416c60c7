"""Drift scenarios: the untouched head, the injected tail, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.scenarios import SCENARIOS, ScenarioError, apply_scenario


def _live(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "AGEP": rng.integers(16, 90, n).astype(float),
            "SCHL": pd.Categorical(rng.integers(0, 25, n).astype(str)),
        }
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_head_is_untouched_and_length_kept(scenario: str) -> None:
    live = _live()
    out = apply_scenario(live, scenario, start_fraction=0.5)
    assert len(out) == len(live)
    head = out.iloc[:100]
    assert head["AGEP"].tolist() == live["AGEP"].iloc[:100].tolist()
    assert head["SCHL"].astype(str).tolist() == live["SCHL"].astype(str).iloc[:100].tolist()
    assert live["SCHL"].dtype == "category"  # the input is not mutated


def test_none_changes_nothing() -> None:
    live = _live()
    pd.testing.assert_frame_equal(apply_scenario(live, "none"), live)


def test_broken_feature_blanks_age_after_the_change() -> None:
    out = apply_scenario(_live(), "broken-feature", start_fraction=0.5)
    assert out["AGEP"].iloc[100:].isna().all() and out["AGEP"].iloc[:100].notna().all()


def test_sudden_renumbers_schooling_and_shifts_to_the_young() -> None:
    live = _live(4000)
    out = apply_scenario(live, "sudden", start_fraction=0.5, seed=3)
    tail = out.iloc[2000:]
    assert (tail["AGEP"] < 30).mean() > (live["AGEP"].iloc[2000:] < 30).mean() + 0.2
    original = live.set_index("id")["SCHL"].astype(int)
    renumbered = tail.set_index("id")["SCHL"].astype(int)
    assert ((24 - original.loc[renumbered.index]).to_numpy() == renumbered.to_numpy()).all()


def test_gradual_grows_the_changed_share() -> None:
    live = _live(4000)
    out = apply_scenario(live, "gradual", start_fraction=0.0, seed=2)
    changed = out["SCHL"].astype(str) != live["SCHL"].astype(str)
    assert changed.iloc[:1000].mean() < changed.iloc[3000:].mean()


def test_errors_name_the_problem() -> None:
    with pytest.raises(ScenarioError, match="unknown scenario 'chaos'"):
        apply_scenario(_live(), "chaos")
    with pytest.raises(ScenarioError, match="needs columns \\['AGEP'\\]"):
        apply_scenario(pd.DataFrame({"x": [1.0]}), "broken-feature")
