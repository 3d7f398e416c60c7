"""What an attacker or a careless client sends, through a real uvicorn process: refused clearly,
within bounds, never logged, never echoed back in full."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from monitoring import store
from tests.serving.conftest import MODEL, Registry, model_spec_tag, records

KEY = "hardening-key"


@pytest.fixture(scope="module")
def server(module_server_factory: Any) -> Any:
    return module_server_factory(
        api_key=KEY,
        serving={"max_body_bytes": 20_000, "body_timeout_seconds": 1.0, "auth_free_failures": 3},
    )


def logged(server: Any) -> int:
    engine = store.make_engine(server.env["DRIFTLOOP_DATABASE_URL"])
    try:
        return store.count_rows(engine, model_name=MODEL)
    finally:
        engine.dispose()


def post(server: Any, path: str, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}{path}", json=body, headers={"X-API-Key": KEY, **headers}, timeout=30
    )


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("AGEP", 1.797e308, "outside the accepted range"),
        ("AGEP", 2**64, "outside the accepted range"),
        ("AGEP", -1e9, "outside the accepted range"),
        ("SCHL", "21\u0000", "control character U+0000"),
        ("SCHL", "2\r\n1", "control character U+000D"),
        ("SCHL", "x" * 1000, "longer than the limit of 256"),
    ],
)
def test_values_storage_or_training_cannot_take_are_refused_by_row_and_field(
    server: Any, registry_template: Registry, field: str, value: Any, needle: str
) -> None:
    rows = records(registry_template.holdout, 2)
    rows[1][field] = value
    before = logged(server)
    response = post(server, "/predict", {"records": rows})
    assert response.status_code == 422, response.text
    (item,) = response.json()["detail"]
    assert (item["row"], item["field"]) == (1, field) and needle in item["msg"]
    assert len(response.content) < 1000
    assert logged(server) == before


def test_a_value_within_a_million_times_the_training_range_is_served(
    server: Any, registry_template: Registry
) -> None:
    row = records(registry_template.holdout, 1)[0] | {"AGEP": 1990.0}  # the year of birth
    assert post(server, "/predict", row).status_code == 200


@pytest.mark.parametrize("path", ["/predict", "/feedback"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_json_endpoints_refuse_other_content_types(
    server: Any, registry_template: Registry, path: str, content_type: str | None
) -> None:
    import json

    headers = {"X-API-Key": KEY}
    if content_type:
        headers["content-type"] = content_type
    body = json.dumps(records(registry_template.holdout, 1)[0])
    before = logged(server)
    response = httpx.post(f"{server.url}{path}", content=body, headers=headers, timeout=30)
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    assert logged(server) == before


def _chunks(total: int, size: int = 64_000) -> Iterator[bytes]:
    yield b'{"labels": [{"request_id": "x", "label": "'
    sent = 0
    while sent < total:
        yield b"a" * size
        sent += size
    yield b'"}]}'


@pytest.mark.parametrize("path", ["/feedback", "/predict", "/reload"])
def test_a_chunked_body_over_the_limit_is_refused_early_with_a_short_answer(
    server: Any, path: str
) -> None:
    started = time.monotonic()
    try:
        response = httpx.post(
            f"{server.url}{path}",
            content=_chunks(100_000_000),
            headers={"X-API-Key": KEY, "content-type": "application/json"},
            timeout=30,
        )
    except httpx.RemoteProtocolError:  # the server may close while we still send: also refused
        assert time.monotonic() - started < 30
        return
    assert response.status_code == 413, response.text[:200]
    # refused early: long before the 100 MB could be read (55 s and 380 MB before the limit)
    assert len(response.content) < 300 and time.monotonic() - started < 30


def test_an_oversized_label_is_not_echoed_back(server: Any) -> None:
    response = post(server, "/feedback", {"labels": [{"request_id": "r1", "label": "9" * 15_000}]})
    assert response.status_code == 422
    assert len(response.content) < 1000 and "15002 characters" in response.text


def test_feedback_validation_errors_have_the_service_error_shape(server: Any) -> None:
    for body in ({"labels": []}, {"labels": [{"label": 1}]}, {"nope": 1}, [1, 2]):
        response = post(server, "/feedback", body)
        assert response.status_code == 422, body
        answer = response.json()
        assert answer["error"] and answer["detail"], answer
        assert all({"loc", "row", "field", "msg"} <= set(d) for d in answer["detail"])
    response = httpx.post(
        f"{server.url}/feedback",
        content=b"{not json",
        headers={"X-API-Key": KEY, "content-type": "application/json"},
    )
    assert response.status_code == 422 and "error" in response.json()


def test_a_body_that_never_finishes_gets_408_within_the_timeout(server: Any) -> None:
    for path in ("/predict", "/feedback"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n"
                "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{".encode()
            )
            started = time.monotonic()
            answer = b""
            while b"}" not in answer:  # headers and body may come in separate segments
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
            waited = time.monotonic() - started
        text = answer.decode()
        assert text.startswith("HTTP/1.1 408"), text
        # answered after the 1 s limit, not hanging on the missing 499 bytes
        assert 0.5 < waited < 30 and "did not arrive within 1 s" in text


def test_wrong_keys_are_slowed_down_per_address(
    make_server: Any, registry_template: Registry
) -> None:
    server = make_server(api_key=KEY, serving={"auth_free_failures": 3})
    row = records(registry_template.holdout, 1)[0]
    url = f"{server.url}/predict"
    statuses = [
        httpx.post(url, json=row, headers={"X-API-Key": "guess"}).status_code for _ in range(3)
    ]
    assert statuses == [401, 401, 401]
    locked = httpx.post(url, json=row, headers={"X-API-Key": "guess"})
    assert locked.status_code == 401  # the 4th failure is answered and starts a lock-out
    refused = httpx.post(url, json=row, headers={"X-API-Key": KEY})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    time.sleep(float(refused.headers["retry-after"]) + 0.2)
    assert httpx.post(url, json=row, headers={"X-API-Key": KEY}).status_code == 200
    assert httpx.get(f"{server.url}/health").status_code == 200  # never throttled


def test_bearer_is_an_accepted_way_to_send_the_key(
    server: Any, registry_template: Registry
) -> None:
    row = records(registry_template.holdout, 1)[0]
    response = httpx.post(
        f"{server.url}/predict", json=row, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 200


def test_unready_answers_carry_no_local_paths(
    make_server: Any, tracking_uri: str, tmp_path: Any
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    missing = tmp_path / "nowhere" / "secret-dir" / "model"
    version = client.create_model_version(MODEL, source=str(missing))
    for key, value in model_spec_tag(
        task="classification", target="employed", numeric=["AGEP"], categorical=["SCHL"]
    ).items():
        client.set_model_version_tag(MODEL, version.version, key, value)
    client.set_registered_model_alias(MODEL, "champion", version.version)
    server = make_server(start=False).start(wait=False)
    deadline = time.monotonic() + 60
    body = ""
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{server.url}/ready", timeout=5)
        except httpx.HTTPError:
            time.sleep(0.3)
            continue
        body = ready.text
        if ready.status_code == 503 and "starting" not in body:
            break
        time.sleep(0.3)
    assert "not ready" in body
    for answer in (body, httpx.post(f"{server.url}/reload").text):
        assert "secret-dir" not in answer and str(tmp_path) not in answer, answer
