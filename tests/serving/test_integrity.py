"""The service serves only registered bytes: tampered versions are refused, the loaded one stays.

Each test registers its own extra version into its registry copy (files under its tmp_path: the
template's artifacts are shared by every test) and tampers with that version's stored files.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from registry import ModelIntegrityError
from serving.model import load_version
from tests.conftest import (
    raise_a_coefficient,
    rewrite_parquet,
    stored_model_dir,
    stored_reference,
    swap_in_pickle,
)
from tests.serving.conftest import MODEL, Registry, records, register_in

TEMP = tempfile.gettempdir()


@pytest.fixture
def own_version(tracking_uri: str, registry_template: Registry, tmp_path: Path) -> int:
    """A logistic version registered into this test's registry copy, files in tmp_path."""
    return register_in(tracking_uri, tmp_path / "own-mlruns", "logistic", registry_template.train)


def test_serving_refuses_a_coefficient_rewritten_with_skops(
    tracking_uri: str, own_version: int
) -> None:
    client = MlflowClient(tracking_uri=tracking_uri)
    assert load_version(client, MODEL, own_version).version == own_version  # clean: loads
    raise_a_coefficient(stored_model_dir(client, MODEL, own_version))
    with pytest.raises(ModelIntegrityError) as err:
        load_version(client, MODEL, own_version)
    message = str(err.value)
    assert f"version {own_version}" in message and "model/model.skops does not match" in message
    assert TEMP not in message


def test_serving_refuses_a_tampered_reference_snapshot(tracking_uri: str, own_version: int) -> None:
    client = MlflowClient(tracking_uri=tracking_uri)
    rewrite_parquet(stored_reference(client, MODEL, own_version))
    with pytest.raises(ModelIntegrityError, match="reference/reference.parquet does not match"):
        load_version(client, MODEL, own_version)


def _body_without_paths(response: httpx.Response, tmp_path: Path) -> dict[str, Any]:
    assert TEMP not in response.text and str(tmp_path) not in response.text, response.text
    return response.json()


def _load_failures(server: Any) -> float:
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith("driftloop_model_load_failures"):
            return float(line.split()[-1])
    raise AssertionError("no driftloop_model_load_failures in /metrics")


def test_a_tampered_new_champion_is_refused_and_the_old_one_keeps_serving(
    make_server: Any,
    registry_template: Registry,
    tracking_uri: str,
    own_version: int,
    tmp_path: Path,
) -> None:
    old = registry_template.versions["logistic"]
    client = MlflowClient(tracking_uri=tracking_uri)
    server = make_server(serving={"poll_interval_seconds": 0.3})
    raise_a_coefficient(stored_model_dir(client, MODEL, own_version))
    client.set_registered_model_alias(MODEL, "champion", str(own_version))
    deadline = time.monotonic() + 60
    while _load_failures(server) < 1:
        assert time.monotonic() < deadline, (
            f"the service never tried the new champion\n{server.output()}"
        )
        time.sleep(0.2)

    row = records(registry_template.holdout, 1)[0]
    predicted = httpx.post(f"{server.url}/predict", json=row, timeout=30)
    assert predicted.status_code == 200 and predicted.json()["model_version"] == old
    ready = httpx.get(f"{server.url}/ready", timeout=10)
    body = _body_without_paths(ready, tmp_path)
    assert ready.status_code == 200 and body["model_version"] == old
    assert f"version {own_version}" in body["last_error"]
    assert "model/model.skops does not match" in body["last_error"]
    assert httpx.get(f"{server.url}/model", timeout=10).json()["version"] == old
    reload = httpx.post(f"{server.url}/reload", timeout=60)
    text = _body_without_paths(reload, tmp_path)["error"]
    assert reload.status_code == 503 and f"still serving version {old}" in text
    assert "model/model.skops" in text
    assert f"version {own_version}: model/model.skops does not match" in server.output()  # logged


def test_a_service_starting_on_a_tampered_champion_stays_unready_and_runs_nothing(
    make_server: Any, tracking_uri: str, own_version: int, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri=tracking_uri)
    marker = tmp_path / "pwned"
    swap_in_pickle(stored_model_dir(client, MODEL, own_version), marker)
    client.set_registered_model_alias(MODEL, "champion", str(own_version))
    server = make_server(start=False).start(wait=False)
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, f"the service never answered\n{server.output()}"
        assert server.process is not None and server.process.poll() is None, server.output()
        try:
            ready = httpx.get(f"{server.url}/ready", timeout=5)
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        if "loading" not in ready.text:
            break
        time.sleep(0.2)
    body = _body_without_paths(ready, tmp_path)
    assert ready.status_code == 503, body
    assert f"version {own_version}" in body["error"] and "model/MLmodel" in body["error"]
    assert httpx.post(f"{server.url}/predict", json={}, timeout=10).status_code == 503
    time.sleep(1.0)  # a few more polls of the tampered version
    assert not marker.exists()
