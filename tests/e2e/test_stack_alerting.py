"""Alerting on the real stack: drifted traffic into the inference service, a monitor run that
records harm, the gauge on /metrics, the stack's Prometheus evaluating the shipped rule to
firing, and the stack's Alertmanager delivering it to a webhook receiver started here, which
refuses a delivery without the stack's bearer token. Then what an operator sees: the Prometheus
alerts page in a real (headless Chromium) browser, and Alertmanager's alerts through ``amtool``
(Debian's Alertmanager has no web UI), both kept under ``.driftloop/screenshots/``.

Every piece is a real process started by ``driftloop.stack`` (MLflow, the inference service,
Debian's ``prometheus`` and ``prometheus-alertmanager``); only the rule durations (``for:``) and
intervals are shortened, through the stack's own options.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from driftloop.stack import AlertingOptions, StackPorts, StackState, start_stack, stop_stack
from driftloop.stack.inference import cli_command
from driftloop.stack.processes import is_alive
from monitoring.alerts import verify_bearer
from tests.e2e.browser import chromium, keep
from tests.e2e.harness import LINKED, link_repo, write_small_config
from tests.e2e.test_loop_e2e import send_traffic

pytestmark = pytest.mark.e2e

MODEL = "employment"
SERVICES = ("mlflow", "train", "serve", "alertmanager", "prometheus")


class Receiver:
    """A webhook receiver on loopback that keeps every JSON body posted with the bearer token
    ``token`` and answers 401 (and counts) every other one."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.refused = 0
        self.token = ""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                if verify_bearer(dict(self.headers.items()), receiver.token):
                    receiver.bodies.append(body)
                    self.send_response(200)
                else:
                    receiver.refused += 1
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(what: str, check: Any, timeout: float, poll: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen after {timeout:.0f}s")
        time.sleep(poll)


def keep_text(text: str, name: str) -> None:
    """Keep a command's output next to the screenshots (see tests.e2e.browser.keep)."""
    path = Path(__file__).resolve().parents[2] / ".driftloop" / "screenshots" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def monitor_env(state: StackState, home: Path) -> dict[str, str]:
    """The stack's settings for a one-off `driftloop monitor` (no Prefect server in this stack:
    the flow runs on a temporary local one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DRIFTLOOP_"))}
    env.update({k: v for k, v in state.env.items() if not k.startswith("PREFECT_")})
    env["PREFECT_HOME"] = str(home)
    return env


@pytest.fixture(scope="module")
def alert_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackState, Receiver]]:
    root = link_repo(
        tmp_path_factory.mktemp("stack-alerting"), [n for n in LINKED if n != "driftloop.yaml"]
    )
    config = write_small_config(root)
    raw = yaml.safe_load(config.read_text())
    raw["monitoring"]["policy"]["max_retrains_per_day"] = 0  # judge and alert, do not retrain
    config.write_text(yaml.safe_dump(raw))
    receiver = Receiver()
    options = AlertingOptions(
        alert_webhook=receiver.url,
        scrape_interval="1s",
        evaluation_interval="1s",
        rule_for="3s",
        group_wait="1s",
        group_interval="1s",
    )
    state = start_stack(
        root,
        ports=StackPorts(**{k: 0 for k in StackPorts.__dataclass_fields__}),
        services=SERVICES,
        alerting_options=options,
        echo=lambda _: None,
    )
    assert state.alert_webhook_token_file, "the stack made no webhook token"
    token_file = Path(state.alert_webhook_token_file)
    assert token_file.stat().st_mode & 0o077 == 0, "the webhook token is readable by others"
    receiver.token = token_file.read_text()
    try:
        yield state, receiver
    finally:
        stop_stack(root, echo=lambda _: None)
        receiver.close()


def test_drift_that_hurts_fires_in_prometheus_and_reaches_the_webhook(
    alert_stack: tuple[StackState, Receiver], tmp_path: Path
) -> None:
    state, receiver = alert_stack
    assert state.prometheus_url and state.alertmanager_url and state.serve_url
    assert {"Prometheus", "Alertmanager"} <= set(state.urls())
    prometheus, alertmanager = state.prometheus_url, state.alertmanager_url

    # Prometheus scrapes the service and loaded the shipped rules
    def scraped() -> list[dict[str, Any]]:
        answer = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()
        active = answer["data"]["activeTargets"]
        return active if active and all(t["health"] == "up" for t in active) else []

    (target,) = wait_for("the service scraped", scraped, 60)
    assert target["scrapeUrl"] == f"{state.serve_url}/metrics"
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"DatasetDrift", "ModelHarm", "MonitorStale"} <= loaded

    version = send_traffic(state.serve_url)
    done = subprocess.run(
        cli_command("monitor", "--config", "driftloop.yaml"),
        cwd=state.root,
        env=monitor_env(state, tmp_path / "prefect-home"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # the monitor's verdict on /metrics
    def severity_on_metrics() -> str | None:
        text = httpx.get(f"{state.serve_url}/metrics", timeout=10).text
        wanted = f'driftloop_monitor_severity{{model="{MODEL}",version="{version}"}}'
        return next((line for line in text.splitlines() if line.startswith(wanted)), None)

    line = wait_for("the severity gauge", severity_on_metrics, 30)
    assert line.endswith(" 2"), line  # critical: the broken feature is harm

    # Prometheus evaluates ModelHarm to firing
    def firing() -> list[dict[str, Any]]:
        alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return [
            a for a in alerts if a["labels"]["alertname"] == "ModelHarm" and a["state"] == "firing"
        ]

    (alert,) = wait_for("ModelHarm firing in Prometheus", firing, 120)
    assert alert["labels"]["model"] == MODEL and alert["labels"]["severity"] == "critical"
    assert alert["labels"]["version"] == str(version)

    # Alertmanager has it and delivers it to the receiver
    def routed() -> list[dict[str, Any]]:
        alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=10).json()
        return [a for a in alerts if a["labels"]["alertname"] == "ModelHarm"]

    (managed,) = wait_for("ModelHarm in Alertmanager", routed, 60)
    assert managed["receivers"][0]["name"] == "driftloop"

    def delivered() -> list[dict[str, Any]]:
        return [
            a
            for body in receiver.bodies
            for a in body["alerts"]
            if a["labels"]["alertname"] == "ModelHarm" and body["status"] == "firing"
        ]

    (received, *_) = wait_for("ModelHarm delivered to the webhook", delivered, 60)
    body = next(b for b in receiver.bodies if received in b["alerts"])
    assert body["version"] == "4" and body["receiver"] == "driftloop"
    assert body["externalURL"] == alertmanager
    assert received["labels"]["model"] == MODEL
    assert received["labels"]["severity"] == "critical"
    assert (
        received["annotations"]["summary"]
        == f"Model {MODEL} is harmed: the monitor's last verdict is critical"
    )
    assert received["generatorURL"].startswith(prometheus)
    assert receiver.refused == 0, "Alertmanager posted without the stack's bearer token"

    # what an operator opens: the firing alert on Prometheus' alerts page, annotations rendered
    with chromium() as browser:
        page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
        page.goto(f"{prometheus}/classic/alerts", wait_until="domcontentloaded")
        page.get_by_text("Show annotations").click()
        page.get_by_text("ModelHarm (1 active)").click()
        page.get_by_text("FIRING").first.wait_for(state="visible", timeout=30_000)
        shot = tmp_path / "prometheus-alerts.png"
        page.screenshot(path=str(shot), full_page=True)
        keep(shot, "prometheus-alerts.png")
        text = page.inner_text("body")
    assert 'model="employment"' in text and f'version="{version}"' in text, text[:3000]
    assert received["annotations"]["description"] in text, text[:3000]
    assert "driftloop ui" in received["annotations"]["description"]  # where to look next

    # and Alertmanager's view of it (Debian's package has no web UI: the stack says so)
    assert any("amtool" in note for note in state.notes), state.notes
    listed = subprocess.run(
        [
            "amtool",
            f"--alertmanager.url={alertmanager}",
            "alert",
            "query",
            "-o",
            "extended",
            "alertname=ModelHarm",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    keep_text(listed, "alertmanager-alerts.txt")
    assert 'model="employment"' in listed and received["annotations"]["summary"] in listed

    # stack down stops Prometheus and Alertmanager with the rest
    records = {s.name: s for s in state.services}
    stopped = stop_stack(Path(state.root), echo=lambda _: None)
    assert {"prometheus", "alertmanager"} <= set(stopped)
    assert not is_alive(records["prometheus"]) and not is_alive(records["alertmanager"])
