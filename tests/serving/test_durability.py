"""No acknowledged prediction is ever missing from the log: DB outages and `kill -9` under load."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa

from monitoring import store
from tests.serving.conftest import Load, Registry, records
from tests.serving.proxy import TcpProxy


def logged(url: str) -> dict[str, int]:
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT request_id, model_version FROM inference_log")
            ).all()
    finally:
        engine.dispose()
    return {r.request_id: r.model_version for r in rows}


def wait_logged(url: str, ids: set[str], timeout: float = 60.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = logged(url)
        except sa.exc.OperationalError:
            found = {}
        if ids <= found.keys() or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def assert_all_logged(load: Load, found: dict[str, int]) -> None:
    acked = {a["request_id"] for a in load.acked}
    missing = acked - found.keys()
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged requests are not in the log"
    assert all(found[a["request_id"]] == a["model_version"] for a in load.acked)


@pytest.mark.slow
def test_kill_9_under_load_then_restart_loses_no_acknowledged_record(
    make_server: Any, registry_template: Registry
) -> None:
    server = make_server()
    url = server.env["DRIFTLOOP_DATABASE_URL"]
    load = Load(server, records(registry_template.holdout, 200), threads=6).start()
    load.wait_acked(300)
    server.kill9()
    load.stop()
    assert load.acked and set(load.statuses) == {200}
    server.start()  # same database, same spool directory
    assert_all_logged(load, wait_logged(url, {a["request_id"] for a in load.acked}))


@pytest.mark.slow
@pytest.mark.postgres
def test_database_unreachable_mid_load_then_restored(
    make_server: Any, registry_template: Registry, postgres_database: str
) -> None:
    proxy = TcpProxy("127.0.0.1", 5432).start()
    server = make_server(
        database_url=proxy.url(postgres_database), serving={"db_retry_seconds": 0.5}
    )
    load = Load(server, records(registry_template.holdout, 200), threads=4).start()
    load.wait_acked(100)
    proxy.cut()
    during = len(load.acked)
    load.wait_acked(during + 200)  # the service keeps answering: records go to the spool
    proxy.restore()
    load.wait_acked(len(load.acked) + 100)
    load.stop()
    assert set(load.statuses) == {200} and not load.failures
    found = wait_logged(postgres_database, {a["request_id"] for a in load.acked})
    assert_all_logged(load, found)
    metrics = {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in _metrics(server).splitlines()
        if line.startswith("driftloop_rows_")
    }
    assert metrics['driftloop_rows_logged_total{destination="spool"}'] > 0  # the outage was real
    assert (
        metrics["driftloop_rows_replayed_total"]
        == metrics['driftloop_rows_logged_total{destination="spool"}']
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_kill_9_while_the_database_is_down_replays_the_spool_on_restart(
    make_server: Any, registry_template: Registry, postgres_database: str
) -> None:
    proxy = TcpProxy("127.0.0.1", 5432).start()
    server = make_server(
        database_url=proxy.url(postgres_database), serving={"db_retry_seconds": 0.5}
    )
    load = Load(server, records(registry_template.holdout, 200), threads=4).start()
    load.wait_acked(50)
    proxy.cut()
    load.wait_acked(len(load.acked) + 200)
    server.kill9()
    load.stop()
    in_db = logged(postgres_database)
    assert len(in_db) < len(load.acked)  # some acknowledged rows exist only in the spool
    proxy.restore()
    server.start()
    assert_all_logged(load, wait_logged(postgres_database, {a["request_id"] for a in load.acked}))
    assert not list((server.config.parent / "spool").rglob("*.jsonl"))


def _metrics(server: Any) -> str:
    import httpx

    return httpx.get(f"{server.url}/metrics", headers=server.headers()).text
