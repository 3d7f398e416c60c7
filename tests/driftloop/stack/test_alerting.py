"""The stack's Prometheus and Alertmanager configs, checked by the tools' own checkers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from driftloop.stack import AlertingOptions, StackError
from driftloop.stack.alerting import (
    alertmanager_config,
    has_web_ui,
    prometheus_config,
    rules_with_for,
)
from tests.monitoring.test_prometheus_rules import RULES

PROMTOOL = shutil.which("promtool")
AMTOOL = "/usr/bin/amtool"  # Debian's prometheus-alertmanager, installed by make system-deps


def amtool() -> str:
    if shutil.which(AMTOOL) is None:
        pytest.fail(
            f"{AMTOOL} is missing: run `make system-deps` (Debian package prometheus-alertmanager)"
        )
    return AMTOOL


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not found: make system-deps")
def test_prometheus_config_passes_promtool_and_scrapes_the_service(tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text("secret")
    config = prometheus_config(
        serve_target="127.0.0.1:8000",
        alertmanager_target="127.0.0.1:9093",
        rule_file=RULES,
        options=AlertingOptions(scrape_interval="2s", evaluation_interval="3s"),
        api_key_file=key,
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    checked = _run(PROMTOOL, "check", "config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout + checked.stderr
    (scrape,) = config["scrape_configs"]
    assert scrape["static_configs"] == [{"targets": ["127.0.0.1:8000"]}]
    assert scrape["authorization"] == {"type": "Bearer", "credentials_file": str(key)}
    assert config["global"] == {"scrape_interval": "2s", "evaluation_interval": "3s"}


@pytest.mark.parametrize("webhook", ["http://127.0.0.1:9999/alerts", None])
def test_alertmanager_config_passes_amtool(tmp_path: Path, webhook: str | None) -> None:
    config = alertmanager_config(AlertingOptions(alert_webhook=webhook, group_wait="1s"))
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    checked = _run(amtool(), "check-config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (receiver,) = config["receivers"]
    hooks = receiver.get("webhook_configs", [])
    assert [h["url"] for h in hooks] == ([webhook] if webhook else [])


def test_webhook_deliveries_carry_the_stacks_bearer_token(tmp_path: Path) -> None:
    token = tmp_path / "webhook-token"
    token.write_text("t0ken")
    options = AlertingOptions(alert_webhook="http://127.0.0.1:9999/alerts")
    config = alertmanager_config(options, webhook_token_file=token)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    checked = _run(amtool(), "check-config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    ((hook,),) = [r["webhook_configs"] for r in config["receivers"]]
    assert hook["http_config"] == {
        "authorization": {"type": "Bearer", "credentials_file": str(token)}
    }
    # without a token file (or a webhook) no credentials are configured
    ((plain,),) = [r["webhook_configs"] for r in alertmanager_config(options)["receivers"]]
    assert "http_config" not in plain


def test_debians_page_without_a_web_ui_is_told_apart() -> None:
    debian = "<p>The Debian package of the alertmanager does not include a web\n   application.</p>"
    assert not has_web_ui(debian)
    assert has_web_ui("<title>Alertmanager</title><script src=script.js></script>")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not found: make system-deps")
def test_rule_durations_can_be_shortened_and_the_rules_stay_valid(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(rules_with_for(RULES.read_text(), "3s"))
    checked = _run(PROMTOOL, "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]
    shipped = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert {r["for"] for r in rules} == {"3s"}
    assert [r["expr"] for r in rules] == [r["expr"] for r in shipped]


def test_a_malformed_duration_is_refused() -> None:
    with pytest.raises(StackError, match="rule_for='3 seconds'"):
        AlertingOptions(rule_for="3 seconds")
