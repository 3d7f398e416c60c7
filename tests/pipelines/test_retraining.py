"""A retraining's challengers on generated streams: after an abrupt change of concept the window
since the change wins on the newest rows and beats the champion beyond noise; without a change
no challenger does (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from core.spec import FeatureSpec
from pipelines.promotion import PromotionPolicy, paired_difference, should_promote
from pipelines.retraining import Judge, Rows, best, fit_candidates, plan_retraining, refit
from pipelines.schema import prepare_features
from pipelines.synthetic import CATEGORICAL, NUMERIC, generate
from pipelines.training import build_pipeline
from pipelines.windows import row_losses

SPEC = FeatureSpec(tuple(NUMERIC), tuple(CATEGORICAL))


def rows(frame, y) -> Rows:
    return Rows(prepare_features(frame, SPEC).reset_index(drop=True), np.asarray(y))


def retrain(scenario: str, labeled: int):
    stream = generate(scenario, train_rows=6000, live_rows=labeled, change=0.7, seed=4)
    champion = build_pipeline(
        SPEC,
        task="classification",
        family="hist_gradient_boosting",
        native_categorical=True,
        seed=0,
    )
    reference = rows(stream.train, stream.train["y"])
    champion.fit(reference.X, reference.y)
    live = rows(stream.live, stream.labels["y"])
    proba = champion.predict_proba(live.X)
    truth = proba[np.arange(len(live)), live.y]
    plan = plan_retraining(
        row_losses("classification", live.y, probability_of_truth=truth), window_rows=5000
    )
    judge = Judge("classification", "roc_auc", (0, 1), live.slice(plan.train_rows, len(live)))
    candidates = fit_candidates(champion, plan, live=live, reference=reference, judge=judge)
    winner = best(candidates, "roc_auc")
    held = judge.scored("champion", champion, len(reference))
    outputs = {"candidate": winner, "champion": held}
    difference = paired_difference(
        lambda who, pos: judge.score(outputs[who].prediction, outputs[who].proba, pos),
        len(judge.gate),
        higher_is_better=True,
    )
    return stream, plan, candidates, winner, held, difference, champion, live, reference


def test_after_an_abrupt_change_the_window_since_it_wins_and_beats_the_champion() -> None:
    stream, plan, candidates, winner, held, difference, champion, live, reference = retrain(
        "abrupt", 12_000
    )
    assert plan.change is not None and abs(plan.change.index - stream.change_row) < 200
    assert plan.gate_rows == (12_000 - plan.change.index) // 2  # the judged rows are all new
    assert winner.name.startswith("since the change")
    assert winner.score > held.score + 0.3 and difference.low > 0.25
    decision = should_promote(
        {"roc_auc": winner.score},
        {"roc_auc": held.score},
        PromotionPolicy("roc_auc", True, 0.002),
        difference,
    )
    assert decision.promote and "interval" in decision.reason
    final, learned = refit(
        champion,
        next(w for w in plan.windows if w.name == winner.name),
        live=live,
        reference=reference,
    )
    assert learned == 12_000 - plan.change.index  # the window extended through the judged rows


def test_without_a_change_the_most_data_wins_and_is_no_worse() -> None:
    _, plan, _, winner, held, difference, *_ = retrain("none", 12_000)
    assert plan.change is None
    assert winner.name.startswith("reference + all")  # more rows of the same concept
    assert difference.low > -0.002 and winner.score >= held.score - 0.002


def test_paired_difference_of_equal_models_straddles_zero() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    p = np.clip(y * 0.3 + rng.random(1000) * 0.7, 0, 1)

    def score(who: str, pos: np.ndarray) -> float:
        return float(np.mean((p[pos] > 0.5) == y[pos]))

    d = paired_difference(score, 1000, higher_is_better=True)
    assert d.value == 0 and d.low <= 0 <= d.high


@pytest.mark.parametrize("higher", [True, False])
def test_paired_difference_is_positive_when_the_candidate_is_better(higher: bool) -> None:
    rng = np.random.default_rng(1)
    errors = {"candidate": rng.random(500) * 0.5, "champion": rng.random(500)}

    def score(who: str, pos: np.ndarray) -> float:
        value = float(np.mean(errors[who][pos]))
        return -value if higher else value

    d = paired_difference(score, 500, higher_is_better=higher)
    assert d.value > 0.2 and d.low > 0.15
