"""A window's verdict without Prefect: the window's start, judging it against a version's
reference (drift on the moved feature, performance on the labeled rows), and the row recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from core.config import parse_config
from core.spec import PREDICTION_COLUMN, PROBABILITY_COLUMN, FeatureSpec, VersionInfo
from monitoring.policy import AlertDecision, Decision
from monitoring.verdict import (
    MonitorOutcome,
    VersionReference,
    Window,
    judge,
    reference_statistics,
    run_row,
    verdict_markdown,
    window_since,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SPEC = FeatureSpec(numeric=("a", "b"), categorical=("c",))
CONFIG = parse_config(
    {"model_name": "m", "task": "classification", "target": "y", "data": {"train": "d.csv"}}
)
INFO = VersionInfo(
    model_name="m",
    version=3,
    run_id="r",
    task="classification",
    target="y",
    spec=SPEC,
    not_null=(),
    classes=(0, 1),
)


def scored(n: int, *, shift: float, seed: int, flip: float = 0.0) -> pd.DataFrame:
    """Rows a model scored: ``a`` moved by ``shift``; ``flip`` of the labels wrong for it."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, n)
    p = 1.0 / (1.0 + np.exp(-2.0 * b))
    y = (rng.random(n) < p).astype(float)
    wrong = rng.random(n) < flip
    y[wrong] = 1.0 - y[wrong]
    return pd.DataFrame(
        {
            "a": a,
            "b": b,
            "c": rng.choice(["x", "y"], n),
            PREDICTION_COLUMN: (p > 0.5).astype(int),
            PROBABILITY_COLUMN: p,
            "y": y,
        }
    )


def reference() -> VersionReference:
    frame = scored(2000, shift=0.0, seed=1)
    return VersionReference(INFO, frame, 0.84, reference_statistics(INFO, frame))


def window(frame: pd.DataFrame) -> Window:
    return Window(frame.assign(ts=NOW), 3, "last_rows", NOW - timedelta(hours=1), NOW)


def test_window_start_by_kind() -> None:
    last = NOW - timedelta(hours=5)
    assert window_since("last_hours", now=NOW, hours=2, last_end=last) == NOW - timedelta(hours=2)
    assert window_since("since_last_run", now=NOW, hours=2, last_end=last) == last
    assert window_since("since_last_run", now=NOW, hours=2, last_end=None) is None
    assert window_since("last_rows", now=NOW, hours=2, last_end=last) is None


def test_no_version_yet_is_not_enough_data() -> None:
    result = judge(CONFIG, None, window(scored(10, shift=0.0, seed=2)))
    assert result.status == "not_enough_data" and result.window_rows == 0


def test_a_quiet_window_is_ok_and_a_moved_feature_drifts() -> None:
    ref = reference()
    quiet = judge(CONFIG, ref, window(scored(1000, shift=0.0, seed=3)))
    assert quiet.drift is not None and "a" not in quiet.drift.drifted_features
    assert quiet.performance is not None and quiet.performance.labeled_rows == 1000
    moved = judge(CONFIG, ref, window(scored(1000, shift=1.5, seed=4)))
    assert moved.drift is not None and "a" in moved.drift.drifted_features


def test_performance_is_measured_on_the_labeled_rows_and_a_drop_is_seen() -> None:
    frame = scored(1000, shift=0.0, seed=5, flip=0.4)
    frame.loc[frame.index[:400], "y"] = np.nan  # labels not arrived yet
    result = judge(CONFIG, reference(), window(frame))
    assert result.performance is not None
    assert result.performance.labeled_rows == 600
    assert result.performance.drop > 0.1
    assert "performance" in " ".join(result.failed)


def test_the_recorded_row_and_the_markdown_say_what_was_found() -> None:
    result = judge(CONFIG, reference(), window(scored(1000, shift=1.5, seed=6)))
    outcome = MonitorOutcome(
        run_id="run-1",
        model_name="m",
        version=3,
        result=result,
        alert=AlertDecision(True, "drift"),
        retrain=Decision(False, "drift does not hurt"),
        window=window(scored(1000, shift=1.5, seed=6)),
        report_path=None,
    )
    row = run_row(outcome, CONFIG, started=NOW, triggered_by="test")
    assert row["model_version"] == 3 and row["status"] == result.status
    assert row["window_rows"] == 1000 and row["labeled_rows"] == 1000
    assert "a" in row["drifted_features"] and row["drift_share"] == pytest.approx(
        result.drift.drift_share
    )
    assert row["alerted"] is True and row["retrain"] is False
    text = verdict_markdown(outcome)
    assert "m v3" in text and "| a |" in text and "**yes**" in text


def test_a_window_read_without_features_takes_its_drift_and_quality_from_elsewhere() -> None:
    """What the monitor judges with column tasks: the outputs and labels of every row, the
    newest rows with features (the report's), and the drift and quality the tasks computed."""
    ref, frame = reference(), scored(1000, shift=1.5, seed=6, flip=0.3)
    whole = judge(CONFIG, ref, window(frame))
    outputs = window(frame).frame.drop(columns=list(SPEC.columns))
    light = Window(outputs, 3, "last_rows", NOW, NOW, sample=window(frame).frame.tail(200))
    assert not light.has_features and len(light.report_rows()) == 200
    assert light.compared_rows("y").empty  # nothing to compare a predecessor on unless read
    with pytest.raises(ValueError, match="without its features.*column_checks"):
        judge(CONFIG, ref, light)
    alone = judge(CONFIG, ref, light, drift=whole.drift, quality=whole.quality)
    assert alone.to_dict() == whole.to_dict()
    assert alone.performance is not None and alone.performance.labeled_rows == 1000
