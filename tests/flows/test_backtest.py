"""`driftloop backtest`: the SUMMARY.json contract on generated data, and clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from typer.testing import CliRunner

from driftloop.cli import app

runner = CliRunner()
BATCH_KEYS = {
    "index",
    "first_row",
    "rows",
    "drift_detected",
    "drift_share",
    "drifted_features",
    "alert",
    "retrained",
    "promoted",
    "champion_version",
    "metric",
    "baseline_metric",
}


def _regression(n: int, *, seed: int, shift: float = 0.0, start_id: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    z = rng.normal(0.0, 1.0, n)
    kind = rng.choice(["a", "b", "c"], n)
    effect = pd.Series(kind).map({"a": 0.0, "b": 1.0, "c": -1.0}).to_numpy()
    slope = 2.0 if shift == 0 else -1.0  # the relation changes with the shift: drift that hurts
    y = slope * x + 0.5 * z + effect + rng.normal(0, 0.3, n)
    return pd.DataFrame(
        {"row_id": np.arange(start_id, start_id + n), "x": x, "z": z, "kind": kind, "y": y}
    )


def _write(tmp_path: Path) -> tuple[Path, Path, Path]:
    train = _regression(800, seed=1)
    live = pd.concat(
        [
            _regression(900, seed=2, start_id=800),
            _regression(1500, seed=3, shift=1.5, start_id=1700),
        ],
        ignore_index=True,
    )
    train.to_csv(tmp_path / "train.csv", index=False)
    live.drop(columns=["y"]).to_parquet(tmp_path / "live.parquet", index=False)
    live[["row_id", "y"]].to_csv(tmp_path / "labels.csv", index=False)
    config = {
        "model_name": "synthetic",
        "task": "regression",
        "target": "y",
        "id_column": "row_id",
        "data": {"train": "train.csv"},
        "model": {
            "candidates": [{"family": "linear", "search": {"alpha": [0.1, 1.0]}}],
            "cv_folds": 2,
        },
        "promotion": {"metric": "rmse", "floor": 5.0},
        "monitoring": {
            "window": {"kind": "last_rows", "rows": 600},
            "min_window_rows": 200,
            "policy": {"cooldown_hours": 0, "min_labeled_rows": 100},
            "retrain": {"min_labeled_rows": 200, "include_reference": False, "max_live_rows": 600},
        },
    }
    path = tmp_path / "driftloop.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, tmp_path / "live.parquet", tmp_path / "labels.csv"


def _store_variables() -> dict[str, str]:
    """The variables Settings reads its stores and Prefect server from."""
    names = ("MLFLOW_TRACKING_URI", "DRIFTLOOP_ARTIFACT_ROOT", "DRIFTLOOP_DATABASE_URL")
    return {
        k: v
        for k, v in os.environ.items()
        if k in (*names, "DRIFTLOOP_WORKSPACE", "PREFECT_API_URL")
    }


def test_backtest_contract_on_generated_regression(tmp_path: Path) -> None:
    config, live, labels = _write(tmp_path)
    out = tmp_path / "summary.json"
    environment = _store_variables()

    result = runner.invoke(
        app,
        [
            "backtest",
            "--config",
            str(config),
            "--live",
            str(live),
            "--labels",
            str(labels),
            "--batch-rows",
            "300",
            "--label-delay-batches",
            "1",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ],
    )

    assert result.exit_code == 0, result.output
    assert _store_variables() == environment  # settings passed down, the environment untouched
    assert (tmp_path / "work" / "mlflow.db").exists()
    assert (tmp_path / "work" / "driftloop.db").exists()
    summary = json.loads(out.read_text())
    assert summary["metric_name"] == "rmse"
    batches = summary["batches"]
    assert [b["index"] for b in batches] == list(range(8))
    assert [b["first_row"] for b in batches] == [0, 300, 600, 900, 1200, 1500, 1800, 2100]
    assert all(set(b) >= BATCH_KEYS for b in batches)
    assert (
        batches[0]["champion_version"] == 1
        and batches[0]["metric"] == batches[0]["baseline_metric"]
    )
    assert not any(b["drift_detected"] for b in batches[:3])  # before the shift
    assert any(b["drift_detected"] for b in batches[3:])  # after it
    assert summary["retrains"] >= 1 and summary["retrains"] == sum(b["retrained"] for b in batches)
    assert summary["promotions"] >= 1
    last = batches[-1]
    assert last["champion_version"] > 1
    assert (
        last["metric"] < last["baseline_metric"]
    )  # the retrained model serves better than the frozen one


def test_backtest_errors_are_clear(tmp_path: Path) -> None:
    config, live, labels = _write(tmp_path)
    wrong = tmp_path / "wrong_labels.csv"
    pd.DataFrame({"other": [1, 2], "y": [0.0, 1.0]}).to_csv(wrong, index=False)

    result = runner.invoke(
        app,
        [
            "backtest",
            "--config",
            str(config),
            "--live",
            str(live),
            "--labels",
            str(wrong),
            "--batch-rows",
            "300",
            "--workdir",
            str(tmp_path / "w1"),
            "--out",
            str(tmp_path / "s.json"),
        ],
    )
    assert result.exit_code == 2
    assert "lacks column(s) ['row_id']" in result.output and "Traceback" not in result.output

    missing = runner.invoke(
        app,
        [
            "backtest",
            "--config",
            str(config),
            "--live",
            str(tmp_path / "nope.csv"),
            "--batch-rows",
            "300",
            "--out",
            str(tmp_path / "s.json"),
        ],
    )
    assert missing.exit_code == 2 and "data file not found" in missing.output


def _tiers(n: int, *, seed: int, shift: float = 0.0, start_id: int = 0) -> pd.DataFrame:
    """A three-class, string-labelled problem; with a shift, x moves and the classes swap ends."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    z = rng.normal(0.0, 1.0, n)
    kind = rng.choice(["a", "b", "c"], n)
    score = x + 0.5 * z + pd.Series(kind).map({"a": 0.0, "b": 0.5, "c": -0.5}).to_numpy()
    score = score + rng.normal(0, 0.3, n)
    names = np.array(["low", "mid", "high"] if shift == 0 else ["high", "mid", "low"])
    tier = names[np.digitize(score - shift, [-0.6, 0.6])]
    return pd.DataFrame(
        {"row_id": np.arange(start_id, start_id + n), "x": x, "z": z, "kind": kind, "tier": tier}
    )


