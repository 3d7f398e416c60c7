"""No acknowledged prediction is ever missing from the log: DB outages, a hanging database and
`kill -9` under load."""

from __future__ import annotations

import time
from typing import Any

import httpx
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
    return httpx.get(f"{server.url}/metrics", headers=server.headers()).text


def _metric_values(server: Any) -> dict[str, float]:
    return {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in _metrics(server).splitlines()
        if line.startswith("driftloop_")
    }


def _duplicates(url: str) -> list[Any]:
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT request_id, count(*) FROM inference_log "
                    "GROUP BY request_id HAVING count(*) > 1"
                )
            ).all()
    finally:
        engine.dispose()


TIMEOUT = 1.0  # serving.db_timeout_seconds in the frozen-database tests


@pytest.mark.slow
@pytest.mark.postgres
def test_a_frozen_database_does_not_stall_predict_and_each_acknowledged_row_lands_once(
    make_server: Any, registry_template: Registry, postgres_database: str
) -> None:
    proxy = TcpProxy("127.0.0.1", 5432).start()
    server = make_server(
        database_url=proxy.url(postgres_database),
        serving={"db_retry_seconds": 0.5, "db_timeout_seconds": TIMEOUT},
    )
    rows = records(registry_template.holdout, 30)
    acked: list[str] = []

    def predict(client: httpx.Client, row: dict[str, Any]) -> float:
        started = time.monotonic()
        response = client.post("/predict", json=row)
        assert response.status_code == 200, response.text
        acked.append(response.json()["predictions"][0]["request_id"])
        return time.monotonic() - started

    with httpx.Client(base_url=server.url, headers=server.headers(), timeout=30) as client:
        for row in rows[:5]:
            predict(client, row)
        proxy.freeze()  # connections accepted, nothing answered: no error ever comes back
        slowest = max(predict(client, row) for row in rows[5:20])
        assert slowest < 2 * TIMEOUT + 1.0  # a replay attempt and a write, each bounded
        during = _metric_values(server)
        assert during["driftloop_log_database_up"] == 0
        assert during["driftloop_spool_pending_files"] >= 1
        assert during["driftloop_spool_pending_rows"] >= 1
        assert list((server.config.parent / "spool").rglob("spool-*.jsonl"))
        proxy.restore()  # statements the abandoned calls sent now reach the server as well
        for row in rows[20:]:
            predict(client, row)
    found = wait_logged(postgres_database, set(acked))
    assert set(acked) <= found.keys()
    assert _duplicates(postgres_database) == []  # each acknowledged row exactly once
    deadline = time.monotonic() + 30
    while _metric_values(server)["driftloop_spool_pending_files"] > 0:
        assert time.monotonic() < deadline, "the spool was not emptied"
        time.sleep(0.2)
    assert _metric_values(server)["driftloop_log_database_up"] == 1


@pytest.mark.slow
@pytest.mark.postgres
def test_feedback_answers_503_within_the_bound_when_the_database_is_frozen(
    make_server: Any, registry_template: Registry, postgres_database: str
) -> None:
    proxy = TcpProxy("127.0.0.1", 5432).start()
    server = make_server(
        database_url=proxy.url(postgres_database), serving={"db_timeout_seconds": TIMEOUT}
    )
    row = records(registry_template.holdout, 1)[0]
    predicted = httpx.post(f"{server.url}/predict", json=row, headers=server.headers(), timeout=30)
    labels = {
        "labels": [{"request_id": predicted.json()["predictions"][0]["request_id"], "label": 1}]
    }
    first = httpx.post(f"{server.url}/feedback", json=labels, headers=server.headers(), timeout=30)
    assert first.status_code == 200  # the pool now holds a connection: the freeze hits it
    proxy.freeze()
    started = time.monotonic()
    response = httpx.post(
        f"{server.url}/feedback", json=labels, headers=server.headers(), timeout=30
    )
    assert time.monotonic() - started < TIMEOUT + 1.5
    assert response.status_code == 503
    assert "did not answer within serving.db_timeout_seconds=1 s" in response.json()["error"]
    assert "post them again later" in response.json()["error"]
    proxy.restore()
    again = httpx.post(f"{server.url}/feedback", json=labels, headers=server.headers(), timeout=30)
    assert again.status_code == 200 and again.json()["updated"] == 1
