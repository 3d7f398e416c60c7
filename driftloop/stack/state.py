"""What a stack records under ``ROOT/.driftloop/stack/``: ``state.json`` (every process started,
with its pid, command, log and URLs) and ``stack.pids`` (one ``name pid`` line per process)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from driftloop.stack.processes import ServiceRecord

STATE_DIR = Path(".driftloop") / "stack"
STATE_FILE = "state.json"
PID_FILE = "stack.pids"
#: The Prefect work pool the worker pulls from; prefect.yaml's deployments name it too.
WORK_POOL = "driftloop"


@dataclass(frozen=True)
class StackState:
    """What :func:`driftloop.stack.start_stack` started, as written to ``state.json``."""

    root: str
    state_dir: str
    started_at: str
    backend: str  # "sqlite" or "postgresql"
    prefect_api_url: str | None = None
    prefect_ui_url: str | None = None
    mlflow_url: str | None = None
    serve_url: str | None = None
    evidently_url: str | None = None
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    #: the Dask scheduler (``tcp://``) and its HTTP port (``/health``, ``/metrics``)
    dask_address: str | None = None
    dask_http_url: str | None = None
    #: the file holding the bearer token Alertmanager sends with every webhook delivery
    alert_webhook_token_file: str | None = None
    work_pool: str = WORK_POOL
    deployments: list[str] = field(default_factory=list)
    services: list[ServiceRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def urls(self) -> dict[str, str]:
        """The URLs a person opens, by service."""
        found = {
            "Prefect UI": self.prefect_ui_url,
            "Prefect API": self.prefect_api_url,
            "MLflow UI": self.mlflow_url,
            "inference API": self.serve_url,
            "Evidently UI": self.evidently_url,
            "Prometheus": self.prometheus_url,
            "Alertmanager": self.alertmanager_url,
            "Dask scheduler": self.dask_address,
        }
        return {k: v for k, v in found.items() if v}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> StackState:
        raw = json.loads(text)
        raw["services"] = [ServiceRecord(**s) for s in raw.get("services", [])]
        return cls(**raw)


def state_dir_for(root: Path) -> Path:
    return Path(root).resolve() / STATE_DIR


def write_state(state: StackState) -> None:
    """Write ``state.json`` (atomically) and ``stack.pids`` into the state's directory."""
    state_dir = Path(state.state_dir)
    tmp = state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(state.to_json())
    tmp.replace(state_dir / STATE_FILE)
    (state_dir / PID_FILE).write_text("".join(f"{s.name} {s.pid}\n" for s in state.services))


def read_state(root: Path) -> StackState | None:
    path = state_dir_for(root) / STATE_FILE
    if not path.is_file():
        return None
    return StackState.from_json(path.read_text())
