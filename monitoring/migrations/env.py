"""Alembic environment for the driftloop tables.

Runs with a connection handed in by `monitoring.store.upgrade_database` (config.attributes
["connection"]), or, from the command line, with the URL from the config or DRIFTLOOP_DATABASE_URL.
"""

from __future__ import annotations

import os

from alembic import context

from monitoring.store import Base, make_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return (
        config.get_main_option("sqlalchemy.url")
        or os.environ.get("DRIFTLOOP_DATABASE_URL")
        or "sqlite:///driftloop.db"
    )


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
