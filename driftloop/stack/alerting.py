"""The stack's Prometheus and Alertmanager: Debian's ``prometheus`` and ``prometheus-alertmanager``,
run unpatched from config files the stack writes under ``.driftloop/stack/``.

Prometheus scrapes the inference service's ``/metrics`` (serving counters and the monitor
gauges), loads ``monitoring/prometheus/driftloop-rules.yml`` and sends what fires to
Alertmanager, which routes every alert to one webhook receiver (``alert_webhook``; none: the
alerts stay in Alertmanager, shown by ``amtool alert query`` and its API, and go nowhere else).

Alertmanager's webhooks are not signed: each delivery carries ``Authorization: Bearer TOKEN``
with a token generated per stack (``.driftloop/stack/alertmanager/webhook-token``, mode 0600),
which the receiver compares with :func:`monitoring.alerts.verify_bearer`.
"""

from __future__ import annotations

import re
import secrets
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
    dask_target: str | None = None,
) -> dict[str, Any]:
    """Prometheus' configuration: scrape the service, load the rules, alert to Alertmanager.

    Args:
        api_key_file: a file holding the service's API key (sent as ``Authorization: Bearer``).
        dask_target: the Dask scheduler's HTTP ``host:port``, scraped too (job ``dask-scheduler``).
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
        "scrape_configs": [scrape, *_dask_scrape(dask_target)],
    }


def _dask_scrape(target: str | None) -> list[dict[str, Any]]:
    """The Dask scheduler's scrape job (none without a target)."""
    return (
        [{"job_name": "dask-scheduler", "static_configs": [{"targets": [target]}]}]
        if target
        else []
    )


def alertmanager_config(
    options: AlertingOptions, *, webhook_token_file: Path | None = None
) -> dict[str, Any]:
    """Alertmanager's configuration: every alert, grouped per alert and model, to the webhook.

    Args:
        webhook_token_file: a file holding the token sent as ``Authorization: Bearer`` with
            every webhook delivery (None: none is sent).
    """
    receiver: dict[str, Any] = {"name": "driftloop"}
    if options.alert_webhook:
        hook: dict[str, Any] = {"url": options.alert_webhook, "send_resolved": True}
        if webhook_token_file is not None:
            hook["http_config"] = {
                "authorization": {"type": "Bearer", "credentials_file": str(webhook_token_file)}
            }
        receiver["webhook_configs"] = [hook]
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


def _write_secret(path: Path, value: str) -> Path:
    """Write a secret to a file only its owner can read."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(value)
    return path


#: What Debian's ``prometheus-alertmanager`` serves instead of the web UI it leaves out.
NO_UI_PAGE = "does not include a web application"


def has_web_ui(root_page: str) -> bool:
    """Whether the page Alertmanager serves at ``/`` is its web UI (Debian's package ships none)."""
    return NO_UI_PAGE not in " ".join(root_page.split())


def _write_yaml(path: Path, content: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def start_alertmanager(launch: Launch, options: AlertingOptions) -> None:
    """Alertmanager on the chosen port (clustering off); wait for ``/-/ready``."""
    exe = binary("alertmanager", "prometheus-alertmanager", package="prometheus-alertmanager")
    url = launch.url("alertmanager")
    home = _config_dir(launch, "alertmanager")
    token_file = None
    if options.alert_webhook:
        token_file = _write_secret(home / "webhook-token", secrets.token_urlsafe(32))
    config = _write_yaml(
        home / "alertmanager.yml", alertmanager_config(options, webhook_token_file=token_file)
    )
    where = (
        f"{options.alert_webhook} (Authorization: Bearer, the token in {token_file})"
        if token_file
        else "no webhook (set DRIFTLOOP_STACK_ALERT_WEBHOOK)"
    )
    launch.echo(f"starting Alertmanager on {url}, routing to {where}")
    command = [exe, f"--config.file={config}", f"--storage.path={home / 'data'}"]
    command += [f"--web.listen-address={HOST}:{launch.ports['alertmanager']}"]
    command += ["--cluster.listen-address=", f"--web.external-url={url}"]
    record = launch.spawn("alertmanager", command, url=url, health_url=f"{url}/-/ready")
    wait_healthy(record, timeout=launch.timeout)
    launch.record(
        alertmanager_url=url,
        alert_webhook_token_file=str(token_file) if token_file else None,
    )
    if not has_web_ui(_page(url)):
        launch.note(
            f"this Alertmanager has no web UI (Debian's package leaves it out): "
            f"`amtool --alertmanager.url={url} alert query -o extended` lists the alerts"
        )


def _page(url: str) -> str:
    import httpx

    try:
        return httpx.get(url, timeout=5, follow_redirects=True).text
    except httpx.HTTPError:
        return ""


def start_prometheus(launch: Launch, options: AlertingOptions) -> None:
    """Prometheus on the chosen port, scraping the service; wait for ``/-/ready``."""
    exe = binary("prometheus", package="prometheus")
    url = launch.url("prometheus")
    home = _config_dir(launch, "prometheus")
    key = launch.env.get("DRIFTLOOP_API_KEY")
    key_file = _write_secret(home / "api-key", key) if key else None
    config = _write_yaml(
        home / "prometheus.yml",
        prometheus_config(
            serve_target=f"{HOST}:{launch.ports['serve']}",
            alertmanager_target=f"{HOST}:{launch.ports['alertmanager']}",
            rule_file=rule_file(launch, options),
            options=options,
            api_key_file=key_file,
            dask_target=f"{HOST}:{launch.ports['dask_http']}"
            if launch.state.dask_address
            else None,
        ),
    )
    launch.echo(f"starting Prometheus on {url}")
    command = [exe, f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}"]
    command += [f"--web.listen-address={HOST}:{launch.ports['prometheus']}"]
    command += [f"--web.external-url={url}"]
    record = launch.spawn("prometheus", command, url=url, health_url=f"{url}/-/ready")
    wait_healthy(record, timeout=launch.timeout)
    launch.record(prometheus_url=url)
