"""The group-commit writer against real databases: batching, backpressure, spool and replay."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitoring import store
from monitoring.spool import DEAD_LETTER_FILE, Spool, read_spool_file
from serving.logwriter import LogRecordRefused, LogWriter, WriterClosedError
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


def poison(i: int) -> dict:
    """A record PostgreSQL's JSONB refuses (a NUL in a text prediction)."""
    return rec(i) | {"prediction": "bad\u0000value"}


def logged_ids(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(sa.text("SELECT request_id FROM inference_log ORDER BY id")))


def dead_letters(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT request_id, error, record FROM inference_dead_letter ORDER BY id")
        ).all()


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


@pytest.mark.postgres
def test_a_record_postgresql_refuses_is_dead_lettered_and_the_other_requests_commit(
    postgres_database: str, tmp_path: Path
) -> None:
    store.upgrade_database(postgres_database)
    engine = store.make_engine(postgres_database)
    writer = LogWriter(engine, Spool(tmp_path / "spool"))
    writer.start()
    blocker = engine.connect()
    blocker.begin()
    blocker.exec_driver_sql("LOCK TABLE inference_log IN ACCESS EXCLUSIVE MODE")
    first = writer.submit([rec(0)])  # its batch waits on the lock while the clients queue up
    wait_for(lambda: writer.queue_depth == 0)
    client_a = writer.submit([rec(1), rec(2)])
    client_p = writer.submit([rec(3), poison(4)])  # one request: all or nothing
    client_c = writer.submit([rec(5)])
    wait_for(lambda: writer.queue_depth == 5)
    blocker.rollback()
    blocker.close()
    assert [f.result(30) for f in (first, client_a, client_c)] == ["database"] * 3
    with pytest.raises(LogRecordRefused, match="refused this record: unsupported Unicode") as err:
        client_p.result(30)
    assert "kept in the dead-letter store" in str(err.value)
    assert writer.stats.batches == 2  # the clients really shared one batch
    assert writer.stats.database_up and writer.stats.rows_dead_lettered == 2
    writer.close()
    assert logged_ids(engine) == ["w000000", "w000001", "w000002", "w000005"]
    letters = dead_letters(engine)
    assert [d.request_id for d in letters] == ["w000003", "w000004"]
    assert "cannot be converted to text" in letters[1].error
    assert store.loads_record(letters[1].record)["prediction"] == "bad\u0000value"
    assert not list((tmp_path / "spool").rglob("*.jsonl"))
    engine.dispose()


@pytest.mark.postgres
def test_when_the_dead_letter_table_refuses_too_the_record_goes_to_the_file(
    postgres_database: str, tmp_path: Path
) -> None:
    store.upgrade_database(postgres_database)
    engine = store.make_engine(postgres_database)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "ALTER TABLE inference_dead_letter ADD CONSTRAINT refuse_all CHECK (false) NOT VALID"
        )
    writer = LogWriter(engine, Spool(tmp_path / "spool"))
    writer.start()
    with pytest.raises(LogRecordRefused, match="kept in the dead-letter store"):
        writer.submit([poison(1)]).result(30)
    assert writer.submit([rec(2)]).result(30) == "database"
    writer.close()
    (kept,) = read_spool_file(tmp_path / "spool" / DEAD_LETTER_FILE)
    assert kept["request_id"] == "w000001" and "Unicode" in kept["error"]
    assert writer.stats.rows_dead_lettered_file == 1 and writer.stats.rows_failed == 0
    assert logged_ids(engine) == ["w000002"] and dead_letters(engine) == []
    engine.dispose()


