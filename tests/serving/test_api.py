"""The HTTP API through a real uvicorn process on loopback: predict, batch, feedback, errors, auth."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from monitoring import store
from tests.serving.conftest import (
    CATEGORICAL,
    MODEL,
    NUMERIC,
    TARGET,
    Registry,
    feature_frame,
    records,
)

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def server(module_server_factory: Any) -> Any:
    """One service for the module (startup costs seconds); tests compare counts before/after."""
    return module_server_factory(
        api_key=KEY, serving={"max_batch_rows": 50, "max_body_bytes": 20_000}
    )


def logged(server: Any) -> int:
    return store.count_rows(store.make_engine(db_url(server)), model_name=MODEL)


def db_url(server: Any) -> str:
    return server.env["DRIFTLOOP_DATABASE_URL"]


def post(server: Any, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, headers=server.headers(), timeout=30, **kw)


def test_predict_one_record_returns_and_logs_it(server: Any, registry_template: Registry) -> None:
    row = records(registry_template.holdout, 1)[0]
    response = post(server, "/predict", row)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (
        body["model_name"] == MODEL
        and body["model_version"] == registry_template.versions["logistic"]
    )
    (pred,) = body["predictions"]
    assert pred["prediction"] in (0, 1)
    assert set(pred["probabilities"]) == {"0", "1"}
    assert pred["probability"] == pytest.approx(pred["probabilities"]["1"])
    engine = store.make_engine(db_url(server))
    frame = store.read_window(
        engine, model_name=MODEL, numeric=NUMERIC, categorical=CATEGORICAL, target=TARGET
    )
    frame = frame[frame["request_id"] == pred["request_id"]].reset_index(drop=True)
    assert len(frame) == 1
    assert frame.loc[0, "prediction"] == pred["prediction"]
    assert frame.loc[0, "AGEP"] == row["AGEP"] and frame.loc[0, "SCHL"] == row["SCHL"]
    assert frame.loc[0, "model_version"] == body["model_version"]


def test_batch_predictions_match_the_sklearn_pipeline(
    server: Any, registry_template: Registry
) -> None:
    from mlflow import MlflowClient

    from serving.model import load_version

    rows = records(registry_template.holdout, 40)
    before = logged(server)
    response = post(server, "/predict", {"records": rows})
    assert response.status_code == 200, response.text
    preds = response.json()["predictions"]
    assert len(preds) == 40 and len({p["request_id"] for p in preds}) == 40
    assert logged(server) == before + 40
    # the served probabilities are the pipeline's own on the same typed frame
    client = MlflowClient(tracking_uri=server.env["MLFLOW_TRACKING_URI"])
    model = load_version(client, MODEL, registry_template.versions["logistic"])
    expected = model.pipeline.predict_proba(feature_frame(registry_template.holdout.head(40)))[:, 1]
    np.testing.assert_allclose([p["probability"] for p in preds], expected, rtol=1e-9)
    # a bare JSON array is a batch too
    assert len(post(server, "/predict", rows[:3]).json()["predictions"]) == 3


def test_feedback_attaches_labels_and_reports_unknown_ids(
    server: Any, registry_template: Registry
) -> None:
    preds = post(server, "/predict", records(registry_template.holdout, 3)).json()["predictions"]
    labels = [{"request_id": p["request_id"], "label": 1} for p in preds[:2]]
    response = post(server, "/feedback", {"labels": [*labels, {"request_id": "nope", "label": 0}]})
    assert response.status_code == 200, response.text
    assert response.json() == {"updated": 2, "unknown_request_ids": ["nope"]}
    engine = store.make_engine(db_url(server))
    frame = store.read_window(
        engine,
        model_name=MODEL,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        target=TARGET,
        labeled_only=True,
    )
    mine = frame[frame["request_id"].isin([p["request_id"] for p in preds])]
    assert sorted(mine["request_id"]) == sorted(p["request_id"] for p in preds[:2])
    assert mine[TARGET].tolist() == [1, 1]


def test_feedback_rejects_a_label_that_is_not_a_class(server: Any) -> None:
    response = post(server, "/feedback", {"labels": [{"request_id": "x", "label": 7}]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "labels", 0, "label"]


@pytest.mark.parametrize(
    ("mutate", "row", "field", "needle"),
    [
        (lambda r: r.pop("SCHL"), 1, "SCHL", "missing"),
        (lambda r: r.update(AGEP="35"), 1, "AGEP", "expected a number"),
        (lambda r: r.update(SEX=2), 1, "SEX", "expected a string"),
        (lambda r: r.update(colour="red"), 1, "colour", "unknown field"),
        (lambda r: r.update(AGEP=None), 1, "AGEP", "may not be null"),
        (lambda r: r.update(AGEP=True), 1, "AGEP", "expected a number"),
    ],
)
def test_invalid_rows_get_422_naming_row_and_field_and_nothing_is_logged(
    server: Any, registry_template: Registry, mutate: Any, row: int, field: str, needle: str
) -> None:
    rows = records(registry_template.holdout, 3)
    mutate(rows[row])
    before = logged(server)
    response = post(server, "/predict", {"records": rows})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(d["row"] == row and d["field"] == field and needle in d["msg"] for d in detail), (
        detail
    )
    assert logged(server) == before


def test_a_nullable_feature_may_be_null(server: Any, registry_template: Registry) -> None:
    row = records(registry_template.holdout, 1)[0] | {"MIL": None}
    assert post(server, "/predict", row).status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 422),
        (b"[]", 422),
        (b"42", 422),
        (b'{"records": {"a": 1}}', 422),
    ],
)
def test_malformed_bodies_get_422(server: Any, body: bytes, status: int) -> None:
    response = httpx.post(
        f"{server.url}/predict",
        content=body,
        headers={**server.headers(), "content-type": "application/json"},
    )
    assert response.status_code == status
    assert "Traceback" not in response.text


def test_oversized_batch_and_body_are_refused(server: Any, registry_template: Registry) -> None:
    before = logged(server)
    response = post(server, "/predict", {"records": records(registry_template.holdout, 51)})
    assert response.status_code == 422  # max_batch_rows is 50
    assert response.json()["detail"][0]["field"] == "records"
    assert "limit of 50" in response.json()["detail"][0]["msg"]
    huge = {"records": [records(registry_template.holdout, 1)[0] | {"pad": "x" * 30_000}]}
    response = post(server, "/predict", huge)
    assert response.status_code == 413  # max_body_bytes is 20,000
    assert logged(server) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/predict"),
        ("POST", "/feedback"),
        ("POST", "/reload"),
        ("GET", "/model"),
        ("GET", "/metrics"),
        ("GET", "/ready"),
        ("GET", "/openapi.json"),
    ],
)
def test_every_endpoint_but_health_needs_the_key(server: Any, method: str, path: str) -> None:
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"}):
        response = httpx.request(method, f"{server.url}{path}", headers=headers, json={})
        assert response.status_code == 401, (path, headers)
    response = httpx.request(
        method, f"{server.url}{path}", headers={"Authorization": f"Bearer {KEY}"}, json={}
    )
    assert response.status_code != 401


def test_model_shows_a_real_reference_row_that_predict_accepts(
    server: Any, registry_template: Registry
) -> None:
    info = httpx.get(f"{server.url}/model", headers=server.headers()).json()
    example = info["example"]
    assert list(example) == NUMERIC + CATEGORICAL
    train = records(registry_template.train)  # the reference snapshot is drawn from these rows
    assert example in train
    response = post(server, "/predict", example)
    assert response.status_code == 200, response.text


def scrape(server: Any) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", headers=server.headers()).text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_health_is_open_and_ready_model_metrics_work(
    server: Any, registry_template: Registry
) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/ready", headers=server.headers()).status_code == 200
    info = httpx.get(f"{server.url}/model", headers=server.headers()).json()
    assert info["version"] == registry_template.versions["logistic"] and info["alias"] == "champion"
    assert info["features"]["numeric"] == NUMERIC and info["signature"]["inputs"]
    assert info["scorer"] == "fast numpy path" and "verified equal" in info["scorer_note"]
    before = scrape(server)
    post(server, "/predict", records(registry_template.holdout, 2))
    post(server, "/predict", {"bad": 1})
    after = scrape(server)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta('driftloop_requests_total{endpoint="/predict",status="200"}') == 1
    assert delta('driftloop_request_errors_total{endpoint="/predict",status="422"}') == 1
    assert delta('driftloop_rows_logged_total{destination="database"}') == 2
    assert delta("driftloop_log_batch_rows_total") == 2  # group-commit batches and their time
    assert delta("driftloop_log_batch_seconds_count") >= 1
    assert delta('driftloop_request_latency_seconds_count{endpoint="/predict"}') == 2
    assert after["driftloop_log_queue_depth"] == 0
    assert (
        after[f'driftloop_model_version{{model_name="{MODEL}"}}']
        == registry_template.versions["logistic"]
    )
    schema = httpx.get(f"{server.url}/openapi.json", headers=server.headers()).json()
    assert set(schema["paths"]) >= {
        "/predict",
        "/feedback",
        "/health",
        "/ready",
        "/model",
        "/metrics",
        "/reload",
    }
    assert schema["components"]["schemas"]["Record"]["required"] == NUMERIC + CATEGORICAL


def test_not_ready_without_a_champion_then_ready_after_promotion(
    make_server: Any, tracking_uri: str, registry_template: Registry
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.delete_registered_model_alias(MODEL, "champion")
    server = make_server(start=False).start(wait=False)
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/health").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    ready = httpx.get(f"{server.url}/ready")
    assert ready.status_code == 503 and "champion" in ready.json()["error"]
    assert post(server, "/predict", records(registry_template.holdout, 1)).status_code == 503
    client.set_registered_model_alias(MODEL, "champion", str(registry_template.versions["forest"]))
    server.wait_ready(60)
    body = post(server, "/predict", records(registry_template.holdout, 1)).json()
    assert body["model_version"] == registry_template.versions["forest"]
    info = httpx.get(f"{server.url}/model").json()  # the forest has no fast path: the pipeline
    assert info["scorer"] == "scikit-learn pipeline" and "RandomForest" in info["scorer_note"]


def test_sigterm_flushes_and_exits_cleanly(make_server: Any, registry_template: Registry) -> None:
    server = make_server()
    for _ in range(5):
        assert post(server, "/predict", records(registry_template.holdout, 4)).status_code == 200
    assert server.stop() in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown
    assert "Traceback" not in server.output()
    engine = sa.create_engine(db_url(server))
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM inference_log")) == 20
