"""The stack's databases: backend URLs, redaction, the PostgreSQL URL rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftloop.stack.backends import backend_urls, is_postgres_url, redact, with_database
from driftloop.stack.processes import StackError


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
