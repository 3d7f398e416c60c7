"""Up and down without servers: what start refuses before starting anything, what the children's
environment holds, and that stop signals exactly the recorded process groups."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from driftloop.stack import StackError, StackPorts, start_stack, stop_stack
from driftloop.stack.lifecycle import child_environment, recorded_env
from driftloop.stack.processes import ServiceRecord, is_alive, spawn
from driftloop.stack.state import StackState, read_state, write_state


def test_stop_without_a_stack_stops_nothing(tmp_path: Path) -> None:
    assert stop_stack(tmp_path, echo=lambda _: None) == []


def test_stop_stops_exactly_the_recorded_process_groups(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    ours = spawn("sleeper", ["sleep", "300"], cwd=tmp_path, env={}, log_dir=logs)
    # same pid recorded with another start time: a reused pid must never be signalled
    impostor = subprocess.Popen(["sleep", "300"], start_new_session=True)
    reused = ServiceRecord(name="reused", pid=impostor.pid, command=["sleep"], log="", proc_start=1)
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        state_dir = tmp_path / ".driftloop" / "stack"
        state_dir.mkdir(parents=True)
        state = StackState(
            root=str(tmp_path), state_dir=str(state_dir), started_at="t", backend="sqlite"
        )
        write_state(replace(state, services=[reused, ours]))
        assert stop_stack(tmp_path, echo=lambda _: None) == ["sleeper"]
        assert not is_alive(ours)
        assert impostor.poll() is None and other.poll() is None
        assert stop_stack(tmp_path, echo=lambda _: None) == []
    finally:
        impostor.kill()
        other.kill()
        impostor.wait()
        other.wait()


def test_unknown_services_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="unknown stack services \\['grafana'\\]"):
        start_stack(tmp_path, services=("prefect", "grafana"), echo=lambda _: None)
    assert read_state(tmp_path) is None


def test_a_busy_fixed_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} for mlflow is already in use"):
            start_stack(
                tmp_path,
                ports=StackPorts(prefect=0, mlflow=port, serve=0, evidently=0),
                echo=lambda _: None,
            )
    assert read_state(tmp_path) is None


def test_children_get_the_stack_settings_and_state_keeps_them_redacted(tmp_path: Path) -> None:
    databases = {
        "prefect": "postgresql+asyncpg://u:pw@h/d_prefect",
        "mlflow": "postgresql+psycopg2://u:pw@h/d_mlflow",
        "driftloop": "postgresql+psycopg2://u:pw@h/d",
    }
    env = child_environment(
        tmp_path,
        tmp_path / "state",
        ports={"prefect": 4201, "mlflow": 5001},
        databases=databases,
        with_mlflow=True,
        extra={"EXTRA": "1"},
    )
    assert env["EXTRA"] == "1"
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4201/api"
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"] == databases["prefect"]
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5001"
    assert env["DRIFTLOOP_DATABASE_URL"] == databases["driftloop"]
    kept = recorded_env(env)
    assert "EXTRA" not in kept and "PATH" not in kept
    assert kept["PREFECT_API_DATABASE_CONNECTION_URL"] == "postgresql+asyncpg://u:***@h/d_prefect"
    assert kept["DRIFTLOOP_DATABASE_URL"] == "postgresql+psycopg2://u:***@h/d"


def test_children_get_no_mlflow_settings_without_the_mlflow_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    env = child_environment(
        tmp_path,
        tmp_path / "state",
        ports={"prefect": 4201, "mlflow": 5001},
        databases={"prefect": "sqlite+aiosqlite:///p.db", "driftloop": "sqlite:///d.db"},
        with_mlflow=False,
    )
    assert "MLFLOW_TRACKING_URI" not in env
    assert env["DRIFTLOOP_HOME"] == str(tmp_path)


def test_children_get_no_prefect_api_without_the_prefect_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    env = child_environment(
        tmp_path,
        tmp_path / "state",
        ports={"prefect": 4201, "mlflow": 5001},
        databases={"prefect": "sqlite+aiosqlite:///p.db", "driftloop": "sqlite:///d.db"},
        with_mlflow=True,
        with_prefect=False,
    )
    assert "PREFECT_API_URL" not in env  # flows then run on a temporary local Prefect
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in env
    assert env["PREFECT_HOME"] == str(tmp_path / "state" / "prefect-home")
