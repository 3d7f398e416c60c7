"""Up, down, status: :func:`start_stack` starts the services in order and records each one,
:func:`stop_stack` stops exactly what was recorded, :func:`stack_status` reports on it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from driftloop.stack import (
    alerting,
    dask_cluster,
    evidently_ui,
    inference,
    mlflow_server,
    prefect_server,
)
from driftloop.stack.alerting import AlertingOptions
from driftloop.stack.backends import is_postgres_url, prepare_backend, redact
from driftloop.stack.launch import Launch, StackPorts, choose_ports
from driftloop.stack.processes import HOST, StackError, http_ok, is_alive, now, terminate
from driftloop.stack.state import PID_FILE, StackState, read_state, state_dir_for, write_state

ALL_SERVICES = (
    "dask",
    "prefect",
    "worker",
    "deploy",
    "mlflow",
    "train",
    "serve",
    "evidently",
    "alertmanager",
    "prometheus",
)


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
    alerting_options: AlertingOptions = AlertingOptions(),
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
        timeout: how long each service may take to become healthy.
        train_timeout: how long training the first champion may take.
        worker_query_seconds: how often the worker polls (Prefect's default is 10 s).
        alerting_options: Prometheus' and Alertmanager's webhook, intervals and rule durations.

    Raises:
        StackError: a stack is already running, a port is busy, or a component failed; what
            was started before the failure is stopped again.
    """
    root = Path(root).resolve()
    want = _known_services(services)
    launch = _prepare(
        root, ports=ports, db_url=db_url, want=want, env=env, timeout=timeout, echo=echo
    )
    config_path = root / config
    try:
        if "dask" in want:
            dask_cluster.start_cluster(launch)
        if "prefect" in want:
            prefect_server.start_server(launch)
        if {"worker", "deploy"} & want:
            prefect_server.create_work_pool(launch)
        if "worker" in want:
            prefect_server.start_worker(launch, query_seconds=worker_query_seconds)
        if "deploy" in want:
            prefect_server.deploy_all(launch)
        if "mlflow" in want:
            mlflow_server.start_server(launch, backend_store_uri=launch.databases["mlflow"])
        has_champion = False
        if {"train", "serve"} & want:
            has_champion = inference.ensure_champion(
                launch,
                config_path,
                registry_url=launch.url("mlflow") if "mlflow" in want else None,
                train="train" in want,
                timeout=train_timeout,
            )
        if "serve" in want:
            inference.start_service(launch, config_path, has_champion=has_champion)
        if "evidently" in want:
            evidently_ui.start_ui(launch)
        if "alertmanager" in want:
            alerting.start_alertmanager(launch, alerting_options)
        if "prometheus" in want:
            alerting.start_prometheus(launch, alerting_options)
    except BaseException:
        stop_stack(root, echo=lambda _: None)
        raise
    for label, url in launch.state.urls().items():
        echo(f"{label:<14} {url}")
    return launch.state


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
    history.write_text(json.dumps({**asdict(state), "stopped_at": now()}, indent=2))
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


def _known_services(services: Sequence[str]) -> set[str]:
    unknown = set(services) - set(ALL_SERVICES)
    if unknown:
        raise StackError(f"unknown stack services {sorted(unknown)}; choose from {ALL_SERVICES}")
    return set(services)


def _prepare(
    root: Path,
    *,
    ports: StackPorts,
    db_url: str | None,
    want: set[str],
    env: Mapping[str, str] | None,
    timeout: float,
    echo: Callable[[str], None],
) -> Launch:
    """Refuse a second stack; make the state directory, choose ports and databases, write the
    first ``state.json``. Nothing is started yet."""
    state_dir = state_dir_for(root)
    previous = read_state(root)
    if previous and any(is_alive(s) for s in previous.services):
        raise StackError(
            f"a stack is already running from {state_dir} (run `driftloop stack down` first)"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    log_dir = state_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    chosen = choose_ports(ports)
    databases = prepare_backend(db_url, state_dir)
    child_env = child_environment(
        root,
        state_dir,
        ports=chosen,
        databases=databases,
        with_mlflow="mlflow" in want,
        with_prefect="prefect" in want,
        with_dask="dask" in want,
        extra=env,
    )
    state = StackState(
        root=str(root),
        state_dir=str(state_dir),
        started_at=now(),
        backend="postgresql" if is_postgres_url(db_url) else "sqlite",
        env=recorded_env(child_env),
    )
    write_state(state)
    return Launch(
        root=root,
        log_dir=log_dir,
        ports=chosen,
        databases=databases,
        env=child_env,
        state=state,
        timeout=timeout,
        echo=echo,
    )


def child_environment(
    root: Path,
    state_dir: Path,
    *,
    ports: Mapping[str, int],
    databases: Mapping[str, str],
    with_mlflow: bool,
    with_prefect: bool = True,
    with_dask: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of every process the stack starts: this one's, ``extra``, then the
    stack's own Prefect (``with_prefect``; else only its PREFECT_HOME, so flows run on
    whatever Prefect the environment names, or a temporary local one), driftloop,
    (``with_mlflow``) MLflow and (``with_dask``) the stack's Dask scheduler settings."""
    prefect = (
        prefect_server.client_env(
            api_url=f"http://{HOST}:{ports['prefect']}/api",
            database_url=databases["prefect"],
            home=state_dir / "prefect-home",
        )
        if with_prefect
        else {"PREFECT_HOME": str(state_dir / "prefect-home")}
    )
    env = {
        **os.environ,
        **(extra or {}),
        **prefect,
        "DRIFTLOOP_HOME": str(root),
        "DRIFTLOOP_DATABASE_URL": databases["driftloop"],
        "DRIFTLOOP_WORKSPACE": str(evidently_ui.workspace_dir(root)),
        "PYTHONUNBUFFERED": "1",
    }
    if with_mlflow:
        env.update(mlflow_server.client_env(url=f"http://{HOST}:{ports['mlflow']}", root=root))
    if with_dask:
        env["DRIFTLOOP_DASK_ADDRESS"] = dask_cluster.scheduler_address(ports["dask"])
    return env


def recorded_env(child_env: Mapping[str, str]) -> dict[str, str]:
    """The settings ``state.json`` keeps (Prefect's, MLflow's, driftloop's), database URLs redacted."""
    kept = ("PREFECT_API_URL", "MLFLOW_", "DRIFTLOOP_", "PREFECT_HOME")
    return {
        k: (redact(v) if "DATABASE" in k else v)
        for k, v in child_env.items()
        if k.startswith(kept) or k == "PREFECT_API_DATABASE_CONNECTION_URL"
    }
