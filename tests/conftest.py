"""Fixtures shared by every test package: the shipped data, temporary stores, PostgreSQL, and
helpers that tamper with a local artifact store the way an attacker would."""

from __future__ import annotations

import atexit
import functools
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "employment"
POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@functools.cache
def _migrated_prefect_db() -> Path:
    """A Prefect database migrated to the installed Prefect's head, made once per test session
    (`prefect server database upgrade`), removed when the session's process exits."""
    home = Path(tempfile.mkdtemp(prefix="driftloop-prefect-template-"))
    atexit.register(shutil.rmtree, home, True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    subprocess.run(
        [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
        env={**env, "PREFECT_HOME": str(home)},
        check=True,
        capture_output=True,
        timeout=600,
    )
    return home / "prefect.db"


def fresh_prefect_home(path: Path) -> Path:
    """A new ``PREFECT_HOME`` at ``path`` holding a copy of a freshly migrated, empty Prefect
    database: the ephemeral server a command starts on it skips the migrations (about 10 of its
    25 s start here). Copied with SQLite's backup API, so nothing in a WAL file is left out."""
    path.mkdir(parents=True, exist_ok=True)
    with (
        sqlite3.connect(_migrated_prefect_db()) as source,
        sqlite3.connect(path / "prefect.db") as target,
    ):
        source.backup(target)
    return path


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


# --------------------------------------------------------------------------- tampering
# What an attacker with write access to a local (file://) artifact store does to a version.


def stored_model_dir(client: Any, name: str, version: int | str) -> Path:
    """A version's model directory inside the local artifact store (not a copy)."""
    uri = client.get_model_version_download_uri(name, str(version))
    return Path(unquote(urlparse(uri).path))


def stored_reference(client: Any, name: str, version: int | str) -> Path:
    """A version's reference snapshot inside the local artifact store (not a copy)."""
    run = client.get_run(client.get_model_version(name, str(version)).run_id)
    return Path(unquote(urlparse(run.info.artifact_uri).path)) / "reference" / "reference.parquet"


def raise_a_coefficient(model_dir: Path) -> None:
    """Rewrite model.skops, with skops, as the same Pipeline with its first coefficient raised."""
    import skops.io

    path = model_dir / "model.skops"
    pipeline = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    pipeline[-1].coef_[0, 0] += 5.0
    skops.io.dump(pipeline, path)


class OpensMarker:
    """Unpickling this calls open(marker, "w"): the marker file proves that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


def swap_in_pickle(model_dir: Path, marker: Path) -> None:
    """Edit MLmodel to `serialization_format: cloudpickle` with a pickle that creates `marker`."""
    mlmodel_path = model_dir / "MLmodel"
    mlmodel = yaml.safe_load(mlmodel_path.read_text())
    mlmodel["flavors"]["sklearn"].update(
        serialization_format="cloudpickle", pickled_model="model.pkl"
    )
    mlmodel["flavors"]["python_function"]["model_path"] = "model.pkl"
    mlmodel_path.write_text(yaml.safe_dump(mlmodel))
    (model_dir / "model.pkl").write_bytes(pickle.dumps(OpensMarker(marker)))
    (model_dir / "model.skops").unlink()


def rewrite_parquet(path: Path) -> None:
    """Change one value of a parquet file in place."""
    frame = pd.read_parquet(path)
    column = frame.select_dtypes("number").columns[0]
    frame.loc[0, column] = frame.loc[0, column] + 1
    frame.to_parquet(path, index=False)
