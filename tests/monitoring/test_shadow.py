"""The paired live comparison: the labeled rows both versions answered, read back from a real
log, and the challenger judged against the champion on exactly those rows."""

from __future__ import annotations

import dataclasses
import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from core.spec import FeatureSpec, VersionInfo
from monitoring import store
from monitoring.shadow import (
    count_shadow,
    read_pairs,
    shadow_comparison,
    should_promote_shadow,
    write_shadow,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SPEC = FeatureSpec(numeric=("a",), categorical=("c",))


def info(version: int) -> VersionInfo:
    return VersionInfo("m", version, "r", "classification", "y", SPEC, (), (0, 1))


def logged(tmp_path: Path, *, challenger_skill: float, n: int = 600, seed: int = 0):
    """A log where the champion (v1) answers at 70% accuracy and the challenger (v2) at
    ``challenger_skill``; every row labeled except the last 50, and 100 rows the challenger
    never saw (scored before it existed)."""
    rng = np.random.default_rng(seed)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store.upgrade_database(url)
    engine = store.make_engine(url)
    y = rng.integers(0, 2, n)

    def answer(skill: float) -> np.ndarray:
        right = rng.random(n) < skill
        p = np.where(right == (y == 1), 0.5 + 0.4 * rng.random(n), 0.5 - 0.4 * rng.random(n))
        return p

    mine, theirs = answer(0.7), answer(challenger_skill)
    ids = [f"r{i}" for i in range(n)]
    store.insert_records(
        engine,
        [
            store.log_record(
                request_id=ids[i],
                ts=NOW + timedelta(seconds=i),
                model_name="m",
                model_version=1,
                features={"a": float(rng.normal()), "c": "x"},
                prediction=int(mine[i] > 0.5),
                probability=float(mine[i]),
            )
            for i in range(n)
        ],
    )
    write_shadow(
        engine,
        [
            {
                "request_id": ids[i],
                "ts": NOW + timedelta(seconds=i),
                "model_name": "m",
                "model_version": 2,
                "prediction": int(theirs[i] > 0.5),
                "probability": float(theirs[i]),
            }
            for i in range(100, n)
        ],
    )
    store.record_labels(engine, {ids[i]: int(y[i]) for i in range(n - 50)}, at=NOW)
    return engine, ids, theirs


def pairs(engine, last_n: int = 10_000):
    return read_pairs(
        engine,
        model_name="m",
        champion=1,
        challenger=2,
        numeric=SPEC.numeric,
        categorical=SPEC.categorical,
        target="y",
        last_n=last_n,
    )


def test_pairs_are_the_labeled_rows_both_answered_row_for_row(tmp_path: Path) -> None:
    engine, ids, theirs = logged(tmp_path, challenger_skill=0.9)
    ours, challenger = pairs(engine)
    assert list(ours["request_id"]) == ids[100:550]  # shadowed and labeled, oldest first
    assert list(challenger["request_id"]) == ids[100:550]
    assert np.allclose(challenger["probability"], theirs[100:550])
    assert (challenger["y"] == ours["y"]).all() and (challenger["model_version"] == 2).all()
    assert count_shadow(engine, model_name="m", version=2) == 500
    newest, _ = pairs(engine, last_n=20)
    assert list(newest["request_id"]) == ids[530:550]
    # a retried batch is written once
    write_shadow(engine, [{"request_id": "r100", "ts": NOW, "model_name": "m", "model_version": 2, "prediction": 0, "probability": 0.1}])  # fmt: skip
    assert count_shadow(engine, model_name="m", version=2) == 500
    engine.dispose()


@pytest.mark.parametrize(("skill", "verdict"), [(0.9, "better"), (0.7, "no clear difference"), (0.5, "worse")])  # fmt: skip
def test_the_challenger_is_judged_on_the_same_rows(
    tmp_path: Path, skill: float, verdict: str
) -> None:
    engine, _, _ = logged(tmp_path, challenger_skill=skill, n=1500)
    ours, challenger = pairs(engine)
    result = shadow_comparison(
        ours, challenger, champion=info(1), challenger=info(2), target="y", metric="accuracy", min_rows=100
    )  # fmt: skip
    assert result is not None and result.rows == 1350
    assert result.to_dict()["verdict"] == verdict
    assert "challenger v2 vs champion v1 on 1350 labeled live rows" in result.sentence()
    too_few = shadow_comparison(
        ours, challenger, champion=info(1), challenger=info(2), target="y", metric="accuracy", min_rows=2000
    )  # fmt: skip
    assert too_few is None
    engine.dispose()


def test_the_challenger_is_promoted_on_paired_live_results_only_when_asked_and_clearly_better(
    tmp_path: Path,
) -> None:
    engine, _, _ = logged(tmp_path, challenger_skill=0.9, n=1500)
    ours, challenger = pairs(engine)
    engine.dispose()
    better = shadow_comparison(
        ours, challenger, champion=info(1), challenger=info(2), target="y", metric="accuracy", min_rows=100
    )  # fmt: skip
    assert better is not None and better.better
    decide = functools.partial(should_promote_shadow, min_improvement=0.0, rolled_back=False)
    assert decide(better, enabled=True).yes
    assert "paired live results" in decide(better, enabled=True).reason
    assert not decide(better, enabled=False).yes
    assert not decide(None, enabled=True).yes
    assert not should_promote_shadow(
        better, enabled=True, min_improvement=0.0, rolled_back=True
    ).yes
    gain = better.difference.value
    short = should_promote_shadow(
        better, enabled=True, min_improvement=gain + 0.01, rolled_back=False
    )
    assert not short.yes and "min_improvement" in short.reason
    same = dataclasses.replace(better, difference=dataclasses.replace(better.difference, low=-0.01))
    assert not decide(same, enabled=True).yes  # not better beyond noise
