"""Child processes of the stack: start one in its own process group, run a one-shot step, wait
until a service is healthy, tell whether a recorded process is still the one started, stop it.

Every process writes to its own log (``NAME.log``); a failure's message carries the log's tail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.errors import DriftloopError

#: Every service listens on loopback only.
HOST = "127.0.0.1"


class StackError(DriftloopError, RuntimeError):
    """A stack component failed to start or stop; the message names it and shows its log tail."""


@dataclass(frozen=True)
class ServiceRecord:
    """One long-running process the stack started (its pid is also its process group id)."""

    name: str
    pid: int
    command: list[str]
    log: str
    url: str | None = None
    health_url: str | None = None
    started_at: str = ""
    proc_start: int | None = None  # /proc/<pid>/stat start time: guards against pid reuse


def now() -> str:
    """The current UTC time, to the second, as recorded in logs and state files."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file ('' when missing)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _proc_stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (None: no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _proc_start_time(pid: int) -> int | None:
    fields = _proc_stat_fields(pid)
    return None if fields is None else int(fields[19])


def _is_zombie(pid: int) -> bool:
    fields = _proc_stat_fields(pid)
    return fields is None or fields[0] == "Z"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(record: ServiceRecord) -> bool:
    """The recorded process is still running (and is the same process, not a reused pid). A
    zombie, dead but not yet reaped by its parent, is not running."""
    fields = _proc_stat_fields(record.pid)
    if fields is None or fields[0] == "Z":
        return False
    return record.proc_start is None or int(fields[19]) == record.proc_start


def spawn(
    name: str,
    command: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_dir: Path,
    url: str | None = None,
    health_url: str | None = None,
) -> ServiceRecord:
    """Start ``command`` in its own session (process group), output appended to ``NAME.log``."""
    log = log_dir / f"{name}.log"
    with open(log, "ab") as out:
        out.write(f"\n=== {now()} {' '.join(command)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServiceRecord(
        name=name,
        pid=proc.pid,
        command=command,
        log=str(log),
        url=url,
        health_url=health_url,
        started_at=now(),
        proc_start=_proc_start_time(proc.pid),
    )


def wait_healthy(
    record: ServiceRecord,
    *,
    timeout: float,
    check: Callable[[], bool] | None = None,
    poll: float = 0.5,
) -> None:
    """Wait until ``record.health_url`` answers 200 (or ``check()`` is true).

    Raises:
        StackError: the process exited or the timeout passed (message has the log tail).
    """
    check = check or (lambda: http_ok(record.health_url or ""))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(record):
            raise StackError(
                f"{record.name} exited before becoming healthy ({' '.join(record.command)}).\n"
                f"--- last lines of {record.log} ---\n{log_tail(Path(record.log))}"
            )
        if check():
            return
        time.sleep(poll)
    raise StackError(
        f"{record.name} not healthy after {timeout:.0f}s at {record.health_url}.\n"
        f"--- last lines of {record.log} ---\n{log_tail(Path(record.log))}"
    )


def run_step(
    name: str,
    command: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_dir: Path,
    timeout: float,
    ok_if: Callable[[str], bool] | None = None,
) -> str:
    """Run a one-shot command to completion, output to ``NAME.log``; return its output.

    Raises:
        StackError: non-zero exit (unless ``ok_if(output)``) or timeout, with the output tail.
    """
    log = log_dir / f"{name}.log"
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
        output = done.stdout + done.stderr
        code: int | None = done.returncode
    except subprocess.TimeoutExpired as exc:
        output = f"{exc.stdout or ''}{exc.stderr or ''}"
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
        code = None
    with open(log, "a") as out:
        out.write(f"\n=== {now()} {' '.join(command)}\n{output}\n=== exit {code}\n")
    if code == 0 or (code is not None and ok_if is not None and ok_if(output)):
        return output
    why = f"timed out after {timeout:.0f}s" if code is None else f"exit code {code}"
    tail = "\n".join(output.splitlines()[-30:])
    raise StackError(f"{name} failed ({why}): {' '.join(command)}\n--- output (tail) ---\n{tail}")


def terminate(record: ServiceRecord, *, grace: float = 15.0) -> bool:
    """SIGTERM the record's process group, SIGKILL after ``grace`` seconds; True if it was alive."""
    if not is_alive(record):
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(record.pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(record.pid)
            if not is_alive(record) or _is_zombie(record.pid):
                return True
            time.sleep(0.2)
    return True
