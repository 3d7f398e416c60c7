"""The columnar log: a window read from compacted segments equals the window decoded from the
log's JSON (types, labels, versions, order), on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from monitoring import columnar, store

NUMERIC = ["x0", "x1", "x2"]
CATEGORICAL = ["c0", "c1"]
T0 = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'log.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    store.upgrade_database(url)
    engine = store.make_engine(url)
    yield engine
    engine.dispose()


def _odd_value(rng: random.Random) -> Any:
    return rng.choice([None, 1, 2.5, "3.25", "abc", True, -7, 1e300, "", "é"])


def _records(rng: random.Random, n: int, *, start: int, model: str = "m") -> list[dict]:
    records = []
    for i in range(start, start + n):
        features = {
            "x0": rng.gauss(0, 1),
            "x1": _odd_value(rng) if rng.random() < 0.2 else rng.randint(0, 9),
            "x2": None if rng.random() < 0.1 else rng.random(),
            "c0": rng.choice(["a", "b", "c", None]),
            "c1": _odd_value(rng) if rng.random() < 0.2 else rng.choice(["u", "v"]),
            "extra": "kept",
        }
        if rng.random() < 0.05:
            del features["x2"]
        records.append(
            store.log_record(
                request_id=f"{model}-{i}",
                # not monotonic: a spool replay or a slow replica logs an older time later
                ts=T0 + timedelta(seconds=i * 10 + rng.choice([0, 0, 0, -95, 3])),
                model_name=model,
                model_version=rng.choice([1, 1, 2]),
                features=features,
                prediction=rng.choice([0, 1]),
                probability=None if rng.random() < 0.05 else rng.random(),
                probabilities={"0": 0.4, "1": 0.6},
                latency_ms=1.0,
            )
        )
    return records


def _label(rng: random.Random) -> Any:
    return rng.choice([0, 1, 1, 0, 1]) if rng.random() < 0.97 else rng.choice([None, "yes", 2.5])


def _both(engine: Engine, **kw: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    args = {
        "model_name": "m",
        "numeric": NUMERIC,
        "categorical": CATEGORICAL,
        "target": "y",
        **kw,
    }
    return (
        store.read_window(engine, columnar=True, **args),
        store.read_window(engine, columnar=False, **args),
    )


WINDOWS: list[dict[str, Any]] = [
    {},
    {"probabilities": True},
    {"since": T0 + timedelta(seconds=300), "until": T0 + timedelta(seconds=2_000)},
    {"until": T0 + timedelta(seconds=500)},
    {"version": 2},
    {"labeled_only": True},
    {"last_n": 1},
    {"last_n": 37},
    {"last_n": 10_000},
    {"last_n": 0},
    {"since": T0 + timedelta(days=1)},
    {"labeled_only": True, "version": 1, "since": T0 + timedelta(seconds=100)},
    {"upto_id": 150},
    {"upto_id": 150, "last_n": 20, "version": 1},
    {"upto_id": 0},
]


def _assert_same(engine: Engine) -> None:
    for kw in WINDOWS:
        fast, slow = _both(engine, **kw)
        pd.testing.assert_frame_equal(fast, slow, check_exact=True, obj=f"window {kw}")
    _assert_same_columns(engine)
    _assert_same_outputs(engine)


def _assert_same_outputs(engine: Engine) -> None:
    """A window read without features and request ids (what the monitor reads when column tasks
    check the features) equals the JSON read without those columns, from segments and JSON."""
    dropped = [*NUMERIC, *CATEGORICAL, "request_id"]
    for kw in WINDOWS:
        slow = _both(engine, **kw)[1].drop(columns=dropped)
        for from_segments in (True, False):
            light = store.read_window(
                engine,
                model_name="m",
                numeric=(),
                categorical=(),
                target="y",
                columnar=from_segments,
                request_ids=False,
                **kw,
            )
            pd.testing.assert_frame_equal(
                light, slow, check_exact=True, obj=f"outputs of window {kw} ({from_segments=})"
            )


#: Column subsets a task of the monitor's column groups reads (read_window_columns).
SUBSETS = [(NUMERIC, CATEGORICAL), (["x1"], []), ([], ["c1"]), (["x2", "x0"], ["c0"])]


def _assert_same_columns(engine: Engine) -> None:
    """Some columns of a window equal those columns of the JSON read, for every window the
    column read takes (it has no labels, so no labeled_only or probabilities)."""
    for kw in WINDOWS:
        if "labeled_only" in kw or "probabilities" in kw:
            continue
        for numeric, categorical in SUBSETS:
            for prediction in (True, False):
                wanted = [*numeric, *categorical, *(["prediction"] if prediction else [])]
                slow = store.read_window(
                    engine,
                    model_name="m",
                    numeric=numeric,
                    categorical=categorical,
                    target="y",
                    columnar=False,
                    **kw,
                )[wanted]
                fast = store.read_window_columns(
                    engine,
                    model_name="m",
                    numeric=numeric,
                    categorical=categorical,
                    prediction=prediction,
                    **kw,
                )
                pd.testing.assert_frame_equal(
                    fast, slow, check_exact=True, obj=f"columns {wanted} of window {kw}"
                )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segments_read_equals_json_read(engine: Engine, seed: int) -> None:
    rng = random.Random(seed)
    first = _records(rng, 230, start=0)
    store.insert_records(engine, first)
    store.insert_records(engine, _records(rng, 20, start=0, model="other"))
    store.record_labels(engine, {r["request_id"]: _label(rng) for r in first[:120]})

    outcome = store.compact_log(
        engine, model_name="m", numeric=NUMERIC, categorical=CATEGORICAL, segment_rows=64
    )
    assert outcome.rows == 230 and outcome.segments >= 4 and outcome.settled
    _assert_same(engine)

    # labels after compaction (a relabel included), and rows the segments do not hold yet
    store.record_labels(engine, {r["request_id"]: _label(rng) for r in first[100:200]})
    later = _records(rng, 90, start=230)
    store.insert_records(engine, later)
    store.record_labels(engine, {r["request_id"]: _label(rng) for r in later[:30]})
    _assert_same(engine)

    again = store.compact_log(
        engine, model_name="m", numeric=NUMERIC, categorical=CATEGORICAL, segment_rows=64
    )
    assert again.rows == 90 and again.refreshed >= 1
    _assert_same(engine)
    assert store.compact_log(
        engine, model_name="m", numeric=NUMERIC, categorical=CATEGORICAL
    ) == store.CompactionOutcome(
        model_name="m", rows=0, segments=0, refreshed=0, covered_to=again.covered_to
    )


def test_all_labeled_int_window_keeps_int64_labels(engine: Engine) -> None:
    rng = random.Random(5)
    records = _records(rng, 50, start=0)
    store.insert_records(engine, records)
    store.compact_log(engine, model_name="m", numeric=NUMERIC, categorical=CATEGORICAL)
    store.record_labels(engine, {r["request_id"]: i % 2 for i, r in enumerate(records)})
    fast, slow = _both(engine, labeled_only=True)
    assert fast["y"].dtype == np.int64 and len(fast) == 50
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)


def test_a_feature_the_segments_lack_is_read_from_json(engine: Engine) -> None:
    store.insert_records(engine, _records(random.Random(3), 40, start=0))
    store.compact_log(engine, model_name="m", numeric=["x0"], categorical=["c0"])
    fast, slow = _both(engine)
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    # a role that differs (x1 compacted as numeric, asked for as categorical) also falls back
    args = {"model_name": "m", "numeric": ["x0"], "categorical": ["c0", "x1"], "target": "y"}
    pd.testing.assert_frame_equal(
        store.read_window(engine, **args), store.read_window(engine, columnar=False, **args)
    )


def test_a_row_missing_from_the_segments_sends_the_read_to_json(engine: Engine) -> None:
    """What a late commit below the coverage would look like: the count guard catches it."""
    store.insert_records(engine, _records(random.Random(4), 30, start=0))
    with engine.begin() as connection:  # a gap at id 7, as a transaction still open leaves
        connection.execute(sa.delete(store.inference_log).where(store.inference_log.c.id == 7))
    store.compact_log(engine, model_name="m", numeric=NUMERIC, categorical=CATEGORICAL)
    with engine.begin() as connection:  # ... which then commits below the coverage
        row = _records(random.Random(9), 1, start=500)[0]
        connection.execute(sa.insert(store.inference_log), [{**row, "id": 7}])
    fast, slow = _both(engine)
    assert "m-500" in set(fast["request_id"])
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)


def test_concurrent_compactions_store_each_row_once(engine: Engine) -> None:
    store.insert_records(engine, _records(random.Random(6), 400, start=0))
    outcomes: list[store.CompactionOutcome] = []

    def run() -> None:
        outcomes.append(
            store.compact_log(
                engine, model_name="m", numeric=NUMERIC, categorical=CATEGORICAL, segment_rows=50
            )
        )

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(o.rows for o in outcomes) == 400
    with engine.connect() as connection:
        stored = connection.scalar(sa.select(sa.func.sum(store.log_segments.c.rows)))
    assert stored == 400
    _assert_same(engine)


@pytest.mark.postgres
def test_compaction_waits_for_an_open_transaction_below_the_high_water(
    postgres_database: str,
) -> None:
    """PostgreSQL hands out ids before commit: a transaction still open holds a low id while a
    higher one is visible. Compaction must not cover the low id before it commits."""
    store.upgrade_database(postgres_database)
    engine = store.make_engine(postgres_database)
    try:
        rng = random.Random(7)
        slow_writer = engine.connect()
        slow_tx = slow_writer.begin()
        store.insert_records(slow_writer, _records(rng, 1, start=0))  # id 1, not committed
        store.insert_records(engine, _records(rng, 5, start=1))  # ids 2..6, committed
        timed_out = store.compact_log(
            engine,
            model_name="m",
            numeric=NUMERIC,
            categorical=CATEGORICAL,
            settle_timeout=0.3,
        )
        assert not timed_out.settled and timed_out.rows == 0
        threading.Timer(0.5, slow_tx.commit).start()
        settled = store.compact_log(
            engine, model_name="m", numeric=NUMERIC, categorical=CATEGORICAL, settle_timeout=10
        )
        slow_writer.close()
        assert settled.settled and settled.rows == 6
        fast, slow = _both(engine)
        assert len(fast) == 6
        pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- pure parts

_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["a", "b", ""]),
)


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.lists(_value, max_size=6), min_size=1, max_size=4),
    patch=st.lists(st.tuples(st.integers(0, 30), _value), max_size=5),
)
def test_typed_values_give_the_series_the_json_read_gives(
    parts: list[list[Any]], patch: list[tuple[int, Any]]
) -> None:
    """Concatenating typed columns and patching late labels equals typing the plain values."""
    values = [v for part in parts for v in part]
    merged = columnar.concat_values([columnar.make_values(p) for p in parts])
    if values:
        positions = sorted({i % len(values) for i, _ in patch})
        new = [next(v for i, v in patch if i % len(values) == p) for p in positions]
        for p, v in zip(positions, new, strict=True):
            values[p] = v
        merged = columnar.patched(merged, np.array(positions, dtype=np.int64), new)
    expected = columnar.label_series(values)
    got = columnar.to_series(merged)
    pd.testing.assert_series_equal(got, expected, check_exact=True)
    assert [type(v) for v in got.tolist()] == [type(v) for v in expected.tolist()]


def test_a_corrupt_segment_is_a_clear_error() -> None:
    with pytest.raises(columnar.SegmentError, match="cannot be decoded"):
        columnar.decode_segment(b"not arrow", numeric=[], categorical=[], probabilities=False)


def test_segments_fetched_ahead_of_decoding_read_the_same_window(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fourteen segments or more: the whole-window read fetches each batch while the one before is
    decoded, on a thread of its own (that thread's reads are counted)."""
    rng = random.Random(11)
    records = _records(rng, 70, start=0)
    store.insert_records(engine, records)
    store.record_labels(engine, {r["request_id"]: _label(rng) for r in records[::3]})
    outcome = store.compact_log(
        engine, model_name="m", numeric=NUMERIC, categorical=CATEGORICAL, segment_rows=5
    )
    assert outcome.segments >= 14  # 5 rows a segment, of one model version each
    fetched_by: list[str] = []
    real = store._segment_data

    def counted(connection: sa.Connection, ids: list[int]) -> dict[int, Any]:
        fetched_by.append(threading.current_thread().name)
        return real(connection, ids)

    monkeypatch.setattr(store, "_segment_data", counted)
    _assert_same(engine)
    assert any(name.startswith("driftloop-segments") for name in fetched_by)


