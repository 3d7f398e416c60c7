"""The stack on PostgreSQL (`DRIFTLOOP_STACK_DB`): Prefect and MLflow each in their own database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from driftloop.stack import StackPorts, start_stack, stop_stack
from driftloop.stack.backends import with_database
from driftloop.stack.prefect_server import deployment_names
from tests.e2e.harness import REPO, link_repo

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
def stack_db(postgres_database: str) -> Iterator[str]:
    """A fresh database; the stack's `<name>_prefect` / `<name>_mlflow` are dropped afterwards."""
    yield postgres_database
    name = postgres_database.rsplit("/", 1)[1]
    admin = sa.create_engine(postgres_database, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for extra in (f"{name}_prefect", f"{name}_mlflow"):
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": extra},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{extra}"'))
    admin.dispose()


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_prefect_and_mlflow_servers_run_on_postgres(stack_db: str, tmp_path: Path) -> None:
    root = link_repo(tmp_path / "root")
    state = start_stack(
        root,
        ports=StackPorts(**{k: 0 for k in StackPorts.__dataclass_fields__}),
        db_url=stack_db,
        services=("prefect", "deploy", "mlflow"),
        echo=lambda _: None,
    )
    try:
        assert state.backend == "postgresql"
        deployed = {name.split("/", 1)[1] for name in state.deployments}
        assert set(deployment_names(REPO / "prefect.yaml")) <= deployed
        assert state.mlflow_url
        created = httpx.post(
            f"{state.mlflow_url}/api/2.0/mlflow/registered-models/create",
            json={"name": "stack-pg-probe"},
            timeout=10,
        )
        assert created.status_code == 200, created.text
        name = stack_db.rsplit("/", 1)[1]
        assert {"flow_run", "deployment"} <= tables(
            with_database(stack_db, driver="psycopg2", database=f"{name}_prefect")
        )
        assert {"registered_models", "runs"} <= tables(
            with_database(stack_db, driver="psycopg2", database=f"{name}_mlflow")
        )
    finally:
        assert stop_stack(root, echo=lambda _: None) == ["mlflow", "prefect-server"]
