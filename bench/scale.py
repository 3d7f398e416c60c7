"""The inference log at scale: window reads and PostgreSQL writes, new path against the old.

A generated log of N rows x 25 features (20 numeric, 5 categorical), 3 model versions, half
the rows labeled, is written to SQLite and to a fresh PostgreSQL database through
`store.insert_records` (blocks of 20,000 rows; PostgreSQL then gets the VACUUM ANALYZE that
autovacuum gives a live log after a wave of labels). Then, in the same run:

  read   the whole window of the model (labels joined), by the row-by-row JSON decode that
         `read_window` used to be (tests/monitoring/reference_window.py) and by the columnar
         `read_window`; the two frames are compared (types, labels, versions, order).
  write  PostgreSQL, 100,000 rows in group commits of 2,000 one-record requests: the old
         executemany INSERT (no blocks) against `store.write_log` (COPY plus the block).

    .venv/bin/python bench/scale.py                    # 200k and 1M rows
    .venv/bin/python bench/scale.py --rows 200000      # a quick look
    .venv/bin/python bench/scale.py --save             # also writes bench/results/scale.json

Targets: reads at least 1,000,000 rows/s on both backends, PostgreSQL writes at least 50,000
rows/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitoring import store  # noqa: E402
from tests.monitoring.reference_window import read_window_json  # noqa: E402

NUM = [f"n{i}" for i in range(20)]
CAT = [f"c{i}" for i in range(5)]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
POSTGRES_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
READ_TARGET, WRITE_TARGET = 1_000_000, 50_000
CHUNK = 20_000


def records(n: int, *, seed: int = 0, prefix: str = "r") -> list[dict[str, Any]]:
    """N log records: standard-normal numerics (n3 missing 1 row in 17), 12-level categoricals."""
    rng = np.random.default_rng(seed)
    numbers = rng.standard_normal((n, len(NUM))).tolist()
    levels = [f"level_{k}" for k in range(12)]
    codes = rng.integers(0, len(levels), (n, len(CAT))).tolist()
    out = []
    for i in range(n):
        features: dict[str, Any] = dict(zip(NUM, numbers[i], strict=True))
        if i % 17 == 0:
            features["n3"] = None
        features.update((c, levels[k]) for c, k in zip(CAT, codes[i], strict=True))
        out.append(
            store.log_record(
                request_id=f"{prefix}{i:09d}",
                ts=T0 + timedelta(milliseconds=250 * i),
                model_name="bench",
                model_version=1 + 3 * i // n,
                features=features,
                prediction=i % 2,
                probability=(i % 100) / 100,
                latency_ms=1.0,
            )
        )
    return out


def fill(engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        store.insert_records(engine, rows[start : start + CHUNK])
    labels = {r["request_id"]: (i // 2) % 2 for i, r in enumerate(rows) if i % 2 == 0}
    store.record_labels(engine, labels, at=T0 + timedelta(days=30))
    if engine.dialect.name == "postgresql":  # what autovacuum does to a live log after labels
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE inference_log"))


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best wall time of `repeat` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def read_both(engine: sa.Engine, n: int, *, repeat: int) -> dict[str, Any]:
    args = {"model_name": "bench", "numeric": NUM, "categorical": CAT, "target": "y"}
    old_s, old = timed(lambda: read_window_json(engine, **args))
    new_s, new = timed(lambda: store.read_window(engine, **args), repeat=repeat)
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    assert len(new) == n
    return {
        "rows": n,
        "old_rows_per_s": n / old_s,
        "new_rows_per_s": n / new_s,
        "ratio": old_s / new_s,
        "frames_equal": True,
    }


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"driftloop_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def old_write(connection: sa.Connection, groups: list[list[dict[str, Any]]]) -> None:
    """The write path before COPY and blocks: executemany INSERT in chunks of 2,000."""
    rows = [store._complete(r) for group in groups for r in group]
    with connection.begin():
        for start in range(0, len(rows), 2_000):
            connection.execute(sa.insert(store.inference_log), rows[start : start + 2_000])


def new_write(connection: sa.Connection, groups: list[list[dict[str, Any]]]) -> None:
    outcome = store.write_log(connection, groups)
    assert not outcome.refused


def write_rate(url: str, rows: list[dict[str, Any]], write: Callable[..., None]) -> float:
    """Rows/s of `write` on an empty log, in group commits of 2,000 one-record requests."""
    engine = store.make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE inference_log, inference_log_blocks"))
    batches = [[[r] for r in rows[s : s + 2_000]] for s in range(0, len(rows), 2_000)]
    with engine.connect() as connection:
        start = time.perf_counter()
        for batch in batches:
            write(connection, batch)
        seconds = time.perf_counter() - start
    assert store.count_rows(engine, model_name="bench") == len(rows)
    engine.dispose()
    return len(rows) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--write-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="new-path reads (best is kept)")
    parser.add_argument("--save", action="store_true", help="write bench/results/scale.json")
    args = parser.parse_args()

    results: dict[str, Any] = {"read": [], "write": {}}
    print(f"{'read':<8}{'backend':<12}{'rows':>10}{'old rows/s':>14}{'new rows/s':>14}{'x old':>8}")
    for n in args.rows:
        log = records(n)
        with tempfile.TemporaryDirectory() as tmp, postgres_database() as pg_url:
            for backend, url in (
                ("sqlite", f"sqlite:///{Path(tmp) / 'log.db'}"),
                ("postgresql", pg_url),
            ):
                store.upgrade_database(url)
                engine = store.make_engine(url)
                fill(engine, log)
                row = {"backend": backend, **read_both(engine, n, repeat=args.repeat)}
                engine.dispose()
                results["read"].append(row)
                print(
                    f"{'':<8}{backend:<12}{n:>10,}{row['old_rows_per_s']:>14,.0f}"
                    f"{row['new_rows_per_s']:>14,.0f}{row['ratio']:>7.1f}x"
                )
        del log

    writes = records(args.write_rows, seed=1, prefix="w")
    with postgres_database() as pg_url:
        store.upgrade_database(pg_url)
        old = write_rate(pg_url, writes, old_write)
        new = write_rate(pg_url, writes, new_write)
    results["write"] = {
        "rows": args.write_rows,
        "old_rows_per_s": old,
        "new_rows_per_s": new,
        "ratio": new / old,
    }
    print(
        f"\n{'write':<8}{'postgresql':<12}{args.write_rows:>10,}{old:>14,.0f}{new:>14,.0f}{new / old:>7.1f}x"
    )

    slowest_read = min(r["new_rows_per_s"] for r in results["read"])
    results["targets"] = {
        "read_rows_per_s": READ_TARGET,
        "read_met": slowest_read >= READ_TARGET,
        "write_rows_per_s": WRITE_TARGET,
        "write_met": new >= WRITE_TARGET,
    }
    print(
        f"\nread target {READ_TARGET:,} rows/s: {'met' if slowest_read >= READ_TARGET else 'NOT met'}"
        f" (slowest {slowest_read:,.0f}); write target {WRITE_TARGET:,} rows/s: "
        f"{'met' if new >= WRITE_TARGET else 'NOT met'} ({new:,.0f}); frames equal: yes"
    )
    if args.save:
        out = ROOT / "bench" / "results" / "scale.json"
        out.parent.mkdir(exist_ok=True)
        results["measured"] = datetime.now(UTC).isoformat(timespec="seconds")
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
