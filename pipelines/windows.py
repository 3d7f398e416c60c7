"""Which labeled live rows a challenger learns from, and which it is judged on (pure).

After a change of concept, rows from before it teach the old relationship. So retraining looks
for the most recent change in the serving model's own per-row losses (:func:`change_point`),
keeps the newest labeled rows apart to judge on (:func:`gate_size`), and trains candidates on
several windows ending before them (:func:`candidate_windows`): the rows since the change, the
last N rows for a few N, with and without the reference. The candidate that scores best on the
judged rows wins; its window, extended through the judged rows, is what the new version learns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Per-row log loss is capped here (a confident mistake counts as p = 1e-4).
MAX_ROW_LOSS = -math.log(1e-4)


@dataclass(frozen=True)
class ChangePoint:
    """The most recent change in the mean per-row loss: the first row of the new regime."""

    index: int
    statistic: float
    threshold: float
    mean_before: float
    mean_after: float


def row_losses(
    task: str,
    y_true: Sequence[object] | np.ndarray,
    *,
    prediction: np.ndarray | None = None,
    probability_of_truth: np.ndarray | None = None,
) -> np.ndarray:
    """Each row's loss under the serving model: log loss of the true class (capped) for a
    classifier, absolute error for a regressor (robust to a few huge errors)."""
    if task == "regression":
        if prediction is None:
            raise ValueError("a regressor's row losses need its predictions")
        return np.abs(np.asarray(y_true, dtype=float) - np.asarray(prediction, dtype=float))
    if probability_of_truth is None:
        raise ValueError("a classifier's row losses need the probability of the true class")
    p = np.clip(np.asarray(probability_of_truth, dtype=float), 1e-12, 1.0)
    return np.minimum(-np.log(p), MAX_ROW_LOSS)


def _critical_value(n: int, alpha: float) -> float:
    """Asymptotic critical value of the maximum standardized mean-shift statistic over all
    split points (Darling-Erdos form), for n rows at level alpha."""
    loglog = math.log(max(math.log(max(n, 16)), 1.0 + 1e-9))
    a = math.sqrt(2.0 * loglog)
    b = 2.0 * loglog + 0.5 * math.log(max(loglog, 1e-9)) - 0.5 * math.log(math.pi)
    x = -math.log(-math.log(1.0 - alpha) / 2.0)
    return (x + b) / a


def _best_split(losses: np.ndarray, min_segment: int) -> tuple[int, float]:
    """The split k (first row of the second part) maximizing |mean after - mean before| in
    units of its standard error, and that statistic."""
    n = losses.size
    csum = np.cumsum(losses)
    k = np.arange(min_segment, n - min_segment + 1)
    before = csum[k - 1] / k
    after = (csum[-1] - csum[k - 1]) / (n - k)
    std = float(np.std(losses))
    if std == 0.0:
        return -1, 0.0
    stat = np.abs(after - before) / (std * np.sqrt(1.0 / k + 1.0 / (n - k)))
    best = int(np.argmax(stat))
    return int(k[best]), float(stat[best])


def change_point(
    losses: Sequence[float] | np.ndarray, *, min_segment: int = 100, alpha: float = 0.01
) -> ChangePoint | None:
    """The most recent significant change in the mean of time-ordered per-row losses.

    Binary segmentation: the best split of all rows, then, while it is significant, the best
    split of the part after it; the last significant split is the newest regime's start. A
    change either way counts: a model trained after a change of concept does worse on the rows
    before it, and the newest regime starts there all the same. None when no split is
    significant or there are too few rows.
    """
    values = np.asarray(losses, dtype=float)
    values = values[np.isfinite(values)]
    found: ChangePoint | None = None
    offset = 0
    segment = values
    while segment.size >= 2 * min_segment:
        k, stat = _best_split(segment, min_segment)
        threshold = _critical_value(segment.size, alpha)
        if k < 0 or stat <= threshold:
            break
        before, after = float(segment[:k].mean()), float(segment[k:].mean())
        found = ChangePoint(offset + k, stat, threshold, before, after)
        offset += k
        segment = segment[k:]
    return found


def gate_size(
    labeled_rows: int,
    *,
    window_rows: int,
    rows_since_change: int | None,
    min_rows: int = 200,
) -> int:
    """How many of the newest labeled rows judge champion and challengers.

    The monitor's window size, but at most half of the labeled rows (the rest must train) and,
    after a change, at most half of the rows since it, so that the judged rows belong to the
    present; never fewer than ``min_rows`` unless there are not enough rows at all.
    """
    size = min(window_rows, labeled_rows // 2)
    if rows_since_change is not None:
        size = min(size, rows_since_change // 2)
    return max(min(min_rows, labeled_rows // 2), size)


@dataclass(frozen=True)
class Window:
    """Live rows ``start`` (inclusive) to the judged rows, plus the reference when asked."""

    name: str
    start: int
    with_reference: bool

    def rows(self, train_rows: int) -> int:
        return train_rows - self.start


def candidate_windows(
    train_rows: int,
    *,
    change: int | None,
    sizes: Sequence[int],
    min_rows: int = 200,
    reference: bool = True,
) -> list[Window]:
    """The windows candidates train on, among ``train_rows`` labeled live rows (oldest first)
    that precede the judged rows.

    The rows since the change (with and without the reference), the last N rows for each N in
    ``sizes``, and all live rows with the reference (what a retraining without a detected change
    does). Windows shorter than ``min_rows`` or equal to another are left out.
    """
    out: list[Window] = []

    def add(name: str, start: int, with_reference: bool) -> None:
        start = max(0, start)
        if train_rows - start < min_rows and not (with_reference and train_rows - start > 0):
            return
        if any(w.start == start and w.with_reference == with_reference for w in out):
            return
        out.append(Window(name, start, with_reference))

    if change is not None and change < train_rows:
        add(f"since the change ({train_rows - change} rows)", change, False)
        if reference:
            add(f"reference + since the change ({train_rows - change} rows)", change, True)
    for size in sorted(set(sizes)):
        if size < train_rows:
            add(f"last {size} rows", train_rows - size, False)
    add(f"all {train_rows} live rows", 0, False)
    if reference:
        add(f"reference + all {train_rows} live rows", 0, True)
    return out
