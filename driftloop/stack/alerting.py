"""The stack's Prometheus and Alertmanager: Debian's ``prometheus`` and ``prometheus-alertmanager``,
run unpatched from config files the stack writes under ``.driftloop/stack/``.

Prometheus scrapes the inference service's ``/metrics`` (serving counters and the monitor
gauges), loads ``monitoring/prometheus/driftloop-rules.yml`` and sends what fires to
Alertmanager, which routes every alert to one webhook receiver (``alert_webhook``; none: the
alerts are shown in Alertmanager's UI and go nowhere else).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftloop.stack.launch import Launch
from driftloop.stack.processes import HOST, StackError, wait_healthy

#: The shipped alert rules, relative to the checkout.
RULES = Path("monitoring") / "prometheus" / "driftloop-rules.yml"
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


@dataclass(frozen=True)
class AlertingOptions:
    """How the stack's Prometheus and Alertmanager run.

    Attributes:
        alert_webhook: the URL Alertmanager posts alerts to (its webhook JSON format, version 4).
        scrape_interval: how often Prometheus scrapes the inference service.
        evaluation_interval: how often Prometheus evaluates the rules.
        rule_for: when set, every rule's ``for:`` is replaced by it in the copy of the rules file
            Prometheus loads (tests and demos: see an alert fire in seconds); None loads the
            shipped file as it is.
        group_wait, group_interval, repeat_interval: Alertmanager's routing timers.
    """

    alert_webhook: str | None = None
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    rule_for: str | None = None
    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval: str = "4h"

    def __post_init__(self) -> None:
        for name in ("scrape_interval", "evaluation_interval", "rule_for", "group_wait"):
            value = getattr(self, name)
            if value is not None and not _DURATION.match(value):
                raise StackError(f"{name}={value!r} is not a Prometheus duration such as 15s or 5m")


def binary(*names: str, package: str) -> str:
    """The path of the first of ``names`` on PATH.

    Raises:
        StackError: none is installed (the message names the Debian package).
    """
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise StackError(
        f"{' / '.join(names)} not found: install the Debian package {package!r} "
        "(`make system-deps`)"
    )


def prometheus_config(
    *,
    serve_target: str,
    alertmanager_target: str,
    rule_file: Path,
    options: AlertingOptions,
    api_key_file: Path | None = None,
) -> dict[str, Any]:
    """Prometheus' configuration: scrape the service, load the rules, alert to Alertmanager.

    Args:
        api_key_file: a file holding the service's API key (sent as ``Authorization: Bearer``).
    """
    scrape: dict[str, Any] = {
        "job_name": "driftloop-serving",
        "metrics_path": "/metrics",
        "static_configs": [{"targets": [serve_target]}],
    }
    if api_key_file is not None:
        scrape["authorization"] = {"type": "Bearer", "credentials_file": str(api_key_file)}
    return {
        "global": {
            "scrape_interval": options.scrape_interval,
            "evaluation_interval": options.evaluation_interval,
        },
        "rule_files": [str(rule_file)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_target]}]}]},
        "scrape_configs": [scrape],
    }


def alertmanager_config(options: AlertingOptions) -> dict[str, Any]:
    """Alertmanager's configuration: every alert, grouped per alert and model, to the webhook."""
    receiver: dict[str, Any] = {"name": "driftloop"}
    if options.alert_webhook:
        receiver["webhook_configs"] = [{"url": options.alert_webhook, "send_resolved": True}]
    return {
        "route": {
            "receiver": "driftloop",
            "group_by": ["alertname", "model", "instance"],
            "group_wait": options.group_wait,
            "group_interval": options.group_interval,
            "repeat_interval": options.repeat_interval,
        },
        "receivers": [receiver],
    }


def rules_with_for(rules_text: str, duration: str) -> str:
    """The rules file with every rule's ``for:`` set to ``duration`` (added where missing)."""
    import yaml

    raw = yaml.safe_load(rules_text)
    for group in raw["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = duration
    return yaml.safe_dump(raw, sort_keys=False)


def rule_file(launch: Launch, options: AlertingOptions) -> Path:
    """The rules Prometheus loads: the shipped file, or a copy with ``options.rule_for``."""
    shipped = launch.root / RULES
    if not shipped.is_file():
        raise StackError(f"{shipped} is missing: the stack's Prometheus has no rules to load")
    if options.rule_for is None:
        return shipped.resolve()
    copy = _config_dir(launch, "prometheus") / "driftloop-rules.yml"
    copy.write_text(rules_with_for(shipped.read_text(), options.rule_for))
    return copy


def _config_dir(launch: Launch, name: str) -> Path:
    path = launch.log_dir.parent / name
    path.mkdir(exist_ok=True)
    return path


def _write_yaml(path: Path, content: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def start_alertmanager(launch: Launch, options: AlertingOptions) -> None:
    """Alertmanager on the chosen port (clustering off); wait for ``/-/ready``."""
    exe = binary("alertmanager", "prometheus-alertmanager", package="prometheus-alertmanager")
    url = launch.url("alertmanager")
    home = _config_dir(launch, "alertmanager")
    config = _write_yaml(home / "alertmanager.yml", alertmanager_config(options))
    where = options.alert_webhook or "no webhook (set DRIFTLOOP_STACK_ALERT_WEBHOOK)"
    launch.echo(f"starting Alertmanager on {url}, routing to {where}")
    command = [exe, f"--config.file={config}", f"--storage.path={home / 'data'}"]
    command += [f"--web.listen-address={HOST}:{launch.ports['alertmanager']}"]
    command += ["--cluster.listen-address=", f"--web.external-url={url}"]
    record = launch.spawn("alertmanager", command, url=url, health_url=f"{url}/-/ready")
    wait_healthy(record, timeout=launch.timeout)
    launch.record(alertmanager_url=url)


def start_prometheus(launch: Launch, options: AlertingOptions) -> None:
    """Prometheus on the chosen port, scraping the service; wait for ``/-/ready``."""
    exe = binary("prometheus", package="prometheus")
    url = launch.url("prometheus")
    home = _config_dir(launch, "prometheus")
    key = launch.env.get("DRIFTLOOP_API_KEY")
    key_file = None
    if key:
        key_file = home / "api-key"
        key_file.touch(mode=0o600)
        key_file.chmod(0o600)
        key_file.write_text(key)
    config = _write_yaml(
        home / "prometheus.yml",
        prometheus_config(
            serve_target=f"{HOST}:{launch.ports['serve']}",
            alertmanager_target=f"{HOST}:{launch.ports['alertmanager']}",
            rule_file=rule_file(launch, options),
            options=options,
            api_key_file=key_file,
        ),
    )
    launch.echo(f"starting Prometheus on {url}")
    command = [exe, f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}"]
    command += [f"--web.listen-address={HOST}:{launch.ports['prometheus']}"]
    command += [f"--web.external-url={url}"]
    record = launch.spawn("prometheus", command, url=url, health_url=f"{url}/-/ready")
    wait_healthy(record, timeout=launch.timeout)
    launch.record(prometheus_url=url)
