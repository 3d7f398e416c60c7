"""`driftloop check-monitor`: tell webhook and notification-block users that the monitor stopped.

Prometheus' ``MonitorStale`` rule sees a monitor that stopped only where Prometheus runs; this
check reads ``drift_runs`` itself and sends ``monitor_stale`` through the configured sinks. Run it
from somewhere that does not depend on the Prefect worker (cron, a Kubernetes CronJob): a check
scheduled on the same worker stops with the monitor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import registry
from core.config import ProjectConfig
from core.settings import Settings
from flows.notify import BlockDelivery, notify_blocks
from monitoring import runs, store
from monitoring.alerts import DeliveryResult, deliver, stale_alert, undelivered
from monitoring.incidents import Staleness, staleness


@dataclass(frozen=True)
class StaleCheck:
    """What the check found and where its alert went (nothing sent when the monitor runs)."""

    staleness: Staleness
    last_run_id: str | None
    deliveries: tuple[DeliveryResult, ...] = ()
    blocks: tuple[BlockDelivery, ...] = ()


def champion_since(settings: Settings, model_name: str) -> datetime | None:
    """When the current champion was registered (None: no champion)."""
    client = registry.make_client(settings.mlflow_tracking_uri)
    champion = registry.get_alias(client, model_name, registry.CHAMPION)
    if champion is None:
        return None
    return datetime.fromtimestamp(champion.creation_timestamp / 1000, UTC)


def check_monitor(
    config: ProjectConfig,
    settings: Settings,
    *,
    interval: timedelta,
    now: datetime | None = None,
) -> StaleCheck:
    """Alert ``monitor_stale`` when the newest monitor run is older than
    ``monitoring.stale_after_intervals`` intervals.

    Raises:
        AlertError: a webhook did not take the alert.
    """
    now = now or datetime.now(UTC)
    store.upgrade_database(settings.database_url)
    engine = store.make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    try:
        latest = runs.latest_run(engine, config.model_name)
    finally:
        engine.dispose()
    last_at = latest["started_at"] if latest else None
    found = staleness(
        last_at,
        champion_since=None if latest else champion_since(settings, config.model_name),
        now=now,
        interval=interval,
        intervals=config.monitoring.stale_after_intervals,
    )
    last_id = latest["run_id"] if latest else None
    if not found.stale:
        return StaleCheck(found, last_id)
    alert = stale_alert(config.model_name, found.reason, last_run_id=last_id)
    results = deliver(alert, config.alerts)
    blocks = (
        notify_blocks(alert, config.alerts.prefect_blocks) if config.alerts.prefect_blocks else []
    )
    error = undelivered(results, what=f"the monitor_stale alert of {config.model_name}")
    if error is not None:
        raise error
    return StaleCheck(found, last_id, tuple(results), tuple(blocks))
