"""The durable spool: fsync'ed append, torn lines skipped, orphans of dead processes replayed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitoring import store
from monitoring.spool import Spool, read_spool_file, spool_status

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def rec(i: int) -> dict:
    return store.log_record(
        request_id=f"s{i}",
        ts=T0 + timedelta(seconds=i),
        model_name="m",
        model_version=1,
        features={"x": float(i), "c": "a"},
        prediction=1,
        probability=0.7,
        probabilities={"0": 0.3, "1": 0.7},
        latency_ms=1.0,
    )


@pytest.fixture
def engine(tmp_path: Path):  # noqa: ANN201
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store.upgrade_database(url)
    return store.make_engine(url)


def ids(engine) -> list[str]:  # noqa: ANN001
    frame = store.read_window(engine, model_name="m", numeric=["x"], categorical=["c"], target="y")
    return frame["request_id"].tolist()


def test_append_keeps_order_and_replay_empties_the_spool(tmp_path: Path, engine) -> None:  # noqa: ANN001
    spool = Spool(tmp_path / "spool")
    spool.append([rec(0), rec(1)])
    spool.append([rec(2)])
    (path,) = (tmp_path / "spool").glob("*.jsonl")
    assert [r["request_id"] for r in read_spool_file(path)] == ["s0", "s1", "s2"]
    assert spool.own_rows == 3 and spool.has_pending()
    assert spool.replay(engine) == 3
    assert ids(engine) == ["s0", "s1", "s2"]
    assert not spool.has_pending() and not list((tmp_path / "spool").glob("*.jsonl"))


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([rec(0)])
    (path,) = tmp_path.glob("*.jsonl")
    with open(path, "ab") as handle:
        handle.write(store.dumps_record(rec(1))[:25])  # a crash in the middle of a write
    assert [r["request_id"] for r in read_spool_file(path)] == ["s0"]


def test_a_dead_process_file_is_an_orphan_and_replayed_by_the_next(tmp_path: Path, engine) -> None:  # noqa: ANN001
    first = Spool(tmp_path)
    first.append([rec(0), rec(1)])
    second = Spool(tmp_path)
    assert second.orphans() == []  # the first still holds its lock: it is alive
    first.close()  # as a dead process: lock released, file kept since rows are pending
    assert len(second.orphans()) == 1
    second.append([rec(2)])
    assert second.replay(engine) == 3
    assert ids(engine) == ["s0", "s1", "s2"]  # older file first


def test_replay_twice_is_harmless(tmp_path: Path, engine) -> None:  # noqa: ANN001
    spool = Spool(tmp_path)
    spool.append([rec(0)])
    store.insert_records(engine, [rec(0)])  # committed before a crash, still in the spool
    assert spool.replay(engine) == 1
    assert ids(engine) == ["s0"]


def test_replay_failure_keeps_the_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([rec(0)])
    broken = store.make_engine(f"sqlite:///{tmp_path / 'no-schema.db'}")
    with pytest.raises(Exception, match="inference_log"):
        spool.replay(broken)
    assert spool.own_rows == 1 and len(list((tmp_path / "spool").glob("*.jsonl"))) == 1


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def log_engine(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    url = (
        f"sqlite:///{tmp_path / 'both.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_database")
    )
    store.upgrade_database(url)
    engine = store.make_engine(url)
    yield engine
    engine.dispose()


def refused(i: int, dialect: str) -> dict:
    """A record the backend refuses: a NUL in the prediction for PostgreSQL's JSONB, else a naive ts."""
    if dialect == "postgresql":
        return rec(i) | {"prediction": "a\u0000b"}
    return rec(i) | {"ts": datetime(2024, 1, 1)}


def dead_letter_ids(engine) -> list[str]:  # noqa: ANN001
    with engine.connect() as conn:
        return list(conn.scalars(sa.text("SELECT request_id FROM inference_dead_letter")))


def test_a_refused_record_mid_file_is_dead_lettered_and_the_replay_goes_on(
    tmp_path: Path,
    log_engine,  # noqa: ANN001
) -> None:
    spool = Spool(tmp_path / "spool")
    bad = refused(2, log_engine.dialect.name)
    spool.append([rec(0), rec(1), bad, rec(3), rec(4)])
    assert spool.replay(log_engine, chunk_rows=2) == 4  # the bad record sits in the middle chunk
    assert ids(log_engine) == ["s0", "s1", "s3", "s4"]  # in spool order
    assert dead_letter_ids(log_engine) == ["s2"]
    assert not spool.has_pending() and not list((tmp_path / "spool").glob("*.jsonl"))
    spool.append([rec(5)])  # later records replay as usual
    assert spool.replay(log_engine) == 1 and ids(log_engine)[-1] == "s5"


def test_when_the_dead_letter_table_refuses_too_the_file_keeps_the_record(
    tmp_path: Path, engine
) -> None:  # noqa: ANN001
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_letters BEFORE INSERT ON inference_dead_letter "
            "BEGIN SELECT RAISE(ABORT, 'no dead letters'); END"
        )
    spool = Spool(tmp_path / "spool")
    spool.append([rec(0), refused(1, "sqlite"), rec(2)])
    assert spool.replay(engine) == 2
    status = spool_status(tmp_path / "spool")
    assert (status.files, status.rows, status.dead_letter_rows) == (0, 0, 1)
    (kept,) = read_spool_file(status.dead_letter_file)
    assert kept["request_id"] == "s1" and "naive datetime" in kept["error"]
    assert store.loads_record(kept["record"])["request_id"] == "s1"


def test_spool_status_counts_files_and_records(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.append([rec(0), rec(1)])
    first.close()
    second = Spool(tmp_path)
    second.append([rec(2)])
    status = spool_status(tmp_path)
    assert (status.files, status.rows, status.dead_letter_rows) == (2, 3, 0)


def test_a_spool_file_being_created_is_never_another_process_orphan(
    tmp_path: Path,
    engine,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Workers of one host share the spool directory. Another worker replays orphans at the
    instant this one creates its file, before it holds the file's lock (the interleaving is
    forced: the other's replay runs just before this process's real flock). The file must not be
    taken for an orphan and deleted, or the records acknowledged as spooled into it are lost."""
    import fcntl

    directory = tmp_path / "spool"
    mine, other = Spool(directory), Spool(directory)  # two open files: flock as two processes
    real_flock = fcntl.flock
    interleaved: list[int] = []

    def flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX | fcntl.LOCK_NB and not interleaved:
            interleaved.append(-1)  # once (the other's replay takes locks too)
            interleaved[0] = other.replay(engine)  # the other worker, right now
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    mine.append([rec(0), rec(1)])
    monkeypatch.setattr(fcntl, "flock", real_flock)
    assert interleaved == [0]
    assert mine.replay(engine) == 2
    assert ids(engine) == ["s0", "s1"]
