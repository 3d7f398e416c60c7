"""Calibrate a classifier's probabilities on out-of-sample rows, stored as plain JSON.

Confidence-based performance estimation assumes that a row predicted with probability ``p`` is
positive with probability ``p``. Few models are that calibrated, so the estimate first maps the
model's probabilities through a monotone calibration fitted on rows the model did not train on
(the holdout): isotonic regression, or a sigmoid (Platt) on the logit of the probability, or
"auto", whichever of isotonic, sigmoid and no calibration at all has the lowest cross-validated
Brier score on those rows. Binary models get one map on the positive class (``classes[-1]``);
multiclass models one map per class (one vs rest), after which each row is renormalised to sum
to 1.

Why the Brier score and not log loss: isotonic maps put exactly 0 (or 1) on the few rows beyond
the extreme blocks of their training folds, and log loss charges each such row -log(1e-15) = 35.
On the generated multiclass case of ``bench/estimation.py`` 5 of 10,000 such rows outweighed
everything else, log loss chose the sigmoid, and the estimated accuracy erred 1.4x as much as
with isotonic maps (which the Brier score, a bounded proper score, chooses). No calibration is a
candidate too: a model that is calibrated already only gains noise from a fitted map.

A :class:`Calibrator` is plain data (isotonic threshold arrays applied with ``np.interp``, or
two floats per sigmoid) with ``to_dict``/``from_dict`` as JSON: no pickle, so it can be stored
as an artifact beside a model version and verified by hash. Pure: numpy and scikit-learn only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold

from core.errors import DriftloopError

Method = Literal["auto", "isotonic", "sigmoid", "identity"]
#: The methods that fit a map.
FITTED_METHODS = ("isotonic", "sigmoid")
#: What ``"auto"`` chooses between; the first wins a tie.
AUTO_CANDIDATES = ("identity", *FITTED_METHODS)
#: Probabilities are clipped to [EPS, 1 - EPS] before taking a logit or a log.
EPS = 1e-15
FORMAT_VERSION = 1


class CalibrationError(DriftloopError, ValueError):
    """Calibration cannot be fitted or loaded; the message names the rows, classes or keys."""


@dataclass(frozen=True)
class Map:
    """One monotone map of a probability: isotonic (``x``, ``y`` thresholds), sigmoid
    (``1 / (1 + exp(-(a * logit(p) + b)))``) or identity."""

    kind: Literal["isotonic", "sigmoid", "identity"]
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    def apply(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.kind == "isotonic":
            return np.interp(p, np.asarray(self.x), np.asarray(self.y))
        if self.kind == "sigmoid":
            return _sigmoid(self.a * _logit(p) + self.b)
        return np.clip(p, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "isotonic":
            return {"kind": "isotonic", "x": list(self.x), "y": list(self.y)}
        if self.kind == "sigmoid":
            return {"kind": "sigmoid", "a": self.a, "b": self.b}
        return {"kind": "identity"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Map:
        kind = data.get("kind")
        if kind == "isotonic":
            x, y = tuple(map(float, data["x"])), tuple(map(float, data["y"]))
            if len(x) != len(y) or not x:
                raise CalibrationError("an isotonic map needs equally long, non-empty x and y")
            return cls("isotonic", x=x, y=y)
        if kind == "sigmoid":
            return cls("sigmoid", a=float(data["a"]), b=float(data["b"]))
        if kind == "identity":
            return cls("identity")
        raise CalibrationError(f"unknown map kind {kind!r}; expected isotonic, sigmoid or identity")


@dataclass(frozen=True)
class Calibrator:
    """Calibrated probabilities from a model's: ``apply(proba)`` on n x k, rows sum to 1."""

    method: str
    classes: tuple[Any, ...]
    maps: tuple[Map, ...]

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """The calibrated n x k probabilities (classes in the model's order)."""
        proba = _matrix(proba, len(self.classes))
        if all(m.kind == "identity" for m in self.maps):
            return np.clip(proba, 0.0, 1.0)
        if len(self.classes) == 2:
            positive = np.clip(self.maps[0].apply(proba[:, 1]), 0.0, 1.0)
            return np.column_stack([1.0 - positive, positive])
        columns = [m.apply(proba[:, k]) for k, m in enumerate(self.maps)]
        return _renormalise(np.clip(np.column_stack(columns), 0.0, 1.0))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: method, classes, one map per class (one for binary)."""
        return {
            "format": FORMAT_VERSION,
            "method": self.method,
            "classes": [_plain(c) for c in self.classes],
            "maps": [m.to_dict() for m in self.maps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        """Inverse of :meth:`to_dict`.

        Raises:
            CalibrationError: a key is missing or the number of maps does not fit the classes.
        """
        missing = [k for k in ("method", "classes", "maps") if k not in data]
        if missing:
            raise CalibrationError(f"calibrator data lacks {missing}")
        classes = tuple(data["classes"])
        maps = tuple(Map.from_dict(m) for m in data["maps"])
        expected = 1 if len(classes) == 2 else len(classes)
        if len(classes) < 2 or len(maps) != expected:
            raise CalibrationError(
                f"{len(classes)} classes need {expected} map(s), the data has {len(maps)}"
            )
        return cls(str(data["method"]), classes, maps)


def identity_calibrator(classes: Sequence[Any]) -> Calibrator:
    """A calibrator that leaves probabilities as they are (the uncalibrated baseline)."""
    n = 1 if len(classes) == 2 else len(classes)
    return Calibrator("identity", tuple(_plain(c) for c in classes), (Map("identity"),) * n)


def fit_calibrator(
    proba: np.ndarray,
    y_index: np.ndarray,
    *,
    classes: Sequence[Any],
    method: Method = "auto",
    cv: int = 5,
    seed: int = 0,
) -> Calibrator:
    """Fit a calibration on out-of-sample probabilities (the caller passes holdout predictions).

    Args:
        proba: n x k probabilities of the model, classes in the model's order.
        y_index: each row's true class as a position in ``classes`` (see :func:`class_positions`).
        method: isotonic, sigmoid, identity, or auto: the one of these with the lowest
            cross-validated Brier score (``cv`` stratified folds, shuffled with ``seed``).

    Raises:
        CalibrationError: unknown method, shapes that disagree, a class without rows, or (auto)
            fewer than ``cv`` rows of some class.
    """
    proba, y_index = _check(proba, y_index, classes)
    if method == "auto":
        method = choose_method(proba, y_index, classes=classes, cv=cv, seed=seed)
    if method == "identity":
        return identity_calibrator(classes)
    if method not in FITTED_METHODS:
        raise CalibrationError(
            f"unknown calibration method {method!r}; choose auto, identity or {FITTED_METHODS}"
        )
    columns = [proba.shape[1] - 1] if len(classes) == 2 else range(proba.shape[1])
    maps = tuple(_fit_map(method, proba[:, k], y_index == k) for k in columns)
    return Calibrator(method, tuple(_plain(c) for c in classes), maps)


def choose_method(
    proba: np.ndarray, y_index: np.ndarray, *, classes: Sequence[Any], cv: int = 5, seed: int = 0
) -> str:
    """``identity``, ``isotonic`` or ``sigmoid``: the lowest out-of-fold Brier score here."""
    proba, y_index = _check(proba, y_index, classes)
    scores = {"identity": brier_of(proba, y_index)}
    for method in FITTED_METHODS:
        calibrated = cross_calibrate(
            proba, y_index, classes=classes, method=method, cv=cv, seed=seed
        )
        scores[method] = brier_of(calibrated, y_index)
    return min(AUTO_CANDIDATES, key=lambda m: scores[m])


def cross_calibrate(
    proba: np.ndarray,
    y_index: np.ndarray,
    *,
    classes: Sequence[Any],
    method: Method = "auto",
    cv: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold calibrated probabilities: each row mapped by a calibrator fitted without it.

    The rows' own calibration for measuring estimation error on them (a calibrator fitted on
    the same rows would flatter itself). ``auto`` is resolved once on all rows.

    Raises:
        CalibrationError: as :func:`fit_calibrator`.
    """
    proba, y_index = _check(proba, y_index, classes)
    if method == "auto":
        method = choose_method(proba, y_index, classes=classes, cv=cv, seed=seed)
    if method == "identity":
        return identity_calibrator(classes).apply(proba)
    counts = np.bincount(y_index, minlength=len(classes))
    if counts.min() < cv or cv < 2:
        raise CalibrationError(
            f"cross-validated calibration with cv={cv} needs at least {cv} rows of each class; "
            f"the rows have {dict(zip(map(_plain, classes), counts.tolist(), strict=True))}: "
            "pass more rows, a smaller cv, or an explicit method"
        )
    out = np.empty_like(proba)
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    for train, test in folds.split(proba, y_index):
        fitted = fit_calibrator(proba[train], y_index[train], classes=classes, method=method)
        out[test] = fitted.apply(proba[test])
    return out


