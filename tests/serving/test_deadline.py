"""Bounded database calls: a call that hangs costs its caller the timeout, never more."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from serving.deadline import BoundedCalls, ConnectionThread, DeadlineExceeded


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")


def test_a_connection_thread_runs_calls_on_one_connection(engine: sa.Engine) -> None:
    worker = ConnectionThread(engine, name="test")
    first = worker.call(lambda c: id(c.connection.dbapi_connection), timeout=5)
    assert worker.call(lambda c: id(c.connection.dbapi_connection), timeout=5) == first
    assert worker.call(lambda c: threading.current_thread().name, timeout=5) == "test"
    with pytest.raises(ZeroDivisionError):
        worker.call(lambda c: 1 / 0, timeout=5)
    worker.retire()
    worker.join(5)
    assert not worker.alive


def test_a_hung_call_times_out_and_its_thread_exits_once_it_returns(engine: sa.Engine) -> None:
    release = threading.Event()
    worker = ConnectionThread(engine, name="test")
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="did not answer within 0.2 s"):
        worker.call(lambda c: release.wait(30), timeout=0.2)
    assert time.monotonic() - started < 1.0
    assert worker.alive  # abandoned, still inside the call
    release.set()
    worker.join(5)
    assert not worker.alive  # retired: it closed its connection and exited


def test_bounded_calls_queue_a_burst_and_bound_a_hang() -> None:
    calls = BoundedCalls(timeout=0.5, limit=2, name="test")
    release = threading.Event()

    async def scenario() -> None:
        burst = await asyncio.gather(*(calls.run(time.sleep, 0.05) for _ in range(6)))
        assert burst == [None] * 6  # more calls than slots: they wait their turn, none fails
        hung = [asyncio.ensure_future(calls.run(release.wait, 30)) for _ in range(2)]
        await asyncio.sleep(0.05)  # both take their slot
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="2 earlier database calls"):
            await calls.run(time.sleep, 0)  # both slots are held by hung calls
        assert time.monotonic() - started < 1.0
        for task in hung:
            with pytest.raises(DeadlineExceeded, match="did not answer within 0.5 s"):
                await task
        release.set()
        await asyncio.sleep(0.2)  # the hung threads return and free their slots
        assert await calls.run(lambda: 42) == 42

    asyncio.run(scenario())


def test_bounded_calls_pass_errors_through_unchanged() -> None:
    calls = BoundedCalls(timeout=5, limit=1, name="test")

    def fails() -> None:
        raise TimeoutError("a timeout of the call itself")

    with pytest.raises(TimeoutError, match="of the call itself") as caught:
        asyncio.run(calls.run(fails))
    assert not isinstance(caught.value, DeadlineExceeded)
