"""The primary metric of a logged window without (all) its labels, as the monitor computes it:
calibrated, labeled rows measured, with a band; a less confident model shows a drop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.spec import FeatureSpec
from monitoring.estimation import EstimationFacts, window_estimate
from pipelines.calibration import fit_calibrator

SPEC = FeatureSpec(numeric=("x",), categorical=())
CLASSES = (0, 1, 2)


def binary_window(rng: np.random.Generator, n: int, *, spread: float, labels: bool) -> pd.DataFrame:
    p = 1 / (1 + np.exp(-rng.normal(0, spread, n)))
    y = (rng.random(n) < p).astype(float)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "probability": p,
            "prediction": (p >= 0.5).astype(int),
            "y": y if labels else np.nan,
        }
    )


def facts(metric: str = "roc_auc", kind: str = "binary", classes=(0, 1)) -> EstimationFacts:
    return EstimationFacts(metric, kind, classes)  # type: ignore[arg-type]


def test_a_less_confident_model_shows_an_estimated_drop_without_labels() -> None:
    rng = np.random.default_rng(2)
    confident = binary_window(rng, 5000, spread=3.0, labels=True)
    reference = window_estimate(
        confident, facts(), target="y", spec=SPEC, reference_value=None
    ).value  # all labeled: the realized value
    unsure = binary_window(rng, 2000, spread=0.5, labels=False)
    result = window_estimate(unsure, facts(), target="y", spec=SPEC, reference_value=reference)
    assert result.estimated and result.labeled_rows == 0 and result.rows == 2000
    assert result.drop > 0.05


def test_labeled_rows_are_measured_and_the_rest_estimated() -> None:
    rng = np.random.default_rng(3)
    window = binary_window(rng, 2000, spread=2.0, labels=True)
    everything = window_estimate(
        window, facts("accuracy"), target="y", spec=SPEC, reference_value=0.8
    )
    realized = float(np.mean(window["prediction"] == window["y"]))
    assert everything.value == pytest.approx(realized) and everything.labeled_rows == 2000
    half = window.assign(y=window["y"].where(np.arange(2000) < 1000))
    combined = window_estimate(half, facts("accuracy"), target="y", spec=SPEC, reference_value=0.8)
    assert combined.labeled_rows == 1000 and combined.unlabeled_share == pytest.approx(0.5)


def test_the_calibration_stored_with_the_version_is_applied() -> None:
    rng = np.random.default_rng(4)
    window = binary_window(rng, 20_000, spread=2.0, labels=True)
    overconfident = window.assign(probability=np.clip(window["probability"] ** 0.5, 0, 1))
    index = overconfident["y"].astype(int).to_numpy()
    proba = np.column_stack([1 - overconfident["probability"], overconfident["probability"]])
    calibrated = EstimationFacts(
        "accuracy",
        "binary",
        (0, 1),
        calibrator=fit_calibrator(proba, index, classes=(0, 1), method="isotonic"),
    )
    unlabeled = overconfident.assign(y=np.nan)
    realized = float(np.mean(overconfident["prediction"] == overconfident["y"]))
    raw = window_estimate(unlabeled, facts("accuracy"), target="y", spec=SPEC, reference_value=None)
    fixed = window_estimate(unlabeled, calibrated, target="y", spec=SPEC, reference_value=None)
    assert abs(fixed.value - realized) < 0.01 < abs(raw.value - realized)


def test_a_window_without_the_outputs_the_estimate_needs_has_none() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "prediction": [1, 0], "y": [np.nan, np.nan]})
    assert window_estimate(frame, facts(), target="y", spec=SPEC, reference_value=0.9) is None
    multi = frame.assign(probabilities=[None, {"0": 0.2, "1": 0.3, "2": 0.5}])
    assert (
        window_estimate(
            multi,
            facts("accuracy", "multiclass", CLASSES),
            target="y",
            spec=SPEC,
            reference_value=0.9,
        )
        is None
    )


def test_multiclass_macro_auc_is_estimated_from_the_per_class_probabilities() -> None:
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2, (3000, 3))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=3000),
            "probabilities": [dict(zip(["0", "1", "2"], row, strict=True)) for row in proba],
            "prediction": proba.argmax(axis=1),
            "y": np.nan,
        }
    )
    result = window_estimate(
        frame,
        facts("roc_auc_macro", "multiclass", CLASSES),
        target="y",
        spec=SPEC,
        reference_value=0.9,
    )
    assert 0.5 < result.value < 1.0 and result.estimated


def test_an_estimate_is_compared_with_the_holdouts_out_of_fold_estimate() -> None:
    """The drop of an estimate is against the same estimator on the holdout (out of fold), so
    its bias cancels; labeled rows still count against the measured holdout value."""
    from monitoring.estimation import fit_estimation

    rng = np.random.default_rng(5)
    holdout = binary_window(rng, 3000, spread=2.0, labels=True)
    p = holdout["probability"].to_numpy()
    fitted = fit_estimation(
        "accuracy",
        task="classification",
        classes=(0, 1),
        X=holdout[["x"]],
        y=holdout["y"].to_numpy().astype(int),
        prediction=holdout["prediction"].to_numpy(),
        proba=np.column_stack([1 - p, p]),
        numeric=("x",),
        categorical=(),
    )
    assert fitted is not None and fitted.reference_value is not None
    measured = float(np.mean(holdout["prediction"] == holdout["y"]))
    assert abs(fitted.reference_value - measured) < 0.03
    stored = EstimationFacts.from_files(fitted.to_files())
    assert stored is not None and stored.reference_value == fitted.reference_value

    window = binary_window(rng, 2000, spread=2.0, labels=True)
    unlabeled = window.assign(y=np.nan)
    alone = window_estimate(unlabeled, stored, target="y", spec=SPEC, reference_value=measured)
    assert alone.reference_value == pytest.approx(stored.reference_value)
    half = window.assign(y=window["y"].where(np.arange(2000) < 1000))
    mixed = window_estimate(half, stored, target="y", spec=SPEC, reference_value=measured)
    assert mixed.reference_value == pytest.approx((measured + stored.reference_value) / 2)
    # a version stored before the out-of-fold reference: the measured value, as before
    old = window_estimate(unlabeled, facts("accuracy"), target="y", spec=SPEC, reference_value=0.8)
    assert old.reference_value == 0.8
