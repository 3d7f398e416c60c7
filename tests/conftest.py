"""Fixtures shared by every test package: the shipped data, temporary stores, PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "employment"
POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def employment_reference() -> pd.DataFrame:
    return pd.read_parquet(DATA / "reference_2015.parquet")


@pytest.fixture
def mlflow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh MLflow store (SQLite) and artifact root in tmp_path, set in the environment."""
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "DRIFTLOOP_ARTIFACT_ROOT": str(tmp_path / "mlruns"),
        "DRIFTLOOP_DATABASE_URL": f"sqlite:///{tmp_path / 'driftloop.db'}",
        "DRIFTLOOP_WORKSPACE": str(tmp_path / "workspace"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database on the real server; dropped afterwards."""
    name = f"driftloop_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:  # pragma: no cover - the server is part of the machine
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is not reachable: {exc}")
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
