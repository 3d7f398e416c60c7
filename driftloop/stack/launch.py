"""What every service's start needs while the stack comes up: the checkout, the ports chosen,
the environment of the child processes, and the state, written to ``state.json`` on every change
(so ``driftloop stack down`` stops whatever was started, even after a failure half-way)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from driftloop.stack import processes
from driftloop.stack.processes import HOST, ServiceRecord, StackError, free_port, port_in_use
from driftloop.stack.state import StackState, write_state


@dataclass(frozen=True)
class StackPorts:
    """Loopback ports; 0 picks a free one (what tests use)."""

    prefect: int = 4200
    mlflow: int = 5000
    serve: int = 8000
    evidently: int = 8001
    prometheus: int = 9090
    alertmanager: int = 9093
    dask: int = 8786
    dask_http: int = 8787
    worker_health: int = 0


def choose_ports(ports: StackPorts) -> dict[str, int]:
    """Each port of ``ports``, a free one where it is 0.

    Raises:
        StackError: a fixed port is already in use (the message names it).
    """
    chosen = {}
    for key, value in asdict(ports).items():
        if value == 0:
            chosen[key] = free_port()
        elif port_in_use(value):
            raise StackError(
                f"port {value} for {key} is already in use on {HOST}; stop what uses it or pass "
                f"another port (StackPorts({key}=...))"
            )
        else:
            chosen[key] = value
    return chosen


@dataclass
class Launch:
    """One ``start_stack`` in progress; ``state`` is what has been started so far."""

    root: Path
    log_dir: Path
    ports: dict[str, int]
    databases: dict[str, str]  # "prefect", "mlflow", "driftloop" (see backends.backend_urls)
    env: dict[str, str]
    state: StackState
    timeout: float
    echo: Callable[[str], None]

    def url(self, port: str) -> str:
        """``http://HOST:PORT`` for one of the chosen ports (``"prefect"``, ``"mlflow"``, ...)."""
        return f"http://{HOST}:{self.ports[port]}"

    def record(self, **changes: Any) -> None:
        """Change the state and write it."""
        self.state = replace(self.state, **changes)
        write_state(self.state)

    def note(self, text: str) -> None:
        """Keep a note in the state (``driftloop stack status`` shows it) and say it."""
        self.record(notes=[*self.state.notes, text])
        self.echo(f"note: {text}")

    def spawn(
        self,
        name: str,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        url: str | None = None,
        health_url: str | None = None,
    ) -> ServiceRecord:
        """Start a long-running process from the checkout and record it at once."""
        record = processes.spawn(
            name,
            command,
            cwd=self.root,
            env=self.env if env is None else env,
            log_dir=self.log_dir,
            url=url,
            health_url=health_url,
        )
        self.record(services=[*self.state.services, record])
        return record

    def run_step(
        self,
        name: str,
        command: list[str],
        *,
        timeout: float,
        ok_if: Callable[[str], bool] | None = None,
    ) -> str:
        """Run a one-shot command from the checkout to completion (see :func:`processes.run_step`)."""
        return processes.run_step(
            name,
            command,
            cwd=self.root,
            env=self.env,
            log_dir=self.log_dir,
            timeout=timeout,
            ok_if=ok_if,
        )