@pytest.mark.postgres
def test_binary_copy_of_segments_parses_from_any_split(postgres_database: str) -> None:
    """The parser of PostgreSQL's binary COPY reads a row inside one message as a view and
    joins one split across messages: every split of a real COPY gives the same segments."""
    store.upgrade_database(postgres_database)
    engine = store.make_engine(postgres_database)
    try:
        store.insert_records(engine, _records(random.Random(12), 30, start=0))
        store.compact_log(
            engine, model_name="m", numeric=NUMERIC, categorical=CATEGORICAL, segment_rows=10
        )
        with engine.connect() as connection:
            expected = {
                int(i): bytes(d)
                for i, d in connection.execute(
                    sa.select(store.log_segments.c.id, store.log_segments.c.data)
                )
            }
            sink = store._Messages()
            cursor = connection.connection.dbapi_connection.cursor()
            cursor.copy_expert(
                "COPY (SELECT id, data FROM log_segments) TO STDOUT (FORMAT binary)", sink
            )
            cursor.close()
        assert len(expected) >= 3 and len(sink.parts) >= 3  # PostgreSQL's own messages
        whole = b"".join(sink.parts)
        rng = random.Random(0)
        for parts in [sink.parts, [whole]]:
            assert {i: bytes(d) for i, d in store._binary_copy_rows(parts)} == expected
        for _ in range(20):
            cuts = sorted(rng.sample(range(1, len(whole)), 8))
            pieces = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
            assert {i: bytes(d) for i, d in store._binary_copy_rows(pieces)} == expected
        with pytest.raises(store.StoreError, match="ended inside a row"):
            list(store._binary_copy_rows([whole[:-40]]))
        with pytest.raises(store.StoreError, match="no COPY header"):
            list(store._binary_copy_rows([b"x" * 40]))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_compaction_vacuums_and_analyzes_the_postgresql_log(postgres_database: str) -> None:
    """After a compaction the log's pages are all-visible (the read's row count is an
    index-only scan without heap fetches) and the planner has statistics of the log."""
    store.upgrade_database(postgres_database)
    engine = store.make_engine(postgres_database)
    try:
        store.insert_records(engine, _records(random.Random(13), 300, start=0))
        store.compact_log(engine, model_name="m", numeric=NUMERIC, categorical=CATEGORICAL)
        with engine.connect() as connection:
            vacuumed, analyzed, pending = connection.execute(
                sa.text(
                    "SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL, n_ins_since_vacuum"
                    " FROM pg_stat_user_tables WHERE relname = 'inference_log'"
                )
            ).one()
            assert vacuumed and analyzed and pending == 0
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(
                row[0]
                for row in connection.exec_driver_sql(
                    "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM inference_log"
                    " WHERE model_name = 'm'"
                )
            )
        assert "Index Only Scan" in plan and "Heap Fetches: 0" in plan, plan
        # nothing new to compact: no VACUUM
        store.compact_log(engine, model_name="m", numeric=NUMERIC, categorical=CATEGORICAL)
    finally:
        engine.dispose()


