"""The inference log on SQLite and on the real PostgreSQL: schema, writes, typed window reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(store.alembic_config(url))
    assert store.current_revision(engine) == scripts.get_current_head()
    assert "0001" in {rev.revision for rev in scripts.walk_revisions()}


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
