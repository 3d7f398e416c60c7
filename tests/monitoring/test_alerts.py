"""Webhook alerts: HMAC signing, a real local HTTP receiver, retries and refusals."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from monitoring.alerts import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Alert,
    AlertConfig,
    AlertError,
    dedup_key,
    deliver,
    retrain_alert,
    send_webhook,
    sign,
    signature_headers,
    verify,
    verify_bearer,
)

SECRET = "s3cret-for-tests"


class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and answers scripted statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.path, dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 400 else b"nope")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def alert() -> Alert:
    return Alert(
        kind="drift",
        model_name="employment",
        severity="warning",
        title="Dataset drift on employment",
        message="3 of 16 features drifted (AGEP, SCHL, MAR)",
        details={"drift_share": 0.1875, "drift_run_id": 42, "features": ["AGEP", "SCHL", "MAR"]},
        condition_key="drift:AGEP,MAR,SCHL",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _no_sleep(_: float) -> None:
    pass


# --- signing -------------------------------------------------------------------------------


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(b"{}", "k", 1700000000) == expected


def test_signature_headers_verify() -> None:
    headers = signature_headers(b'{"a":1}', SECRET)
    assert headers[SIGNATURE_HEADER].startswith("sha256=")
    assert verify(b'{"a":1}', headers, SECRET)


@pytest.mark.parametrize(
    ("body", "secret", "age_s", "tolerance_s"),
    [
        (b'{"a":2}', SECRET, 0, 300),  # tampered body
        (b'{"a":1}', "other-secret", 0, 300),  # wrong secret
        (b'{"a":1}', SECRET, 600, 300),  # replayed after the tolerance
        (b'{"a":1}', SECRET, -600, 300),  # stamped in the future
    ],
)
def test_verify_refuses(body: bytes, secret: str, age_s: int, tolerance_s: float) -> None:
    now = 1_700_000_000
    headers = signature_headers(b'{"a":1}', SECRET, timestamp=now - age_s)
    assert not verify(body, headers, secret, tolerance_s, now=now)


def test_verify_refuses_missing_or_malformed_headers() -> None:
    assert not verify(b"x", {}, SECRET)
    assert not verify(b"x", {SIGNATURE_HEADER: "md5=abc", TIMESTAMP_HEADER: "1"}, SECRET)
    assert not verify(b"x", {SIGNATURE_HEADER: "sha256=abc", TIMESTAMP_HEADER: "soon"}, SECRET)


def test_verify_reads_headers_case_insensitively() -> None:
    headers = {k.lower(): v for k, v in signature_headers(b"body", SECRET).items()}
    assert verify(b"body", headers, SECRET)


@given(
    body=st.binary(max_size=512), secret=st.text(min_size=1, max_size=40), flip=st.integers(0, 511)
)
def test_any_body_round_trips_and_any_flipped_byte_fails(
    body: bytes, secret: str, flip: int
) -> None:
    headers = signature_headers(body, secret, timestamp=1_700_000_000)
    assert verify(body, headers, secret, now=1_700_000_000)
    if body:
        i = flip % len(body)
        tampered = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
        assert not verify(tampered, headers, secret, now=1_700_000_000)


# --- delivery to a real HTTP server --------------------------------------------------------


def test_webhook_received_and_signature_verifies(alert: Alert) -> None:
    with Receiver() as receiver:
        result = send_webhook(alert, receiver.url, SECRET, timeout=5, retries=0)
    assert result.ok and result.attempts == 1 and result.status_code == 200
    path, headers, body = receiver.requests[0]
    assert path == "/hook"
    assert verify(body, headers, SECRET)
    payload = json.loads(body)
    assert payload["model_name"] == "employment"
    assert payload["kind"] == "drift"
    assert payload["details"]["drift_run_id"] == 42
    assert payload["dedup_key"] == dedup_key(alert)
    assert headers[DELIVERY_HEADER] == result.delivery_id


def test_tampered_delivery_fails_verification(alert: Alert) -> None:
    with Receiver() as receiver:
        send_webhook(alert, receiver.url, SECRET, retries=0)
    _, headers, body = receiver.requests[0]
    tampered = body.replace(b'"severity":"warning"', b'"severity":"info"')
    assert tampered != body
    assert not verify(tampered, headers, SECRET)


def test_retries_on_500_then_succeeds_with_one_delivery_id(alert: Alert) -> None:
    with Receiver(statuses=[500, 503]) as receiver:
        result = send_webhook(alert, receiver.url, SECRET, retries=3, sleep=_no_sleep)
    assert result.ok and result.attempts == 3
    assert len(receiver.requests) == 3
    assert len({headers[DELIVERY_HEADER] for _, headers, _ in receiver.requests}) == 1
    assert all(verify(body, headers, SECRET) for _, headers, body in receiver.requests)


def test_backoff_doubles_between_attempts(alert: Alert) -> None:
    waits: list[float] = []
    with Receiver(statuses=[500, 500, 500]) as receiver:
        send_webhook(alert, receiver.url, SECRET, retries=3, backoff_s=0.25, sleep=waits.append)
    assert waits == [0.25, 0.5, 1.0]


def test_gives_up_after_retries_with_a_clear_error(alert: Alert) -> None:
    with Receiver(statuses=[500] * 5) as receiver, pytest.raises(AlertError) as info:
        send_webhook(alert, receiver.url, SECRET, retries=2, sleep=_no_sleep)
    assert len(receiver.requests) == 3
    assert "after 3 attempts" in str(info.value) and "HTTP 500" in str(info.value)
    assert info.value.attempts == 3 and info.value.status_code == 500


def test_4xx_is_not_retried_and_names_the_status(alert: Alert) -> None:
    with Receiver(statuses=[401]) as receiver, pytest.raises(AlertError, match="HTTP 401"):
        send_webhook(alert, receiver.url, SECRET, retries=3, sleep=_no_sleep)
    assert len(receiver.requests) == 1


def test_connection_refused_is_retried_then_reported(alert: Alert) -> None:
    url = f"http://127.0.0.1:{_free_port()}/hook"
    with pytest.raises(AlertError, match="ConnectError") as info:
        send_webhook(alert, url, SECRET, timeout=2, retries=1, sleep=_no_sleep)
    assert info.value.attempts == 2


def test_unsigned_alert_is_refused(alert: Alert) -> None:
    with pytest.raises(AlertError, match="unsigned"):
        send_webhook(alert, "http://127.0.0.1:9/hook", "")


# --- config --------------------------------------------------------------------------------


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="extra"):
        AlertConfig.model_validate({"webhook": ["http://x"]})
    with pytest.raises(ValidationError, match="http"):
        AlertConfig(webhooks=["ftp://example.org/x"])
    with pytest.raises(ValidationError, match="block-type-slug"):
        AlertConfig(prefect_blocks=["just-a-name"])


def test_config_secret_comes_from_the_named_variable() -> None:
    config = AlertConfig(webhooks=["http://127.0.0.1/x"], secret_env="MY_HOOK_SECRET")
    assert config.secret({"MY_HOOK_SECRET": "abc"}) == "abc"
    with pytest.raises(AlertError, match="MY_HOOK_SECRET"):
        config.secret({"DRIFTLOOP_WEBHOOK_SECRET": "abc"})


def test_deliver_sends_to_every_sink_and_reports_each(alert: Alert) -> None:
    dead = f"http://127.0.0.1:{_free_port()}/hook"
    with Receiver() as receiver:
        config = AlertConfig(webhooks=[dead, receiver.url], retries=1, timeout_s=2, backoff_s=0)
        results = deliver(alert, config, environ={"DRIFTLOOP_WEBHOOK_SECRET": SECRET})
    assert [r.ok for r in results] == [False, True]
    assert results[0].attempts == 2 and "ConnectError" in (results[0].error or "")
    assert len(receiver.requests) == 1


def test_deliver_without_webhooks_sends_nothing(alert: Alert) -> None:
    assert deliver(alert, AlertConfig(), environ={}) == []


def test_payload_timestamp_is_recent(alert: Alert) -> None:
    with Receiver() as receiver:
        send_webhook(alert, receiver.url, SECRET, retries=0)
    _, headers, _ = receiver.requests[0]
    assert abs(int(headers[TIMESTAMP_HEADER]) - time.time()) < 300


def test_dedup_key_is_stable_per_condition(alert: Alert) -> None:
    same = Alert(**{**alert.__dict__, "message": "other words", "details": {}})
    other = Alert(**{**alert.__dict__, "condition_key": "drift:AGEP"})
    assert dedup_key(alert) == dedup_key(same) != dedup_key(other)


@pytest.mark.parametrize(
    ("outcome", "kind", "severity"),
    [
        ("promoted", "promotion", "info"),
        ("refused", "retrain_refused", "warning"),
        ("failed", "retrain_failed", "critical"),
    ],
)
def test_retrain_outcomes_have_their_kind_and_severity(
    outcome: str, kind: str, severity: str
) -> None:
    alert = retrain_alert("m", outcome, message="why", drift_run_id="r1", version=4)
    assert (alert.kind, alert.severity) == (kind, severity)
    assert alert.details["version"] == 4 and alert.condition_key == "retrain:r1"


def test_a_deferred_retraining_is_no_outcome_to_alert() -> None:
    with pytest.raises(ValueError, match="deferred"):
        retrain_alert("m", "deferred", message="waits")


def test_a_rollback_is_a_critical_alert_of_its_own_kind() -> None:
    from monitoring.alerts import ROLLED_BACK, rollback_alert

    alert = rollback_alert("m", version=3, restored=2, message="worse", drift_run_id="r1")
    assert (alert.kind, alert.severity) == (ROLLED_BACK, "critical") == ("rolled_back", "critical")
    assert alert.title == "m: v3 rolled back, v2 is champion again"
    assert alert.details == {"version": 3, "restored": 2, "drift_run_id": "r1"}
    assert alert.condition_key == "rollback:3"


def test_undelivered_names_every_sink_that_missed_the_alert() -> None:
    from monitoring.alerts import DeliveryResult, undelivered

    ok = DeliveryResult("http://a/hook", True, 1, 200)
    missed = DeliveryResult("http://b/hook", False, 3, None, "ConnectError: refused")
    assert undelivered([ok], what="the alert") is None
    assert undelivered([], what="the alert") is None
    error = undelivered([ok, missed], what="the alert of run r1")
    assert error is not None and error.attempts == 3
    assert str(error) == (
        "the alert of run r1 was not delivered to 1 of 2 webhook(s) "
        "(http://b/hook: ConnectError: refused)"
    )


def test_alert_links_point_at_each_view_and_leave_out_the_unknown() -> None:
    from monitoring.alerts import alert_links

    links = alert_links(
        model_name="employment",
        version=3,
        drift_run_id="r1",
        mlflow_ui_url="http://mlflow:5000/",
        mlflow_run=("7", "abc"),
        evidently_ui_url="http://ev:8001",
        snapshot=("p1", "s1"),
        prefect_api_url="http://prefect:4200/api",
        flow_run_id="f1",
    )
    assert links == {
        "drift_run_id": "r1",
        "mlflow_model_version": "http://mlflow:5000/#/models/employment/versions/3",
        "mlflow_run": "http://mlflow:5000/#/experiments/7/runs/abc",
        "evidently_snapshot": "http://ev:8001/projects/p1/reports/s1",
        "prefect_flow_run": "http://prefect:4200/runs/flow-run/f1",
    }
    bare = alert_links(
        model_name="m", version=None, drift_run_id="r2", mlflow_ui_url="http://mlflow:5000"
    )
    assert bare == {"drift_run_id": "r2"}


@pytest.mark.parametrize(
    ("headers", "token", "ok"),
    [
        ({"Authorization": "Bearer t0ken"}, "t0ken", True),
        ({"authorization": "bearer t0ken"}, "t0ken", True),
        ({"Authorization": "Bearer wrong"}, "t0ken", False),
        ({"Authorization": "Basic t0ken"}, "t0ken", False),
        ({}, "t0ken", False),
        ({"Authorization": "Bearer "}, "", False),
    ],
)
def test_verify_bearer(headers: dict[str, str], token: str, ok: bool) -> None:
    assert verify_bearer(headers, token) is ok
