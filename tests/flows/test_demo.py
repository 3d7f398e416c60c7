"""`driftloop demo` end to end on a sample of the shipped traffic: real server, registry and log.

Every 5th live row, small model searches: drift that hurts is detected, a retraining promotes a
better model and the server hot-swaps to it; the untouched traffic retrains nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from flows.demo import DemoError, Row, headline, in_time_order, load_traffic, run_demo
from tests.conftest import fresh_prefect_home

#: Demo settings scaled to a fifth of the traffic and a fast model search.
SMALL: dict[str, object] = {
    "model": {
        "candidates": [
            {"family": "hist_gradient_boosting", "search": {"max_leaf_nodes": [15, 31]}}
        ],
        "cv_folds": 2,
        "search_iterations": 1,
        "max_train_rows": 4000,
    },
    "monitoring": {"retrain": {"max_live_rows": 8000, "min_labeled_rows": 2000}},
}


@pytest.fixture
def demo_env(tmp_path: Path, mlflow_env: dict[str, str]) -> Iterator[Path]:
    """The demo passes its settings down: it leaves the environment as it found it."""
    before = _store_variables()
    yield tmp_path
    assert _store_variables() == before


def _store_variables() -> dict[str, str]:
    """The variables Settings reads its stores and Prefect server from."""
    names = ("MLFLOW_TRACKING_URI", "DRIFTLOOP_ARTIFACT_ROOT", "DRIFTLOOP_DATABASE_URL")
    return {
        k: v
        for k, v in os.environ.items()
        if k in (*names, "DRIFTLOOP_WORKSPACE", "PREFECT_API_URL")
    }


def _demo(tmp_path: Path, scenario: str) -> list[Row]:
    return run_demo(
        scenario,
        monitor_every=6000,
        sample_every=5,
        out_dir=tmp_path / "report",
        state=tmp_path / "state",
        echo=lambda *_: None,
        overrides=SMALL,
    )


def test_sudden_drift_retrains_promotes_and_hot_swaps(demo_env: Path) -> None:
    rows = _demo(demo_env, "sudden")

    change = next(i for i, r in enumerate(rows) if r.rows_sent > 41779 * 0.4)
    assert not any(r.retrain for r in rows[:change])
    assert any(r.alert and r.retrain for r in rows[change:])
    assert rows[0].champion == 1 and rows[-1].champion > 1  # promoted and served
    last = rows[-1]
    assert last.serving_accuracy > last.frozen_accuracy + 0.1
    assert (demo_env / "report" / "timeline.png").stat().st_size > 0
    assert (demo_env / "report" / "latest_drift_report.html").exists()


def test_load_traffic_keeps_the_change_row_of_the_input() -> None:
    traffic, truth, change_at = load_traffic("sudden", 5)
    assert change_at == int(41779 * 0.4)
    assert len(traffic) < 41779 and truth.notna().all()
    with pytest.raises(DemoError, match="sample_every must be at least 1"):
        load_traffic("none", 0)


def test_in_time_order_sorts_years_and_mixes_rows_within_a_year() -> None:
    live = pd.DataFrame({"id": range(8), "year": [2017, 2016] * 4})
    out = in_time_order(live, seed=1)
    assert out["year"].is_monotonic_increasing
    assert sorted(out["id"]) == list(range(8))
    assert not out["id"].is_monotonic_increasing  # file order within a year is not time
    assert live["id"].tolist() == list(range(8))  # the input is not mutated


@pytest.mark.parametrize(
    ("reason", "first"),
    [
        ("drift that hurts: data drift in 2 of 16 features: AGEP (p=0)", "drift that hurts"),
        (
            "candidate roc_auc 0.89 is worse than champion 0.90; champion kept",
            "candidate roc_auc 0.89 is worse than champion 0.90",
        ),
        ("no champion yet", "no champion yet"),
    ],
)
def test_headline_is_the_first_clause_of_a_reason(reason: str, first: str) -> None:
    assert headline(reason) == first


#: A Prefect or Python log line as their console handlers print it (`12:00:00 | INFO    | ...`).
LOG_LINE = re.compile(r"\|\s*(DEBUG|INFO|WARNING|ERROR|CRITICAL)\s*\|")


def test_the_demo_command_prints_the_story_and_the_libraries_log_to_a_file(
    tmp_path: Path,
) -> None:
    """`driftloop demo` as a user runs it (a tenth of the traffic, no drift): a short story on
    the terminal; Prefect's logs and MLflow's messages in the log file it names; untouched
    traffic retrains nothing and the first champion serves throughout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DRIFTLOOP_", "MLFLOW_", "PREFECT_"))
    }
    env.update(
        {
            "DRIFTLOOP_STATE_DIR": str(tmp_path / "state"),
            "PREFECT_HOME": str(fresh_prefect_home(tmp_path / "ph")),
        }
    )
    command = [str(Path(sys.executable).parent / "driftloop"), "demo", "--scenario", "none"]
    command += ["--sample-every", "10", "--monitor-every", "5000"]
    command += ["--state", str(tmp_path / "demo"), "--out", str(tmp_path / "report")]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800
    )
    terminal = result.stdout + result.stderr
    assert result.returncode == 0, terminal
    assert result.stderr == ""
    story = [line for line in result.stdout.splitlines() if "━" not in line]  # the bar
    assert len(story) < 40, terminal
    assert "4/4 done" in terminal and "timeline" in terminal
    for noise in ("UserWarning", "Warning:", "Task run", "Flow run", "Created version"):
        assert noise not in terminal, noise
    assert not [line for line in story if LOG_LINE.search(line)], terminal

    (note,) = [line for line in story if line.startswith("Prefect and MLflow logs: ")]
    log = Path(note.removeprefix("Prefect and MLflow logs: "))
    assert log == tmp_path / "state" / "logs" / "driftloop.log"
    text = log.read_text()
    assert "prefect.task_runs" in text and "Finished in state Completed" in text
    assert "Created version '1' of model 'employment'" in text  # MLflow's own print
    timeline = pd.read_csv(tmp_path / "report" / "timeline.csv")
    assert len(timeline) and not timeline["retrain"].any()
    assert set(timeline["champion"]) == {1}