def test_backtest_contract_on_generated_multiclass_with_a_categorical_target(
    tmp_path: Path,
) -> None:
    _tiers(900, seed=1).to_csv(tmp_path / "train.csv", index=False)
    live = pd.concat(
        [_tiers(900, seed=2, start_id=900), _tiers(1500, seed=3, shift=1.5, start_id=1800)],
        ignore_index=True,
    )
    live.to_parquet(tmp_path / "live.parquet", index=False)  # labels as a column of the file
    config = {
        "model_name": "tiers",
        "task": "classification",
        "target": "tier",
        "id_column": "row_id",
        "data": {"train": "train.csv"},
        "model": {
            "candidates": [{"family": "logistic", "search": {"C": [0.1, 1.0]}}],
            "cv_folds": 2,
        },
        "promotion": {"metric": "accuracy", "floor": 0.6},
        "monitoring": {
            "window": {"kind": "last_rows", "rows": 600},
            "min_window_rows": 200,
            "policy": {"cooldown_hours": 0, "min_labeled_rows": 100},
            "retrain": {"min_labeled_rows": 200, "include_reference": False, "max_live_rows": 600},
        },
    }
    (tmp_path / "driftloop.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "summary.json"

    result = runner.invoke(
        app,
        [
            "backtest",
            "--config",
            str(tmp_path / "driftloop.yaml"),
            "--live",
            str(tmp_path / "live.parquet"),
            "--batch-rows",
            "300",
            "--label-delay-batches",
            "1",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ],
    )

    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["metric_name"] == "accuracy"
    batches = summary["batches"]
    assert [b["first_row"] for b in batches] == list(range(0, 2400, 300))
    assert all(set(b) >= BATCH_KEYS for b in batches)
    assert batches[0]["metric"] == batches[0]["baseline_metric"] > 0.6
    assert not any(b["drift_detected"] for b in batches[:3])
    assert any(b["drift_detected"] for b in batches[3:])
    assert summary["retrains"] >= 1 and summary["promotions"] >= 1
    last = batches[-1]
    assert last["champion_version"] > 1 and last["metric"] > last["baseline_metric"]
