"""Group commit for the inference log: a background thread writes queued records in batches.

A request hands its records to :meth:`LogWriter.write` and awaits a future that completes only
once the batch holding them is durable: committed to the database, or fsync'ed to the local
spool when the database is unreachable. Whatever is queued while a batch commits forms the next
batch, so the commit rate adapts to the load without a timer. The queue is bounded (in rows):
when it is full, writers wait, which slows the request path instead of losing records.

When the database refuses a record (a value it cannot store, not an outage), the batch is
written again with each request all or nothing (`monitoring.store.write_log`): the others
commit, the refused request's records become dead letters and that request alone gets
:class:`LogRecordRefused`.

When the database fails or does not answer within `db_timeout` seconds, the writer spools and
retries the database every `retry_seconds`; on success it first replays the spool (in order),
then writes to the database again. Records never go to the database while older ones still sit
in the spool. Every database call runs on a :class:`~serving.deadline.ConnectionThread`, so a
database that hangs costs a request at most about `db_timeout` (twice that when a replay attempt
comes first); a call that timed out is abandoned, and every later write of its records skips
any that it did commit in the end (request ids are unique).
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
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitoring import store
from monitoring.spool import Spool, SpoolError
from serving.deadline import ConnectionThread, DeadlineExceeded

logger = logging.getLogger(__name__)
Destination = Literal["database", "spool"]
T = TypeVar("T")


class LogWriteError(RuntimeError):
    """Records could not be made durable (neither the database nor the spool accepted them)."""


class WriterClosedError(LogWriteError):
    """The writer is shut down and accepts no more records."""


class LogRecordRefused(LogWriteError):
    """The database refused a request's records (bad data, not an outage): none was logged."""

    def __init__(self, reason: str, *, kept: bool) -> None:
        self.reason = reason
        self.kept = kept
        where = (
            "it was kept in the dead-letter store"
            if kept
            else "it could not be kept in the dead-letter store either (see the service log)"
        )
        super().__init__(f"the inference log refused this record: {reason}; {where}")


#: What became of one request's records: where they are durable, or why they are not.
Outcome = Destination | LogWriteError


