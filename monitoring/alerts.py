"""Alert delivery: a JSON webhook signed with HMAC-SHA256 (no Prefect here).

Whether to alert is policy (`monitoring.policy.should_alert`); this module only delivers.

The receiver checks ``X-Driftloop-Signature: sha256=<hex>`` where the hex digest is
``HMAC-SHA256(secret, f"{timestamp}.".encode() + body)`` and ``timestamp`` is the integer Unix
time in ``X-Driftloop-Timestamp``. Signing the timestamp with the body lets :func:`verify` refuse
replays older than its tolerance. Retries keep the same ``X-Driftloop-Delivery`` id so a receiver
can drop duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from core.config_alerts import AlertConfig
from core.errors import AlertError

Severity = Literal["info", "warning", "critical"]

SIGNATURE_HEADER = "X-Driftloop-Signature"
TIMESTAMP_HEADER = "X-Driftloop-Timestamp"
DELIVERY_HEADER = "X-Driftloop-Delivery"
EVENT_HEADER = "X-Driftloop-Event"
PAYLOAD_VERSION = 1
#: Statuses worth another try: the receiver is busy or broken, not refusing the alert.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Alert:
    """One alert, as delivered to every sink."""

    kind: str  # e.g. "drift", "harm", "promotion", "retrain_refused", "rolled_back"
    model_name: str
    severity: Severity
    title: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    #: Identifies the condition (e.g. "drift:AGEP,SCHL"); the same key while it persists.
    condition_key: str = ""

    def to_payload(self, *, sent_at: datetime | None = None) -> dict[str, Any]:
        """The JSON document a webhook receives."""
        when = sent_at or datetime.now(UTC)
        return {
            "version": PAYLOAD_VERSION,
            "source": "driftloop",
            **asdict(self),
            "dedup_key": dedup_key(self),
            "sent_at": when.isoformat(),
        }

    def to_text(self) -> str:
        """A plain-text rendering for chat sinks (Slack, Prefect notification blocks)."""
        lines = [f"[{self.severity.upper()}] {self.model_name}: {self.message}"]
        for key, value in self.details.items():
            lines.append(f"- {key}: {value}")
        return "\n".join(lines)


def dedup_key(alert: Alert) -> str:
    """A stable id for "this model, this kind, this condition" (for receivers and history)."""
    raw = f"{alert.model_name}|{alert.kind}|{alert.condition_key}".encode()
    return hashlib.sha256(raw).hexdigest()[:24]


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """HMAC-SHA256 hex digest of ``f"{timestamp}." + body``."""
    message = f"{int(timestamp)}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_headers(body: bytes, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    """The two headers that authenticate a webhook body."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: f"sha256={sign(body, secret, ts)}"}


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    tolerance_s: float = 300.0,
    *,
    now: float | None = None,
) -> bool:
    """True when the signature matches the body and the timestamp is within `tolerance_s` of now."""
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get(SIGNATURE_HEADER.lower(), "")
    stamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    if not signature.startswith("sha256=") or not stamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance_s:
        return False
    expected = sign(body, secret, int(stamp))
    return hmac.compare_digest(signature.removeprefix("sha256="), expected)


