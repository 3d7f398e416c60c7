"""Named drift scenarios layered on live traffic (for the demo, backtests and tests). Pure pandas.

The shipped 2016-2018 employment traffic drifts only mildly from 2015 (a real control for false
alarms). Drift that hurts has to be injected:

* ``sudden``: from the change point on, the upstream form renumbers the schooling codes (``SCHL``
  is read backwards, so a doctorate looks like no schooling) and the traffic over-represents
  people under 30: a sub-population shift plus a feature whose encoding changed.
* ``gradual``: the same renumbering, rolled out to a growing share of rows, from none at the
  change point to all of them at the end.
* ``broken-feature``: from the change point on, an upstream bug sends age (``AGEP``) as missing.
* ``none``: the real traffic, untouched.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

Scenario = Literal["none", "gradual", "sudden", "broken-feature"]
SCENARIOS: tuple[str, ...] = ("none", "gradual", "sudden", "broken-feature")


class ScenarioError(ValueError):
    """The scenario cannot be applied to this data."""


def _renumber_schooling(codes: pd.Series) -> pd.Series:
    """SCHL codes 0..24 read backwards (24 - code), as strings."""
    numeric = pd.to_numeric(codes.astype("object"), errors="coerce")
    return (
        (24 - numeric)
        .astype("Int64")
        .astype("string")
        .astype("object")
        .where(numeric.notna(), None)
    )


def _require(frame: pd.DataFrame, columns: tuple[str, ...], scenario: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ScenarioError(
            f"scenario {scenario!r} needs columns {missing}, which the live data lacks"
        )


def apply_scenario(
    live: pd.DataFrame, scenario: str, *, start_fraction: float = 0.4, seed: int = 0
) -> pd.DataFrame:
    """Return a new frame of the live traffic (same row order) with the scenario's drift injected.

    Rows before ``start_fraction`` of the traffic are never changed. ``sudden`` also resamples the
    rows after the change point (so the output may repeat some rows), keeping the same length.
    """
    if scenario not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    if not 0.0 <= start_fraction < 1.0:
        raise ScenarioError(f"start_fraction must be in [0, 1), got {start_fraction}")
    out = live.reset_index(drop=True).copy()
    if scenario == "none" or out.empty:
        return out
    start = int(len(out) * start_fraction)
    rng = np.random.default_rng(seed)
    tail = out.iloc[start:].copy()
    if scenario == "broken-feature":
        _require(out, ("AGEP",), scenario)
        tail["AGEP"] = np.nan
    elif scenario == "sudden":
        _require(out, ("SCHL", "AGEP"), scenario)
        young = tail["AGEP"].astype(float) < 30
        weights = np.where(young, 4.0, 1.0)
        picked = rng.choice(len(tail), size=len(tail), replace=True, p=weights / weights.sum())
        tail = tail.iloc[np.sort(picked)].copy()
        tail["SCHL"] = _renumber_schooling(tail["SCHL"]).to_numpy()
    elif scenario == "gradual":
        _require(out, ("SCHL",), scenario)
        share = np.linspace(0.0, 1.0, num=len(tail))
        changed = rng.random(len(tail)) < share
        renumbered = _renumber_schooling(tail["SCHL"]).to_numpy()
        tail["SCHL"] = np.where(changed, renumbered, tail["SCHL"].astype("object").to_numpy())
    head = out.iloc[:start]
    for column in tail.columns:  # categoricals gain new codes: keep them as plain strings
        if isinstance(head[column].dtype, pd.CategoricalDtype):
            head = head.assign(**{column: head[column].astype("object")})
        if isinstance(tail[column].dtype, pd.CategoricalDtype):
            tail[column] = tail[column].astype("object")
    return pd.concat([head, tail], ignore_index=True)
