"""The columnar read path equals the row-by-row JSON decode it replaced, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from monitoring import store
from tests.monitoring.reference_window import read_window_json

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
NUMERIC = ["x", "n", "s", "missing"]
CATEGORICAL = ["c", "x", "b", "gone"]


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


def rec(i: int, *, version: int = 1, model: str = "m", minutes: int | None = None, **kw: object):
    features = {
        "x": 0.5 + i if i % 7 else None,
        "n": i,  # ints: read as float, or as "3" when categorical
        "s": "2.5" if i % 3 else "not a number",
        "c": f"level_{i % 4}" if i % 5 else None,
        "b": i % 2 == 0,
        "gone": None,
    }
    features.update(kw.pop("features", {}))
    record = store.log_record(
        request_id=f"r{i}",
        ts=T0 + timedelta(minutes=i // 2 if minutes is None else minutes),  # ties on ts
        model_name=model,
        model_version=version,
        features=features,
        prediction=kw.pop("prediction", i % 3),
        probability=None if i % 11 == 0 else 0.01 * i,
        probabilities={"0": 0.25, "1": 0.75},
    )
    return record | kw


def both(engine: Engine, **kw: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    args = {
        "model_name": "m",
        "numeric": NUMERIC,
        "categorical": CATEGORICAL,
        "target": "y",
        "probabilities": True,
    } | kw
    return store.read_window(engine, **args), read_window_json(engine, **args)


def assert_same(new: pd.DataFrame, old: pd.DataFrame) -> None:
    assert list(new.columns) == list(old.columns)
    assert dict(new.dtypes) == dict(old.dtypes)
    pd.testing.assert_frame_equal(new, old, check_exact=True)


FILTERS = [
    {},
    {"version": 2},
    {"since": T0 + timedelta(minutes=5)},
    {"until": T0 + timedelta(minutes=5)},
    {"since": T0 + timedelta(minutes=3), "until": T0 + timedelta(minutes=9), "version": 1},
    {"last_n": 7},
    {"last_n": 0},
    {"last_n": 1000},
    {"labeled_only": True},
    {"labeled_only": True, "last_n": 3},
    {"model_name": "other"},
    {"model_name": "nobody"},
]


@pytest.mark.parametrize("filters", FILTERS, ids=[str(sorted(f)) for f in FILTERS])
def test_columnar_window_equals_the_json_decode(engine: Engine, filters: dict) -> None:
    store.insert_records(engine, [rec(i, version=1 + (i >= 12)) for i in range(20)])
    store.insert_records(engine, [rec(100, model="other")])
    store.record_labels(engine, {f"r{i}": i % 2 for i in range(0, 20, 3)})
    assert_same(*both(engine, **filters))


@pytest.mark.parametrize(
    ("labels", "dtype"),
    [
        ({"r0": 1, "r1": 0, "r2": 1}, "int64"),  # every row labeled
        ({"r0": 1}, "float64"),  # some rows unlabeled
        ({}, "float64"),
        ({"r0": "yes", "r1": "no", "r2": "yes"}, "object"),
        ({"r0": 0.5, "r1": 2, "r2": 1.5}, "float64"),
        ({"r0": True, "r1": False, "r2": True}, "bool"),
    ],
)
def test_labels_are_joined_and_typed_as_before(engine: Engine, labels: dict, dtype: str) -> None:
    store.insert_records(engine, [rec(i) for i in range(3)])
    store.record_labels(engine, labels)
    new, old = both(engine)
    assert str(new["y"].dtype) == dtype
    assert_same(new, old)


@pytest.mark.parametrize(
    "predictions",
    [["a", "b", "a"], [0.5, 1.5, 2.5], [True, False, True], [1, "b", 2], [None, None, None]],
)
def test_prediction_kinds_read_as_before(engine: Engine, predictions: list) -> None:
    store.insert_records(engine, [rec(i, prediction=p) for i, p in enumerate(predictions)])
    assert_same(*both(engine))


def test_a_feature_whose_kind_changes_between_blocks_reads_as_before(engine: Engine) -> None:
    store.insert_records(engine, [rec(0, features={"s": 1.5, "c": "a"})])
    store.insert_records(engine, [rec(1, features={"s": 2, "c": 7})])  # int where float, str
    store.insert_records(engine, [rec(2, features={"s": "3", "c": [1, 2]})])
    new, old = both(engine)
    assert new["s"].tolist() == [1.5, 2.0, 3.0] and new["c"].tolist() == ["a", "7", "[1, 2]"]
    assert_same(new, old)


def test_numpy_scalars_read_as_their_json(engine: Engine) -> None:
    import numpy as np

    features = {"x": np.float64(0.1), "n": np.int64(3), "s": np.float32(0.1), "b": np.bool_(True)}
    store.insert_records(engine, [rec(0, features=features, prediction=np.int64(1))])
    new, old = both(engine)
    assert new["s"].tolist() == [0.1]  # float32's JSON is its shortest text
    assert new["prediction"].dtype == "int64"
    assert_same(new, old)


def test_nan_and_infinity_read_as_missing_like_json_null(engine: Engine) -> None:
    store.insert_records(
        engine, [rec(0, features={"x": math.nan}), rec(1, features={"x": -math.inf})]
    )
    new, old = both(engine, categorical=["c"])
    assert new["x"].isna().tolist() == [True, True]
    assert_same(new, old)


def test_small_blocks_are_merged_and_still_read_every_row_once(engine: Engine) -> None:
    for i in range(store.MERGE_SMALL_BLOCKS + 3):
        store.insert_records(engine, [rec(i, version=1 + i % 2)])
    with engine.connect() as conn:
        blocks = conn.execute(sa.select(store.inference_log_blocks.c.rows)).scalars().all()
    assert sum(blocks) == store.MERGE_SMALL_BLOCKS + 3
    assert len(blocks) < store.MERGE_SMALL_BLOCKS
    new, old = both(engine)
    assert new["request_id"].is_unique and len(new) == store.MERGE_SMALL_BLOCKS + 3
    assert_same(new, old)
    assert_same(*both(engine, version=2, last_n=4))


def test_last_n_reads_only_the_blocks_holding_the_newest_rows(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for block in range(5):
        store.insert_records(
            engine, [rec(10 * block + i, minutes=10 * block + i) for i in range(10)]
        )
    decoded = []
    decode = store.logblocks.decode
    monkeypatch.setattr(store.logblocks, "decode", lambda data: decoded.append(1) or decode(data))
    new, old = both(engine, last_n=12)
    assert len(decoded) == 2 and len(new) == 12  # the newest 12 rows sit in the last 2 blocks
    assert_same(new, old)


def test_a_replay_adds_only_the_rows_it_inserts(engine: Engine) -> None:
    store.insert_records(engine, [rec(0), rec(1)])
    store.insert_records(engine, [rec(0), rec(1), rec(2)], ignore_duplicates=True)
    new, old = both(engine)
    assert new["request_id"].tolist() == ["r0", "r1", "r2"]
    assert_same(new, old)


def test_copy_writes_every_column_of_a_record() -> None:
    assert sorted(store._COPY_COLUMNS) == sorted(["id", *store.RECORD_KEYS])


@pytest.mark.postgres
def test_copy_round_trips_text_that_needs_escaping(postgres_database: str) -> None:
    store.upgrade_database(postgres_database)
    engine = store.make_engine(postgres_database)
    tricky = "tab\there\nnew line \\ back\\slash \r"
    store.insert_records(engine, [rec(0, features={"c": tricky}) | {"request_id": "r\t0"}])
    frame, old = both(engine)
    assert frame["c"].tolist() == [tricky] and frame["request_id"].tolist() == ["r\t0"]
    assert_same(frame, old)
    engine.dispose()


@pytest.mark.postgres
def test_a_bad_value_late_in_a_copy_commits_nothing(postgres_database: str) -> None:
    store.upgrade_database(postgres_database)
    engine = store.make_engine(postgres_database)
    rows = [rec(i) for i in range(600)]
    rows[550] = refused(550)  # converted in the third chunk, after two were sent
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        store.insert_records(engine, rows)
    assert store.count_rows(engine, model_name="m") == 0
    assert len(both(engine)[0]) == 0
    engine.dispose()


def refused(i: int) -> dict:
    return rec(i) | {"ts": datetime(2024, 1, 1, 12, 0)}  # naive: every backend refuses it


def test_write_log_blocks_hold_the_accepted_groups_only(engine: Engine) -> None:
    groups = [[rec(0)], [rec(1), refused(2)], [rec(3)], [refused(5)], [rec(6), rec(7)]]
    with engine.connect() as connection:
        outcome = store.write_log(connection, groups)
    assert sorted(outcome.refused) == [1, 3]
    new, old = both(engine)
    assert new["request_id"].tolist() == ["r0", "r3", "r6", "r7"]
    assert_same(new, old)


def test_the_migration_copies_rows_logged_before_it_into_blocks(url: str) -> None:
    store.upgrade_database(url, "0004")
    engine = store.make_engine(url)
    rows = [store._complete(rec(i, version=1 + i % 2)) for i in range(30)]
    with engine.begin() as connection:  # as the code before revision 0005 wrote them
        connection.execute(sa.insert(store.inference_log), rows)
    store.record_labels(engine, {"r3": 1, "r4": 0})
    store.upgrade_database(url)
    assert store.count_rows(engine, model_name="m") == 30  # no row lost or changed
    new, old = both(engine)
    assert len(new) == 30
    assert_same(new, old)
    engine.dispose()


def test_predictions_keep_their_float_type_on_sqlite_too(tmp_path: Path) -> None:
    """The one intended difference: the old decode read the JSON `1.0` back from SQLite's
    NUMERIC-affinity column as the integer 1; the block keeps the float, as PostgreSQL did."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store.upgrade_database(url)
    engine = store.make_engine(url)
    store.insert_records(engine, [rec(0, prediction=1.0), rec(1, prediction=2.0)])
    new, old = both(engine)
    assert new["prediction"].dtype == "float64" and old["prediction"].dtype == "int64"
    assert new["prediction"].tolist() == old["prediction"].tolist() == [1.0, 2.0]
    engine.dispose()


values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**62), 2**62),
    st.booleans(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(values, values, st.integers(1, 3), st.integers(0, 5)), min_size=1, max_size=6
        ),
        min_size=1,
        max_size=4,
    )
)
def test_any_values_in_any_batches_read_as_the_json_decode(tmp_path_factory, batches) -> None:
    url = f"sqlite:///{tmp_path_factory.mktemp('h') / 'log.db'}"
    store.upgrade_database(url)
    engine = store.make_engine(url)
    i = 0
    for batch in batches:
        records = []
        for x, c, version, minute in batch:
            records.append(rec(i, version=version, minutes=minute, features={"x": x, "c": c}))
            i += 1
        store.insert_records(engine, records)
    for filters in ({}, {"version": 2}, {"last_n": 3}, {"since": T0 + timedelta(minutes=2)}):
        assert_same(*both(engine, **filters))
    engine.dispose()
