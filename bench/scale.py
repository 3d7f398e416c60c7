"""Scale: the inference log's write and read paths, and a monitor run end to end, at 1M rows.

Generated traffic of 20 numeric and 5 categorical features (bench/drift.py's frames: a few
features drifted) is written to a fresh SQLite log and a fresh PostgreSQL database, then:

  write     PostgreSQL group commits of --group records through `write_log` (COPY), against the
            previous path (SQLAlchemy executemany) on a sample, in the same run; SQLite's
            `insert_records` for the record
  compact   `compact_log`: the JSON of every row decoded once into columnar segments
  read      `read_window` from the JSON (on the newest --json-rows rows: it is the slow path)
            and from the segments (the whole window); the two frames are compared on the
            --json-rows window (types, labels, versions, order)
  monitor   end to end in a fresh process: read the whole window from the log, then the
            monitor's drift and data-quality computation (driftloop), or Evidently's
            DataDriftPreset on the same frames; wall time, rows/s and the process's peak RSS

    .venv/bin/python bench/scale.py                      # 1M rows (about 10 minutes)
    .venv/bin/python bench/scale.py --rows 200000        # a quick look
    .venv/bin/python bench/scale.py --skip-evidently     # without the Evidently run (minutes)
    .venv/bin/python bench/scale.py --only-postgres      # the PostgreSQL log figures only

Targets (issue 15): reads of at least 1,000,000 rows/s on SQLite and PostgreSQL; PostgreSQL
writes of at least 50,000 rows/s in group commits; at 1M the monitor end to end at least 20x
faster than Evidently.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from drift import CAT, NUM, build, peak_mb, reset_peak, rss_mb  # noqa: E402

from monitoring import store  # noqa: E402

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
MODEL = "scale"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def records(frame: pd.DataFrame, *, start: int = 0) -> list[dict[str, Any]]:
    """Log records of the frame's rows, one second apart, a prediction and a probability each."""
    rows = frame[NUM + CAT].to_dict("records")
    rng = np.random.default_rng(start)
    probability = rng.random(len(rows))
    return [
        store.log_record(
            request_id=f"s{start + i:09d}",
            ts=T0 + timedelta(seconds=start + i),
            model_name=MODEL,
            model_version=1,
            features=row,
            prediction=int(probability[i] > 0.5),
            probability=float(probability[i]),
            latency_ms=1.0,
        )
        for i, row in enumerate(rows)
    ]


def timed(action: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def write_groups(engine: sa.Engine, recs: list[dict[str, Any]], group: int) -> float:
    """Seconds to commit `recs` as the service's writer does: one record per request, `group`
    requests per transaction, duplicates ignored."""
    start = time.perf_counter()
    with engine.connect() as connection:
        for k in range(0, len(recs), group):
            store.write_log(connection, [[r] for r in recs[k : k + group]], ignore_duplicates=True)
    return time.perf_counter() - start


def write_executemany(engine: sa.Engine, recs: list[dict[str, Any]], group: int) -> float:
    """The same with the previous statement: SQLAlchemy's INSERT ... ON CONFLICT executemany."""
    statement = store._insert_statement(engine.dialect.name, ignore_duplicates=True)
    start = time.perf_counter()
    with engine.connect() as connection:
        for k in range(0, len(recs), group):
            with connection.begin():
                connection.execute(statement, [store._complete(r) for r in recs[k : k + group]])
    return time.perf_counter() - start


def read(engine: sa.Engine, *, columnar: bool, since: datetime | None = None) -> pd.DataFrame:
    return store.read_window(
        engine,
        model_name=MODEL,
        numeric=NUM,
        categorical=CAT,
        target="y",
        since=since,
        columnar=columnar,
    )


def new_postgres_database() -> tuple[str, Any]:
    name = f"driftloop_scale_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=:n"),
                {"n": name},
            )
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()

    return POSTGRES.rsplit("/", 1)[0] + f"/{name}", drop


def log_figures(url: str, recs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Write, compact and read one backend's log; figures by name."""
    store.upgrade_database(url)
    engine = store.make_engine(url)
    out: dict[str, Any] = {}
    n = len(recs)
    if engine.dialect.name == "postgresql":
        sample = recs[: args.baseline_rows]
        out["write_before"] = len(sample) / write_executemany(engine, sample, args.group)
        with engine.begin() as connection:
            connection.execute(sa.delete(store.inference_log))
        out["write"] = n / write_groups(engine, recs, args.group)
    else:
        _, seconds = timed(
            lambda: [
                store.insert_records(engine, recs[k : k + 50_000]) for k in range(0, n, 50_000)
            ]
        )
        out["write"] = n / seconds
    outcome, seconds = timed(
        lambda: store.compact_log(engine, model_name=MODEL, numeric=NUM, categorical=CAT)
    )
    assert outcome.rows == n, outcome
    out["compact"] = n / seconds
    since = T0 + timedelta(seconds=n - args.json_rows)
    slow, seconds = timed(lambda: read(engine, columnar=False, since=since))
    out["read_json"] = len(slow) / seconds
    fast_part = read(engine, columnar=True, since=since)
    pd.testing.assert_frame_equal(fast_part, slow, check_exact=True)
    out["equal"] = True
    del slow, fast_part
    fast, seconds = timed(lambda: read(engine, columnar=True))
    assert len(fast) == n
    out["read_columnar"] = n / seconds
    del fast
    if engine.dialect.name == "postgresql":
        # what autovacuum does to a table that has stopped growing: the visibility map lets
        # the read's row count (its guard against rows missing from the segments) use the index
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE inference_log")
        fast, seconds = timed(lambda: read(engine, columnar=True))
        out["read_columnar_vacuumed"] = n / seconds
        del fast
    with engine.connect() as connection:
        out["segment_mb"] = (
            connection.scalar(sa.select(sa.func.sum(sa.func.length(store.log_segments.c.data))))
            / 1e6
        )
    engine.dispose()
    return out


# --------------------------------------------------------------------------- monitor child


def child(which: str, url: str, rows: int, seed: int) -> None:
    """One monitor computation end to end in this process: read the window, then compute."""
    warnings.simplefilter("ignore")
    reference, _ = build(rows, seed)
    from monitoring.drift import compute_drift, reference_stats
    from monitoring.quality import compute_quality

    stats = reference_stats(reference, numeric=NUM, categorical=CAT)
    if which == "driftloop":
        del reference
    baseline = rss_mb()
    reset_peak()
    engine = store.make_engine(url)
    start = time.perf_counter()
    current = read(engine, columnar=True)
    read_seconds = time.perf_counter() - start
    if which == "evidently":
        from drift import run_evidently

        columns = run_evidently(reference, current[NUM + CAT])["columns"]
        verdicts = None
    else:
        result = compute_drift(
            reference=None, current=current, numeric=NUM, categorical=CAT, reference_stats=stats
        )
        compute_quality(
            reference=None, current=current, numeric=NUM, categorical=CAT, reference_stats=stats
        )
        columns = None
        verdicts = {c.column: c.drifted for c in result.columns}
    seconds = time.perf_counter() - start
    engine.dispose()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "read_seconds": read_seconds,
                "rows": len(current),
                "peak_mb": peak_mb(),
                "baseline_mb": baseline,
                "verdicts": verdicts,
                "evidently_columns": sorted(columns) if columns else None,
            }
        )
    )