@dataclass
class WriterStats:
    """Counters the /metrics endpoint exposes (read without locking: monotonic ints)."""

    rows_database: int = 0
    rows_spooled: int = 0
    rows_replayed: int = 0
    rows_failed: int = 0
    rows_dead_lettered: int = 0  # kept in the dead-letter table
    rows_dead_lettered_file: int = 0  # kept in the dead-letter file (the table refused them)
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
        db_timeout: float = 5.0,
        max_abandoned: int = 4,
        observe_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        """`observe_batch(rows, seconds)` is called from the writer thread after each batch.

        `db_timeout` bounds every database call; at most `max_abandoned` calls that timed out
        may still be running before the writer stops trying the database until one returns.
        """
        self.engine = engine
        self.observe_batch = observe_batch
        self.spool = spool
        self.batch_rows = batch_rows
        self.queue_rows = queue_rows
        self.retry_seconds = retry_seconds
        self.db_timeout = db_timeout
        self.max_abandoned = max_abandoned
        self.stats = WriterStats()
        self._items: deque[_Item] = deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._space = threading.Condition(self._cond)
        self._closing = False
        self._thread: threading.Thread | None = None
        self._next_db_attempt = 0.0
        self._spool_pending = True  # orphans of a previous run are checked on the first pass
        #: the thread holding the writer's connection, kept between batches (no pool checkout
        #: and pre-ping per batch); replaced when a call on it times out
        self._worker: ConnectionThread | None = None
        self._abandoned: list[ConnectionThread] = []  # timed out, possibly still running
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

    @property
    def spool_rows(self) -> int:
        """Rows this process spooled that are not replayed yet."""
        return self.spool.own_rows

    # ------------------------------------------------------------------ producers

    async def write(self, records: Sequence[Mapping[str, Any]]) -> Destination:
        """Queue records and wait until they are durable; returns where they went.

        Raises LogRecordRefused when the database refused them (they are dead letters), and
        LogWriteError when neither the database nor the spool could take them.
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
                    break
            if batch:
                self._flush(batch)
            else:
                self._replay_if_due()
        self._retire_worker()  # its thread closes the connection

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
        self._replay_if_due()
        outcomes = self._write_database(batch) if self._database_due() else None
        if outcomes is None:
            outcomes = self._write_spool(batch)
        self.stats.batches += 1
        if self.observe_batch is not None:  # before the answers: a 200 is already counted
            rows = sum(len(item.records) for item in batch)
            self.observe_batch(rows, time.perf_counter() - started)
        self._resolve(batch, outcomes)

    def _database_due(self) -> bool:
        return not self._spool_pending and time.monotonic() >= self._next_db_attempt

    def _write_database(self, batch: list[_Item]) -> list[Outcome] | None:
        """Commit the batch (a refused request becomes dead letters); None: the database failed."""
        groups = [item.records for item in batch]
        try:  # request ids are unique: a duplicate is a timed-out write that committed after all
            outcome = self._call(
                lambda connection: store.write_log(connection, groups, ignore_duplicates=True)
            )
        except Exception as exc:
            self._database_failed(exc)
            return None
        self.stats.database_up = True
        kept = self._keep_dead_letters(outcome)
        outcomes: list[Outcome] = []
        for index, records in enumerate(groups):
            reason = outcome.refused.get(index)
            if reason is None:
                self.stats.rows_database += len(records)
                outcomes.append("database")
            else:
                logger.error(
                    "the inference log refused a request of %d records: %s", len(records), reason
                )
                outcomes.append(LogRecordRefused(reason, kept=kept))
        return outcomes

    def _keep_dead_letters(self, outcome: store.WriteOutcome) -> bool:
        """Keep the refused records of a write (the ones the table refused go to the file)."""
        try:
            self.spool.keep_dead_letters(outcome)
        except SpoolError as exc:
            letters = len(outcome.dead_letters)
            logger.error("%s; %d refused records are kept nowhere", exc, letters)
            self.stats.rows_failed += letters
            return False
        self._count_dead_letters(outcome)
        return True

    def _count_dead_letters(self, outcome: store.WriteOutcome) -> None:
        if outcome.dead_letters_stored:
            self.stats.rows_dead_lettered += len(outcome.dead_letters)
        else:
            self.stats.rows_dead_lettered_file += len(outcome.dead_letters)

    def _write_spool(self, batch: list[_Item]) -> list[Outcome]:
        records = [r for item in batch for r in item.records]
        try:
            self.spool.append(records)
        except SpoolError as exc:
            logger.error("%s", exc)
            self.stats.rows_failed += len(records)
            failure = LogWriteError(
                f"the inference log could not store {len(records)} records: {exc}"
            )
            return [failure] * len(batch)
        self._spool_pending = True
        self.stats.database_up = False  # records go to the spool: the database is not taking them
        self.stats.rows_spooled += len(records)
        return ["spool"] * len(batch)

    # ------------------------------------------------------------------ bounded database calls

    def _call(self, fn: Callable[[sa.Connection], T]) -> T:
        """`fn(connection)` on the writer's connection thread, within `db_timeout` seconds."""
        self._abandoned = [worker for worker in self._abandoned if worker.alive]
        if len(self._abandoned) >= self.max_abandoned:
            raise DeadlineExceeded(
                f"{len(self._abandoned)} earlier database calls timed out and have not returned"
            )
        if self._worker is None:
            self._worker = ConnectionThread(self.engine, name="driftloop-log-database")
        try:
            return self._worker.call(fn, self.db_timeout)
        except DeadlineExceeded:
            self._abandoned.append(self._worker)  # it closes its connection when it returns
            self._worker = None
            raise

    def _retire_worker(self) -> None:
        if self._worker is not None:
            self._worker.retire()
            self._worker.join(self.db_timeout)
            self._worker = None

    def _database_failed(self, exc: BaseException) -> None:
        self.stats.database_errors += 1
        if not isinstance(exc, (DeadlineExceeded, *store.UNAVAILABLE_ERRORS)):
            logger.exception("unexpected error writing the inference log; spooling", exc_info=exc)
        elif self.stats.database_up:
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
            replayed = self.spool.replay(self._replay_chunk, chunk_rows=self.batch_rows)
        except Exception as exc:  # unavailable, timed out, or a dead letter nowhere to keep
            self._database_failed(exc)
            self._spool_pending = self.spool.has_pending()
            return
        self.stats.rows_replayed += replayed
        if not self.stats.database_up:
            logger.warning("inference log database is back; replayed %d spooled records", replayed)
        self.stats.database_up = True
        self._spool_pending = False

    def _replay_chunk(self, records: list[dict[str, Any]]) -> store.WriteOutcome:
        """The spool's sink: each record on its own, duplicates of earlier attempts skipped."""
        groups = [[record] for record in records]
        outcome = self._call(
            lambda connection: store.write_log(connection, groups, ignore_duplicates=True)
        )
        self.spool.keep_dead_letters(outcome)  # SpoolError: the spool file stays for next time
        self._count_dead_letters(outcome)
        return outcome

    @staticmethod
    def _resolve(batch: list[_Item], outcomes: list[Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Outcome]]] = {}
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.loop is None:
                _settle_one(item.future, outcome)
            else:
                by_loop.setdefault(item.loop, []).append((item.future, outcome))
        for loop, pairs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, pairs)


def _settle(pairs: list[tuple[asyncio.Future[Destination], Outcome]]) -> None:
    for future, outcome in pairs:
        if not future.done():
            _settle_one(future, outcome)


def _settle_one(future: Any, outcome: Outcome) -> None:
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
