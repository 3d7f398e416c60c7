"""A durable, append-only spool of inference-log records for when the database is unreachable.

Records are written as JSON lines and fsync'ed before the caller may acknowledge them. Each
process writes its own file (`spool-<time_ns>-<pid>.jsonl`) and holds an exclusive `flock` on it
while alive (taken before the file gets that name), so a file that can be locked belongs to a
process that died: it is replayed too. Processes may share the directory (the workers of
`serve --workers N`, replicas on one host).
Replay inserts the files oldest first, in chunks (each one transaction, duplicates ignored, so a
replay interrupted after a commit is harmless), then deletes the file. A record the database
refuses goes to the dead-letter table and the replay goes on; when even that table refuses it,
it goes to `dead-letter.jsonl` in the spool directory. A file is deleted only once each of its
records is in the log or kept as a dead letter.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.engine import Engine

from core.errors import DriftloopError
from monitoring.store import WriteOutcome, dumps_record, loads_record, write_log

logger = logging.getLogger(__name__)
_PREFIX = "spool-"
_SUFFIX = ".jsonl"
DEAD_LETTER_FILE = "dead-letter.jsonl"
REPLAY_CHUNK_ROWS = 2_000

#: Stores a chunk of replayed records (each its own group, duplicates ignored) in the log, the
#: refused ones as dead letters, and keeps any dead letter the table refused; raises to stop.
Sink = Callable[[list[dict[str, Any]]], WriteOutcome]


class SpoolError(DriftloopError, OSError):
    """The spool file cannot be written (disk full, permissions, ...)."""

    transient = True


def spool_directory(base: Path, database_url: str) -> Path:
    """One spool subdirectory per database, so records never replay into another database."""
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:12]
    return base / digest


@dataclass(frozen=True)
class SpoolStatus:
    """What waits in a spool directory (for `driftloop log status`)."""

    directory: Path
    files: int
    rows: int
    dead_letter_file: Path
    dead_letter_rows: int


def spool_files(directory: Path) -> list[Path]:
    """Every spool file in `directory` (live processes' and orphans), oldest first."""
    if not directory.is_dir():
        return []
    return sorted(directory.glob(f"{_PREFIX}*{_SUFFIX}"))


def spool_status(directory: Path) -> SpoolStatus:
    """Spool files and the complete records they hold, and the records of the dead-letter file."""
    files = spool_files(directory)
    dead_letters = directory / DEAD_LETTER_FILE
    return SpoolStatus(
        directory=directory,
        files=len(files),
        rows=sum(_count_lines(path) for path in files),
        dead_letter_file=dead_letters,
        dead_letter_rows=_count_lines(dead_letters),
    )


def _count_lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_bytes().split(b"\n") if line.strip())
    except FileNotFoundError:
        return 0


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
            # Locked under a name no other process lists, then renamed (the lock stays with the
            # open file): a spool file is never seen unlocked, so never taken for an orphan.
            creating = path.with_name(f".{path.name}.new")
            handle = open(creating, "ab")  # noqa: SIM115 - held open for the life of the spool
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(creating, path)
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
        found = []
        for path in spool_files(self.directory):
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

    # ------------------------------------------------------------------ dead letters

    def append_dead_letters(self, letters: Sequence[Mapping[str, Any]]) -> Path:
        """Append dead letters the database would not keep to the dead-letter file, fsync'ed.

        The file (`dead-letter.jsonl` in the spool directory) is shared by the processes of the
        directory (appends under an exclusive lock). Raises SpoolError.
        """
        path = self.directory / DEAD_LETTER_FILE
        if not letters:
            return path
        payload = b"".join(dumps_record(letter) + b"\n" for letter in letters)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise SpoolError(f"cannot write the dead-letter file {path}: {exc}") from exc
        logger.error("%d refused inference-log records kept in %s", len(letters), path)
        return path

    def keep_dead_letters(self, outcome: WriteOutcome) -> None:
        """Put the dead letters the dead-letter table refused into the file (raises SpoolError)."""
        if outcome.dead_letters and not outcome.dead_letters_stored:
            self.append_dead_letters(outcome.dead_letters)

    # ------------------------------------------------------------------ replay

    def replay(self, target: Engine | Sink, *, chunk_rows: int = REPLAY_CHUNK_ROWS) -> int:
        """Store every pending record (orphans first, then our own), in order, in chunks.

        `target` is an engine, or a :data:`Sink` (the log writer's, which bounds each call in
        time). Returns the number of records that reached the log (refused ones are dead
        letters). An error propagates and leaves the current and later files in place (already
        replayed files are gone; a replayed chunk is skipped as a duplicate next time).
        """
        sink = self._engine_sink(target) if isinstance(target, Engine) else target
        total = 0
        for path in self.orphans():
            total += self._replay_file(sink, path, locked_handle=None, chunk_rows=chunk_rows)
        if self._file is not None and self._path is not None:
            total += self._replay_file(
                sink, self._path, locked_handle=self._file, chunk_rows=chunk_rows
            )
            self._file.close()
            self._file, self._path, self._rows = None, None, 0
        return total

    def _engine_sink(self, engine: Engine) -> Sink:
        def sink(records: list[dict[str, Any]]) -> WriteOutcome:
            with engine.connect() as connection:
                outcome = write_log(connection, [[r] for r in records], ignore_duplicates=True)
            self.keep_dead_letters(outcome)
            return outcome

        return sink

    def _replay_file(
        self, sink: Sink, path: Path, *, locked_handle: BinaryIO | None, chunk_rows: int
    ) -> int:
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
            logged = 0
            for start in range(0, len(records), chunk_rows):
                chunk = records[start : start + chunk_rows]
                logged += len(chunk) - len(sink(chunk).dead_letters)
            path.unlink()
            _fsync_dir(self.directory)
            logger.info(
                "replayed %d spooled inference-log records from %s (%d dead letters)",
                logged,
                path.name,
                len(records) - logged,
            )
            return logged
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
