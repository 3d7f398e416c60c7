"""Named drift scenarios layered on live traffic (for the demo, backtests and tests). Pure pandas.

The shipped 2016-2018 employment traffic drifts only mildly from 2015 (a real control for false
alarms). Drift that hurts has to be injected:

* ``sudden``: from the change point on, an upstream form change sends age (``AGEP``) as the year
  of birth (``year - AGEP``) and renumbers the schooling codes (``SCHL`` read backwards, so a
  doctorate looks like no schooling); at the same time the traffic shifts to people under 30
  (older rows are thinned out, none is repeated): a sub-population shift plus features whose
  encoding changed. The output is shorter than the input.
* ``gradual``: the same form change, rolled out to a growing share of rows, from none at the
  change point to all of them at the end.
* ``broken-feature``: from the change point on, an upstream bug sends age (``AGEP``) as missing.
* ``none``: the real traffic, untouched.

Why age is part of the form change: measured on the shipped data, a 2015 champion reading SCHL
backwards loses only 0.0075 roc_auc on 2016-2018 (0.9051 -> 0.8976), below the 0.02 drop the
retraining policy tolerates, and the sub-population shift alone raises its roc_auc. Age read as a
birth year drops it to about 0.73, which a model retrained on post-change labels recovers.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from core.errors import DriftloopError

Scenario = Literal["none", "gradual", "sudden", "broken-feature"]
SCENARIOS: tuple[str, ...] = ("none", "gradual", "sudden", "broken-feature")
#: In ``sudden``, the share of rows aged 30 or more that stay after the change point.
OLDER_KEPT = 0.25


class ScenarioError(DriftloopError, ValueError):
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


def _form_change(frame: pd.DataFrame) -> pd.DataFrame:
    """The new upstream form: AGEP holds the year of birth, SCHL codes are read backwards."""
    age = pd.to_numeric(frame["AGEP"], errors="coerce")
    birth_year = pd.to_numeric(frame["year"], errors="coerce") - age
    return frame.assign(
        AGEP=birth_year.to_numpy(dtype=float),
        SCHL=_renumber_schooling(frame["SCHL"]).to_numpy(),
    )


def _require(frame: pd.DataFrame, columns: tuple[str, ...], scenario: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ScenarioError(
            f"scenario {scenario!r} needs columns {missing}, which the live data lacks"
        )


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as plain objects (the scenarios add codes the categories lack)."""
    cats = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    return frame.assign(**{c: frame[c].astype("object") for c in cats})


def apply_scenario(
    live: pd.DataFrame, scenario: str, *, start_fraction: float = 0.4, seed: int = 0
) -> pd.DataFrame:
    """Return a new frame of the live traffic (same row order) with the scenario's drift injected.

    Rows before ``start_fraction`` of the traffic are never changed and no row is repeated.
    ``sudden`` drops most rows aged 30 or more after the change point (the output is shorter);
    the other scenarios keep every row.
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
    head, tail = _plain(out.iloc[:start]), _plain(out.iloc[start:])
    if scenario == "broken-feature":
        _require(out, ("AGEP",), scenario)
        tail = tail.assign(AGEP=np.nan)
    elif scenario == "sudden":
        _require(out, ("SCHL", "AGEP", "year"), scenario)
        young = pd.to_numeric(tail["AGEP"], errors="coerce").to_numpy() < 30
        kept = young | (rng.random(len(tail)) < OLDER_KEPT)
        tail = _form_change(tail.iloc[np.flatnonzero(kept)])
    elif scenario == "gradual":
        _require(out, ("SCHL", "AGEP", "year"), scenario)
        share = np.linspace(0.0, 1.0, num=len(tail))
        changed = rng.random(len(tail)) < share
        new = _form_change(tail)
        tail = tail.assign(
            AGEP=np.where(changed, new["AGEP"].to_numpy(), tail["AGEP"].to_numpy(dtype=float)),
            SCHL=np.where(changed, new["SCHL"].to_numpy(), tail["SCHL"].to_numpy()),
        )
    return pd.concat([head, tail], ignore_index=True)
