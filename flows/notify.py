"""Send driftloop alerts through Prefect notification blocks (Slack, custom webhook, ...).

Blocks are created once in the Prefect UI or with ``Block.save``; driftloop refers to them as
``"block-type-slug/block-name"`` (e.g. ``"slack-webhook/ops"``, ``"custom-webhook/pager"``) in
``alerts.prefect_blocks``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prefect import task
from prefect.blocks.abstract import NotificationBlock
from prefect.blocks.core import Block

from core.errors import DriftloopError
from monitoring.alerts import Alert


class NotifyError(DriftloopError, RuntimeError):
    """A notification block is missing, of the wrong type, or failed to send."""


@dataclass(frozen=True)
class BlockDelivery:
    """What happened to one alert at one block."""

    block: str
    ok: bool
    error: str | None = None


def subject(alert: Alert) -> str:
    """The notification subject line."""
    return f"[driftloop {alert.severity}] {alert.title}"


def load_notification_block(ref: str) -> NotificationBlock:
    """Load a saved notification block by ``"type-slug/name"``.

    Raises:
        NotifyError: a malformed reference, no such block, or not a notification block.
    """
    if ref.count("/") != 1 or not all(ref.split("/")):
        raise NotifyError(
            f"notification block {ref!r} must be written as 'block-type-slug/block-name', "
            "e.g. 'slack-webhook/ops' (see `prefect block ls`)"
        )
    try:
        block = Block.load(ref)
    except ValueError as exc:
        raise NotifyError(
            f"notification block {ref!r} was not found on the Prefect server: {exc}; "
            "create it in the Prefect UI (Blocks) or with Block.save()"
        ) from None
    if not isinstance(block, NotificationBlock):
        raise NotifyError(
            f"block {ref!r} is a {type(block).__name__}, not a notification block "
            "(use e.g. SlackWebhook or CustomWebhookNotificationBlock)"
        )
    return block


def notify_blocks(alert: Alert, block_names: Sequence[str]) -> list[BlockDelivery]:
    """Send `alert` through each block; one failing block does not stop the others."""
    results: list[BlockDelivery] = []
    for ref in block_names:
        try:
            block = load_notification_block(ref)
            # Apprise-based blocks swallow errors unless asked to raise.
            with block.raise_on_failure():
                block.notify(alert.to_text(), subject(alert))
        except Exception as exc:  # noqa: BLE001 - reported per block, never fatal for the flow
            results.append(BlockDelivery(ref, False, f"{type(exc).__name__}: {exc}"))
        else:
            results.append(BlockDelivery(ref, True))
    return results


@task(name="notify-blocks", retries=0)
def notify_blocks_task(alert: Alert, block_names: Sequence[str]) -> list[BlockDelivery]:
    """Prefect task wrapper of :func:`notify_blocks` (shows per-block results in the run)."""
    return notify_blocks(alert, block_names)
