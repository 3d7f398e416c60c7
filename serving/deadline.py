"""Bounds on blocking database calls: a peer that never answers must not stall the service.

libpq has no query timeout, and a frozen network peer (one that accepts and answers nothing)
never lets a server-side timeout fire, so a call that must answer in time runs on a helper
thread and the caller stops waiting after `timeout` seconds. The helper thread is then
abandoned: it finishes or fails on its own and cleans up after itself; no other thread ever
touches its connection. The number of threads a hung peer can hold is capped (by the log writer
for its :class:`ConnectionThread` calls, by :class:`BoundedCalls` for its own), so a peer that
stays frozen cannot pile them up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)
T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """A database call did not answer within its bound, or too many earlier ones still hang."""


class ConnectionThread:
    """A thread owning one database connection; runs `fn(connection)` calls one at a time.

    The connection is opened on the first call and closed after any error (the next call opens
    a new one). A caller that stops waiting retires the thread: it finishes the call it is in,
    closes its connection and exits.
    """

    def __init__(self, engine: Engine, *, name: str) -> None:
        self._engine = engine
        self._jobs: queue.SimpleQueue[tuple[Callable[[sa.Connection], Any], Any] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[sa.Connection], T], timeout: float) -> T:
        """`fn(connection)` on this thread; DeadlineExceeded (and retires it) after `timeout` s."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((fn, future))
        done, _ = concurrent.futures.wait([future], timeout=timeout)
        if not done:
            self.retire()
            raise DeadlineExceeded(f"the database did not answer within {timeout:g} s")
        return future.result()

    def retire(self) -> None:
        """Exit once the current call returns (closing the connection); no more calls."""
        self._jobs.put(None)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        connection: sa.Connection | None = None
        try:
            while (job := self._jobs.get()) is not None:
                fn, future = job
                try:
                    if connection is None:
                        connection = self._engine.connect()
                    result = fn(connection)
                except BaseException as exc:
                    connection = _close(connection)
                    future.set_exception(exc)
                else:
                    future.set_result(result)
        finally:
            _close(connection)


def _close(connection: sa.Connection | None) -> None:
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.close()


class BoundedCalls:
    """Blocking calls awaited from the event loop, each answering within `timeout` seconds.

    Each call runs on its own daemon thread (a hung one never holds up process exit). At most
    `limit` run at once: a further call waits for a free slot, within the same `timeout`, so a
    burst against a healthy database queues briefly while calls that hang cannot pile up
    threads. Raises DeadlineExceeded when the bound passes.
    """

    def __init__(self, *, timeout: float, limit: int, name: str) -> None:
        self.timeout = timeout
        self.limit = limit
        self.name = name
        self._slots: asyncio.Semaphore | None = None  # made on first use, in the loop's thread

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        slots = self._slots
        try:
            await asyncio.wait_for(slots.acquire(), self.timeout)
        except TimeoutError:
            raise DeadlineExceeded(
                f"{self.limit} earlier database calls have not returned within {self.timeout:g} s"
            ) from None
        future: asyncio.Future[T] = loop.create_future()
        try:
            threading.Thread(
                target=_call_and_settle,
                args=(loop, future, slots, fn, args),
                name=self.name,
                daemon=True,
            ).start()
        except BaseException:
            slots.release()
            raise
        done, _ = await asyncio.wait({future}, timeout=max(0.0, deadline - loop.time()))
        if not done:
            future.add_done_callback(_consume)  # the late outcome is nobody's: do not warn
            raise DeadlineExceeded(f"the database did not answer within {self.timeout:g} s")
        return future.result()


def _call_and_settle(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[T],
    slots: asyncio.Semaphore,
    fn: Callable[..., T],
    args: tuple[Any, ...],
) -> None:
    """The body of a BoundedCalls thread: run, hand the outcome to the loop, free the slot."""
    try:
        outcome: tuple[Any, BaseException | None] = (fn(*args), None)
    except BaseException as exc:
        outcome = (None, exc)
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, future, *outcome)
        loop.call_soon_threadsafe(slots.release)


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
