"""Alerts through Prefect notification blocks, against a real local HTTP receiver.

Runs under the session-wide prefect_test_harness (tests/flows/conftest.py).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prefect import flow
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.blocks.system import Secret

from flows.notify import (
    NotifyError,
    load_notification_block,
    notify_blocks,
    notify_blocks_task,
    subject,
)
from monitoring.alerts import Alert


class Receiver:
    """HTTP server on 127.0.0.1 recording JSON bodies; answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.bodies.append(json.loads(raw))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/notify"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def alert() -> Alert:
    return Alert(
        kind="performance",
        model_name="employment",
        severity="critical",
        title="employment lost 0.06 roc_auc",
        message="roc_auc 0.84 on the last 2,000 labeled rows vs 0.90 at training",
        details={"drop": 0.06, "drift_run_id": 7},
        condition_key="performance:roc_auc",
    )


def _save_webhook_block(url: str) -> str:
    name = f"driftloop-test-{uuid.uuid4().hex[:8]}"
    CustomWebhookNotificationBlock(
        name=name,
        url=url,
        json_data={"subject": "{{subject}}", "text": "{{body}}"},
    ).save(name)
    return f"custom-webhook/{name}"


def test_alert_reaches_the_webhook_through_a_saved_block(receiver: Receiver, alert: Alert) -> None:
    ref = _save_webhook_block(receiver.url)
    results = notify_blocks(alert, [ref])
    assert [(r.block, r.ok) for r in results] == [(ref, True)]
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["subject"] == subject(alert) == "[driftloop critical] employment lost 0.06 roc_auc"
    assert "roc_auc 0.84" in body["text"] and "drift_run_id: 7" in body["text"]


def test_failing_block_is_reported_and_others_still_send(receiver: Receiver, alert: Alert) -> None:
    broken = Receiver(status=500)
    try:
        bad, good = _save_webhook_block(broken.url), _save_webhook_block(receiver.url)
        results = notify_blocks(alert, [bad, "custom-webhook/does-not-exist", good])
    finally:
        broken.close()
    assert [r.ok for r in results] == [False, False, True]
    assert "500" in (results[0].error or "")
    assert "not found" in (results[1].error or "")
    assert len(receiver.bodies) == 1


def test_task_wrapper_runs_inside_a_flow(receiver: Receiver, alert: Alert) -> None:
    ref = _save_webhook_block(receiver.url)

    @flow
    def send() -> list:
        return notify_blocks_task(alert, [ref])

    assert [r.ok for r in send()] == [True]
    assert len(receiver.bodies) == 1


@pytest.mark.parametrize("ref", ["no-slash", "a/b/c", "/name"])
def test_malformed_reference(ref: str) -> None:
    with pytest.raises(NotifyError, match="block-type-slug/block-name"):
        load_notification_block(ref)


def test_a_block_that_cannot_notify_is_refused() -> None:
    name = f"driftloop-test-{uuid.uuid4().hex[:8]}"
    Secret(value="x").save(name)
    with pytest.raises(NotifyError, match="not a notification block"):
        load_notification_block(f"secret/{name}")