def brier_of(proba: np.ndarray, y_index: np.ndarray) -> float:
    """Mean over rows of the squared distance between n x k probabilities and the one-hot truth."""
    proba = np.asarray(proba, dtype=np.float64)
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(y_index)), y_index] = 1.0
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def log_loss_of(proba: np.ndarray, y_index: np.ndarray) -> float:
    """Mean cross-entropy of n x k probabilities for true class positions (clipped at EPS)."""
    picked = np.asarray(proba, dtype=np.float64)[np.arange(len(y_index)), y_index]
    return float(-np.mean(np.log(np.clip(picked, EPS, 1.0))))


def class_positions(values: Sequence[Any] | np.ndarray, classes: Sequence[Any]) -> np.ndarray:
    """Each value's position in ``classes``; -1 for a missing value or one the model lacks.

    Vectorised; a value that matches no class directly is matched by its string form, so labels
    that went through JSON (``"1"`` for class ``1``) or a float column (``1.0``) find their class.
    """
    index = pd.Index([_plain(c) for c in classes])
    values = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    out = np.asarray(index.get_indexer(values), dtype=np.int64)
    missed = (out < 0) & ~pd.isna(values)
    if missed.any():
        by_text = pd.Index([str(c) for c in index])
        text = pd.Series(values[missed]).map(lambda v: str(_plain(v)))
        out[missed] = by_text.get_indexer(text)
    return out


