"""Model performance in a window before (all) its labels arrive, with a confidence band.

Every metric is computed from an *outcome matrix*: for each row, the expected value of what a
label would reveal. A labeled row's outcome is its truth (one-hot class, or the actual absolute
and squared error); an unlabeled row's outcome is estimated:

- classification (NannyML's CBPE): the model's probabilities mapped through a calibrator fitted
  on the holdout (``pipelines.calibration``). The expected confusion matrix follows from the
  calibrated probabilities and the model's decisions; ROC AUC is the area under the expected ROC
  curve, thresholds on the model's own scores, expected true/false positives summed from the
  calibrated probabilities above each threshold (one vs rest per class for multiclass); log loss
  and Brier score are the expected losses of the model's probabilities.
- regression (NannyML's DLE): a gradient boosting model of the absolute and the squared error,
  fitted on holdout features plus the model's prediction; MAE is the mean predicted absolute
  error, RMSE the root of the mean predicted squared error (predictions clipped at 0).

So labeled and unlabeled rows combine instead of one being chosen: all labeled gives the realized
metric (the definitions of ``pipelines.evaluation.score_metric``), none labeled the pure estimate.

The band comes from a :class:`NoiseModel` measured once on the holdout by bootstrap: by default
the spread of *realized minus estimated* metric over resamples of each size (out-of-sample
calibrated probabilities or loss predictions), i.e. how far the realized value of a window of
that size falls from its estimate when nothing has drifted. The estimate already follows the
window's features, so this is narrower than the spread of the realized metric itself, which
over-covers. It is interpolated between measured sizes on a log-log scale and extrapolated as
``1/sqrt(n)`` beyond them. A floor is added in quadrature: the calibrator (or loss model) was
fitted on the holdout's N rows, so every window's estimate shares an error that does not shrink
with the window, of the order of the residual spread at N rows. Measured on the generated cases
of ``bench/estimation.py``: a calibration bias of 0.0045 in binary recall at N = 10,000 against
a spread at N of 0.0031 (of 120 no-drift windows of 5,000 rows, 85% were covered without the
floor, 93% with it); over 12 holdout draws the shared error's standard deviation was 0.0033
(accuracy), 0.0055 (recall), 0.0019 (ROC AUC) against floors of 0.0028, 0.0031, 0.0021; for
the loss model over 10 draws 0.10-0.13 (MAE) and 0.18-0.24 (RMSE) against 0.165 and 0.366.
Both parts shrink for the labeled share of the window (labeled rows carry no estimation error).

Pure: numpy, pandas, scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold
from sklearn.multioutput import MultiOutputRegressor
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from core.errors import DriftloopError
from core.metrics import METRICS, Kind, metric_info
from core.spec import FeatureSpec
from pipelines.calibration import Calibrator, class_positions
from pipelines.schema import prepare_features
from pipelines.training import NATIVE_SKOPS_TYPES, build_pipeline

Target = Literal["residual", "metric"]
#: The column the loss model sees the model's prediction in.
PREDICTION_FEATURE = "__prediction__"
#: Types skops must trust to load a loss model (:func:`fit_loss_model`), beyond its defaults.
LOSS_MODEL_SKOPS_TYPES = (
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    *NATIVE_SKOPS_TYPES,
)
#: Metrics whose values are not bounded above by 1.
_UNBOUNDED = frozenset({"log_loss", "rmse", "mae"})
_EPS = float(np.finfo(np.float64).eps)


class EstimationInputError(DriftloopError, ValueError):
    """A metric that cannot be estimated for the model, or inputs that do not fit together."""


@dataclass(frozen=True)
class Estimate:
    """A metric in a window: value and band (``low``, ``high``; NaN without a noise model)."""

    metric: str
    value: float
    low: float
    high: float
    rows: int
    labeled_rows: int

    @property
    def estimated(self) -> bool:
        """True when some rows of the window had no label."""
        return self.labeled_rows < self.rows

    def to_dict(self) -> dict[str, Any]:
        def plain(v: float) -> float | None:
            return None if math.isnan(v) else v

        return {
            "metric": self.metric,
            "value": plain(self.value),
            "low": plain(self.low),
            "high": plain(self.high),
            "rows": self.rows,
            "labeled_rows": self.labeled_rows,
        }


@dataclass(frozen=True)
class NoiseModel:
    """The standard deviation of a metric's error for a window size, measured on the holdout.

    ``stds[i]`` is the bootstrap standard deviation at ``sizes[i]`` rows of realized minus
    estimated metric (``target="residual"``) or of the realized metric (``"metric"``); ``floor``
    the part that does not shrink with the window (the spread at the holdout's size, standing
    for the error of a calibration fitted on that many rows).
    """

    metric: str
    kind: str
    target: str
    sizes: tuple[int, ...]
    stds: tuple[float, ...]
    floor: float
    draws: int

    def std(self, rows: int, labeled_rows: int = 0) -> float:
        """The error's standard deviation for a window of ``rows`` with ``labeled_rows`` labeled.

        Only the unlabeled part errs: ``sqrt(std(u)**2 + floor**2) * u / rows`` for ``u``
        unlabeled rows (exact for a mean over rows, first order for ratio metrics).
        """
        unlabeled = rows - labeled_rows
        if rows <= 0 or unlabeled < 0:
            return math.nan
        if unlabeled == 0:
            return 0.0
        return math.hypot(self._at(unlabeled), self.floor) * unlabeled / rows

    def _at(self, n: int) -> float:
        sizes = np.asarray(self.sizes, dtype=np.float64)
        stds = np.asarray(self.stds, dtype=np.float64)
        good = np.isfinite(stds) & (stds > 0)
        if not good.any():
            return math.nan
        sizes, stds = sizes[good], stds[good]
        if n <= sizes[0]:
            return float(stds[0] * math.sqrt(sizes[0] / n))
        if n >= sizes[-1]:
            return float(stds[-1] * math.sqrt(sizes[-1] / n))
        return float(np.exp(np.interp(math.log(n), np.log(sizes), np.log(stds))))

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "kind": self.kind,
            "target": self.target,
            "sizes": list(self.sizes),
            "stds": [None if math.isnan(s) else s for s in self.stds],
            "floor": None if math.isnan(self.floor) else self.floor,
            "draws": self.draws,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoiseModel:
        return cls(
            metric=str(data["metric"]),
            kind=str(data["kind"]),
            target=str(data["target"]),
            sizes=tuple(int(s) for s in data["sizes"]),
            stds=tuple(math.nan if s is None else float(s) for s in data["stds"]),
            floor=math.nan if data["floor"] is None else float(data["floor"]),
            draws=int(data["draws"]),
        )


def check_estimable(metric: str, kind: Kind) -> None:
    """Raise unless the registry says ``metric`` can be estimated for a ``kind`` model.

    Raises:
        EstimationInputError: naming the metrics that can.
    """
    try:
        info = metric_info(metric)
    except KeyError as exc:
        raise EstimationInputError(str(exc.args[0])) from None
    if kind not in info.estimable:
        can = [m.name for m in METRICS.values() if kind in m.estimable]
        raise EstimationInputError(
            f"metric {metric!r} cannot be estimated for a {kind} model; choose one of {can}"
        )


def z_for(coverage: float) -> float:
    """The two-sided normal quantile for a coverage (1.96 for 0.95)."""
    if not 0.0 < coverage < 1.0:
        raise EstimationInputError(f"coverage must be between 0 and 1, got {coverage}")
    return NormalDist().inv_cdf(0.5 + coverage / 2.0)


def estimate(
    metric: str,
    *,
    kind: Kind,
    classes: Sequence[Any] = (),
    proba_or_pred: np.ndarray,
    decisions: Sequence[Any] | np.ndarray | None = None,
    labels: Sequence[Any] | np.ndarray | None = None,
    calibrator: Calibrator | None = None,
    loss_model: Pipeline | None = None,
    X: pd.DataFrame | None = None,
    noise: NoiseModel | None = None,
    coverage: float = 0.95,
) -> Estimate:
    """A metric in a window: labeled rows count with their labels, the others are estimated.

    Args:
        kind: binary, multiclass or regression (``core.metrics.kind_of``).
        classes: the model's classes in its order (classification).
        proba_or_pred: classification: the model's n x k probabilities; regression: predictions.
        decisions: the model's predicted labels (default: the most probable class).
        labels: true labels, None/NaN where not arrived yet; None: no row is labeled.
        calibrator: maps the model's probabilities (default: used as they are, uncalibrated).
        loss_model, X: regression only: :func:`fit_loss_model`'s Pipeline and the features.
        noise: the metric's :class:`NoiseModel`; without it ``low`` and ``high`` are NaN.

    Raises:
        EstimationInputError: the metric is not estimable for ``kind``, or the inputs disagree.
    """
    check_estimable(metric, kind)
    if kind == "regression":
        scores, outcome, labeled = _regression_inputs(proba_or_pred, labels, loss_model, X)
        decided = None
    else:
        scores, decided, labeled = _classification_inputs(kind, classes, proba_or_pred, decisions)
        _check_calibrator(calibrator, classes)
        outcome = (calibrator.apply(scores) if calibrator is not None else scores).copy()
        if labels is not None:
            labeled = _with_labels(outcome, labels, classes)
    value = expected_value(metric, kind=kind, scores=scores, outcome=outcome, decisions=decided)
    rows, n_labeled = len(scores), int(labeled.sum())
    low, high = _band(metric, value, noise, rows, n_labeled, coverage)
    return Estimate(metric, value, low, high, rows, n_labeled)


def expected_value(
    metric: str,
    *,
    kind: Kind,
    scores: np.ndarray,
    outcome: np.ndarray,
    decisions: np.ndarray | None = None,
) -> float:
    """A metric's expected value given each row's outcome matrix (NaN where undefined).

    Args:
        scores: classification: the model's n x k probabilities (ranking, log loss, Brier);
            regression: ignored.
        outcome: classification: n x k probability of each true class (one-hot = labeled);
            regression: n x 2 expected absolute and squared error.
        decisions: classification: predicted class positions (default: argmax of ``scores``).
    """
    outcome = np.asarray(outcome, dtype=np.float64)
    if len(outcome) == 0:
        return math.nan
    if kind == "regression":
        return _regression_value(metric, outcome)
    scores = np.asarray(scores, dtype=np.float64)
    if decisions is None:
        decisions = np.argmax(scores, axis=1)
    decisions = np.asarray(decisions, dtype=np.int64)
    if metric == "log_loss":
        return float(-np.mean(np.sum(outcome * np.log(np.clip(scores, _EPS, 1 - _EPS)), axis=1)))
    if kind == "binary":
        return _binary_value(metric, scores[:, 1], outcome[:, 1], decisions == 1)
    return _multiclass_value(metric, scores, outcome, decisions)


def expected_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the expected ROC curve: thresholds at each distinct ``score`` (ties share one
    point), expected true positives = sum of ``positive`` above it, false = sum of 1 - positive.
    With 0/1 ``positive`` it is the ordinary ROC AUC; NaN when either total is 0."""
    order = np.argsort(-score, kind="stable")
    s, c = score[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.r_[0.0, np.cumsum(c)[last]]
    fp = np.r_[0.0, np.cumsum(1.0 - c)[last]]
    if tp[-1] <= 0 or fp[-1] <= 0:
        return math.nan
    return float(np.trapezoid(tp / tp[-1], fp / fp[-1]))


def _binary_value(metric: str, q: np.ndarray, c: np.ndarray, pos: np.ndarray) -> float:
    if metric in ("roc_auc", "roc_auc_macro"):
        return expected_auc(q, c)
    if metric == "brier":
        return float(np.mean(c * (1.0 - q) ** 2 + (1.0 - c) * q**2))
    tp, fp = float(c[pos].sum()), float((1.0 - c[pos]).sum())
    fn, tn = float(c[~pos].sum()), float((1.0 - c[~pos]).sum())
    if metric == "accuracy":
        return (tp + tn) / len(c)
    if metric == "f1_macro":
        return (_ratio(2 * tp, 2 * tp + fp + fn) + _ratio(2 * tn, 2 * tn + fn + fp)) / 2
    denominators = {"f1": 2 * tp + fp + fn, "precision": tp + fp, "recall": tp + fn}
    numerator = 2 * tp if metric == "f1" else tp
    return _ratio(numerator, denominators[metric])


def _multiclass_value(
    metric: str, scores: np.ndarray, outcome: np.ndarray, decisions: np.ndarray
) -> float:
    k = scores.shape[1]
    support = outcome.sum(axis=0)
    if metric in ("roc_auc", "roc_auc_macro"):
        # as scikit-learn: weighted ignores classes without rows, macro is then undefined
        used = support > 0 if metric == "roc_auc" else np.ones(k, dtype=bool)
        aucs = np.array([expected_auc(scores[:, j], outcome[:, j]) for j in np.flatnonzero(used)])
        if np.isnan(aucs).any():
            return math.nan
        weights = support[used] if metric == "roc_auc" else np.ones(k)
        return float(np.sum(aucs * weights) / np.sum(weights))
    if metric == "brier":
        return float(np.mean(np.sum(outcome * (1 - scores) ** 2 + (1 - outcome) * scores**2, 1)))
    confusion = np.stack(
        [np.bincount(decisions, weights=outcome[:, t], minlength=k) for t in range(k)]
    )  # rows: true class, columns: predicted class
    tp, predicted = np.diag(confusion), confusion.sum(axis=0)
    if metric == "accuracy":
        return float(tp.sum() / len(outcome))
    per_class = {
        "precision": _ratios(tp, predicted),
        "recall": _ratios(tp, support),
        "f1": _ratios(2 * tp, predicted + support),
        "f1_macro": _ratios(2 * tp, predicted + support),
    }[metric]
    if metric == "f1_macro":
        present = (predicted + support) > 0  # as sklearn: classes in the labels or predictions
        return float(per_class[present].mean())
    return float(np.sum(per_class * support) / support.sum())


def _regression_value(metric: str, outcome: np.ndarray) -> float:
    if metric == "mae":
        return float(np.mean(outcome[:, 0]))
    return float(math.sqrt(max(float(np.mean(outcome[:, 1])), 0.0)))


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def _ratios(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def _classification_inputs(
    kind: str, classes: Sequence[Any], proba: np.ndarray, decisions: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = len(classes)
    if k < 2 or (kind == "binary") != (k == 2):
        raise EstimationInputError(f"a {kind} model cannot have {k} classes ({list(classes)})")
    scores = np.asarray(proba, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != k:
        raise EstimationInputError(f"expected n x {k} probabilities, got shape {scores.shape}")
    if decisions is None:
        decided = np.argmax(scores, axis=1)
    else:
        decided = class_positions(np.asarray(decisions), classes)
        if len(decided) != len(scores):
            raise EstimationInputError(f"{len(decided)} decisions for {len(scores)} rows")
        unknown = np.flatnonzero(decided < 0)
        if unknown.size:
            raise EstimationInputError(
                f"{unknown.size} decision(s) are not among the classes {list(classes)} "
                f"(rows {unknown[:5].tolist()})"
            )
    if not np.isfinite(scores).all():
        raise EstimationInputError("the probabilities hold NaN or infinite values: drop those rows")
    return scores, decided, np.zeros(len(scores), dtype=bool)


def _check_calibrator(calibrator: Calibrator | None, classes: Sequence[Any]) -> None:
    if calibrator is None:
        return
    same = len(calibrator.classes) == len(classes) and np.array_equal(
        class_positions(np.asarray(calibrator.classes, dtype=object), classes),
        np.arange(len(classes)),
    )
    if not same:
        raise EstimationInputError(
            f"the calibrator is for classes {list(calibrator.classes)}, the model has "
            f"{list(classes)}: use the calibrator stored with this model version"
        )


def _with_labels(outcome: np.ndarray, labels: Any, classes: Sequence[Any]) -> np.ndarray:
    """Overwrite the outcome of labeled rows with their one-hot label (in place); the mask."""
    labels = np.asarray(labels)
    if len(labels) != len(outcome):
        raise EstimationInputError(f"{len(labels)} labels for {len(outcome)} rows")
    index = class_positions(labels, classes)
    labeled = ~pd.isna(labels)
    unknown = np.flatnonzero(labeled & (index < 0))
    if unknown.size:
        raise EstimationInputError(
            f"{unknown.size} label(s) are not among the model's classes {list(classes)} "
            f"(rows {unknown[:5].tolist()}, e.g. {labels[unknown[0]]!r}): drop them first"
        )
    rows = np.flatnonzero(labeled)
    outcome[rows] = 0.0
    outcome[rows, index[rows]] = 1.0
    return labeled


def _regression_inputs(
    pred: np.ndarray, labels: Any, loss_model: Pipeline | None, X: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    y = np.full(len(pred), np.nan) if labels is None else np.asarray(labels, dtype=np.float64)
    if len(y) != len(pred):
        raise EstimationInputError(f"{len(y)} labels for {len(pred)} predictions")
    labeled = np.isfinite(y)
    outcome = np.empty((len(pred), 2))
    error = y[labeled] - pred[labeled]
    outcome[labeled] = np.column_stack([np.abs(error), error**2])
    if not labeled.all():
        if loss_model is None or X is None:
            raise EstimationInputError("estimating a regression metric needs loss_model and X")
        if len(X) != len(pred):
            raise EstimationInputError(f"X has {len(X)} rows for {len(pred)} predictions")
        rest = ~labeled
        outcome[rest] = predict_losses(loss_model, X.iloc[np.flatnonzero(rest)], pred[rest])
    return pred, outcome, labeled


def _band(
    metric: str, value: float, noise: NoiseModel | None, rows: int, labeled: int, coverage: float
) -> tuple[float, float]:
    z = z_for(coverage)
    if noise is None or math.isnan(value):
        return math.nan, math.nan
    if noise.metric != metric:
        raise EstimationInputError(f"the noise model is for {noise.metric!r}, not {metric!r}")
    half = z * noise.std(rows, labeled)
    upper = math.inf if metric in _UNBOUNDED else (2.0 if metric == "brier" else 1.0)
    return max(value - half, 0.0), min(value + half, upper)


# --- regression: the loss model ---------------------------------------------------------------


def fit_loss_model(
    X_holdout: pd.DataFrame,
    prediction: np.ndarray,
    y: np.ndarray,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    seed: int = 0,
    threads: int | None = 1,
) -> Pipeline:
    """A Pipeline predicting each row's absolute and squared error from features + prediction.

    Gradient boosting with native categories, built by ``pipelines.training.build_pipeline``
    (imputation and category codes inside), one regressor per loss (``MultiOutputRegressor``).
    Fit it on rows the model did not train on. ``threads`` caps OpenMP threads while fitting.
    """
    frame = _loss_frame(X_holdout, prediction, numeric, categorical)
    error = np.asarray(y, dtype=np.float64) - np.asarray(prediction, dtype=np.float64)
    pipeline = build_pipeline(
        _loss_spec(numeric, categorical),
        task="regression",
        family="hist_gradient_boosting",
        seed=seed,
        native_categorical=True,
    )
    pipeline.set_params(model=MultiOutputRegressor(pipeline.named_steps["model"]))
    with threadpool_limits(limits=threads):
        return pipeline.fit(frame, np.column_stack([np.abs(error), error**2]))


def predict_losses(
    loss_model: Pipeline, X: pd.DataFrame, prediction: np.ndarray, *, threads: int | None = 1
) -> np.ndarray:
    """n x 2 predicted absolute and squared errors, clipped at 0."""
    spec = _spec_of(loss_model)
    frame = _loss_frame(X, prediction, spec.numeric[:-1], spec.categorical)
    with threadpool_limits(limits=threads):
        predicted = np.asarray(loss_model.predict(frame), dtype=np.float64)
    return np.clip(predicted, 0.0, None)


def cross_predict_losses(
    X_holdout: pd.DataFrame,
    prediction: np.ndarray,
    y: np.ndarray,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    cv: int = 5,
    seed: int = 0,
    threads: int | None = 1,
) -> np.ndarray:
    """Out-of-fold predicted losses of the holdout rows (for :func:`fit_noise_model`)."""
    prediction = np.asarray(prediction, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    out = np.empty((len(prediction), 2))
    folds = KFold(n_splits=cv, shuffle=True, random_state=seed)
    for train, test in folds.split(prediction):
        model = fit_loss_model(
            X_holdout.iloc[train],
            prediction[train],
            y[train],
            numeric=numeric,
            categorical=categorical,
            seed=seed,
            threads=threads,
        )
        out[test] = predict_losses(model, X_holdout.iloc[test], prediction[test], threads=threads)
    return out


def _loss_spec(numeric: Sequence[str], categorical: Sequence[str]) -> FeatureSpec:
    return FeatureSpec(numeric=(*numeric, PREDICTION_FEATURE), categorical=tuple(categorical))


def _spec_of(loss_model: Pipeline) -> FeatureSpec:
    columns = {name: cols for name, _, cols in loss_model.named_steps["preprocess"].transformers}
    return FeatureSpec(numeric=tuple(columns.get("num", ())), categorical=columns.get("cat", ()))


def _loss_frame(
    X: pd.DataFrame, prediction: np.ndarray, numeric: Sequence[str], categorical: Sequence[str]
) -> pd.DataFrame:
    if len(X) != len(prediction):
        raise EstimationInputError(f"X has {len(X)} rows for {len(prediction)} predictions")
    frame = X.assign(**{PREDICTION_FEATURE: np.asarray(prediction, dtype=np.float64)})
    return prepare_features(frame, _loss_spec(numeric, categorical))


# --- the noise model --------------------------------------------------------------------------


def fit_noise_model(
    metric: str,
    *,
    kind: Kind,
    classes: Sequence[Any] = (),
    proba_or_pred: np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    expected: np.ndarray,
    decisions: Sequence[Any] | np.ndarray | None = None,
    target: Target = "residual",
    sizes: Sequence[int] | None = None,
    draws: int = 200,
    seed: int = 0,
) -> NoiseModel:
    """Measure a metric's error spread on the holdout by bootstrap, once per model version.

    Args:
        proba_or_pred, labels, decisions: the holdout's out-of-sample model outputs and labels.
        expected: the holdout's out-of-sample estimated outcomes: classification
            ``pipelines.calibration.cross_calibrate``'s probabilities, regression
            :func:`cross_predict_losses`'s n x 2 losses.
        target: ``residual`` (default): spread of realized minus estimated metric, what a band
            around an estimate must cover; ``metric``: spread of the realized metric alone.
        sizes: resample sizes (default: about 8 from 100 rows to the holdout's size); the
            holdout's own size is always measured, for the floor.

    Raises:
        EstimationInputError: as :func:`estimate`.
    """
    check_estimable(metric, kind)
    if target not in ("residual", "metric"):
        raise EstimationInputError(f"target must be 'residual' or 'metric', got {target!r}")
    if kind == "regression":
        if not np.isfinite(np.asarray(labels, dtype=np.float64)).all():
            raise EstimationInputError("every holdout row needs a label to measure the noise")
        scores, truth, _ = _regression_inputs(proba_or_pred, labels, None, None)
        decided = None
    else:
        scores, decided, _ = _classification_inputs(kind, classes, proba_or_pred, decisions)
        truth = np.zeros_like(scores)
        if not _with_labels(truth, labels, classes).all():
            raise EstimationInputError("every holdout row needs a label to measure the noise")
    expected = np.asarray(expected, dtype=np.float64)
    if expected.shape != truth.shape:
        raise EstimationInputError(f"expected has shape {expected.shape}, not {truth.shape}")
    n = len(truth)
    grid = sorted({n, *(int(s) for s in (sizes or _default_sizes(n)) if 0 < int(s) < n)})
    rng = np.random.default_rng(seed)
    stds = []
    for size in grid:
        values = np.empty(draws)
        for d in range(draws):
            idx = rng.integers(0, n, size)
            part = (scores[idx], decided[idx] if decided is not None else None)
            realized = expected_value(
                metric, kind=kind, scores=part[0], outcome=truth[idx], decisions=part[1]
            )
            if target == "residual":
                realized -= expected_value(
                    metric, kind=kind, scores=part[0], outcome=expected[idx], decisions=part[1]
                )
            values[d] = realized
        finite = values[np.isfinite(values)]
        stds.append(float(np.std(finite, ddof=1)) if finite.size >= 10 else math.nan)
    return NoiseModel(metric, kind, target, tuple(grid), tuple(stds), stds[-1], draws)


def _default_sizes(n: int) -> list[int]:
    low = min(100, n)
    return sorted({int(round(s)) for s in np.geomspace(low, n, num=8)})


# --- what a version stores to be estimated later ----------------------------------------------

#: The version's evaluation files the estimate needs (besides the holdout's scores).
ESTIMATION_FILE = "estimation.json"
LOSS_MODEL_FILE = "loss_model.skops"


@dataclass(frozen=True)
class EstimationFacts:
    """What estimating a version's primary metric needs, fitted once at registration on the
    holdout's out-of-sample scores: the calibrator (classifiers) or the loss model (regressors)
    and the noise model of the estimate's band."""

    metric: str
    kind: Kind
    classes: tuple[Any, ...]
    calibrator: Calibrator | None = None
    loss_model: Pipeline | None = None
    noise: NoiseModel | None = None
    #: the metric estimated on the holdout out of fold: what an estimate is compared with, so
    #: the estimator's own bias cancels out of the drop (None: compare with the measured value)
    reference_value: float | None = None

    def to_files(self) -> dict[str, bytes]:
        import json

        import skops.io

        payload = {
            "metric": self.metric,
            "kind": self.kind,
            "classes": list(self.classes),
            "calibrator": self.calibrator.to_dict() if self.calibrator is not None else None,
            "noise": self.noise.to_dict() if self.noise is not None else None,
            "reference_value": self.reference_value,
        }
        files = {ESTIMATION_FILE: json.dumps(payload).encode()}
        if self.loss_model is not None:
            files[LOSS_MODEL_FILE] = skops.io.dumps(self.loss_model)
        return files

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> EstimationFacts | None:
        """The facts stored with a version (None for a version stored without them). Files must
        come from a verified download; the loss model loads with trusted types only."""
        import json

        import skops.io

        raw = files.get(ESTIMATION_FILE)
        if raw is None:
            return None
        data = json.loads(raw)
        loss = files.get(LOSS_MODEL_FILE)
        return cls(
            metric=data["metric"],
            kind=data["kind"],
            classes=tuple(data["classes"]),
            calibrator=Calibrator.from_dict(data["calibrator"]) if data["calibrator"] else None,
            loss_model=skops.io.loads(loss, trusted=list(LOSS_MODEL_SKOPS_TYPES)) if loss else None,
            noise=NoiseModel.from_dict(data["noise"]) if data["noise"] else None,
            reference_value=data.get("reference_value"),
        )


def fit_estimation(
    metric: str,
    *,
    task: str,
    classes: Sequence[Any],
    X: pd.DataFrame,
    y: np.ndarray,
    prediction: np.ndarray,
    proba: np.ndarray | None,
    numeric: Sequence[str],
    categorical: Sequence[str],
    seed: int = 0,
) -> EstimationFacts | None:
    """Fit what estimating ``metric`` without labels needs, on a holdout scored out of sample.

    Classifiers: the better calibration (isotonic, sigmoid or none, by cross-validated Brier
    score) and the band's noise from out-of-fold calibrated probabilities; regressors: the loss
    model and the band's noise from out-of-fold predicted losses. None when the metric cannot
    be estimated for this kind of model (r2) or the holdout cannot support the fit (a class
    with fewer rows than the folds).
    """
    from core.metrics import kind_of
    from pipelines.calibration import (
        CalibrationError,
        class_positions,
        cross_calibrate,
        fit_calibrator,
    )

    kind = kind_of(task, len(classes))
    if kind not in metric_info(metric).estimable:
        return None
    try:
        if kind == "regression":
            loss = fit_loss_model(
                X, prediction, y, numeric=numeric, categorical=categorical, seed=seed
            )
            expected = cross_predict_losses(
                X, prediction, y, numeric=numeric, categorical=categorical, seed=seed
            )
            noise = fit_noise_model(
                metric, kind=kind, proba_or_pred=prediction, labels=y, expected=expected, seed=seed
            )
            reference = expected_value(metric, kind=kind, scores=expected, outcome=expected)
            return EstimationFacts(
                metric, kind, (), loss_model=loss, noise=noise, reference_value=_finite(reference)
            )
        index = class_positions(y, classes)
        calibrator = fit_calibrator(proba, index, classes=classes, seed=seed)
        expected = cross_calibrate(
            proba, index, classes=classes, method=calibrator.method, seed=seed
        )
        noise = fit_noise_model(
            metric,
            kind=kind,
            classes=classes,
            proba_or_pred=proba,
            labels=y,
            expected=expected,
            decisions=prediction,
            seed=seed,
        )
        scores, decided, _ = _classification_inputs(kind, classes, proba, prediction)
        reference = expected_value(
            metric, kind=kind, scores=scores, outcome=expected, decisions=decided
        )
        return EstimationFacts(
            metric,
            kind,
            tuple(classes),
            calibrator=calibrator,
            noise=noise,
            reference_value=_finite(reference),
        )
    except (CalibrationError, EstimationInputError, ValueError):
        return None


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def estimate_reference(
    facts: EstimationFacts, measured: float | None, unlabeled_share: float
) -> float | None:
    """What a window's estimate is compared with: its labeled share against the measured holdout
    value, its estimated share against the holdout's out-of-fold estimate (same estimator, same
    bias), blended by the share of rows estimated."""
    if facts.reference_value is None or measured is None:
        return measured if measured is not None else facts.reference_value
    return (1.0 - unlabeled_share) * float(measured) + unlabeled_share * facts.reference_value


def window_estimate(
    frame: pd.DataFrame,
    facts: EstimationFacts,
    *,
    target: str,
    spec: FeatureSpec,
    reference_value: float | None,
    prediction: str = "prediction",
    probability: str = "probability",
    probabilities: str = "probabilities",
    coverage: float = 0.95,
) -> Any:
    """The primary metric of a logged window, labeled rows measured and the others estimated,
    with its band, as a ``PerformanceResult`` against the version's holdout value (its estimated
    share against the holdout's out-of-fold estimate, :func:`estimate_reference`; None when the
    window lacks the outputs the estimate needs)."""
    from core.metrics import drop as metric_drop
    from monitoring.performance import PerformanceResult, probability_matrix

    labels = frame[target].to_numpy() if target in frame.columns else None
    if facts.kind == "regression":
        proba_or_pred = frame[prediction].to_numpy(dtype=np.float64)
        X = prepare_features(frame, spec)
        decisions = None
    elif facts.kind == "binary":
        if probability not in frame.columns or frame[probability].isna().any():
            return None
        p = frame[probability].to_numpy(dtype=np.float64)
        proba_or_pred, X = np.column_stack([1.0 - p, p]), None
        decisions = frame[prediction].to_numpy() if prediction in frame.columns else None
    else:
        if probabilities not in frame.columns:
            return None
        proba_or_pred = probability_matrix(frame[probabilities].to_numpy(), facts.classes)
        if not np.isfinite(proba_or_pred).all():
            return None
        X = None
        decisions = frame[prediction].to_numpy() if prediction in frame.columns else None
    result = estimate(
        facts.metric,
        kind=facts.kind,
        classes=facts.classes,
        proba_or_pred=proba_or_pred,
        decisions=decisions,
        labels=labels,
        calibrator=facts.calibrator,
        loss_model=facts.loss_model,
        X=X,
        noise=facts.noise,
        coverage=coverage,
    )
    unlabeled = 1.0 - result.labeled_rows / result.rows if result.rows else 1.0
    blended = estimate_reference(facts, reference_value, unlabeled)
    reference = float("nan") if blended is None else float(blended)
    return PerformanceResult(
        facts.metric,
        result.value,
        reference,
        metric_drop(facts.metric, result.value, reference),
        result.labeled_rows,
        True,
        rows=result.rows,
        low=result.low,
        high=result.high,
    )
