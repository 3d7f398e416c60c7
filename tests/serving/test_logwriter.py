"""The group-commit writer against real databases: batching, backpressure, spool and replay."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitoring import store
from monitoring.spool import Spool
from serving.logwriter import LogWriter, WriterClosedError
from tests.serving.proxy import TcpProxy


def rec(i: int) -> dict:
    return store.log_record(
        request_id=f"w{i:06d}",
        ts=datetime.now(UTC),
        model_name="m",
        model_version=1,
        features={"x": float(i)},
        prediction=0,
        latency_ms=0.1,
    )


def logged_ids(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(sa.text("SELECT request_id FROM inference_log ORDER BY id")))


def wait_for(condition, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> sa.Engine:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store.upgrade_database(url)
    return store.make_engine(url)


def test_concurrent_records_are_committed_in_few_batches(
    sqlite_engine: sa.Engine, tmp_path: Path
) -> None:
    writer = LogWriter(sqlite_engine, Spool(tmp_path / "spool"), batch_rows=500)
    writer.start()
    futures = [writer.submit([rec(i)]) for i in range(2000)]
    assert {f.result(30) for f in futures} == {"database"}
    writer.close()
    assert logged_ids(sqlite_engine) == [f"w{i:06d}" for i in range(2000)]
    assert writer.stats.batches < 200  # group commit: far fewer transactions than records


def test_a_full_queue_makes_producers_wait(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    writer = LogWriter(sqlite_engine, Spool(tmp_path / "spool"), batch_rows=5, queue_rows=10)
    writer.start()
    blocker = sqlite_engine.connect()
    blocker.exec_driver_sql("BEGIN EXCLUSIVE")  # the writer's commit waits on the lock
    done = threading.Event()

    def produce() -> None:
        for i in range(40):
            writer.submit([rec(i)])
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    time.sleep(1.0)
    assert not done.is_set()  # backpressure: the producer is held back, nothing dropped
    assert writer.queue_depth <= 10
    blocker.rollback()
    blocker.close()
    assert done.wait(30)
    writer.close()
    assert len(logged_ids(sqlite_engine)) == 40


def test_closed_writer_refuses_records(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    writer = LogWriter(sqlite_engine, Spool(tmp_path))
    writer.start()
    writer.close()
    with pytest.raises(WriterClosedError):
        writer.submit([rec(1)])


@pytest.mark.postgres
def test_database_down_spools_then_replays_in_order(postgres_database: str, tmp_path: Path) -> None:
    store.upgrade_database(postgres_database)
    proxy = TcpProxy("127.0.0.1", 5432).start()
    engine = store.make_engine(proxy.url(postgres_database))
    writer = LogWriter(engine, Spool(tmp_path / "spool"), batch_rows=50, retry_seconds=0.5)
    writer.start()
    destinations = [writer.submit([rec(i)]).result(30) for i in range(100)]
    proxy.cut()
    destinations += [writer.submit([rec(i)]).result(30) for i in range(100, 300)]
    assert destinations[:100] == ["database"] * 100
    assert "spool" in destinations[100:]
    assert writer.stats.rows_spooled > 0 and not writer.stats.database_up
    direct = store.make_engine(postgres_database)
    assert len(logged_ids(direct)) < 300
    proxy.restore()
    destinations += [writer.submit([rec(i)]).result(30) for i in range(300, 350)]
    wait_for(
        lambda: writer.stats.database_up and writer.stats.rows_replayed == writer.stats.rows_spooled
    )
    writer.close()
    assert logged_ids(direct) == [f"w{i:06d}" for i in range(350)]  # nothing lost, in order
    assert not list((tmp_path / "spool").glob("*.jsonl"))
    direct.dispose()


def test_sqlite_locked_past_the_busy_timeout_spools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "_SQLITE_BUSY_TIMEOUT_MS", 100)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store.upgrade_database(url)
    engine = store.make_engine(url)
    writer = LogWriter(engine, Spool(tmp_path / "spool"), retry_seconds=0.3)
    writer.start()
    blocker = store.make_engine(url).connect()
    blocker.exec_driver_sql("BEGIN EXCLUSIVE")
    assert writer.submit([rec(1)]).result(30) == "spool"
    blocker.rollback()
    blocker.close()
    assert writer.submit([rec(2)]).result(30) in ("spool", "database")
    wait_for(
        lambda: writer.stats.rows_replayed == writer.stats.rows_spooled and writer.stats.database_up
    )
    writer.close()
    assert logged_ids(engine) == ["w000001", "w000002"]
