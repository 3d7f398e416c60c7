"""The champion lock: driftloop processes that share the driftloop database move one model's
`champion` alias one at a time.

MLflow has no transaction around "read the alias, compare, set it, write the history"; two
retrains (or a retrain and a rollback) that overlap would otherwise each see the old champion and
both move it. The lock lives in the database every flow already shares (``DRIFTLOOP_DATABASE_URL``):
a PostgreSQL advisory lock (session level, released when the block ends or the connection drops),
or for SQLite an exclusive ``flock`` on a file next to the database file (SQLite is one host).
Held only around the compare-and-set, never while a model is scored.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.errors import DriftloopError
from monitoring.store import UNAVAILABLE_ERRORS, StoreError, describe_refusal

#: How long a process waits for another's compare-and-set (a few registry calls) to finish.
LOCK_TIMEOUT_SECONDS = 60.0
_POLL_SECONDS = 0.05
#: In-memory SQLite has one process: a lock per model name in this process is enough.
_LOCAL: dict[str, threading.Lock] = {}
_LOCAL_GUARD = threading.Lock()


class ChampionLockTimeout(DriftloopError, TimeoutError):
    """Another driftloop process held the champion lock too long; trying again may help."""

    transient = True


def lock_key(model_name: str) -> int:
    """The advisory-lock key of a model: a signed 64-bit number derived from its name."""
    digest = hashlib.sha256(f"driftloop.champion:{model_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_file(database: str, model_name: str) -> Path:
    """The file a SQLite database's champion lock takes for a model (next to the database)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model_name)
    return Path(f"{database}.champion-{safe}.lock")


def _wait(try_once: Callable[[], bool], *, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not try_once():
        if time.monotonic() >= deadline:
            raise ChampionLockTimeout(
                f"{what} was held by another driftloop process for over {timeout:g} s; "
                "if none is promoting or rolling back, retry"
            )
        time.sleep(_POLL_SECONDS)


@contextmanager
def champion_lock(
    engine: Engine, model_name: str, *, timeout: float = LOCK_TIMEOUT_SECONDS
) -> Iterator[None]:
    """Hold the model's champion lock in the driftloop database inside the block.

    Raises:
        ChampionLockTimeout: not acquired within ``timeout`` seconds.
    """
    backend = engine.url.get_backend_name()
    if backend == "postgresql":
        with _advisory_lock(engine, model_name, timeout=timeout):
            yield
        return
    database = engine.url.database
    if backend != "sqlite" or not database or database == ":memory:":
        with _local_lock(model_name, timeout=timeout):
            yield
        return
    with _file_lock(lock_file(database, model_name), model_name, timeout=timeout):
        yield


@contextmanager
def _advisory_lock(engine: Engine, model_name: str, *, timeout: float) -> Iterator[None]:
    key = lock_key(model_name)
    try:
        connection = engine.connect()
    except UNAVAILABLE_ERRORS as exc:
        raise StoreError(
            f"the champion lock lives in the driftloop database "
            f"{engine.url.render_as_string(hide_password=True)}, which does not answer "
            f"({describe_refusal(exc)}); start it or fix DRIFTLOOP_DATABASE_URL"
        ) from None
    with connection:

        def take() -> bool:
            taken = connection.scalar(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
            connection.commit()
            return bool(taken)

        _wait(
            take, what=f"the champion lock of {model_name!r} (advisory lock {key})", timeout=timeout
        )
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            connection.commit()


@contextmanager
def _file_lock(path: Path, model_name: str, *, timeout: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # flock locks belong to the open file: two opens conflict, in two processes or two threads
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:

        def take() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        _wait(take, what=f"the champion lock of {model_name!r} ({path.name})", timeout=timeout)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def _local_lock(model_name: str, *, timeout: float) -> Iterator[None]:
    with _LOCAL_GUARD:
        lock = _LOCAL.setdefault(model_name, threading.Lock())
    if not lock.acquire(timeout=timeout):
        raise ChampionLockTimeout(
            f"the champion lock of {model_name!r} was held for over {timeout:g} s; retry"
        )
    try:
        yield
    finally:
        lock.release()