def verify_bearer(headers: Mapping[str, str], token: str) -> bool:
    """True when ``Authorization`` is ``Bearer <token>`` (how Alertmanager's webhook deliveries
    authenticate: it cannot sign them). An empty token never matches."""
    lowered = {k.lower(): v for k, v in headers.items()}
    scheme, _, given = lowered.get("authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to one alert at one sink."""

    sink: str
    ok: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None
    delivery_id: str = ""


def encode_payload(alert: Alert, *, sent_at: datetime | None = None) -> bytes:
    """The exact bytes that are signed and sent."""
    payload = alert.to_payload(sent_at=sent_at)
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def send_webhook(
    alert: Alert,
    url: str,
    secret: str,
    timeout: float = 5.0,
    retries: int = 3,
    *,
    backoff_s: float = 0.5,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """POST the signed alert; retry with exponential backoff on 5xx/429/connection errors.

    Raises:
        AlertError: the receiver refused the alert (4xx other than 408/425/429: retrying
            cannot help), or every attempt failed.
    """
    if not secret:
        raise AlertError(
            f"refusing to send an unsigned alert to {url}: the webhook secret is empty"
        )
    body = encode_payload(alert)
    delivery_id = uuid.uuid4().hex
    owned = client is None
    http = client or httpx.Client(timeout=timeout)
    last_error = ""
    status: int | None = None
    try:
        for attempt in range(1, retries + 2):
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "driftloop-alerts",
                DELIVERY_HEADER: delivery_id,
                EVENT_HEADER: alert.kind,
                # re-signed per attempt so a late retry is not taken for a replay
                **signature_headers(body, secret),
            }
            try:
                response = http.post(url, content=body, headers=headers, timeout=timeout)
            except httpx.TransportError as exc:
                status, last_error = None, f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if response.is_success:
                    return DeliveryResult(url, True, attempt, status, None, delivery_id)
                snippet = response.text[:200]
                last_error = f"HTTP {status}: {snippet}"
                if status not in RETRY_STATUSES:
                    raise AlertError(
                        f"webhook {url} refused the alert with HTTP {status} ({snippet!r}); "
                        "check the URL and that the receiver uses the same secret",
                        attempts=attempt,
                        status_code=status,
                    )
            if attempt <= retries:
                sleep(backoff_s * 2 ** (attempt - 1))
    finally:
        if owned:
            http.close()
    raise AlertError(
        f"webhook {url} failed after {retries + 1} attempts (last: {last_error}); "
        "is the receiver up and reachable from here?",
        attempts=retries + 1,
        status_code=status,
    )


def deliver(
    alert: Alert,
    config: AlertConfig,
    *,
    environ: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[DeliveryResult]:
    """Send one alert to every configured webhook; one failing sink does not stop the others."""
    if not config.webhooks:
        return []
    secret = config.secret(environ)
    results: list[DeliveryResult] = []
    for url in config.webhooks:
        try:
            results.append(
                send_webhook(
                    alert,
                    url,
                    secret,
                    config.timeout_s,
                    config.retries,
                    backoff_s=config.backoff_s,
                    sleep=sleep,
                )
            )
        except AlertError as exc:
            results.append(DeliveryResult(url, False, exc.attempts, exc.status_code, str(exc)))
    return results


def failed(results: Sequence[DeliveryResult]) -> list[DeliveryResult]:
    """The deliveries that did not succeed."""
    return [r for r in results if not r.ok]


#: What became of a retraining, as alert kind and severity (deferred is not an outcome: it waits).
RETRAIN_OUTCOMES: dict[str, tuple[str, Severity]] = {
    "promoted": ("promotion", "info"),
    "refused": ("retrain_refused", "warning"),
    "failed": ("retrain_failed", "critical"),
}


def retrain_alert(
    model_name: str,
    outcome: str,
    *,
    message: str,
    drift_run_id: str = "",
    incident_id: str | None = None,
    version: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> Alert:
    """The alert that tells people what became of a retraining (promoted, refused, failed).

    ``incident_id`` is the monitor incident whose run started it (the ``incident_id`` of that
    incident's monitor alerts), so a receiver can group the two.

    Raises:
        ValueError: ``outcome`` is not one of :data:`RETRAIN_OUTCOMES`.
    """
    if outcome not in RETRAIN_OUTCOMES:
        raise ValueError(f"unknown retrain outcome {outcome!r}; one of {sorted(RETRAIN_OUTCOMES)}")
    kind, severity = RETRAIN_OUTCOMES[outcome]
    what = {
        "promoted": f"v{version} promoted to champion",
        "refused": f"challenger v{version} refused, the champion stays",
        "failed": "retraining failed, the champion stays",
    }[outcome]
    return Alert(
        kind=kind,
        model_name=model_name,
        severity=severity,
        title=f"{model_name}: {what}",
        message=message,
        details={
            "outcome": outcome,
            "drift_run_id": drift_run_id or None,
            "incident_id": incident_id,
            "version": version,
            **(details or {}),
        },
        condition_key=f"retrain:{drift_run_id or 'manual'}",
    )


def stale_alert(model_name: str, reason: str, *, last_run_id: str | None) -> Alert:
    """The alert that the monitor of ``model_name`` stopped running (``monitor_stale``).

    Its condition is the newest run, so every check during one stop has the same
    ``dedup_key`` and a receiver keeps one.
    """
    return Alert(
        kind="monitor_stale",
        model_name=model_name,
        severity="warning",
        title=f"{model_name}: the drift monitor stopped running",
        message=f"{reason}; check the Prefect work pool, the worker and the monitor "
        "deployment's schedule",
        details={"last_run_id": last_run_id},
        condition_key=f"stale:{last_run_id or 'never'}",
    )


#: The alert kind of an automatic rollback (critical: a promoted model did harm).
ROLLED_BACK = "rolled_back"


def rollback_alert(
    model_name: str,
    *,
    version: int,
    restored: int,
    message: str,
    drift_run_id: str = "",
    details: Mapping[str, Any] | None = None,
) -> Alert:
    """The alert that tells people `champion` went back from ``version`` to ``restored``."""
    return Alert(
        kind=ROLLED_BACK,
        model_name=model_name,
        severity="critical",
        title=f"{model_name}: v{version} rolled back, v{restored} is champion again",
        message=message,
        details={
            "version": version,
            "restored": restored,
            "drift_run_id": drift_run_id or None,
            **(details or {}),
        },
        condition_key=f"rollback:{version}",
    )


def alert_links(
    *,
    model_name: str,
    version: int | None,
    drift_run_id: str,
    mlflow_ui_url: str,
    mlflow_run: tuple[str, str] | None = None,
    evidently_ui_url: str | None = None,
    snapshot: tuple[str, str] | None = None,
    prefect_api_url: str | None = None,
    flow_run_id: str | None = None,
) -> dict[str, str]:
    """The links a person opens from a monitor alert (pure): the model version and the monitor
    run in MLflow (``mlflow_run`` = experiment id, run id), the run's Evidently snapshot
    (``snapshot`` = project id, snapshot id), the Prefect flow run (its UI is the API URL
    without ``/api``), and the ``drift_runs`` row by id. A link whose parts are unknown is left
    out."""
    mlflow = mlflow_ui_url.rstrip("/")
    links = {"drift_run_id": drift_run_id}
    if version is not None:
        links["mlflow_model_version"] = f"{mlflow}/#/models/{model_name}/versions/{version}"
    if mlflow_run is not None:
        links["mlflow_run"] = f"{mlflow}/#/experiments/{mlflow_run[0]}/runs/{mlflow_run[1]}"
    if evidently_ui_url and snapshot is not None:
        base = evidently_ui_url.rstrip("/")
        links["evidently_snapshot"] = f"{base}/projects/{snapshot[0]}/reports/{snapshot[1]}"
    if prefect_api_url and flow_run_id:
        ui = prefect_api_url.rstrip("/").removesuffix("/api")
        links["prefect_flow_run"] = f"{ui}/runs/flow-run/{flow_run_id}"
    return links


def undelivered(results: Sequence[DeliveryResult], *, what: str) -> AlertError | None:
    """One error naming every sink that did not get the alert ``what`` (None when all did)."""
    missed = failed(results)
    if not missed:
        return None
    sinks = "; ".join(f"{r.sink}: {r.error}" for r in missed)
    return AlertError(
        f"{what} was not delivered to {len(missed)} of {len(results)} webhook(s) ({sinks})",
        attempts=max(r.attempts for r in missed),
        status_code=missed[-1].status_code,
    )