def run_child(which: str, url: str, rows: int, seed: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", which, "--url", url, "--rows", str(rows),
         "--seed", str(seed)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{which} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json-rows", type=int, default=100_000)
    parser.add_argument("--baseline-rows", type=int, default=20_000)
    parser.add_argument("--group", type=int, default=1_000, help="records per group commit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--only-postgres", action="store_true", help="the PostgreSQL log figures only"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.rows, args.seed)
        return
    args.json_rows = min(args.json_rows, args.rows)
    print(f"scale bench: {args.rows:,} rows x {len(NUM)} numeric + {len(CAT)} categorical features")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    start = time.perf_counter()
    recs = records(build(args.rows, args.seed)[1])
    seconds = time.perf_counter() - start
    print(f"generated {len(recs):,} records in {seconds:.0f} s")

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'log.db'}"
        if not args.only_postgres:
            results["sqlite"] = log_figures(sqlite_url, recs, args)
            print(f"sqlite: {results['sqlite']}", flush=True)
        drop = None
        if not args.skip_postgres:
            pg_url, drop = new_postgres_database()
            try:
                results["postgresql"] = log_figures(pg_url, recs, args)
                print(f"postgresql: {results['postgresql']}", flush=True)
            finally:
                drop()
        del recs
        monitor = {}
        if not args.only_postgres:
            monitor["driftloop"] = run_child("driftloop", sqlite_url, args.rows, args.seed)
        if not args.skip_evidently and not args.only_postgres:
            monitor["evidently"] = run_child("evidently", sqlite_url, args.rows, args.seed)

    print()
    print(f"{'log':<12}{'write rows/s':>16}{'compact rows/s':>16}{'JSON read rows/s':>18}"
          f"{'columnar read rows/s':>22}{'segments MB':>13}")  # fmt: skip
    for name, r in results.items():
        print(f"{name:<12}{r['write']:>16,.0f}{r['compact']:>16,.0f}{r['read_json']:>18,.0f}"
              f"{r['read_columnar']:>22,.0f}{r['segment_mb']:>13,.1f}")  # fmt: skip
    if "postgresql" in results:
        pg = results["postgresql"]
        print(f"postgresql write, group commits of {args.group}: {pg['write']:,.0f} rows/s by COPY "
              f"against {pg['write_before']:,.0f} rows/s by executemany "
              f"({pg['write'] / pg['write_before']:.1f}x); target 50,000: "
              f"{'met' if pg['write'] >= 50_000 else 'NOT met'}")  # fmt: skip
    for name, r in results.items():
        best = max(r["read_columnar"], r.get("read_columnar_vacuumed", 0))
        ok = "met" if best >= 1_000_000 else "NOT met"
        print(f"{name} columnar read: {r['read_columnar'] / r['read_json']:.0f}x the JSON read; "
              f"target 1,000,000 rows/s: {ok}; equal to the JSON read: {r['equal']}")  # fmt: skip
        if "read_columnar_vacuumed" in r:
            print(f"{name} columnar read after VACUUM ANALYZE (as autovacuum leaves a table): "
                  f"{r['read_columnar_vacuumed']:,.0f} rows/s")  # fmt: skip
    print()
    print(
        f"{'monitor end to end':<22}{'seconds':>10}{'of it read':>12}{'rows/s':>12}{'peak MB':>10}"
    )
    for name, m in monitor.items():
        print(f"{name:<22}{m['seconds']:>10.1f}{m['read_seconds']:>12.1f}"
              f"{m['rows'] / m['seconds']:>12,.0f}{m['peak_mb']:>10,.0f}")  # fmt: skip
    if "evidently" in monitor:
        ratio = monitor["evidently"]["seconds"] / monitor["driftloop"]["seconds"]
        print(f"driftloop is {ratio:.1f}x faster than Evidently end to end; target 20x: "
              f"{'met' if ratio >= 20 else 'NOT met'}")  # fmt: skip
    if "driftloop" in monitor:
        drifted = sorted(k for k, v in monitor["driftloop"]["verdicts"].items() if v)
        print(f"driftloop's drifted columns: {drifted}")


if __name__ == "__main__":
    main()
