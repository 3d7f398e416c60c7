"""The default policy replayed on generated streams: after an abrupt change of concept it ends
well above the never-retrained model, on a harmless shift it never retrains, and the table and
the fixed-schedule comparison are in the summary (SUMMARY.json only gains keys)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.config import load_config
from flows.backtest import backtest, summary_lines
from pipelines.synthetic import generate


def replay(tmp_path: Path, scenario: str, *, compare_every: int | None = None) -> dict:
    stream = generate(scenario, train_rows=3000, live_rows=12_000, change=0.5, seed=2)
    stream.train.to_parquet(tmp_path / "train.parquet", index=False)
    stream.live.to_parquet(tmp_path / "live.parquet", index=False)
    stream.labels.to_parquet(tmp_path / "labels.parquet", index=False)
    config = {
        "model_name": "synthetic",
        "task": stream.task,
        "target": "y",
        "id_column": "id",
        "data": {"train": "train.parquet"},
        "model": {"cv_folds": 2, "search_iterations": 2},
    }
    (tmp_path / "driftloop.yaml").write_text(yaml.safe_dump(config))
    return backtest(
        load_config(tmp_path / "driftloop.yaml"),
        tmp_path / "live.parquet",
        tmp_path / "labels.parquet",
        batch_rows=1000,
        label_delay_batches=1,
        workdir=tmp_path / "work",
        compare_every=compare_every,
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.slow
def test_after_an_abrupt_change_of_concept_the_loop_ends_well_above_never_retraining(
    tmp_path: Path,
) -> None:
    summary = replay(tmp_path, "abrupt", compare_every=4)
    after = summary["batches"][7:]  # the change is at batch 6; one batch to see its labels
    policy = _mean([b["metric"] for b in after])
    never = _mean([b["baseline_metric"] for b in after])
    assert policy > never + 0.3, (policy, never)
    assert 1 <= summary["retrains"] <= 3 and summary["promotions"] >= 1
    assert summary["alerts_by_severity"]["critical"] == 1  # one incident, one alert
    change = summary["changes"][0]
    assert (
        change["batch"] in (6, 7) and change["after"]["metric"] > change["after"]["baseline_metric"]
    )
    # the fixed schedule ran on the same batches and reports its own retrainings
    assert summary["schedule"] == {"every": 4, "retrains": 3}
    assert all("scheduled_metric" in b for b in summary["batches"])
    lines = summary_lines(summary)
    assert "never retrain" in lines[0] and "every 4 batches" in lines[0]
    assert any(line.startswith("before the change at batch") for line in lines)


@pytest.mark.slow
def test_a_harmless_shift_is_a_warning_and_never_retrains(tmp_path: Path) -> None:
    summary = replay(tmp_path, "harmless")
    assert summary["retrains"] == 0 and summary["promotions"] == 0
    assert summary["alerts_by_severity"]["critical"] == 0
    events = [b for b in summary["batches"] if b["incident_event"] == "opened"]
    assert len(events) == 1 and events[0]["event_severity"] == "warning"
    assert any(b["drift_detected"] for b in summary["batches"][6:])
    # each batch's estimate came before its labels, with its band
    estimated = [b for b in summary["batches"] if b["estimated_metric"] is not None]
    assert len(estimated) == len(summary["batches"])
    assert all(
        b["estimated_low"] <= b["estimated_metric"] <= b["estimated_high"] for b in estimated
    )
