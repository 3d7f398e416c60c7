"""Calibration fitted out of sample, stored as plain JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from pipelines.calibration import (
    CalibrationError,
    Calibrator,
    brier_of,
    choose_method,
    class_positions,
    cross_calibrate,
    fit_calibrator,
    identity_calibrator,
    log_loss_of,
)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def model_rows(
    n: int, k: int, rng: np.random.Generator, *, distort=lambda logits: 2.5 * logits + 0.4
) -> tuple[np.ndarray, np.ndarray]:
    """A miscalibrated model's probabilities (overconfident and shifted by default) and labels
    drawn from the true probabilities."""
    logits = rng.normal(size=(n, 3)) @ rng.normal(size=(3, k))
    truth = softmax(logits)
    y = (np.cumsum(truth, axis=1) < rng.random((n, 1))).sum(axis=1).clip(max=k - 1)
    scores = softmax(distort(logits)) if k > 2 else _binary(distort(logits[:, 1] - logits[:, 0]))
    return scores, y


def _binary(logit: np.ndarray) -> np.ndarray:
    p = np.exp(-np.logaddexp(0.0, -logit))
    return np.column_stack([1.0 - p, p])


@pytest.fixture(scope="module")
def holdout_and_test() -> dict[int, tuple]:
    rng = np.random.default_rng(0)
    return {k: (model_rows(6000, k, rng), model_rows(20000, k, rng)) for k in (2, 4)}


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("method", ["isotonic", "sigmoid", "auto"])
def test_calibration_fitted_out_of_sample_improves_log_loss_on_new_rows(
    holdout_and_test, k: int, method: str
) -> None:
    (holdout, y_holdout), (test, y_test) = holdout_and_test[k]
    calibrator = fit_calibrator(holdout, y_holdout, classes=list(range(k)), method=method)
    raw, calibrated = log_loss_of(test, y_test), log_loss_of(calibrator.apply(test), y_test)
    assert calibrated < raw - 0.02
    assert brier_of(calibrator.apply(test), y_test) < brier_of(test, y_test)


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("method", ["isotonic", "sigmoid", "identity", "auto"])
def test_calibrator_round_trips_through_json_exactly(holdout_and_test, k: int, method: str) -> None:
    (holdout, y_holdout), (test, _) = holdout_and_test[k]
    classes = ["no", "yes"] if k == 2 else list(range(k))
    calibrator = fit_calibrator(holdout, y_holdout, classes=classes, method=method)
    text = json.dumps(calibrator.to_dict())
    again = Calibrator.from_dict(json.loads(text))
    assert again == calibrator
    np.testing.assert_array_equal(again.apply(test), calibrator.apply(test))
    assert json.dumps(again.to_dict()) == text


@pytest.mark.parametrize("k", [2, 4])
def test_calibrated_rows_are_probabilities(holdout_and_test, k: int) -> None:
    (holdout, y_holdout), (test, _) = holdout_and_test[k]
    out = fit_calibrator(holdout, y_holdout, classes=list(range(k))).apply(test)
    assert out.shape == test.shape
    assert ((out >= 0) & (out <= 1)).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_isotonic_map_is_sklearns_isotonic_regression(holdout_and_test) -> None:
    (holdout, y_holdout), (test, _) = holdout_and_test[2]
    ours = fit_calibrator(holdout, y_holdout, classes=[0, 1], method="isotonic")
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(holdout[:, 1], y_holdout)
    np.testing.assert_allclose(ours.apply(test)[:, 1], iso.predict(test[:, 1]), atol=1e-12)


def test_sigmoid_recovers_a_logit_linear_distortion() -> None:
    rng = np.random.default_rng(1)
    scores, y = model_rows(40000, 2, rng, distort=lambda logit: 2.0 * logit - 1.0)
    calibrator = fit_calibrator(scores, y, classes=[0, 1], method="sigmoid")
    (m,) = calibrator.maps
    assert m.a == pytest.approx(0.5, abs=0.03) and m.b == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize(
    ("distort", "expected"),
    [
        (lambda logit: 2.0 * logit - 1.0, "sigmoid"),  # logit-linear: two parameters suffice
        (lambda logit: np.sign(logit) * np.abs(logit) ** 3, "isotonic"),  # not logit-linear
        (lambda logit: logit, "identity"),  # calibrated already
    ],
    ids=["sigmoid", "isotonic", "identity"],
)
def test_auto_chooses_the_method_that_fits_the_distortion(distort, expected: str) -> None:
    scores, y = model_rows(20000, 2, np.random.default_rng(2), distort=distort)
    assert choose_method(scores, y, classes=[0, 1]) == expected
    assert fit_calibrator(scores, y, classes=[0, 1]).method == expected


def test_out_of_fold_calibration_does_not_flatter_itself(holdout_and_test) -> None:
    (holdout, y_holdout), _ = holdout_and_test[2]
    in_sample = fit_calibrator(holdout, y_holdout, classes=[0, 1], method="isotonic")
    oof = cross_calibrate(holdout, y_holdout, classes=[0, 1], method="isotonic")
    assert brier_of(oof, y_holdout) > brier_of(in_sample.apply(holdout), y_holdout)


def test_identity_leaves_probabilities_alone(holdout_and_test) -> None:
    (_, _), (test, _) = holdout_and_test[4]
    np.testing.assert_array_equal(identity_calibrator(range(4)).apply(test), test)


@pytest.mark.parametrize(
    ("values", "classes", "expected"),
    [
        (np.array([1.0, np.nan, 0.0]), [0, 1], [1, -1, 0]),
        (["1", None, "x"], [0, 1], [1, -1, -1]),
        (np.array(["b", "a", "a"]), ["a", "b"], [1, 0, 0]),
        (np.array([2, 7]), np.array([1, 2, 3]), [1, -1]),
    ],
    ids=["floats and NaN", "JSON strings", "strings", "unknown"],
)
def test_class_positions(values, classes, expected: list) -> None:
    assert class_positions(values, classes).tolist() == expected


@pytest.mark.parametrize(
    ("proba", "y", "classes", "method", "message"),
    [
        (np.full((4, 2), 0.5), np.array([0, 0, 0, 0]), [0, 1], "isotonic", r"no rows of class"),
        (np.full((4, 2), 0.5), np.array([0, 1, 0]), [0, 1], "isotonic", r"4 probability rows"),
        (np.full((4, 3), 0.3), np.array([0, 1, 2, 0]), [0, 1], "isotonic", r"n x 2"),
        (np.full((4, 2), 0.5), np.array([0, 1, -1, 0]), [0, 1], "isotonic", r"no known class"),
        (np.full((4, 2), 0.5), np.array([0, 1, 1, 0]), [0, 1], "platt", r"unknown calibration"),
        (np.full((4, 2), 0.5), np.array([0, 1, 1, 0]), [0, 1], "auto", r"at least 5 rows"),
    ],
    ids=["a class without rows", "lengths", "columns", "unlabeled", "method", "too few for cv"],
)
def test_unfittable_calibrations_are_named(proba, y, classes, method, message) -> None:
    with pytest.raises(CalibrationError, match=message):
        fit_calibrator(proba, y, classes=classes, method=method)


def test_from_dict_refuses_maps_that_do_not_fit_the_classes() -> None:
    data = identity_calibrator(["a", "b", "c"]).to_dict()
    data["maps"] = data["maps"][:2]
    with pytest.raises(CalibrationError, match="3 classes need 3 map"):
        Calibrator.from_dict(data)
