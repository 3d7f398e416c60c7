"""The stack's databases: SQLite files under the state directory, or one PostgreSQL server
(``DRIFTLOOP_STACK_DB``) with a database each for Prefect, MLflow and the inference log."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from driftloop.stack.processes import StackError


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


def redact(url: str) -> str:
    """A URL with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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


def prepare_backend(db_url: str | None, state_dir: Path) -> dict[str, str]:
    """:func:`backend_urls`, after creating Prefect's and MLflow's PostgreSQL databases if missing."""
    urls = backend_urls(db_url, state_dir)
    if is_postgres_url(db_url):
        assert db_url is not None
        base = database_name(db_url)
        ensure_postgres_databases(db_url, [f"{base}_prefect", f"{base}_mlflow"])
    return urls


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
