"""A durable, append-only spool of inference-log records for when the database is unreachable.

Records are written as JSON lines and fsync'ed before the caller may acknowledge them. Each
process writes its own file (`spool-<time_ns>-<pid>.jsonl`) and holds an exclusive `flock` on it
while alive, so a file that can be locked belongs to a process that died: it is replayed too.
Replay inserts the files oldest first, each in one transaction with duplicates ignored (a replay
interrupted after its commit is harmless), then deletes the file.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.engine import Engine

from monitoring.store import dumps_record, insert_records, loads_record

logger = logging.getLogger(__name__)
_PREFIX = "spool-"
_SUFFIX = ".jsonl"


class SpoolError(OSError):
    """The spool file cannot be written (disk full, permissions, ...)."""


def read_spool_file(path: Path) -> list[dict[str, Any]]:
    """The complete records of a spool file, in order; a torn or corrupt line is skipped."""
    records: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(loads_record(line))
        except ValueError:
            logger.warning("%s line %d is incomplete or corrupt; skipped", path, number)
    return records


class Spool:
    """The spool directory of one process. Not thread-safe: one writer thread owns it."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._rows = 0

    # ------------------------------------------------------------------ writing

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append records and fsync; when this returns they survive a crash. Raises SpoolError."""
        if not records:
            return
        payload = b"".join(dumps_record(r) + b"\n" for r in records)
        handle = self._open()
        start = handle.tell()
        try:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as exc:
            try:  # leave no half-written batch behind
                handle.truncate(start)
                handle.seek(start)
            except OSError:
                pass
            raise SpoolError(f"cannot write the inference-log spool {self._path}: {exc}") from exc
        self._rows += len(records)

    def _open(self) -> BinaryIO:
        if self._file is not None:
            return self._file
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{_PREFIX}{time.time_ns():020d}-{os.getpid()}{_SUFFIX}"
            handle = open(path, "ab")  # noqa: SIM115 - held open for the life of the spool
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            _fsync_dir(self.directory)
        except OSError as exc:
            raise SpoolError(f"cannot create a spool file in {self.directory}: {exc}") from exc
        self._file, self._path = handle, path
        return handle

    # ------------------------------------------------------------------ state

    @property
    def own_rows(self) -> int:
        """Rows this process spooled that are not yet replayed."""
        return self._rows

    def orphans(self) -> list[Path]:
        """Spool files of dead processes (their lock is free), oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.glob(f"{_PREFIX}*{_SUFFIX}")):
            if path == self._path:
                continue
            try:
                with open(path, "rb") as handle:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            except BlockingIOError:
                continue  # a live process owns it
            except FileNotFoundError:
                continue
            found.append(path)
        return found

    def has_pending(self) -> bool:
        return self._rows > 0 or bool(self.orphans())

    # ------------------------------------------------------------------ replay

    def replay(self, engine: Engine) -> int:
        """Insert every pending record (orphans first, then our own) into the database, in order.

        Returns the number of records replayed. A database error propagates and leaves the
        remaining files in place (already replayed files are gone).
        """
        total = 0
        for path in self.orphans():
            total += self._replay_file(engine, path, locked_handle=None)
        if self._file is not None and self._path is not None:
            total += self._replay_file(engine, self._path, locked_handle=self._file)
            self._file.close()
            self._file, self._path, self._rows = None, None, 0
        return total

    def _replay_file(self, engine: Engine, path: Path, *, locked_handle: BinaryIO | None) -> int:
        handle = locked_handle
        own = handle is not None
        if handle is None:
            try:
                handle = open(path, "rb")  # noqa: SIM115
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, FileNotFoundError):
                if handle is not None:
                    handle.close()
                return 0
        try:
            if not path.exists():  # another process replayed it between listing and locking
                return 0
            records = read_spool_file(path)
            insert_records(engine, records, ignore_duplicates=True)
            path.unlink()
            _fsync_dir(self.directory)
            logger.info(
                "replayed %d spooled inference-log records from %s", len(records), path.name
            )
            return len(records)
        finally:
            if not own:
                handle.close()

    def close(self) -> None:
        """Close our file (kept on disk if it still holds records: the next start replays it)."""
        if self._file is not None:
            self._file.close()
            if self._rows == 0 and self._path is not None:
                self._path.unlink(missing_ok=True)
            self._file, self._path = None, None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
