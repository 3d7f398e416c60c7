"""The champion lock in the driftloop database: one holder at a time, on SQLite (a file lock next
to the database) and on the real PostgreSQL (an advisory lock); a holder that keeps it too long
makes the next one give up with a one-line error."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitoring.locks import ChampionLockTimeout, champion_lock, lock_key
from monitoring.store import StoreError, make_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'driftloop.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_one_holder_at_a_time(engine: sa.Engine) -> None:
    inside: list[int] = []
    overlaps: list[int] = []
    start = threading.Barrier(4)

    def hold(n: int) -> None:
        start.wait()
        with champion_lock(engine, "m"):
            inside.append(n)
            if len(inside) > 1:
                overlaps.append(n)
            time.sleep(0.2)
            inside.remove(n)

    threads = [threading.Thread(target=hold, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []


def test_a_lock_held_too_long_times_out_and_other_models_are_not_blocked(
    engine: sa.Engine,
) -> None:
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with champion_lock(engine, "m"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    try:
        with (
            pytest.raises(ChampionLockTimeout, match="held by another driftloop process"),
            champion_lock(engine, "m", timeout=0.3),
        ):
            pass
        with champion_lock(engine, "other", timeout=0.3):  # another model's lock is free
            pass
    finally:
        release.set()
        thread.join()
    with champion_lock(engine, "m", timeout=1):  # released by the holder
        pass


def test_keys_are_stable_signed_64_bit_numbers() -> None:
    assert lock_key("m") == lock_key("m") != lock_key("n")
    assert -(2**63) <= lock_key("employment") < 2**63


def test_an_unreachable_postgresql_is_one_clear_error() -> None:
    engine = make_engine("postgresql+psycopg2://postgres@127.0.0.1:1/none")
    with (
        pytest.raises(StoreError, match="the champion lock lives in the driftloop database"),
        champion_lock(engine, "m"),
    ):
        pass
