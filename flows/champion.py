"""Moving the `champion` alias: a compare-and-set in the registry under the champion lock of the
driftloop database (``monitoring.locks``), so that driftloop processes sharing that database move
it one at a time and each only from the version it judged against. Every path that moves the
alias goes through here: the gate of `train` and `retrain`, the monitor's rollback, and the CLI's
`promote` and `rollback`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mlflow import MlflowClient

import registry
from core.settings import Settings
from monitoring import store
from monitoring.locks import champion_lock


@contextmanager
def locked(settings: Settings, model_name: str) -> Iterator[None]:
    """Hold the model's champion lock in the driftloop database inside the block."""
    engine = store.make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    try:
        with champion_lock(engine, model_name):
            yield
    finally:
        engine.dispose()


def promote_if_unchanged(
    settings: Settings,
    client: MlflowClient,
    model_name: str,
    version: int,
    *,
    expected: int | None,
    reason: str,
    actor: str,
) -> registry.AliasMove:
    """Move `champion` to ``version`` only if it still points at ``expected`` (the version the
    gate judged against); the judged-against version is recorded on the new champion."""
    with locked(settings, model_name):
        move = registry.set_champion_if(
            client, model_name, version, expected=expected, reason=reason, actor=actor
        )
    if move.moved:
        client.set_model_version_tag(
            model_name, str(version), registry.JUDGED_AGAINST_TAG, str(expected or "none")
        )
    return move


def promote_by_hand(
    settings: Settings,
    client: MlflowClient,
    model_name: str,
    version: int,
    *,
    reason: str,
    actor: str,
) -> str | None:
    """A person's promotion: `champion` to ``version`` whatever it was; returns the previous."""
    with locked(settings, model_name):
        return registry.set_champion(client, model_name, version, reason=reason, actor=actor)


def roll_back(
    settings: Settings,
    client: MlflowClient,
    model_name: str,
    *,
    current: int,
    target: int,
    reason: str,
    actor: str,
) -> registry.AliasMove:
    """Move `champion` from ``current`` back to ``target`` if it is still ``current``; the
    rolled-back version is tagged and never promoted again."""
    with locked(settings, model_name):
        return registry.roll_back(
            client, model_name, current=current, target=target, reason=reason, actor=actor
        )


def rollback_by_hand(
    settings: Settings, client: MlflowClient, model_name: str, *, actor: str
) -> tuple[str, str]:
    """`driftloop rollback`: back to the previous champion; returns (from, to)."""
    with locked(settings, model_name):
        return registry.rollback(client, model_name, actor=actor)
