"""Group commit for the inference log: a background thread writes queued records in batches.

A request hands its records to :meth:`LogWriter.write` and awaits a future that completes only
once the batch holding them is durable: committed to the database, or fsync'ed to the local
spool when the database is unreachable. Whatever is queued while a batch commits forms the next
batch, so the commit rate adapts to the load without a timer. The queue is bounded (in rows):
when it is full, writers wait, which slows the request path instead of losing records.

When the database fails, the writer spools and retries the database every `retry_seconds`; on
success it first replays the spool (in order), then writes to the database again. Records never
go to the database while older ones still sit in the spool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitoring.spool import Spool, SpoolError
from monitoring.store import insert_records

logger = logging.getLogger(__name__)
Destination = Literal["database", "spool"]

#: Errors that mean "the database is unreachable or busy", as opposed to a bad record.
_UNAVAILABLE = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,
)


class LogWriteError(RuntimeError):
    """Records could not be made durable (neither the database nor the spool accepted them)."""


class WriterClosedError(LogWriteError):
    """The writer is shut down and accepts no more records."""


@dataclass
class WriterStats:
    """Counters the /metrics endpoint exposes (read without locking: monotonic ints)."""

    rows_database: int = 0
    rows_spooled: int = 0
    rows_replayed: int = 0
    rows_failed: int = 0
    batches: int = 0
    database_errors: int = 0
    database_up: bool = True


@dataclass
class _Item:
    records: Sequence[Mapping[str, Any]]
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Destination] | concurrent.futures.Future[Destination]


class LogWriter:
    """The background group-commit writer of one process."""

    def __init__(
        self,
        engine: Engine,
        spool: Spool,
        *,
        batch_rows: int = 2000,
        queue_rows: int = 50_000,
        retry_seconds: float = 2.0,
        observe_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        """`observe_batch(rows, seconds)` is called from the writer thread after each batch."""
        self.engine = engine
        self.observe_batch = observe_batch
        self.spool = spool
        self.batch_rows = batch_rows
        self.queue_rows = queue_rows
        self.retry_seconds = retry_seconds
        self.stats = WriterStats()
        self._items: deque[_Item] = deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._space = threading.Condition(self._cond)
        self._closing = False
        self._thread: threading.Thread | None = None
        self._next_db_attempt = 0.0
        self._spool_pending = True  # orphans of a previous run are checked on the first pass
        #: the writer thread's own connection, kept between batches (no pool checkout and
        #: pre-ping per batch); dropped on any error and opened again on the next batch
        self._connection: sa.Connection | None = None
        self._idle = False  # the writer thread waits for records (guarded by _cond)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the writer thread; it first replays spool files left by earlier processes."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="driftloop-log-writer", daemon=True)
        self._thread.start()

    def close(self, timeout: float | None = 60.0) -> None:
        """Stop accepting records, flush everything queued (database or spool), stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("the log writer did not finish flushing within %s s", timeout)
        self.spool.close()

    @property
    def queue_depth(self) -> int:
        """Rows waiting to be written."""
        return self._queued_rows

    # ------------------------------------------------------------------ producers

    async def write(self, records: Sequence[Mapping[str, Any]]) -> Destination:
        """Queue records and wait until they are durable; returns where they went.

        Raises LogWriteError when neither the database nor the spool could take them.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Destination] = loop.create_future()
        item = _Item(records, loop, future)
        while not self._try_put(item):  # backpressure: the queue is full
            await asyncio.sleep(0.002)
        return await future

    def submit(
        self, records: Sequence[Mapping[str, Any]]
    ) -> concurrent.futures.Future[Destination]:
        """Queue records from a plain thread (blocks while the queue is full)."""
        future: concurrent.futures.Future[Destination] = concurrent.futures.Future()
        item = _Item(records, None, future)
        with self._space:
            self._check_open()
            while not self._fits(len(records)):
                self._space.wait(0.1)
                self._check_open()
            self._put(item)
        return future

    def _fits(self, rows: int) -> bool:
        return self._queued_rows == 0 or self._queued_rows + rows <= self.queue_rows

    def _check_open(self) -> None:
        if self._closing or self._thread is None:
            raise WriterClosedError("the inference-log writer is not running (shutting down?)")

    def _try_put(self, item: _Item) -> bool:
        with self._cond:
            self._check_open()
            if not self._fits(len(item.records)):
                return False
            self._put(item)
            return True

    def _put(self, item: _Item) -> None:
        self._items.append(item)
        self._queued_rows += len(item.records)
        if self._idle:  # a busy writer takes the queue when its commit is done: no wake-up needed
            self._cond.notify()

    # ------------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        self._replay_if_due(force=True)
        while True:
            with self._cond:
                while not self._items and not self._closing:
                    timeout = self.retry_seconds if self._spool_pending else None
                    self._idle = True
                    woken = self._cond.wait(timeout)
                    self._idle = False
                    if not woken and self._spool_pending:
                        break  # time to retry the spool replay with no traffic
                batch = self._take()
                if not batch and self._closing:
                    self._drop_connection()
                    return
            if batch:
                self._flush(batch)
            else:
                self._replay_if_due()

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        rows = 0
        while self._items and (not batch or rows + len(self._items[0].records) <= self.batch_rows):
            item = self._items.popleft()
            batch.append(item)
            rows += len(item.records)
        self._queued_rows -= rows
        self._space.notify_all()
        return batch

    def _flush(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        records = [r for item in batch for r in item.records]
        destination: Destination | None = None
        error: BaseException | None = None
        self._replay_if_due()
        if not self._spool_pending and time.monotonic() >= self._next_db_attempt:
            try:
                self._insert(records)
                destination = "database"
                self.stats.rows_database += len(records)
            except _UNAVAILABLE as exc:
                self._database_failed(exc)
            except Exception as exc:  # a record the database refuses: fail these requests
                logger.exception("the inference log refused a batch of %d records", len(records))
                error = exc
        if destination is None and error is None:
            try:
                self.spool.append(records)
                destination = "spool"
                self._spool_pending = True
                self.stats.rows_spooled += len(records)
            except SpoolError as exc:
                logger.error("%s", exc)
                error = exc
        self.stats.batches += 1
        if error is not None:
            self.stats.rows_failed += len(records)
            failure = LogWriteError(
                f"the inference log could not store {len(records)} records: {error}"
            )
            self._resolve(batch, None, failure)
        else:
            self._resolve(batch, destination, None)
        if self.observe_batch is not None:
            self.observe_batch(len(records), time.perf_counter() - started)

    def _insert(self, records: list[Mapping[str, Any]]) -> None:
        """Insert and commit one batch on the writer's connection."""
        if self._connection is None:
            self._connection = self.engine.connect()
        try:
            with self._connection.begin():
                insert_records(self._connection, records)
        except BaseException:
            self._drop_connection()
            raise

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    def _database_failed(self, exc: BaseException) -> None:
        self.stats.database_errors += 1
        if self.stats.database_up:
            logger.warning("inference log database unavailable, spooling: %s", exc)
        self.stats.database_up = False
        self._next_db_attempt = time.monotonic() + self.retry_seconds
        self.engine.dispose()

    def _replay_if_due(self, *, force: bool = False) -> None:
        if not self._spool_pending:
            return
        if not force and time.monotonic() < self._next_db_attempt:
            return
        try:
            replayed = self.spool.replay(self.engine)
        except _UNAVAILABLE as exc:
            self._database_failed(exc)
            self._spool_pending = self.spool.has_pending()
            return
        except Exception:
            logger.exception("replaying the inference-log spool failed; retrying later")
            self._next_db_attempt = time.monotonic() + self.retry_seconds
            return
        self.stats.rows_replayed += replayed
        if not self.stats.database_up:
            logger.warning("inference log database is back; replayed %d spooled records", replayed)
        self.stats.database_up = True
        self._spool_pending = False

    @staticmethod
    def _resolve(
        batch: list[_Item], destination: Destination | None, error: BaseException | None
    ) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[Destination]]] = {}
        for item in batch:
            if item.loop is None:
                future = item.future
                assert isinstance(future, concurrent.futures.Future)
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(destination)  # type: ignore[arg-type]
            else:
                by_loop.setdefault(item.loop, []).append(item.future)  # type: ignore[arg-type]
        for loop, futures in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, futures, destination, error)


def _settle(
    futures: list[asyncio.Future[Destination]],
    destination: Destination | None,
    error: BaseException | None,
) -> None:
    for future in futures:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(destination)  # type: ignore[arg-type]