def _raw_block(rng: random.Random, start: int, n: int) -> columnar.Block:
    """A block of odd log rows, as the JSON of rows past the segments decodes."""
    records = _records(rng, n, start=start)
    raw = columnar.RawRows(
        ids=list(range(start + 1, start + n + 1)),
        ts_us=np.array([int(r["ts"].timestamp() * 1e6) for r in records], dtype=np.int64),
        versions=[r["model_version"] for r in records],
        request_ids=[r["request_id"] for r in records],
        features=[r["features"] for r in records],
        predictions=[r["prediction"] for r in records],
        probability=[r["probability"] for r in records],
        probabilities=[r["probabilities"] for r in records],
        labels=[_label(rng) if i % 3 else None for i in range(n)],
        labeled=[bool(i % 3) for i in range(n)],
    )
    return columnar.block_from_raw(raw, numeric=NUMERIC, categorical=CATEGORICAL)


def _assert_same_blocks(got: columnar.Block, expected: columnar.Block) -> None:
    for name in ("ids", "ts_us", "versions", "request_ids", "probability", "labeled"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
        assert getattr(got, name).dtype == getattr(expected, name).dtype, name
    for kind in ("numeric", "categorical"):
        assert list(getattr(got, kind)) == list(getattr(expected, kind))
        for name, column in getattr(expected, kind).items():
            np.testing.assert_array_equal(getattr(got, kind)[name], column, err_msg=name)
            assert getattr(got, kind)[name].dtype == column.dtype, name
    for name in ("prediction", "label"):
        a, b = getattr(got, name), getattr(expected, name)
        assert a.kind == b.kind and a.objects() == b.objects(), name
    np.testing.assert_array_equal(got.probabilities, expected.probabilities)


@given(sizes=st.lists(st.integers(0, 9), min_size=0, max_size=6), spare=st.integers(0, 5))
@settings(max_examples=40, deadline=None)
def test_block_builder_equals_the_concatenation(sizes: list[int], spare: int) -> None:
    rng = random.Random(len(sizes) * 31 + spare)
    blocks, start = [], 0
    for n in sizes:
        blocks.append(_raw_block(rng, start, n))
        start += n
    builder = columnar.BlockBuilder(
        sum(sizes) + spare, numeric=NUMERIC, categorical=CATEGORICAL, probabilities=True
    )
    for block in blocks:
        builder.append(block)
    assert len(builder) == sum(sizes)
    if blocks:
        _assert_same_blocks(builder.finish(), columnar.concat_blocks(blocks, probabilities=True))
    else:
        assert len(builder.finish()) == 0


def test_block_builder_refuses_more_rows_or_other_features() -> None:
    rng = random.Random(3)
    builder = columnar.BlockBuilder(
        4, numeric=NUMERIC, categorical=CATEGORICAL, probabilities=False
    )
    builder.append(_raw_block(rng, 0, 3))
    with pytest.raises(ValueError, match="holds 4 rows; 6 were appended"):
        builder.append(_raw_block(rng, 3, 3))
    other = columnar.BlockBuilder(4, numeric=["x0"], categorical=[], probabilities=False)
    with pytest.raises(ValueError, match="other features"):
        other.append(_raw_block(rng, 0, 1))


def _segment_rows(engine: Engine) -> list[tuple[int, int, int]]:
    """(version, first id, rows) of each segment of model m."""
    s = store.log_segments.c
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                sa.select(s.model_version, s.first_id, s.rows)
                .where(s.model_name == "m")
                .order_by(s.model_version, s.first_id)
            )
        ]


