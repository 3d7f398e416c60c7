"""The Evidently report of a window (monitoring/reports.py) on tiny seeded frames."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, mean_squared_error, roc_auc_score

from monitoring.reports import (
    ReportError,
    run_report,
    save_html,
    snapshot_values,
    with_timestamp,
)

NUMERIC = ["x", "z"]
CATEGORICAL = ["c"]


def frame(n: int, *, seed: int, shift: float = 0.0, labels: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    z = rng.normal(0.0, 1.0, n)
    c = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]).astype(object)
    logit = 1.5 * x - 0.5 * z
    probability = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < probability).astype(int)
    out = pd.DataFrame(
        {
            "x": x,
            "z": z,
            "c": c,
            "probability": probability,
            "prediction": (probability > 0.5).astype(int),
        }
    )
    return out.assign(y=y) if labels else out


def metric_configs(snapshot, kind: str) -> list[dict]:
    return [
        m["config"]
        for m in snapshot.dict()["metrics"]
        if m["config"]["type"] == f"evidently:metric_v2:{kind}"
    ]


def test_injected_drift_is_flagged() -> None:
    snapshot = run_report(
        reference=frame(400, seed=1),
        current=frame(300, seed=2, shift=2.0),
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        task="classification",
    )
    values = snapshot_values(snapshot)
    assert values["drifted_features"] >= 1
    assert values["drift_score.x"] < 0.05  # KS p-value at this reference size
    assert values["drift_score.z"] > 0.05


def test_no_drift_passes() -> None:
    values = snapshot_values(
        run_report(
            reference=frame(400, seed=1),
            current=frame(300, seed=3),
            numeric=NUMERIC,
            categorical=CATEGORICAL,
            task="classification",
        )
    )
    assert values["drifted_features"] == 0
    assert values["drift_share"] == 0


def test_per_column_method_and_threshold_are_applied() -> None:
    snapshot = run_report(
        reference=frame(400, seed=1),
        current=frame(300, seed=2),
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        task="classification",
        per_column_method={"x": "psi"},
        per_column_threshold={"x": 0.2, "c": 0.01},
    )
    by_column = {cfg["column"]: cfg for cfg in metric_configs(snapshot, "ValueDrift")}
    assert by_column["x"]["method"] == "psi" and by_column["x"]["threshold"] == 0.2
    assert by_column["c"]["threshold"] == 0.01
    assert "K-S" in by_column["z"]["method"]  # the default at this reference size


def test_quality_uses_only_rows_whose_labels_arrived() -> None:
    current = frame(300, seed=2)
    current = current.assign(y=current["y"].astype(float))
    current.loc[current.index[:100], "y"] = np.nan
    before = current.copy()
    values = snapshot_values(
        run_report(
            reference=frame(400, seed=1),
            current=current,
            numeric=NUMERIC,
            categorical=CATEGORICAL,
            target="y",
            task="classification",
        )
    )
    labeled = current.dropna(subset=["y"])
    assert values["accuracy"] == pytest.approx(accuracy_score(labeled.y, labeled.prediction))
    assert values["roc_auc"] == pytest.approx(roc_auc_score(labeled.y, labeled.probability))
    assert values["rows"] == 300  # drift and data quality still see the whole window
    pd.testing.assert_frame_equal(current, before)  # the caller's frame is untouched


def test_no_labels_no_quality_metrics() -> None:
    values = snapshot_values(
        run_report(
            reference=frame(400, seed=1),
            current=frame(300, seed=2, labels=False),
            numeric=NUMERIC,
            categorical=CATEGORICAL,
            target="y",
            task="classification",
        )
    )
    assert "accuracy" not in values and "roc_auc" not in values
    assert "drift_score.prediction" in values  # prediction drift needs no labels


def test_string_labels_use_the_larger_class_as_positive() -> None:
    def yes_no(n: int, seed: int) -> pd.DataFrame:
        base = frame(n, seed=seed)
        return base.assign(
            y=np.where(base.y == 1, "yes", "no").astype(object),
            prediction=np.where(base.prediction == 1, "yes", "no").astype(object),
        )

    current = yes_no(300, seed=2)
    values = snapshot_values(
        run_report(
            reference=yes_no(300, seed=1),
            current=current,
            numeric=NUMERIC,
            categorical=CATEGORICAL,
            target="y",
            task="classification",
        )
    )
    assert values["roc_auc"] == pytest.approx(
        roc_auc_score(current.y == "yes", current.probability)
    )
    assert values["accuracy"] == pytest.approx(accuracy_score(current.y, current.prediction))


def test_multiclass_labels() -> None:
    rng = np.random.default_rng(5)

    def three_class(n: int) -> pd.DataFrame:
        base = frame(n, seed=int(rng.integers(1000)))
        y = rng.choice(["lo", "mid", "hi"], n).astype(object)
        pred = np.where(rng.random(n) < 0.7, y, "mid").astype(object)
        return base.drop(columns=["probability"]).assign(y=y, prediction=pred)

    current = three_class(300)
    values = snapshot_values(
        run_report(
            reference=three_class(300),
            current=current,
            numeric=NUMERIC,
            categorical=CATEGORICAL,
            target="y",
            task="classification",
        )
    )
    assert values["accuracy"] == pytest.approx(accuracy_score(current.y, current.prediction))


# Evidently's regression widgets call r2_score on single-row bins; the metrics are unaffected.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_regression_quality() -> None:
    rng = np.random.default_rng(7)

    def reg(n: int) -> pd.DataFrame:
        base = frame(n, seed=int(rng.integers(1000))).drop(columns=["probability", "y"])
        target = 2 * base.x + rng.normal(0, 0.5, n)
        return base.assign(y=target, prediction=2 * base.x)

    current = reg(250)
    values = snapshot_values(
        run_report(
            reference=reg(300),
            current=current,
            numeric=NUMERIC,
            categorical=CATEGORICAL,
            target="y",
            task="regression",
        )
    )
    rmse = mean_squared_error(current.y, current.prediction) ** 0.5
    assert values["rmse"] == pytest.approx(rmse)
    assert values["mae"] == pytest.approx(np.abs(current.y - current.prediction).mean())
    assert values["r2"] > 0.8


def test_large_windows_are_sampled_to_max_rows() -> None:
    values = snapshot_values(
        run_report(
            reference=frame(3000, seed=1),
            current=frame(2000, seed=2),
            numeric=NUMERIC,
            categorical=CATEGORICAL,
            task="classification",
            max_rows=500,
        )
    )
    assert values["rows"] == 500


def test_driftloop_values_and_metadata_are_stored() -> None:
    when = datetime(2024, 3, 1, 6, 0)
    snapshot = run_report(
        reference=frame(200, seed=1),
        current=frame(200, seed=2),
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        task="classification",
        driftloop_values={
            "drift_share": 0.5,
            "dataset_drift": True,
            "estimated_accuracy": 0.81,
            "performance_drop": None,  # unknown: left out, not charted as 0
        },
        driftloop_feature_scores={"x": 0.12},
        timestamp=when,
        metadata={"model_version": "3", "drift_run_id": 17},
    )
    values = snapshot_values(snapshot)
    assert values["driftloop.drift_share"] == 0.5
    assert values["driftloop.dataset_drift"] == 1.0
    assert values["driftloop.estimated_accuracy"] == 0.81
    assert values["driftloop.drift_score.x"] == 0.12
    assert "driftloop.performance_drop" not in values
    model = snapshot.to_snapshot_model()
    assert model.timestamp == when
    assert model.metadata == {"model_version": "3", "drift_run_id": "17"}
    assert with_timestamp(snapshot, datetime(2025, 1, 1)).to_snapshot_model().timestamp.year == 2025


def test_save_html(tmp_path: Path) -> None:
    snapshot = run_report(
        reference=frame(200, seed=1),
        current=frame(200, seed=2),
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        target="y",
        task="classification",
    )
    path = save_html(snapshot, tmp_path / "reports" / "window.html")
    html = path.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:500].lower()
    assert "Drifted Columns" in html and "Accuracy" in html  # drift and quality sections
    assert len(html) > 10_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"numeric": ["x", "missing_col"]}, "missing_col"),
        ({"numeric": [], "categorical": []}, "no feature columns"),
        ({"max_rows": 0}, "max_rows"),
        ({"task": "ranking"}, "task"),
        ({"current": frame(0, seed=1)}, "current frame is empty"),
    ],
)
def test_bad_inputs_name_the_problem(kwargs: dict, message: str) -> None:
    args = {
        "reference": frame(100, seed=1),
        "current": frame(100, seed=2),
        "numeric": NUMERIC,
        "categorical": CATEGORICAL,
        "task": "classification",
        **kwargs,
    }
    with pytest.raises(ReportError, match=message):
        run_report(**args)
