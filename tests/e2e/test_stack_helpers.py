"""The stack's pure helpers: backend URLs, redaction, deployment names, state round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftloop.stack import (
    ServiceRecord,
    StackError,
    StackState,
    backend_urls,
    deployment_names,
    is_postgres_url,
    redact,
    stop_stack,
    with_database,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/d", True),
        ("postgresql+psycopg2://u@h:5432/d", True),
        ("postgres://u@h/d", True),
        ("sqlite:///x.db", False),
        ("", False),
        (None, False),
    ],
)
def test_is_postgres_url(url: str | None, expected: bool) -> None:
    assert is_postgres_url(url) is expected


def test_postgres_backend_gives_prefect_and_mlflow_their_own_databases(tmp_path: Path) -> None:
    urls = backend_urls("postgresql+psycopg2://postgres@127.0.0.1:5432/test", tmp_path)
    assert urls == {
        "prefect": "postgresql+asyncpg://postgres@127.0.0.1:5432/test_prefect",
        "mlflow": "postgresql+psycopg2://postgres@127.0.0.1:5432/test_mlflow",
        "driftloop": "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
    }


def test_sqlite_backend_keeps_files_in_the_state_dir(tmp_path: Path) -> None:
    urls = backend_urls(None, tmp_path)
    assert urls["prefect"] == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'prefect.db'}"
    assert urls["mlflow"].endswith("/mlflow.db") and urls["driftloop"].endswith("/driftloop.db")


@pytest.mark.parametrize("url", ["mysql://u@h/d", "postgresql://u@h", "postgresql://u@h/"])
def test_unusable_stack_db_is_named_in_the_error(url: str, tmp_path: Path) -> None:
    with pytest.raises(StackError, match="DRIFTLOOP_STACK_DB"):
        backend_urls(url, tmp_path)


def test_with_database_keeps_credentials_and_query() -> None:
    url = "postgresql+psycopg2://u:pw@h:5433/main?sslmode=disable"
    assert with_database(url, driver="asyncpg", database="x") == (
        "postgresql+asyncpg://u:pw@h:5433/x?sslmode=disable"
    )


def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql://u:secret@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact("postgresql://u@h/d") == "postgresql://u@h/d"


def test_deployment_names_come_from_prefect_yaml(tmp_path: Path) -> None:
    (tmp_path / "prefect.yaml").write_text(
        "deployments:\n"
        "  - name: nightly\n    entrypoint: flows/monitor.py:monitor\n"
        "  - name: retrain\n    entrypoint: flows/retrain.py:retrain\n"
    )
    assert deployment_names(tmp_path / "prefect.yaml") == ["nightly", "retrain"]


def test_state_round_trips_through_json(tmp_path: Path) -> None:
    state = StackState(
        root=str(tmp_path),
        state_dir=str(tmp_path),
        started_at="t",
        backend="sqlite",
        prefect_ui_url="http://127.0.0.1:1",
        services=[ServiceRecord(name="x", pid=1, command=["a"], log="l", proc_start=5)],
    )
    assert StackState.from_json(state.to_json()) == state
    assert state.urls() == {"Prefect UI": "http://127.0.0.1:1"}


def test_stop_without_a_stack_stops_nothing(tmp_path: Path) -> None:
    assert stop_stack(tmp_path, echo=lambda _: None) == []


def test_stop_stops_exactly_the_recorded_process_groups(tmp_path: Path) -> None:
    import subprocess
    from dataclasses import replace

    from driftloop.stack import is_alive, spawn, write_state

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