def _compact(engine: Engine, segment_rows: int) -> store.CompactionOutcome:
    return store.compact_log(
        engine,
        model_name="m",
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        segment_rows=segment_rows,
    )


def test_compactions_of_small_batches_merge_their_segments(engine: Engine) -> None:
    """A compaction after every few rows (a monitor on light traffic) leaves one segment of up
    to segment_rows rows per version, not one per run; every row stays in exactly one."""
    rng = random.Random(21)
    total = 0
    for _ in range(12):
        records = _records(rng, 9, start=total)
        store.insert_records(engine, records)
        store.record_labels(engine, {r["request_id"]: _label(rng) for r in records[::2]})
        total += len(records)
        outcome = _compact(engine, segment_rows=40)
        assert outcome.rows == 9
        _assert_same(engine)
    layout = _segment_rows(engine)
    assert sum(rows for _, _, rows in layout) == total
    assert all(rows <= 40 for _, _, rows in layout)
    # 108 rows of 2 versions in segments of at most 40: a handful, not 12 runs x 2 versions
    assert len(layout) <= 8, layout
    for version in {v for v, _, _ in layout}:
        mine = [rows for v, _, rows in layout if v == version]
        # no two neighbours that would still fit in one segment
        assert all(a + b > 40 for a, b in zip(mine, mine[1:], strict=False)), layout


