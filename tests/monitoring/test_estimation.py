"""Label-free estimation: expected metrics, labeled + estimated rows, bands, the loss model."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest
import skops.io
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from core.metrics import METRICS
from monitoring.estimation import (
    LOSS_MODEL_SKOPS_TYPES,
    Estimate,
    EstimationInputError,
    NoiseModel,
    cross_predict_losses,
    estimate,
    expected_auc,
    expected_value,
    fit_loss_model,
    fit_noise_model,
    predict_losses,
)
from pipelines.calibration import cross_calibrate, fit_calibrator
from pipelines.evaluation import score_metric

BINARY = [m for m, info in METRICS.items() if "binary" in info.estimable]
MULTICLASS = [m for m, info in METRICS.items() if "multiclass" in info.estimable]


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def draw_labels(rng: np.random.Generator, p: np.ndarray, draws: int) -> np.ndarray:
    """``draws`` x n class indices, row i's label ~ Categorical(p[i])."""
    u = rng.random((draws, len(p), 1))
    return (np.cumsum(p, axis=1)[None, :, :] < u).sum(axis=2).clip(max=p.shape[1] - 1)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def _auc_by_ranks(is_class: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC per draw (rows of ``is_class``), average ranks for ties."""
    ranks = rankdata(score)
    n1 = is_class.sum(axis=1)
    n0 = is_class.shape[1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (is_class @ ranks - n1 * (n1 + 1) / 2) / (n1 * n0)
    return np.where((n1 > 0) & (n0 > 0), auc, np.nan)


def realized_by_simulation(metric: str, scores: np.ndarray, decided: np.ndarray, labels):
    """The metric for each simulated label vector, by formulas independent of the module."""
    n, k = scores.shape
    onehot = labels[:, :, None] == np.arange(k)  # draws x n x k
    support = onehot.sum(axis=1).astype(float)
    predicted = np.bincount(decided, minlength=k).astype(float)
    tp = (onehot & (decided[None, :, None] == np.arange(k))).sum(axis=1).astype(float)
    f1 = _ratio(2 * tp, predicted + support)
    if metric == "accuracy" or (metric == "recall" and k > 2):
        return (labels == decided).mean(axis=1)
    if metric == "log_loss":
        picked = scores[np.arange(n), labels]
        return -np.log(np.clip(picked, 1e-300, None)).mean(axis=1)
    if metric == "brier":
        if k == 2:
            return ((labels == 1) - scores[:, 1]).__pow__(2).mean(axis=1)
        return ((onehot - scores[None]) ** 2).sum(axis=2).mean(axis=1)
    if metric == "f1_macro":
        present = (predicted + support) > 0
        return np.array([f[p].mean() for f, p in zip(f1, present, strict=True)])
    if k == 2:
        if metric in ("roc_auc", "roc_auc_macro"):
            return _auc_by_ranks(labels == 1, scores[:, 1])
        per_class = {
            "f1": f1,
            "precision": _ratio(tp, np.broadcast_to(predicted, tp.shape)),
            "recall": _ratio(tp, support),
        }[metric]
        return per_class[:, 1]
    if metric in ("roc_auc", "roc_auc_macro"):
        aucs = np.stack([_auc_by_ranks(labels == j, scores[:, j]) for j in range(k)], axis=1)
        weights = support if metric == "roc_auc" else np.ones_like(support)
        return (aucs * weights).sum(axis=1) / weights.sum(axis=1)
    per_class = {"f1": f1, "precision": _ratio(tp, np.broadcast_to(predicted, tp.shape))}[metric]
    return (per_class * support).sum(axis=1) / support.sum(axis=1)


@st.composite
def calibrated_models(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(calibrated n x k probabilities, the model's own scores, its decisions): scores are a
    monotone distortion of the calibrated ones, ties included, so they rank like the model."""
    k = draw(st.sampled_from([2, 2, 3, 5]))
    n = draw(st.integers(200, 500))
    sharpness = draw(st.floats(0.5, 3.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    calibrated = softmax(sharpness * rng.normal(size=(n, k)))
    scores = np.round(softmax(np.log(calibrated) * draw(st.floats(0.5, 2.0))), 2)
    scores = np.clip(scores, 1e-3, None) / np.clip(scores, 1e-3, None).sum(axis=1, keepdims=True)
    return calibrated, scores, np.argmax(scores, axis=1)


@pytest.mark.parametrize("metric", sorted(set(BINARY) | set(MULTICLASS)))
@settings(max_examples=15, deadline=None, derandomize=True)
@given(model=calibrated_models())
def test_expected_metric_is_the_mean_of_simulated_realized_metrics(metric: str, model) -> None:
    calibrated, scores, decided = model
    k = scores.shape[1]
    kind = "binary" if k == 2 else "multiclass"
    labels = draw_labels(np.random.default_rng(0), calibrated, 2000)
    realized = realized_by_simulation(metric, scores, decided, labels)
    realized = realized[np.isfinite(realized)]
    expected = expected_value(
        metric, kind=kind, scores=scores, outcome=calibrated, decisions=decided
    )
    n = len(calibrated)
    # Monte Carlo error of the mean, plus the O(1/n) gap of a ratio of expectations
    tolerance = 4 * realized.std() / math.sqrt(len(realized)) + 1.0 / n
    assert abs(expected - realized.mean()) <= tolerance


def test_simulated_reference_agrees_with_score_metric() -> None:
    rng = np.random.default_rng(3)
    for k in (2, 4):
        scores = softmax(rng.normal(size=(300, k)))
        decided = np.argmax(scores, axis=1)
        labels = draw_labels(rng, scores, 3)
        for metric in BINARY if k == 2 else MULTICLASS:
            ours = realized_by_simulation(metric, scores, decided, labels)
            theirs = [score_metric(metric, y, decided, scores, classes=range(k)) for y in labels]
            np.testing.assert_allclose(ours, theirs, rtol=1e-9, err_msg=metric)


@pytest.mark.parametrize(
    ("y", "score"),
    [
        ([0, 1, 0, 1], [0.1, 0.9, 0.4, 0.35]),
        ([0, 1, 1, 0, 1], [0.5, 0.5, 0.5, 0.2, 0.9]),  # ties count half
        ([1, 0, 1, 0], [0.3, 0.3, 0.3, 0.3]),
    ],
)
def test_expected_auc_with_known_labels_is_the_roc_auc(y: list, score: list) -> None:
    y_arr, s = np.asarray(y, dtype=float), np.asarray(score)
    assert expected_auc(s, y_arr) == pytest.approx(roc_auc_score(y_arr, s))


def test_expected_auc_is_nan_without_either_class() -> None:
    assert math.isnan(expected_auc(np.array([0.2, 0.8]), np.array([1.0, 1.0])))


# --- combining labeled and estimated rows -----------------------------------------------------


def window(kind: str, n: int = 400, seed: int = 0, concept_shift: bool = False):
    """Model scores, calibrated probabilities, labels; with ``concept_shift`` labels follow
    the opposite of the calibrated probabilities (the estimate cannot see that)."""
    rng = np.random.default_rng(seed)
    k = 2 if kind == "binary" else 4
    classes = [f"c{j}" for j in range(k)]
    calibrated = softmax(1.5 * rng.normal(size=(n, k)))
    scores = softmax(2.0 * np.log(calibrated))
    truth = calibrated[:, ::-1] if concept_shift else calibrated
    labels = np.array(classes, dtype=object)[draw_labels(rng, truth, 1)[0]]
    calibrator = fit_calibrator(
        scores, draw_labels(rng, calibrated, 1)[0], classes=classes, method="isotonic"
    )
    return classes, scores, labels, calibrator


def run(metric: str, kind: str, classes, scores, labels, calibrator, noise=None) -> Estimate:
    decisions = np.asarray(classes, dtype=object)[np.argmax(scores, axis=1)]
    return estimate(
        metric,
        kind=kind,
        classes=classes,
        proba_or_pred=scores,
        decisions=decisions,
        labels=labels,
        calibrator=calibrator,
        noise=noise,
    )


CASES = [("binary", m) for m in BINARY] + [("multiclass", m) for m in MULTICLASS]


@pytest.mark.parametrize(("kind", "metric"), CASES)
def test_all_labeled_is_the_realized_metric(kind: str, metric: str) -> None:
    classes, scores, labels, calibrator = window(kind)
    decisions = np.asarray(classes, dtype=object)[np.argmax(scores, axis=1)]
    result = run(metric, kind, classes, scores, labels, calibrator)
    realized = score_metric(metric, labels, decisions, scores, classes=classes)
    assert result.value == pytest.approx(realized, rel=1e-12, abs=1e-12)
    assert result.labeled_rows == result.rows == len(labels) and not result.estimated


@pytest.mark.parametrize(("kind", "metric"), CASES)
def test_none_labeled_is_the_pure_estimate(kind: str, metric: str) -> None:
    classes, scores, labels, calibrator = window(kind)
    unlabeled = np.full(len(labels), None, dtype=object)
    pure = run(metric, kind, classes, scores, None, calibrator)
    assert run(metric, kind, classes, scores, unlabeled, calibrator) == pure
    assert pure.labeled_rows == 0 and pure.estimated
    expected = expected_value(metric, kind=kind, scores=scores, outcome=calibrator.apply(scores))
    assert pure.value == pytest.approx(expected)


@pytest.mark.parametrize(("kind", "metric"), CASES)
def test_half_labeled_lies_between_estimate_and_realized(kind: str, metric: str) -> None:
    classes, scores, labels, calibrator = window(kind, n=2000, concept_shift=True)
    half = labels.copy()
    half[1::2] = None
    none = run(metric, kind, classes, scores, None, calibrator).value
    mixed = run(metric, kind, classes, scores, half, calibrator).value
    realized = run(metric, kind, classes, scores, labels, calibrator).value
    assert min(none, realized) < mixed < max(none, realized)


@pytest.mark.parametrize("metric", ["accuracy", "brier", "log_loss"])
def test_a_mean_metric_mixes_labeled_and_estimated_rows_by_their_counts(metric: str) -> None:
    classes, scores, labels, calibrator = window("binary", concept_shift=True)
    labeled = np.arange(len(labels)) < 100
    mixed = run(metric, "binary", classes, scores, np.where(labeled, labels, None), calibrator)
    known = run(metric, "binary", classes, scores[labeled], labels[labeled], calibrator).value
    guessed = run(metric, "binary", classes, scores[~labeled], None, calibrator).value
    assert mixed.value == pytest.approx((100 * known + 300 * guessed) / 400)


def test_labels_shrink_the_band_to_nothing() -> None:
    classes, scores, labels, calibrator = window("binary")
    noise = NoiseModel("accuracy", "binary", "residual", (100, 400), (0.04, 0.02), 0.01, 200)
    widths = []
    for share in (0.0, 0.5, 1.0):
        some = np.where(np.arange(len(labels)) < share * len(labels), labels, None)
        result = run("accuracy", "binary", classes, scores, some, calibrator, noise)
        widths.append(result.high - result.low)
    assert widths[0] > widths[1] > widths[2] == 0.0


def test_labels_may_arrive_as_floats_with_nan_for_the_missing() -> None:
    rng = np.random.default_rng(1)
    scores = softmax(rng.normal(size=(50, 2)))
    labels = np.where(rng.random(50) < 0.5, rng.integers(0, 2, 50), np.nan)
    result = estimate(
        "accuracy", kind="binary", classes=[0, 1], proba_or_pred=scores, labels=labels
    )
    assert result.labeled_rows == int(np.isfinite(labels).sum())


# --- the noise model and the band ------------------------------------------------------------


def generated(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A miscalibrated model's scores on n rows and labels from the true probabilities."""
    k = 2 if kind == "binary" else 4
    z = rng.normal(size=(n, 3))
    logits = z @ np.linspace(-1.0, 1.0, 3 * k).reshape(3, k) * 1.5
    truth = softmax(logits)
    scores = softmax(2.0 * logits + np.linspace(0, 0.5, k))  # overconfident and shifted
    return scores, draw_labels(rng, truth, 1)[0]


@pytest.mark.parametrize(
    ("kind", "metric"),
    [
        ("binary", "accuracy"),
        ("binary", "roc_auc"),
        ("binary", "f1"),
        ("multiclass", "accuracy"),
        ("multiclass", "f1_macro"),
        ("multiclass", "roc_auc"),
    ],
)
def test_band_covers_95_percent_of_no_drift_windows(kind: str, metric: str) -> None:
    rng = np.random.default_rng(7)
    k = 2 if kind == "binary" else 4
    classes = list(range(k))
    scores, y = generated(kind, 5000, rng)
    calibrator = fit_calibrator(scores, y, classes=classes)
    oof = cross_calibrate(scores, y, classes=classes, method=calibrator.method)
    noise = fit_noise_model(
        metric, kind=kind, classes=classes, proba_or_pred=scores, labels=y, expected=oof
    )
    covered = []
    for _ in range(300):
        chunk_scores, chunk_y = generated(kind, 500, rng)
        result = estimate(
            metric,
            kind=kind,
            classes=classes,
            proba_or_pred=chunk_scores,
            calibrator=calibrator,
            noise=noise,
        )
        realized = score_metric(
            metric, chunk_y, np.argmax(chunk_scores, axis=1), chunk_scores, classes=classes
        )
        covered.append(result.low <= realized <= result.high)
    assert 0.90 <= np.mean(covered) <= 0.98


def test_noise_model_round_trips_through_json_and_scales_with_rows() -> None:
    noise = NoiseModel("f1", "binary", "residual", (100, 1000), (0.05, 0.015), 0.004, 200)
    again = NoiseModel.from_dict(json.loads(json.dumps(noise.to_dict())))
    assert again == noise
    assert noise.std(1000) == pytest.approx(math.hypot(0.015, 0.004))
    assert noise.std(4000) == pytest.approx(math.hypot(0.015 / 2, 0.004))  # 1/sqrt(n) beyond
    assert noise.std(25) == pytest.approx(math.hypot(0.1, 0.004))
    assert noise.std(100) > noise.std(316) > noise.std(1000)  # interpolated in between
    assert noise.std(1000, labeled_rows=500) == pytest.approx(noise.std(500) / 2)
    assert noise.std(1000, labeled_rows=1000) == 0.0


def test_estimate_round_trips_to_plain_json() -> None:
    result = Estimate("roc_auc", 0.8, math.nan, math.nan, 10, 0)
    assert json.loads(json.dumps(result.to_dict()))["low"] is None


# --- regression: the loss model ---------------------------------------------------------------


def regression_rows(
    n: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Features, a model's predictions and targets whose error depends on a and the category."""
    X = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(list("xyz"), n)}
    )
    scale = 0.3 + np.abs(X["a"].to_numpy()) * (X["c"] == "x") + 0.8 * (X["c"] == "y")
    prediction = 2 * X["a"].to_numpy() - X["b"].to_numpy()
    return X, prediction, prediction + rng.normal(size=n) * scale


@pytest.fixture(scope="module")
def loss_setup():
    rng = np.random.default_rng(11)
    X, prediction, y = regression_rows(4000, rng)
    args = {"numeric": ["a", "b"], "categorical": ["c"]}
    model = fit_loss_model(X, prediction, y, **args)
    oof = cross_predict_losses(X, prediction, y, **args)
    noise = {
        m: fit_noise_model(m, kind="regression", proba_or_pred=prediction, labels=y, expected=oof)
        for m in ("mae", "rmse")
    }
    return model, noise, rng


@pytest.mark.parametrize("metric", ["mae", "rmse"])
def test_loss_model_estimate_lies_in_its_band_on_no_drift_windows(loss_setup, metric) -> None:
    model, noise, rng = loss_setup
    covered = []
    for _ in range(60):
        X, prediction, y = regression_rows(500, rng)
        result = estimate(
            metric,
            kind="regression",
            proba_or_pred=prediction,
            loss_model=model,
            X=X,
            noise=noise[metric],
        )
        covered.append(
            result.low <= score_metric(metric, y, prediction, None, classes=()) <= result.high
        )
    assert np.mean(covered) >= 0.85


def test_loss_model_sees_where_the_errors_are(loss_setup) -> None:
    model, _, rng = loss_setup
    X, prediction, _ = regression_rows(2000, rng)
    losses = predict_losses(model, X, prediction)
    assert (losses >= 0).all()
    by_category = pd.Series(losses[:, 0]).groupby(X["c"].to_numpy()).mean()
    assert by_category["z"] < by_category["y"]  # z has the smallest noise, y the largest


@pytest.mark.parametrize("metric", ["mae", "rmse"])
def test_regression_labeled_rows_count_with_their_actual_loss(loss_setup, metric) -> None:
    model, _, rng = loss_setup
    X, prediction, y = regression_rows(300, rng)
    realized = score_metric(metric, y, prediction, None, classes=())
    common = {"kind": "regression", "proba_or_pred": prediction, "loss_model": model, "X": X}
    assert estimate(metric, labels=y, **common).value == pytest.approx(realized)
    half = np.where(np.arange(300) < 150, y, np.nan)
    if metric == "mae":
        known = np.abs(y[:150] - prediction[:150]).mean()
        guessed = predict_losses(model, X.iloc[150:], prediction[150:])[:, 0].mean()
        assert estimate(metric, labels=half, **common).value == pytest.approx((known + guessed) / 2)


def test_loss_model_loads_with_skops_trusting_only_the_listed_types(loss_setup) -> None:
    model, _, rng = loss_setup
    blob = skops.io.dumps(model)
    assert set(skops.io.get_untrusted_types(data=blob)) <= set(LOSS_MODEL_SKOPS_TYPES)
    loaded = skops.io.loads(blob, trusted=list(LOSS_MODEL_SKOPS_TYPES))
    X, prediction, _ = regression_rows(100, rng)
    np.testing.assert_array_equal(
        predict_losses(loaded, X, prediction), predict_losses(model, X, prediction)
    )


# --- inputs and speed -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "kind", "message"),
    [
        ("r2", "regression", "cannot be estimated for a regression model"),
        ("rmse", "binary", "cannot be estimated for a binary model"),
        ("nope", "binary", "unknown metric"),
    ],
)
def test_metrics_that_cannot_be_estimated_are_refused(metric, kind, message) -> None:
    with pytest.raises(EstimationInputError, match=message):
        estimate(metric, kind=kind, classes=[0, 1], proba_or_pred=np.full((2, 2), 0.5))


def test_a_label_the_model_does_not_know_is_named() -> None:
    with pytest.raises(EstimationInputError, match="not among the model's classes.*'maybe'"):
        estimate(
            "accuracy",
            kind="binary",
            classes=["no", "yes"],
            proba_or_pred=np.full((3, 2), 0.5),
            labels=np.array(["yes", None, "maybe"], dtype=object),
        )


def test_regression_without_a_loss_model_for_unlabeled_rows_is_refused() -> None:
    with pytest.raises(EstimationInputError, match="needs loss_model and X"):
        estimate("mae", kind="regression", proba_or_pred=np.zeros(3))


@pytest.mark.parametrize("k", [2, 5])
def test_a_100000_row_window_takes_well_under_a_second(k: int) -> None:
    rng = np.random.default_rng(0)
    scores = softmax(rng.normal(size=(100_000, k)))
    labels = np.where(rng.random(100_000) < 0.3, rng.integers(0, k, 100_000), np.nan)
    calibrator = fit_calibrator(scores[:5000], rng.integers(0, k, 5000), classes=range(k))
    kind = "binary" if k == 2 else "multiclass"
    for metric in BINARY if k == 2 else MULTICLASS:
        started = time.perf_counter()
        estimate(
            metric,
            kind=kind,
            classes=list(range(k)),
            proba_or_pred=scores,
            labels=labels,
            calibrator=calibrator,
        )
        assert time.perf_counter() - started < 1.0, metric


@pytest.mark.parametrize("metric", ["roc_auc", "roc_auc_macro", "f1_macro", "f1"])
def test_a_class_without_rows_is_treated_as_scikit_learn_does(metric: str) -> None:
    scores = softmax(np.random.default_rng(4).normal(size=(60, 3)))
    labels = np.resize([0, 1], 60)  # class 2 never occurs
    decided = np.argmax(scores, axis=1)
    result = estimate(
        metric, kind="multiclass", classes=[0, 1, 2], proba_or_pred=scores, labels=labels
    )
    realized = score_metric(metric, labels, decided, scores, classes=[0, 1, 2])
    assert result.value == pytest.approx(realized, nan_ok=True)


def test_a_calibrator_for_other_classes_is_refused() -> None:
    classes, scores, _, calibrator = window("binary")
    with pytest.raises(EstimationInputError, match="calibrator is for classes"):
        estimate(
            "accuracy",
            kind="binary",
            classes=["no", "yes"],
            proba_or_pred=scores,
            calibrator=calibrator,
        )


@pytest.mark.parametrize(
    ("kind", "classes", "outputs", "labels"),
    [
        ("binary", [0, 1], np.full((3, 2), 0.5), np.array([0, None, 1], dtype=object)),
        ("regression", (), np.zeros(3), np.array([1.0, np.nan, 2.0])),
    ],
)
def test_the_noise_model_needs_every_holdout_label(kind, classes, outputs, labels) -> None:
    expected = outputs if kind == "binary" else np.zeros((3, 2))
    metric = "accuracy" if kind == "binary" else "mae"
    with pytest.raises(EstimationInputError, match="every holdout row needs a label"):
        fit_noise_model(
            metric,
            kind=kind,
            classes=classes,
            proba_or_pred=outputs,
            labels=labels,
            expected=expected,
        )
