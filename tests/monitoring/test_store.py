"""The inference log on SQLite and on the real PostgreSQL: schema, writes, typed window reads."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitoring import store

NUMERIC = ["AGEP", "WKHP"]
CATEGORICAL = ["SEX", "SCHL"]
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'log.db'}"
    else:
        yield request.getfixturevalue("postgres_database")


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    store.upgrade_database(url)
    engine = store.make_engine(url)
    yield engine
    engine.dispose()


def rec(
    i: int, *, version: int = 1, model: str = "m", minutes: int | None = None, **features: object
) -> dict:
    base = {"AGEP": 30.0 + i, "WKHP": None, "SEX": "1", "SCHL": None}
    base.update(features)
    return store.log_record(
        request_id=f"r{i}",
        ts=T0 + timedelta(minutes=i if minutes is None else minutes),
        model_name=model,
        model_version=version,
        features=base,
        prediction=i % 2,
        probability=0.1 * (i % 10),
        probabilities={"0": 1 - 0.1 * (i % 10), "1": 0.1 * (i % 10)},
        latency_ms=1.5,
    )


def window(engine: Engine, **kw: object) -> pd.DataFrame:
    return store.read_window(
        engine,
        model_name=kw.pop("model_name", "m"),
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        target="y",
        **kw,
    )


def test_upgrade_creates_the_table_indexes_and_is_idempotent(url: str, engine: Engine) -> None:
    store.upgrade_database(url)  # second run: nothing to do, no error
    inspector = sa.inspect(engine)
    assert "inference_log" in inspector.get_table_names()
    indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("inference_log")}
    assert indexes["ix_inference_log_model_ts"] == ["model_name", "ts"]
    assert indexes["ix_inference_log_model_version_ts"] == ["model_name", "model_version", "ts"]
    labeled = "ix_inference_log_model_version_labeled_ts"
    assert indexes[labeled] == ["model_name", "model_version", "ts"]
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(store.alembic_config(url))
    assert store.current_revision(engine) == scripts.get_current_head()
    assert "0001" in {rev.revision for rev in scripts.walk_revisions()}


def _migrate_when_all_are_ready(url: str, barrier: Any, answers: Any) -> None:
    barrier.wait(60)
    try:
        store.upgrade_database(url)
        answers.put("ok")
    except Exception as exc:  # the answer is the test's evidence
        answers.put(f"{type(exc).__name__}: {exc}".splitlines()[0])


def test_processes_migrating_one_fresh_database_at_once_take_turns(url: str) -> None:
    """Replicas that start together each migrate the log: none may fail (without the lock,
    all but one do: duplicate tables)."""
    context = multiprocessing.get_context("spawn")
    barrier, answers = context.Barrier(3), context.Queue()
    processes = [
        context.Process(target=_migrate_when_all_are_ready, args=(url, barrier, answers))
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [answers.get(timeout=5) for _ in processes] == ["ok"] * 3
    engine = store.make_engine(url)
    try:
        assert store.current_revision(engine) is not None
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    store.upgrade_database(url)
    with store.make_engine(url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_upgrade_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store.upgrade_database("sqlite:///elsewhere.db")
    assert (
        "inference_log" in sa.inspect(sa.create_engine("sqlite:///elsewhere.db")).get_table_names()
    )


def test_window_is_typed_like_the_training_data(engine: Engine) -> None:
    store.insert_records(engine, [rec(i) for i in range(3)])
    frame = window(engine)
    assert list(frame.columns) == [
        *NUMERIC,
        *CATEGORICAL,
        "prediction",
        "probability",
        "y",
        "model_version",
        "ts",
        "request_id",
    ]
    assert frame["AGEP"].dtype == "float64" and frame["WKHP"].dtype == "float64"
    assert frame["WKHP"].isna().all()
    assert frame["SEX"].dtype == object and frame["SEX"].tolist() == ["1", "1", "1"]
    assert frame["SCHL"].isna().all()
    assert frame["prediction"].dtype == "int64" and frame["prediction"].tolist() == [0, 1, 0]
    assert frame["probability"].dtype == "float64"
    assert frame["model_version"].dtype == "int64"
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["ts"].iloc[0] == pd.Timestamp(T0)
    assert frame["request_id"].tolist() == ["r0", "r1", "r2"]


def test_empty_window_keeps_the_columns_and_types(engine: Engine) -> None:
    frame = window(engine)
    assert len(frame) == 0 and "AGEP" in frame and str(frame["ts"].dtype) == "datetime64[ns, UTC]"


def test_filters_since_until_version_model_last_n(engine: Engine) -> None:
    store.insert_records(engine, [rec(i, version=1 if i < 5 else 2) for i in range(10)])
    store.insert_records(engine, [rec(100, model="other")])
    assert window(engine, since=T0 + timedelta(minutes=3))["request_id"].tolist()[0] == "r3"
    assert window(engine, until=T0 + timedelta(minutes=3))["request_id"].tolist() == [
        "r0",
        "r1",
        "r2",
    ]
    assert window(engine, version=2)["request_id"].tolist() == [f"r{i}" for i in range(5, 10)]
    assert window(engine, last_n=3)["request_id"].tolist() == ["r7", "r8", "r9"]
    assert window(engine, model_name="other")["request_id"].tolist() == ["r100"]
    assert store.count_rows(engine, model_name="m") == 10
    assert store.count_rows(engine, model_name="m", version=1, since=T0 + timedelta(minutes=2)) == 3


def test_naive_timestamps_are_refused(engine: Engine) -> None:
    bad = rec(1) | {"ts": datetime(2024, 1, 1)}
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        store.insert_records(engine, [bad])


def test_labels_join_by_request_id(engine: Engine) -> None:
    store.insert_records(engine, [rec(i) for i in range(4)])
    at = T0 + timedelta(days=1)
    assert store.record_labels(engine, {"r1": 1, "r3": 0, "unknown": 1}, at=at) == 2
    labeled = window(engine, labeled_only=True)
    assert labeled["request_id"].tolist() == ["r1", "r3"]
    assert labeled["y"].dtype == "int64" and labeled["y"].tolist() == [1, 0]
    assert window(engine)["y"].isna().tolist() == [True, False, True, False]
    assert store.count_rows(engine, model_name="m", labeled_only=True) == 2
    with engine.connect() as conn:
        stamp = conn.scalar(
            sa.select(store.inference_log.c.label_ts).where(
                store.inference_log.c.request_id == "r1"
            )
        )
    assert stamp == at
    assert store.known_request_ids(engine, ["r0", "zz"]) == {"r0"}


def test_labels_since_count_by_arrival_not_by_serving_time(engine: Engine) -> None:
    store.insert_records(engine, [rec(i) for i in range(6)] + [rec(9, model="other")])
    day1, day2 = T0 + timedelta(days=1), T0 + timedelta(days=2)
    store.record_labels(engine, {"r0": 1, "r1": 0}, at=day1)
    store.record_labels(engine, {"r2": 1, "r5": 0, "r9": 1}, at=day2)  # r5 served last, r2 early
    assert store.count_labels_since(engine, model_name="m", since=day1) == 2
    assert store.count_labels_since(engine, model_name="m", since=T0) == 4
    assert store.count_labels_since(engine, model_name="m", since=day2) == 0


def test_duplicate_request_id_is_refused_unless_replaying(engine: Engine) -> None:
    store.insert_records(engine, [rec(1)])
    with pytest.raises(sa.exc.IntegrityError):
        store.insert_records(engine, [rec(1)])
    store.insert_records(engine, [rec(1), rec(2)], ignore_duplicates=True)
    assert store.count_rows(engine, model_name="m") == 2


def test_string_labels_and_predictions_round_trip(engine: Engine) -> None:
    rows = [rec(i) | {"prediction": "yes" if i else "no"} for i in range(2)]
    store.insert_records(engine, rows)
    store.record_labels(engine, {"r0": "no"})
    frame = window(engine)
    assert frame["prediction"].tolist() == ["no", "yes"]
    assert frame["y"].tolist()[0] == "no"


def test_spool_lines_round_trip(engine: Engine) -> None:
    record = rec(5)
    again = store.loads_record(store.dumps_record(record))
    assert again == record
    store.insert_records(engine, [again])
    assert window(engine)["ts"].iloc[0] == pd.Timestamp(record["ts"])


def refused(i: int) -> dict:
    """A record every backend refuses (a naive timestamp fails in the column type)."""
    return rec(i) | {"ts": datetime(2024, 1, 1, 12, 0)}


def test_upgrade_creates_the_dead_letter_table(url: str, engine: Engine) -> None:
    inspector = sa.inspect(engine)
    assert "inference_dead_letter" in inspector.get_table_names()
    columns = {c["name"] for c in inspector.get_columns("inference_dead_letter")}
    assert {"request_id", "model_name", "model_version", "ts", "error", "record"} <= columns


def test_write_log_commits_the_accepted_groups_and_dead_letters_the_refused_ones(
    engine: Engine,
) -> None:
    groups = [[rec(0)], [rec(1), refused(2)], [rec(3)], [rec(4)], [refused(5)], [rec(6), rec(7)]]
    with engine.connect() as connection:
        outcome = store.write_log(connection, groups)
    assert sorted(outcome.refused) == [1, 4]
    assert "naive datetime" in outcome.refused[1]
    assert [d["request_id"] for d in outcome.dead_letters] == ["r1", "r2", "r5"]
    assert outcome.dead_letters_stored
    assert window(engine)["request_id"].tolist() == ["r0", "r3", "r4", "r6", "r7"]  # in order
    status = store.read_log_status(engine)
    assert status.dead_letters == 3
    assert {d.request_id for d in status.newest_dead_letters} == {"r1", "r2", "r5"}


def test_write_log_dead_letters_once_per_request_id(engine: Engine) -> None:
    for _ in range(2):  # a replay interrupted after its commit runs again
        with engine.connect() as connection:
            store.write_log(connection, [[refused(1)]], ignore_duplicates=True)
    assert store.read_log_status(engine).dead_letters == 1


def test_write_log_lets_unavailable_errors_through(tmp_path: Path) -> None:
    bare = store.make_engine(f"sqlite:///{tmp_path / 'no-schema.db'}")
    with bare.connect() as connection, pytest.raises(sa.exc.OperationalError):
        store.write_log(connection, [[rec(0)]])


@pytest.mark.postgres
def test_postgresql_refuses_nul_and_the_dead_letter_keeps_it_escaped(
    postgres_database: str,
) -> None:
    store.upgrade_database(postgres_database)
    engine = store.make_engine(postgres_database)
    poison = {**rec(1), "prediction": "a\u0000b"}  # the prediction column is jsonb
    kept = rec(2, SEX="a\u0000b")  # the features column is json, which keeps a NUL escaped
    with engine.connect() as connection:
        outcome = store.write_log(connection, [[rec(0)], [poison], [kept]])
    assert outcome.refused == {
        1: "unsupported Unicode escape sequence (\\u0000 cannot be converted to text.)"
    }
    with engine.connect() as connection:
        text = connection.scalar(sa.text("SELECT record FROM inference_dead_letter"))
    assert "\\u0000" in text and "\x00" not in text
    assert store.loads_record(text)["prediction"] == "a\u0000b"
    frame = window(engine)
    assert frame["request_id"].tolist() == ["r0", "r2"]
    assert frame["SEX"].tolist() == ["1", "a\u0000b"]
    engine.dispose()


@pytest.mark.postgres
def test_the_statement_timeout_cancels_a_statement_on_the_server(postgres_database: str) -> None:
    engine = store.make_engine(postgres_database, statement_timeout_seconds=0.3)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "300ms"
        with pytest.raises(sa.exc.OperationalError, match="statement timeout"):
            connection.exec_driver_sql("SELECT pg_sleep(5)")
        connection.rollback()
        shown = connection.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar()
    assert shown == "300ms"
    engine.dispose()


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            sa.exc.DataError(
                "INSERT ...",
                {},
                Exception(
                    "unsupported Unicode escape sequence\nLINE 1: ...'secret'...\n"
                    "DETAIL:  \\u0000 cannot be converted to text.\nCONTEXT:  JSON data"
                ),
            ),
            "unsupported Unicode escape sequence (\\u0000 cannot be converted to text.)",
        ),
        (ValueError("naive datetime"), "naive datetime"),
        (ValueError("x" * 500), "x" * 300),
        (ValueError("a\x00b"), "a\\u0000b"),
    ],
)
def test_describe_refusal_is_one_short_storable_line(error: BaseException, reason: str) -> None:
    assert store.describe_refusal(error) == reason


def test_a_dead_letter_is_storable_whatever_the_record() -> None:
    letter = store.dead_letter(
        {"request_id": "r\x001", "model_version": "7", "ts": "yesterday", "features": {1, 2}},
        "refused",
        at=T0,
    )
    assert letter["request_id"] == "r\\u00001"
    assert letter["model_version"] is None and letter["ts"] is None
    assert "\x00" not in letter["record"] and "{1, 2}" in letter["record"]  # not JSON: its repr


class _UndefinedTable(Exception):
    pgcode = "42P01"  # what psycopg2 reports for a missing table


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (sa.exc.OperationalError("s", {}, Exception("server closed the connection")), True),
        (sa.exc.ProgrammingError("s", {}, _UndefinedTable("no inference_log")), True),
        (sa.exc.DataError("s", {}, Exception("bad value")), False),
        (sa.exc.IntegrityError("s", {}, Exception("check violated")), False),
        (ValueError("naive datetime"), False),
    ],
)
def test_is_unavailable_tells_an_outage_from_a_refused_record(
    error: BaseException, unavailable: bool
) -> None:
    assert store.is_unavailable(error) is unavailable


def test_read_log_status_on_a_missing_sqlite_file_is_a_store_error(tmp_path: Path) -> None:
    missing = store.make_engine(f"sqlite:///{tmp_path / 'none.db'}")
    with pytest.raises(store.StoreError, match="no inference log at"):
        store.read_log_status(missing)
    assert not (tmp_path / "none.db").exists()


def test_runs_keep_incidents_outcomes_and_realized_estimates(tmp_path) -> None:
    from datetime import UTC, datetime, timedelta

    from monitoring import runs
    from monitoring.incidents import Incident

    url = f"sqlite:///{tmp_path / 'log.db'}"
    store.upgrade_database(url)
    engine = store.make_engine(url)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    opened = Incident("i1", "critical", "critical", now - timedelta(days=30))

    def run(days_ago: float, **values: object) -> str:
        row = {
            "model_name": "m",
            "model_version": 2,
            "started_at": now - timedelta(days=days_ago),
            "finished_at": now - timedelta(days=days_ago),
            "triggered_by": "test",
            "window_kind": "last_rows",
            "window_start": now - timedelta(days=days_ago + 1),
            "window_end": now - timedelta(days=days_ago),
            "window_rows": 1000,
            "labeled_rows": 0,
            "status": "drift",
            "drifted_features": [],
            "scores": {},
            "failed_checks": ["performance"],
            "alerted": False,
            "alert_reason": "",
            "retrain": False,
            "retrain_reason": "",
            "details": {},
            "severity": "critical",
            "incident": opened.to_dict(),
            **values,
        }
        return runs.record_run(engine, row)

    refused = run(29, retrain=True, retrain_reason="drift that hurts: ...", performance_drop=0.1)
    assert runs.record_retrain_outcome(engine, refused, "refused")
    assert not runs.record_retrain_outcome(engine, "no-such-run", "refused")
    run(20, retrain=True, retrain_reason="follow-up: ...")
    run(1, estimated_value=0.8)
    # the incident is a month old: its refused retraining still counts, beyond the 7 days
    history = runs.recent_history(engine, "m", now=now)
    first = history[0]
    assert first.retrain_outcome == "refused" and first.drop == 0.1 and first.incident == opened
    assert runs.follow_up_tried(engine, "m", 2, prefix="follow-up")
    assert not runs.follow_up_tried(engine, "m", 3, prefix="follow-up")
    (waiting,) = runs.awaiting_realization(engine, "m", 2, before=now)
    runs.record_realized(engine, waiting["run_id"], 0.75)
    (error,) = runs.estimation_errors(engine, "m")
    assert error["error"] == pytest.approx(0.05)
    engine.dispose()


# PRAGMA synchronous reports 1 for NORMAL, 2 for FULL, 3 for EXTRA
@pytest.mark.parametrize(
    ("synchronous", "pragma"), [(None, 1), ("NORMAL", 1), ("full", 2), ("EXTRA", 3)]
)
def test_make_engine_sets_the_sqlite_synchronous_mode_it_is_given(
    tmp_path: Path, synchronous: str | None, pragma: int
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    options = {} if synchronous is None else {"synchronous": synchronous}
    engine = store.make_engine(url, **options)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == pragma
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


def test_make_engine_refuses_an_unknown_sqlite_synchronous_mode(tmp_path: Path) -> None:
    with pytest.raises(store.StoreError, match="must be NORMAL, FULL or EXTRA, got 'OFF'"):
        store.make_engine(f"sqlite:///{tmp_path / 'log.db'}", synchronous="OFF")


def test_group_commit_with_duplicates_keeps_the_first_and_writes_the_rest(engine: Engine) -> None:
    """On PostgreSQL a duplicate request id fails the COPY; the staging path then skips it."""
    with engine.connect() as connection:
        store.write_log(connection, [[rec(0)], [rec(1)]], ignore_duplicates=True)
        first = store.write_log(
            connection,
            [[rec(1) | {"prediction": 7}], [rec(2)], [rec(2)], [rec(3)]],
            ignore_duplicates=True,
        )
        second = store.write_log(connection, [[rec(4)]], ignore_duplicates=True)
    assert first.refused == {} and second.refused == {}
    frame = window(engine)
    assert frame["request_id"].tolist() == ["r0", "r1", "r2", "r3", "r4"]
    assert frame["prediction"].tolist() == [0, 1, 0, 1, 0]  # r1 kept as first logged


def test_text_that_copy_escapes_round_trips(engine: Engine) -> None:
    odd = 'tab\there\nnew\\line \\N ,"q"'
    record = rec(0, SEX=odd, SCHL="\\") | {"request_id": "r\t\\0", "prediction": odd}
    store.insert_records(engine, [record])
    frame = window(engine)
    assert frame.loc[0, "SEX"] == odd and frame.loc[0, "SCHL"] == "\\"
    assert frame.loc[0, "request_id"] == "r\t\\0" and frame.loc[0, "prediction"] == odd


def test_a_versions_labeled_rows_are_found_by_the_partial_index(tmp_path: Path) -> None:
    """The monitor's read of a version's newest labeled rows (the count and the n-th newest
    row) searches the index of labeled rows instead of testing every row of the version."""
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    store.upgrade_database(url)
    engine = store.make_engine(url)
    c = store.inference_log.c
    statements = [
        store._filtered(
            sa.select(sa.func.count()).select_from(store.inference_log),
            model_name="m", since=None, until=None, version=1, labeled_only=True,
        ),
        store._filtered(
            sa.select(c.ts), model_name="m", since=None, until=None, version=1, labeled_only=True
        ).order_by(c.ts.desc(), c.id.desc()).offset(99).limit(1),
    ]  # fmt: skip
    try:
        with engine.connect() as connection:
            for statement in statements:
                sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
                plan = " ".join(
                    str(row) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
                )
                assert "ix_inference_log_model_version_labeled_ts" in plan, plan
    finally:
        engine.dispose()