@pytest.mark.postgres
def test_a_poison_record_in_the_spool_is_dead_lettered_and_the_replay_goes_on(
    postgres_database: str, tmp_path: Path
) -> None:
    store.upgrade_database(postgres_database)
    proxy = TcpProxy("127.0.0.1", 5432).start()
    engine = store.make_engine(proxy.url(postgres_database))
    writer = LogWriter(engine, Spool(tmp_path / "spool"), retry_seconds=0.3)
    writer.start()
    assert writer.submit([rec(0)]).result(30) == "database"
    proxy.cut()
    spooled = [writer.submit(r).result(30) for r in ([rec(1)], [poison(2)], [rec(3)])]
    assert spooled == ["spool"] * 3 and not writer.stats.database_up
    proxy.restore()
    wait_for(lambda: writer.stats.database_up and not list((tmp_path / "spool").rglob("*.jsonl")))
    assert writer.submit([rec(4)]).result(30) == "database"  # later records go to the database
    writer.close()
    direct = store.make_engine(postgres_database)
    assert logged_ids(direct) == ["w000000", "w000001", "w000003", "w000004"]  # in order
    assert [d.request_id for d in dead_letters(direct)] == ["w000002"]
    assert writer.stats.rows_replayed == 2 and writer.stats.rows_dead_lettered == 1
    direct.dispose()


def test_database_up_is_0_while_the_replay_cannot_proceed_and_nothing_is_lost(
    sqlite_engine: sa.Engine, tmp_path: Path
) -> None:
    directory = tmp_path / "spool"
    orphan = Spool(directory)  # a dead process's file: [w1, w2 (refused), w3]
    orphan.append([rec(1), rec(2), rec(3)])
    orphan.close()
    with sqlite_engine.begin() as conn:  # the log refuses w2, the dead-letter table everything
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_w2 BEFORE INSERT ON inference_log "
            "WHEN NEW.request_id = 'w000002' BEGIN SELECT RAISE(ABORT, 'refused w2'); END"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_letters BEFORE INSERT ON inference_dead_letter "
            "BEGIN SELECT RAISE(ABORT, 'no dead letters'); END"
        )
    (directory / DEAD_LETTER_FILE).mkdir()  # and the dead-letter file cannot be written
    writer = LogWriter(sqlite_engine, Spool(directory), retry_seconds=0.2)
    writer.start()
    assert writer.submit([rec(4)]).result(30) == "spool"  # the replay is stuck: spool after it
    assert not writer.stats.database_up
    assert len(list(directory.glob("spool-*.jsonl"))) == 2  # nothing dropped
    (directory / DEAD_LETTER_FILE).rmdir()
    wait_for(lambda: writer.stats.database_up)
    assert writer.submit([rec(5)]).result(30) == "database"
    writer.close()
    assert logged_ids(sqlite_engine) == ["w000001", "w000003", "w000004", "w000005"]
    (kept,) = read_spool_file(directory / DEAD_LETTER_FILE)
    assert kept["request_id"] == "w000002" and kept["error"] == "refused w2"
    assert not list(directory.glob("spool-*.jsonl"))


@pytest.mark.postgres
def test_a_frozen_database_costs_a_write_the_timeout_then_the_spool_replays_each_row_once(
    postgres_database: str, tmp_path: Path
) -> None:
    store.upgrade_database(postgres_database)
    proxy = TcpProxy("127.0.0.1", 5432).start()
    engine = store.make_engine(proxy.url(postgres_database), statement_timeout_seconds=0.5)
    writer = LogWriter(engine, Spool(tmp_path / "spool"), retry_seconds=0.3, db_timeout=0.5)
    writer.start()
    assert writer.submit([rec(0)]).result(30) == "database"
    proxy.freeze()
    for i in range(1, 8):
        started = time.monotonic()
        assert writer.submit([rec(i)]).result(30) == "spool"
        assert time.monotonic() - started < 2.5  # at most two bounded calls (a replay, a write)
    assert not writer.stats.database_up
    proxy.restore()  # held statements of abandoned calls now reach the server too
    wait_for(lambda: writer.stats.database_up and not list((tmp_path / "spool").rglob("*.jsonl")))
    assert writer.submit([rec(8)]).result(30) == "database"
    writer.close()
    direct = store.make_engine(postgres_database)
    assert logged_ids(direct) == [f"w{i:06d}" for i in range(9)]  # each once, in order
    direct.dispose()
