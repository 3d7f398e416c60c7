"""Shadow scoring on the real service: the `challenger` scores the same live requests off the
response path, under the same request ids, and a challenger that breaks never fails a request."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
from mlflow import MlflowClient
from sklearn.base import BaseEstimator, ClassifierMixin

from monitoring import store
from monitoring.shadow import shadow_predictions
from registry import load_model
from serving.shadow import ShadowScorer, shadow_columns
from tests.serving.conftest import MODEL, Registry, check_rows, feature_frame, records, served


def shadow_rows(database_url: str) -> dict[str, tuple[int, Any, float]]:
    engine = store.make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                shadow_predictions.select().with_only_columns(
                    shadow_predictions.c.request_id,
                    shadow_predictions.c.model_version,
                    shadow_predictions.c.prediction,
                    shadow_predictions.c.probability,
                )
            ).all()
    finally:
        engine.dispose()
    return {r.request_id: (r.model_version, r.prediction, r.probability) for r in rows}


def wait_for(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_the_challenger_answers_the_same_requests_in_the_shadow(
    make_server: Any, registry_template: Registry, tracking_uri: str
) -> None:
    champion, challenger = (
        registry_template.versions["logistic"],
        registry_template.versions["forest"],
    )
    client = MlflowClient(tracking_uri=tracking_uri)
    client.set_registered_model_alias(MODEL, "challenger", str(challenger))
    server = make_server(serving={"poll_interval_seconds": 0.3})
    rows = records(registry_template.holdout, 40)
    answered: dict[str, Any] = {}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for start in range(0, len(rows), 4):
            body = http.post("/predict", json={"records": rows[start : start + 4]}).json()
            assert body["model_version"] == champion  # the response is the champion's, always
            answered.update({p["request_id"]: p for p in body["predictions"]})
        url = server.env["DRIFTLOOP_DATABASE_URL"]
        wait_for(lambda: len(shadow_rows(url)) == len(answered), "shadow rows never all arrived")
        metrics = http.get("/metrics").text
    shadow = shadow_rows(url)
    assert set(shadow) == set(answered)  # the same request ids, each once
    assert {version for version, _, _ in shadow.values()} == {challenger}
    forest = load_model(client, MODEL, challenger)
    X = feature_frame(registry_template.holdout.head(40))
    expected = forest.predict_proba(X)[:, 1]
    got = [shadow[rid][2] for rid in answered]  # request ids in the order the rows were sent
    assert np.allclose(got, expected, atol=1e-9)
    assert f'driftloop_shadow_model_version{{model_name="{MODEL}"}} {float(challenger)}' in metrics
    assert 'driftloop_shadow_rows_total{outcome="scored"} 40.0' in metrics


def test_no_challenger_no_shadow_and_a_removed_one_stops(
    make_server: Any, registry_template: Registry, tracking_uri: str
) -> None:
    client = MlflowClient(tracking_uri=tracking_uri)
    server = make_server(serving={"poll_interval_seconds": 0.3})
    url = server.env["DRIFTLOOP_DATABASE_URL"]
    row = records(registry_template.holdout, 1)[0]
    assert httpx.post(f"{server.url}/predict", json=row).status_code == 200
    client.set_registered_model_alias(
        MODEL, "challenger", str(registry_template.versions["forest"])
    )
    wait_for(
        lambda: (
            'driftloop_shadow_model_version{model_name="employment"} 0.0'
            not in httpx.get(f"{server.url}/metrics").text
        ),
        "the challenger was never picked up",
    )
    assert httpx.post(f"{server.url}/predict", json=row).status_code == 200
    wait_for(lambda: len(shadow_rows(url)) == 1, "the challenger did not score the request")
    client.delete_registered_model_alias(MODEL, "challenger")
    wait_for(
        lambda: (
            'driftloop_shadow_model_version{model_name="employment"} 0.0'
            in httpx.get(f"{server.url}/metrics").text
        ),
        "the removed challenger kept scoring",
    )
    assert httpx.post(f"{server.url}/predict", json=row).status_code == 200
    time.sleep(1.0)
    assert len(shadow_rows(url)) == 1


class Refuses(ClassifierMixin, BaseEstimator):
    """A fitted classifier whose every prediction raises, as a broken challenger would."""

    classes_ = np.array([0, 1])

    def predict_proba(self, X: Any) -> np.ndarray:
        raise ValueError("this challenger cannot score")

    def predict(self, X: Any) -> np.ndarray:
        raise ValueError("this challenger cannot score")


def test_a_challenger_that_fails_to_score_is_counted_and_nothing_is_written(
    registry_template: Registry, tmp_path: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store.upgrade_database(url)
    engine = store.make_engine(url)
    columns = check_rows(registry_template.holdout.head(3))

    async def run() -> ShadowScorer:
        scorer = ShadowScorer(None, MODEL, engine, share=1.0)
        scorer.holder.current = served(Refuses())
        scorer.start()
        scorer.submit(columns, ["a", "b", "c"], datetime.now(UTC))  # never raises
        await scorer.close()
        return scorer

    scorer = asyncio.run(run())
    assert scorer.stats.failed == 3 and scorer.stats.scored == 0
    with engine.connect() as connection:
        assert connection.execute(shadow_predictions.select()).all() == []
    engine.dispose()


def test_share_and_features_decide_what_is_scored(registry_template: Registry) -> None:
    columns = check_rows(registry_template.holdout.head(2))
    model = served(Refuses())
    assert shadow_columns(model, columns) == {name: columns[name] for name in model.features}
    assert shadow_columns(model, {k: v for k, v in columns.items() if k != "AGEP"}) is None
    scorer = ShadowScorer(None, MODEL, None, share=0.0)  # type: ignore[arg-type]
    scorer.holder.current = model
    scorer.submit(columns, ["a", "b"], datetime.now(UTC))
    assert scorer._queue.qsize() == 0  # share 0: nothing queued
    scorer.share = 1.0
    scorer.submit(columns, ["a", "b"], datetime.now(UTC))
    assert scorer._queue.qsize() == 1
