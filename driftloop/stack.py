"""`make stack`: the production topology on one machine, as separate processes on loopback.

Started in order, each waited for on its HTTP health endpoint:

1. a Prefect server (PostgreSQL when ``DRIFTLOOP_STACK_DB`` is a PostgreSQL URL, else SQLite),
2. the ``driftloop`` process work pool and a process worker,
3. ``prefect deploy --all`` from the repo's ``prefect.yaml``,
4. an MLflow tracking server that also proxies artifacts (``mlflow-artifacts:``),
5. a first champion (``driftloop train``) when the registry has none,
6. the inference service (``serving.server``, what ``driftloop serve`` runs),
7. the Evidently UI on the workspace.

Everything lives under ``ROOT/.driftloop/stack/``: one log per process, ``stack.pids`` and
``state.json`` recording exactly what was started (pid = process group, command, port, URL).
:func:`stop_stack` stops those process groups and nothing else.

Every service runs unpatched, started with its own command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from driftloop.errors import DriftloopError

STATE_DIR = Path(".driftloop") / "stack"
STATE_FILE = "state.json"
PID_FILE = "stack.pids"
WORK_POOL = "driftloop"
HOST = "127.0.0.1"
ALL_SERVICES = ("prefect", "worker", "deploy", "mlflow", "train", "serve", "evidently")


class StackError(DriftloopError, RuntimeError):
    """A stack component failed to start or stop; the message names it and shows its log tail."""


@dataclass(frozen=True)
class StackPorts:
    """Loopback ports; 0 picks a free one (what tests use)."""

    prefect: int = 4200
    mlflow: int = 5000
    serve: int = 8000
    evidently: int = 8001
    worker_health: int = 0


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


@dataclass(frozen=True)
class StackState:
    """What :func:`start_stack` started, as written to ``state.json``."""

    root: str
    state_dir: str
    started_at: str
    backend: str  # "sqlite" or "postgresql"
    prefect_api_url: str | None = None
    prefect_ui_url: str | None = None
    mlflow_url: str | None = None
    serve_url: str | None = None
    evidently_url: str | None = None
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
        }
        return {k: v for k, v in found.items() if v}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> StackState:
        raw = json.loads(text)
        raw["services"] = [ServiceRecord(**s) for s in raw.get("services", [])]
        return cls(**raw)


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------


def is_postgres_url(url: str | None) -> bool:
    """True for ``postgresql://`` / ``postgresql+driver://`` / ``postgres://`` URLs."""
    return bool(url) and urlsplit(url).scheme.split("+")[0] in {"postgresql", "postgres"}