def test_a_read_whose_segments_are_merged_meanwhile_plans_again(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The segments a read planned on are merged (deleted, one new segment) before it fetches
    them: it plans again and still returns the JSON read's frame, for both kinds of read."""
    rng = random.Random(22)
    for start in range(0, 60, 10):
        store.insert_records(engine, _records(rng, 10, start=start))
        store.compact_log(
            engine, model_name="m", numeric=NUMERIC, categorical=CATEGORICAL, segment_rows=10
        )
    before = _segment_rows(engine)
    real_plan = store._plan_segments
    plans: list[int] = []

    def plan_then_merge(connection: sa.Connection, query: Any) -> Any:
        plan = real_plan(connection, query)
        plans.append(len(plan.chosen))
        if len(plans) == 1:  # another compaction merges them, on its own connection
            assert store._merge_small_segments(engine, "m", 1_000) > 0
        return plan

    monkeypatch.setattr(store, "_plan_segments", plan_then_merge)
    fast, slow = _both(engine)  # the JSON read plans nothing
    assert len(plans) == 2 and plans[1] < plans[0]
    assert len(_segment_rows(engine)) < len(before)
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    monkeypatch.setattr(store, "_plan_segments", real_plan)

    # the column read: merge again under it (new small segments first)
    store.insert_records(engine, _records(rng, 30, start=60))
    _compact(engine, segment_rows=10)
    plans.clear()
    monkeypatch.setattr(store, "_plan_segments", plan_then_merge)
    columns = store.read_window_columns(
        engine, model_name="m", numeric=["x0"], categorical=["c1"], prediction=True
    )
    assert len(plans) == 2
    monkeypatch.setattr(store, "_plan_segments", real_plan)
    expected = store.read_window(
        engine,
        model_name="m",
        numeric=["x0"],
        categorical=["c1"],
        target="y",
        columnar=False,
    )[["x0", "c1", "prediction"]]
    pd.testing.assert_frame_equal(columns, expected, check_exact=True)


def test_concurrent_merges_keep_every_row_once(engine: Engine) -> None:
    rng = random.Random(23)
    for start in range(0, 120, 8):
        store.insert_records(engine, _records(rng, 8, start=start))
        _compact(engine, segment_rows=8)  # each run's segments stay: 8 rows of 2 versions
    replaced: list[int] = []

    def merge() -> None:
        replaced.append(store._merge_small_segments(engine, "m", 10_000))

    threads = [threading.Thread(target=merge) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    layout = _segment_rows(engine)
    assert sum(rows for _, _, rows in layout) == 120
    assert len(layout) == len({v for v, _, _ in layout})  # one segment per version
    assert sum(replaced) >= 2
    _assert_same(engine)