def _fit_map(method: str, p: np.ndarray, is_class: np.ndarray) -> Map:
    y = is_class.astype(np.float64)
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
        return Map(
            "isotonic",
            x=tuple(map(float, iso.X_thresholds_)),
            y=tuple(map(float, iso.y_thresholds_)),
        )
    a, b = _platt(_logit(p), y)
    return Map("sigmoid", a=a, b=b)


def _platt(z: np.ndarray, y: np.ndarray, *, iterations: int = 100) -> tuple[float, float]:
    """Platt's sigmoid fit (Newton's method with step halving) on scores ``z``; targets are
    smoothed to (N+ + 1) / (N+ + 2) and 1 / (N- + 2) as in Platt (1999)."""
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    t = np.where(y > 0, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    X = np.column_stack([z, np.ones_like(z)])
    w = np.array([1.0, 0.0])

    def loss(w: np.ndarray) -> float:
        s = X @ w
        return float(np.sum(np.logaddexp(0.0, s) - t * s))

    current = loss(w)
    for _ in range(iterations):
        q = _sigmoid(X @ w)
        grad = X.T @ (q - t)
        hess = (X * (q * (1.0 - q))[:, None]).T @ X + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-10:
            candidate = w - scale * step
            value = loss(candidate)
            if value <= current:
                break
            scale /= 2.0
        else:
            break
        converged = current - value < 1e-12 * max(1.0, abs(current))
        w, current = candidate, value
        if converged:
            break
    return float(w[0]), float(w[1])


def _check(
    proba: np.ndarray, y_index: np.ndarray, classes: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray]:
    proba = _matrix(proba, len(classes))
    y_index = np.asarray(y_index, dtype=np.int64)
    if y_index.shape != (proba.shape[0],):
        raise CalibrationError(f"{proba.shape[0]} probability rows but {y_index.shape} labels")
    bad = np.flatnonzero((y_index < 0) | (y_index >= len(classes)))
    if bad.size:
        raise CalibrationError(
            f"{bad.size} row(s) have no known class (positions {bad[:5].tolist()}): "
            "drop unlabeled rows and labels the model does not know"
        )
    absent = [_plain(c) for k, c in enumerate(classes) if not np.any(y_index == k)]
    if absent:
        raise CalibrationError(f"no rows of class(es) {absent}: calibration needs every class")
    return proba, y_index


def _matrix(proba: np.ndarray, k: int) -> np.ndarray:
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] != k or k < 2:
        raise CalibrationError(f"expected an n x {k} probability matrix, got shape {proba.shape}")
    return proba


def _renormalise(proba: np.ndarray) -> np.ndarray:
    total = proba.sum(axis=1, keepdims=True)
    uniform = np.full_like(proba, 1.0 / proba.shape[1])
    return np.divide(proba, total, out=uniform, where=total > 0)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(s: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -s))


def _plain(value: Any) -> Any:
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value