def with_database(url: str, *, driver: str | None, database: str) -> str:
    """The same server URL with another driver and database name.

    >>> with_database("postgresql://u@h:5432/d", driver="asyncpg", database="d_prefect")
    'postgresql+asyncpg://u@h:5432/d_prefect'
    """
    parts = urlsplit(url)
    scheme = "postgresql" + (f"+{driver}" if driver else "")
    return urlunsplit((scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def database_name(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    if not name:
        raise StackError(f"DRIFTLOOP_STACK_DB={redact(url)} names no database (…/DBNAME)")
    return name


def backend_urls(db_url: str | None, state_dir: Path) -> dict[str, str]:
    """Database URLs for Prefect, MLflow and driftloop's inference log.

    PostgreSQL: Prefect and MLflow each get their own database next to ``db_url`` (both use an
    ``alembic_version`` table, so they cannot share one); the inference log uses ``db_url``.
    Drivers are explicit: SQLAlchemy 2.1's default for ``postgresql://`` is psycopg 3, which is
    not installed (psycopg2-binary and asyncpg are).
    SQLite: three files under ``state_dir``.
    """
    if is_postgres_url(db_url):
        assert db_url is not None
        name = database_name(db_url)
        return {
            "prefect": with_database(db_url, driver="asyncpg", database=f"{name}_prefect"),
            "mlflow": with_database(db_url, driver="psycopg2", database=f"{name}_mlflow"),
            "driftloop": with_database(db_url, driver="psycopg2", database=name),
        }
    if db_url:
        raise StackError(
            f"DRIFTLOOP_STACK_DB={redact(db_url)} is not a PostgreSQL URL; "
            "unset it for SQLite or use postgresql://USER@HOST:PORT/DB"
        )
    state_dir = state_dir.resolve()
    return {
        "prefect": f"sqlite+aiosqlite:///{state_dir / 'prefect.db'}",
        "mlflow": f"sqlite:///{state_dir / 'mlflow.db'}",
        "driftloop": f"sqlite:///{state_dir / 'driftloop.db'}",
    }


def redact(url: str) -> str:
    """A URL with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def deployment_names(prefect_yaml: Path) -> list[str]:
    """Deployment names declared in a prefect.yaml (flow names come from the code, not here)."""
    import yaml

    raw = yaml.safe_load(prefect_yaml.read_text()) or {}
    return [str(dep["name"]) for dep in raw.get("deployments") or []]


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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def _proc_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_alive(record: ServiceRecord) -> bool:
    """The recorded process is still running (and is the same process, not a reused pid)."""
    start = _proc_start_time(record.pid)
    if start is None:
        return False
    return record.proc_start is None or start == record.proc_start


def http_ok(url: str, timeout: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


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
        out.write(f"\n=== {_now()} {' '.join(command)}\n".encode())
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
        started_at=_now(),
        proc_start=_proc_start_time(proc.pid),
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
        out.write(f"\n=== {_now()} {' '.join(command)}\n{output}\n=== exit {code}\n")
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


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


# ---------------------------------------------------------------------------------------------
# State files
# ---------------------------------------------------------------------------------------------


def state_dir_for(root: Path) -> Path:
    return Path(root).resolve() / STATE_DIR


def write_state(state: StackState) -> None:
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


# ---------------------------------------------------------------------------------------------
# Steps that need the services
# ---------------------------------------------------------------------------------------------


def ensure_postgres_databases(db_url: str, names: Sequence[str]) -> list[str]:
    """Create the named databases on ``db_url``'s server when missing; return those created."""
    import sqlalchemy as sa

    admin = sa.create_engine(
        with_database(db_url, driver="psycopg2", database=database_name(db_url)),
        isolation_level="AUTOCOMMIT",
    )
    created = []
    try:
        with admin.connect() as conn:
            for name in names:
                exists = conn.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).scalar()
                if not exists:
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                    created.append(name)
    except sa.exc.OperationalError as exc:
        raise StackError(
            f"PostgreSQL at {redact(db_url)} is not reachable ({exc.orig}); "
            "start it or unset DRIFTLOOP_STACK_DB to use SQLite"
        ) from None
    finally:
        admin.dispose()
    return created


def prefect_deployments(api_url: str) -> list[str]:
    """``flow/deployment`` names registered on the Prefect server at ``api_url``."""
    import httpx

    with httpx.Client(base_url=api_url, timeout=10) as client:
        deployments = client.post("/deployments/filter", json={"limit": 200}).json()
        flow_ids = sorted({d["flow_id"] for d in deployments})
        flows = client.post("/flows/filter", json={"flows": {"id": {"any_": flow_ids}}}).json()
    flow_names = {f["id"]: f["name"] for f in flows}
    return sorted(f"{flow_names.get(d['flow_id'], '?')}/{d['name']}" for d in deployments)


def worker_online(api_url: str, pool: str) -> bool:
    import httpx

    try:
        response = httpx.post(
            f"{api_url}/work_pools/{pool}/workers/filter",
            json={"workers": {"status": {"any_": ["ONLINE"]}}, "limit": 10},
            timeout=5,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and bool(response.json())


def champion_exists(mlflow_url: str, model_name: str) -> bool:
    """The registry at ``mlflow_url`` has a ``champion`` alias for ``model_name``."""
    import httpx

    response = httpx.get(
        f"{mlflow_url}/api/2.0/mlflow/registered-models/alias",
        params={"name": model_name, "alias": "champion"},
        timeout=10,
    )
    return response.status_code == 200


def model_name_of(config_path: Path) -> str:
    import yaml

    raw = yaml.safe_load(config_path.read_text()) or {}
    name = raw.get("model_name")
    if not name:
        raise StackError(f"{config_path} has no model_name")
    return str(name)


def _python() -> str:
    return sys.executable


def _cli(*args: str) -> list[str]:
    """Run driftloop's CLI with this interpreter (no dependence on the console script)."""
    return [_python(), "-c", "import sys; from driftloop.cli import app; sys.exit(app())", *args]


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def start_stack(
    root: Path,
    *,
    ports: StackPorts = StackPorts(),
    db_url: str | None = None,
    config: str = "driftloop.yaml",
    services: Sequence[str] = ALL_SERVICES,
    env: Mapping[str, str] | None = None,
    timeout: float = 180.0,
    train_timeout: float = 1800.0,
    worker_query_seconds: float | None = None,
    echo: Callable[[str], None] = print,
) -> StackState:
    """Start the stack for the repo checkout at ``root`` and return what was started.

    Args:
        root: the directory holding prefect.yaml, the config and the flows (the worker's cwd).
        ports: loopback ports (0 = any free port). A busy fixed port is an error.
        db_url: PostgreSQL URL for Prefect/MLflow/the inference log (``DRIFTLOOP_STACK_DB``);
            None = SQLite files under ``root/.driftloop/stack``.
        config: the driftloop config, relative to ``root``.
        services: which of :data:`ALL_SERVICES` to start (tests start a subset).
        env: extra environment for every process.
        worker_query_seconds: how often the worker polls (Prefect's default is 10 s).

    Raises:
        StackError: a stack is already running, a port is busy, or a component failed; what
            was started before the failure is stopped again.
    """
    root = Path(root).resolve()
    unknown = set(services) - set(ALL_SERVICES)
    if unknown:
        raise StackError(f"unknown stack services {sorted(unknown)}; choose from {ALL_SERVICES}")
    state_dir = state_dir_for(root)
    previous = read_state(root)
    if previous and any(is_alive(s) for s in previous.services):
        raise StackError(
            f"a stack is already running from {state_dir} (run `driftloop stack down` first)"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    log_dir = state_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    want = set(services)

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
    urls = backend_urls(db_url, state_dir)
    if is_postgres_url(db_url):
        assert db_url is not None
        base = database_name(db_url)
        ensure_postgres_databases(db_url, [f"{base}_prefect", f"{base}_mlflow"])

    prefect_url = f"http://{HOST}:{chosen['prefect']}"
    mlflow_url = f"http://{HOST}:{chosen['mlflow']}"
    child_env = {
        **os.environ,
        **(env or {}),
        "PREFECT_HOME": str(state_dir / "prefect-home"),
        "PREFECT_API_URL": f"{prefect_url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": urls["prefect"],
        "DRIFTLOOP_HOME": str(root),
        "DRIFTLOOP_DATABASE_URL": urls["driftloop"],
        "DRIFTLOOP_WORKSPACE": str(root / "evidently-workspace"),
        "PYTHONUNBUFFERED": "1",
    }
    if "mlflow" in want:
        child_env["MLFLOW_TRACKING_URI"] = mlflow_url
        # The server rejects an explicit `mlflow-artifacts://` experiment location; experiments
        # created without one get `mlflow-artifacts:/<id>` (proxied). driftloop passes a location,
        # so point it at the directory the server proxies: same files either way.
        child_env["DRIFTLOOP_ARTIFACT_ROOT"] = str(root / "mlruns")
        child_env["DRIFTLOOP_MLFLOW_UI_URL"] = mlflow_url
    state = StackState(
        root=str(root),
        state_dir=str(state_dir),
        started_at=_now(),
        backend="postgresql" if is_postgres_url(db_url) else "sqlite",
        env={
            k: (redact(v) if "DATABASE" in k else v)
            for k, v in child_env.items()
            if k.startswith(("PREFECT_API_URL", "MLFLOW_", "DRIFTLOOP_", "PREFECT_HOME"))
            or k == "PREFECT_API_DATABASE_CONNECTION_URL"
        },
    )
    write_state(state)

    def started(record: ServiceRecord) -> ServiceRecord:
        nonlocal state
        state = replace(state, services=[*state.services, record])
        write_state(state)
        return record

    def note(text: str) -> None:
        nonlocal state
        state = replace(state, notes=[*state.notes, text])
        write_state(state)
        echo(f"note: {text}")

    try:
        if "prefect" in want:
            echo(f"starting Prefect server on {prefect_url} ({state.backend})")
            record = started(
                spawn(
                    "prefect-server",
                    [
                        _python(),
                        "-m",
                        "prefect",
                        "server",
                        "start",
                        "--host",
                        HOST,
                        "--port",
                        str(chosen["prefect"]),
                    ],
                    cwd=root,
                    env=child_env,
                    log_dir=log_dir,
                    url=prefect_url,
                    health_url=f"{prefect_url}/api/health",
                )
            )
            wait_healthy(record, timeout=timeout)
            state = replace(state, prefect_api_url=f"{prefect_url}/api", prefect_ui_url=prefect_url)
            write_state(state)

        prefect_cli = [_python(), "-m", "prefect"]
        if {"worker", "deploy"} & want:
            run_step(
                "work-pool",
                [*prefect_cli, "work-pool", "create", WORK_POOL, "--type", "process"],
                cwd=root,
                env=child_env,
                log_dir=log_dir,
                timeout=120,
                ok_if=lambda out: "already exists" in out,
            )
        if "worker" in want:
            echo(f"starting process worker for pool {WORK_POOL!r}")
            worker_env = {
                **child_env,
                "PREFECT_WORKER_WEBSERVER_HOST": HOST,
                "PREFECT_WORKER_WEBSERVER_PORT": str(chosen["worker_health"]),
            }
            if worker_query_seconds is not None:
                worker_env["PREFECT_WORKER_QUERY_SECONDS"] = str(worker_query_seconds)
            health = f"http://{HOST}:{chosen['worker_health']}/health"
            record = started(
                spawn(
                    "worker",
                    [
                        *prefect_cli,
                        "worker",
                        "start",
                        "--pool",
                        WORK_POOL,
                        "--type",
                        "process",
                        "--with-healthcheck",
                    ],
                    cwd=root,
                    env=worker_env,
                    log_dir=log_dir,
                    health_url=health,
                )
            )
            api = f"{prefect_url}/api"
            wait_healthy(
                record,
                timeout=timeout,
                check=lambda: http_ok(health) and worker_online(api, WORK_POOL),
            )
        if "deploy" in want:
            prefect_yaml = root / "prefect.yaml"
            if not prefect_yaml.is_file():
                raise StackError(f"{prefect_yaml} is missing: nothing to deploy")
            echo("prefect deploy --all")
            run_step(
                "deploy",
                [*prefect_cli, "--no-prompt", "deploy", "--all"],
                cwd=root,
                env=child_env,
                log_dir=log_dir,
                timeout=300,
            )
            expected = deployment_names(prefect_yaml)
            found = prefect_deployments(f"{prefect_url}/api")
            missing = sorted(set(expected) - {name.split("/", 1)[1] for name in found})
            if missing:
                raise StackError(
                    f"prefect deploy --all did not create {missing}; see {log_dir / 'deploy.log'}"
                )
            state = replace(state, deployments=found)
            write_state(state)

        if "mlflow" in want:
            echo(f"starting MLflow tracking server on {mlflow_url}")
            artifacts = root / "mlruns"
            artifacts.mkdir(exist_ok=True)
            record = started(
                spawn(
                    "mlflow",
                    [
                        _python(),
                        "-m",
                        "mlflow",
                        "server",
                        "--host",
                        HOST,
                        "--port",
                        str(chosen["mlflow"]),
                        "--backend-store-uri",
                        urls["mlflow"],
                        "--serve-artifacts",
                        "--artifacts-destination",
                        artifacts.as_uri(),
                        "--workers",
                        "1",
                    ],
                    cwd=root,
                    env=child_env,
                    log_dir=log_dir,
                    url=mlflow_url,
                    health_url=f"{mlflow_url}/health",
                )
            )
            wait_healthy(record, timeout=timeout)
            state = replace(state, mlflow_url=mlflow_url)
            write_state(state)

        config_path = root / config
        has_champion = False
        if "train" in want or "serve" in want:
            model_name = model_name_of(config_path)
            has_champion = "mlflow" in want and champion_exists(mlflow_url, model_name)
        if "train" in want and not has_champion:
            echo(f"no champion for {model_name!r}: training one (driftloop train)")
            try:
                run_step(
                    "train",
                    _cli("train", "--config", str(config_path)),
                    cwd=root,
                    env=child_env,
                    log_dir=log_dir,
                    timeout=train_timeout,
                )
            except StackError as exc:
                note(
                    f"training the first champion failed, the inference service stays unready: {exc}"
                )
            has_champion = "mlflow" in want and champion_exists(mlflow_url, model_name)

        if "serve" in want:
            serve_url = f"http://{HOST}:{chosen['serve']}"
            echo(f"starting inference service on {serve_url}")
            record = started(
                spawn(
                    "serve",
                    [
                        _python(),
                        "-m",
                        "serving.server",
                        "--config",
                        str(config_path),
                        "--host",
                        HOST,
                        "--port",
                        str(chosen["serve"]),
                    ],
                    cwd=root,
                    env=child_env,
                    log_dir=log_dir,
                    url=serve_url,
                    health_url=f"{serve_url}/ready" if has_champion else f"{serve_url}/health",
                )
            )
            if not has_champion:
                note("no champion in the registry: /ready answers 503 until one is promoted")
            wait_healthy(record, timeout=timeout)
            state = replace(state, serve_url=serve_url)
            write_state(state)

        if "evidently" in want:
            ev_url = f"http://{HOST}:{chosen['evidently']}"
            workspace = root / "evidently-workspace"
            workspace.mkdir(exist_ok=True)
            echo(f"starting Evidently UI on {ev_url}")
            record = started(
                spawn(
                    "evidently",
                    [
                        _python(),
                        "-m",
                        "evidently.cli",
                        "ui",
                        "--workspace",
                        str(workspace),
                        "--host",
                        HOST,
                        "--port",
                        str(chosen["evidently"]),
                    ],
                    cwd=root,
                    env=child_env,
                    log_dir=log_dir,
                    url=ev_url,
                    health_url=f"{ev_url}/api/version",
                )
            )
            wait_healthy(record, timeout=timeout)
            state = replace(state, evidently_url=ev_url)
            write_state(state)
    except BaseException:
        stop_stack(root, echo=lambda _: None)
        raise

    for label, url in state.urls().items():
        echo(f"{label:<14} {url}")
    return state


def stop_stack(root: Path, *, echo: Callable[[str], None] = print) -> list[str]:
    """Stop exactly the processes recorded in ``state.json`` (newest first); return their names."""
    state = read_state(root)
    if state is None:
        return []
    stopped = []
    for record in reversed(state.services):
        if terminate(record):
            stopped.append(record.name)
            echo(f"stopped {record.name} (pid {record.pid})")
    write_state(replace(state, services=[]))
    (Path(state.state_dir) / PID_FILE).unlink(missing_ok=True)
    history = Path(state.state_dir) / "last-stopped.json"
    history.write_text(json.dumps({**asdict(state), "stopped_at": _now()}, indent=2))
    return stopped


def stack_status(root: Path) -> dict[str, Any]:
    """Each recorded service: pid, alive, healthy, URL; plus the stack's URLs and notes."""
    state = read_state(root)
    if state is None or not state.services:
        return {"running": False, "services": {}, "urls": {}, "notes": []}
    services = {}
    for record in state.services:
        alive = is_alive(record)
        services[record.name] = {
            "pid": record.pid,
            "alive": alive,
            "healthy": bool(alive and record.health_url and http_ok(record.health_url)),
            "url": record.url,
            "log": record.log,
        }
    return {
        "running": any(s["alive"] for s in services.values()),
        "services": services,
        "urls": state.urls(),
        "deployments": state.deployments,
        "notes": state.notes,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m driftloop.stack up|down|status``."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else "status"
    root = Path(args[1]) if len(args) > 1 else Path.cwd()
    try:
        if command == "up":
            start_stack(root, db_url=os.environ.get("DRIFTLOOP_STACK_DB") or None)
        elif command == "down":
            if not stop_stack(root):
                print("nothing to stop")
        elif command == "status":
            print(json.dumps(stack_status(root), indent=2))
        else:
            raise SystemExit(
                f"usage: python -m driftloop.stack up|down|status [ROOT] (got {command})"
            )
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
