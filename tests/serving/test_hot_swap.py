"""Champion hot swap: moving the alias changes the answering version with no failed request."""

from __future__ import annotations

import time
from typing import Any

import httpx
from mlflow import MlflowClient

from monitoring import store
from tests.serving.conftest import MODEL, Load, Registry, records


def test_alias_move_under_load_swaps_without_failures_and_logs_each_version(
    make_server: Any, registry_template: Registry, tracking_uri: str
) -> None:
    old, new = registry_template.versions["logistic"], registry_template.versions["forest"]
    server = make_server(serving={"poll_interval_seconds": 0.3})
    load = Load(server, records(registry_template.holdout, 200), threads=4).start()
    load.wait_acked(100)
    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(MODEL, "champion", str(new))
    deadline = time.monotonic() + 60
    while not any(a["model_version"] == new for a in load.acked[-20:]):
        assert time.monotonic() < deadline, "the service never picked up the new champion"
        time.sleep(0.1)
    load.wait_acked(len(load.acked) + 100)
    load.stop()
    assert set(load.statuses) == {200} and not load.failures  # no in-flight request failed
    versions = [a["model_version"] for a in load.acked]
    assert versions[0] == old and versions[-1] == new
    engine = store.make_engine(server.env["DRIFTLOOP_DATABASE_URL"])
    with engine.connect() as conn:
        rows = dict(
            conn.exec_driver_sql("SELECT request_id, model_version FROM inference_log").all()
        )
    assert all(
        rows[a["request_id"]] == a["model_version"] for a in load.acked
    )  # each row: its version


def test_reload_endpoint_swaps_at_once_and_needs_the_key(
    make_server: Any, registry_template: Registry, tracking_uri: str
) -> None:
    server = make_server(api_key="k", serving={"poll_interval_seconds": 3600})
    new = registry_template.versions["forest"]
    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(MODEL, "champion", str(new))
    assert httpx.post(f"{server.url}/reload").status_code == 401
    response = httpx.post(f"{server.url}/reload", headers=server.headers(), timeout=60)
    assert response.json() == {"changed": True, "model_name": MODEL, "model_version": new}
    body = httpx.post(
        f"{server.url}/predict",
        json=records(registry_template.holdout, 1)[0],
        headers=server.headers(),
    ).json()
    assert body["model_version"] == new
    again = httpx.post(f"{server.url}/reload", headers=server.headers(), timeout=60).json()
    assert again["changed"] is False


def test_a_broken_new_champion_is_not_swapped_in(
    make_server: Any, registry_template: Registry, tracking_uri: str
) -> None:
    client = MlflowClient(tracking_uri=tracking_uri)
    server = make_server(serving={"poll_interval_seconds": 3600})
    forest = registry_template.versions["forest"]
    client.delete_model_version_tag(
        MODEL, str(forest), "driftloop.model_spec"
    )  # not a driftloop model
    client.set_registered_model_alias(MODEL, "champion", str(forest))
    response = httpx.post(f"{server.url}/reload", timeout=60)
    assert response.status_code == 503 and "driftloop.model_spec" in response.json()["error"]
    body = httpx.post(f"{server.url}/predict", json=records(registry_template.holdout, 1)[0]).json()
    assert (
        body["model_version"] == registry_template.versions["logistic"]
    )  # still serving the old one
