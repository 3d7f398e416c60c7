"""Scale: the inference log's write and read paths, and the monitor's checks end to end, at 1M
and 10M rows.

Generated traffic of 20 numeric and 5 categorical features (bench/drift.py's frames: a few
features drifted; a reference of --reference-rows, 1M by default, since a training snapshot
does not grow with traffic) is written to a fresh SQLite log and a fresh PostgreSQL database,
then:

  write     PostgreSQL group commits of --group records through `write_log` (COPY), against the
            previous path (SQLAlchemy executemany) on a sample, in the same run; SQLite's
            `insert_records` for the record
  compact   `compact_log`: the JSON of every row decoded once into columnar segments
  read      `read_window` from the JSON (on the newest --json-rows rows: it is the slow path)
            and from the segments (the whole window, the target's figure, then again in the
            same process); the two frames are compared on the --json-rows window (types,
            labels, versions, order)
  monitor   drift (features and prediction) and data quality of the whole window, read from the
            SQLite log, each in a fresh process:
              dask       the monitor's read and verdict with `monitoring.columns_per_task`
                         (`flows.monitor.judged_window`) in a Prefect flow run: the window's
                         outputs and labels and its newest 20,000 rows read in the flow's
                         process, drift and quality by a task per group of --columns-per-task
                         columns on a Dask scheduler and 2 workers, each a process of its own,
                         each task reading its columns from the log (the cluster and Prefect's
                         server are up and warm before the clock; the log has no labels)
              driftloop  the same in one process: `read_window`, `compute_drift`, `compute_quality`
              evidently  `read_window`, then Evidently's DataDriftPreset on the features
            wall time, rows/s, the peak RSS of the largest process (monitor, scheduler, worker)
            and whether dask and one process give the same verdicts

    .venv/bin/python bench/scale.py                      # 1M rows (about 15 minutes)
    .venv/bin/python bench/scale.py --rows 10000000 --skip-postgres --skip-evidently \
        --log /tmp/scale10m.db                           # 10M (about 20 minutes; keeps the log)
    .venv/bin/python bench/scale.py --rows 200000        # a quick look
    .venv/bin/python bench/scale.py --only-postgres      # the PostgreSQL log figures only

Targets (issue 15): reads of at least 1,000,000 rows/s on SQLite and PostgreSQL; PostgreSQL
writes of at least 50,000 rows/s in group commits; at 10M the monitor end to end within 60 s
with no process above 2 GB and the verdicts of one process; at 1M at least 20x faster than
Evidently end to end.
"""

from __future__ import annotations

import argparse
import contextlib
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
from prefect import flow

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


def record_chunks(frame: pd.DataFrame, size: int = 100_000) -> Any:
    """The frame's log records a chunk at a time (10M records would not fit in memory)."""
    for start in range(0, len(frame), size):
        yield records(frame.iloc[start : start + size], start=start)


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


def log_figures(url: str, current: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    """Write, compact and read one backend's log; figures by name (record generation, a
    chunk at a time, is not counted in the write)."""
    store.upgrade_database(url)
    engine = store.make_engine(url)
    out: dict[str, Any] = {}
    n = len(current)
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        sample = records(current.iloc[: args.baseline_rows])
        out["write_before"] = len(sample) / write_executemany(engine, sample, args.group)
        with engine.begin() as connection:
            connection.execute(sa.delete(store.inference_log))
    if not postgres and store.count_rows(engine, model_name=MODEL) == n and args.log:
        # a log this bench filled before (--log): the same records, already compacted
        outcome = store.compact_log(engine, model_name=MODEL, numeric=NUM, categorical=CAT)
        assert outcome.rows == 0, outcome
        out["write"] = out["compact"] = float("nan")
    else:
        seconds = 0.0
        for chunk in record_chunks(current):
            if postgres:
                seconds += write_groups(engine, chunk, args.group)
            else:
                seconds += timed(lambda c=chunk: store.insert_records(engine, c))[1]
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
    # the same read again in this process: the first one also pays for the memory the process
    # gets from the system, and the database's caches fill
    fast, seconds = timed(lambda: read(engine, columnar=True))
    out["read_columnar_again"] = n / seconds
    del fast
    with engine.connect() as connection:
        out["segment_mb"] = (
            connection.scalar(sa.select(sa.func.sum(sa.func.length(store.log_segments.c.data))))
            / 1e6
        )
    engine.dispose()
    return out


# --------------------------------------------------------------------------- monitor child


def child(which: str, url: str, args: argparse.Namespace) -> None:
    """One monitor computation end to end in this process: read the window, then compute.

    driftloop  the monitor's engine in this process: `read_window`, then drift (features and
               the prediction, as the monitor compares them) and data quality
    dask       `flows.monitor.judged_window` with `monitoring.columns_per_task` in a flow run:
               the window's outputs read here, Prefect tasks on a Dask scheduler and 2 worker
               processes, each reading a column group from the log; the cluster and the
               Prefect server are started before the clock
    evidently  `read_window`, then Evidently's DataDriftPreset on the features
    """
    warnings.simplefilter("ignore")
    reference, _ = build(1, args.seed, reference_rows=args.reference_rows)
    # the served model's predictions on its snapshot, as the logged ones are drawn (records)
    reference["prediction"] = np.random.default_rng(args.seed).random(len(reference)) > 0.5
    reference["prediction"] = reference["prediction"].astype(np.int64)
    from monitoring.drift import compute_drift, reference_stats
    from monitoring.quality import compute_quality

    stats = reference_stats(reference, numeric=NUM, categorical=[*CAT, "prediction"])
    if which != "evidently":
        del reference
    if which == "dask":
        print(json.dumps(dask_child(url, stats, args)))
        return
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
            reference=None, current=current, numeric=NUM, categorical=CAT, reference_stats=stats,
            prediction="prediction", prediction_kind="categorical",
        )  # fmt: skip
        quality = compute_quality(
            reference=None, current=current, numeric=NUM, categorical=CAT, reference_stats=stats
        )
        columns = None
        verdicts = verdicts_of(result, quality)
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


def verdicts_of(drift: Any, quality: Any) -> dict[str, Any]:
    """What the two engines must agree on: every column's drift verdict, score and effect,
    and the quality issues."""
    return {
        "drift": drift.to_dict(),
        "quality": [[i.kind, i.column, i.value] for i in quality.issues],
        "passed": quality.passed,
    }


#: What the flow of the dask child reads: module globals, not the flow's closure. Prefect
#: sends the flow with every task; a flow of this module (imported as `scale`, not run as
#: `__main__`) is sent by reference, where a closure would send the reference statistics.
_RUN: dict[str, Any] = {}


@flow(name="scale-monitor-by-columns")
def checked_window(warm_up: bool) -> Any:
    """The monitor's read and verdict of the window with `monitoring.columns_per_task`
    (`flows.monitor.judged_window`): the window's outputs and labels and its newest rows read
    here, drift and quality by column tasks on the cluster. `warm_up`: the checks of a window
    of the log's first rows only, so the workers have imported what the tasks run, as
    long-lived workers (`make stack`) have."""
    from core.settings import Settings
    from flows.monitor import judged_window

    config, engine = _RUN["config"], store.make_engine(_RUN["url"])
    if warm_up:
        small = config.monitoring.window.model_copy(update={"rows": 1_000})
        config = config.model_copy(
            update={"monitoring": config.monitoring.model_copy(update={"window": small})}
        )
    try:
        settings = Settings(
            DRIFTLOOP_DATABASE_URL=_RUN["url"], DRIFTLOOP_DASK_ADDRESS=_RUN["address"]
        )
        window, result = judged_window(
            engine, config, settings, _RUN["ref"], version=1, now=_RUN["now"]
        )
    finally:
        engine.dispose()
    return len(window.frame), result.drift, result.quality


def compare(a: dict[str, Any], b: dict[str, Any]) -> tuple[bool, float]:
    """Whether two runs' verdicts and issues are identical, and the largest relative difference
    of their scores and effects (sums over categories follow Python's per-process string
    hashing, so they may differ in the last bits between processes)."""
    da, db = a["drift"], b["drift"]
    flags = ("column", "kind", "method", "drifted", "note", "threshold", "effect_threshold")
    pairs = list(zip(da["columns"], db["columns"], strict=True))
    if da["prediction"] or db["prediction"]:
        pairs.append((da["prediction"], db["prediction"]))
    same = (
        all(x and y and all(x[k] == y[k] for k in flags) for x, y in pairs)
        and da["drifted_features"] == db["drifted_features"]
        and da["dataset_drift"] == db["dataset_drift"]
        and [i[:2] for i in a["quality"]] == [i[:2] for i in b["quality"]]
        and a["passed"] == b["passed"]
    )
    gap = 0.0
    for x, y in pairs:
        for key in ("score", "effect"):
            if x[key] is not None and y[key] is not None and x[key] != y[key]:
                gap = max(gap, abs(x[key] - y[key]) / max(abs(x[key]), abs(y[key])))
    return same, gap


@contextlib.contextmanager
def dask_processes(workers: int = 2) -> Any:
    """A Dask scheduler and `workers` single-threaded workers, each a process of its own, as
    `make stack` starts them (a LocalCluster would run the scheduler in this process, and the
    tasks' arguments it holds would count as the monitor's memory); yields the address."""
    import socket

    from distributed import Client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    # the workers import this module by name: the tasks' flow is `scale.checked_window`
    path = os.pathsep.join(filter(None, [str(ROOT / "bench"), os.environ.get("PYTHONPATH")]))
    quiet = {
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "env": {**os.environ, "PYTHONPATH": path},
    }
    scheduler = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                 "--port", str(port), "--dashboard-address", ":0"]  # fmt: skip
    worker = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
              "--dashboard-address", ":0"]  # fmt: skip
    procs = [subprocess.Popen(scheduler, **quiet)]
    try:
        procs += [subprocess.Popen(worker, **quiet) for _ in range(workers)]
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


def dask_child(url: str, stats: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The monitor's step with `monitoring.columns_per_task` on a version whose reference has
    these statistics (the registry's part, loading the version, is not timed)."""
    from distributed import Client

    from core.config import parse_config
    from core.spec import FeatureSpec, VersionInfo
    from monitoring.verdict import VersionReference

    if __name__ == "__main__":
        raise SystemExit("the dask child runs as module `scale` (see run_child)")
    config = parse_config(
        {
            "model_name": MODEL, "task": "classification", "target": "y",
            "data": {"train": "unused.csv"},
            "monitoring": {"columns_per_task": args.columns_per_task,
                           "window": {"kind": "last_rows", "rows": args.rows}},
        }
    )  # fmt: skip
    info = VersionInfo(
        model_name=MODEL, version=1, run_id="bench", task="classification", target="y",
        spec=FeatureSpec(numeric=tuple(NUM), categorical=tuple(CAT)), not_null=(), classes=(0, 1),
    )  # fmt: skip
    store.upgrade_database(url)  # the monitor's own tables (its previous runs)
    _RUN.update(
        config=config,
        url=url,
        now=datetime.now(UTC),
        ref=VersionReference(info, pd.DataFrame(), 0.5, stats),
    )
    with dask_processes() as address, Client(address) as client:
        _RUN["address"] = address
        checked_window(True)  # Prefect's server up, the workers warm: not part of the run
        client.run(reset_peak)
        client.run_on_scheduler(reset_peak)
        baseline = rss_mb()
        reset_peak()
        start = time.perf_counter()
        rows, drift, quality = checked_window(False)
        seconds = time.perf_counter() - start
        workers = client.run(peak_mb)
        scheduler = client.run_on_scheduler(peak_mb)
    return {
        "seconds": seconds,
        "read_seconds": None,
        "rows": rows,
        "peak_mb": max(peak_mb(), scheduler, *workers.values()),
        "monitor_peak_mb": peak_mb(),
        "scheduler_peak_mb": scheduler,
        "worker_peak_mb": sorted(workers.values()),
        "baseline_mb": baseline,
        "verdicts": verdicts_of(drift, quality),
        "evidently_columns": None,
    }


def run_child(which: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    # run as the module `scale` (not `__main__`), so the dask child's flow is sent by reference
    entry = f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import scale; scale.main()"
    done = subprocess.run(
        [sys.executable, "-c", entry, "--child", which, "--url", url, "--rows", str(args.rows),
         "--reference-rows", str(args.reference_rows), "--seed", str(args.seed),
         "--columns-per-task", str(args.columns_per_task)],
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
    parser.add_argument(
        "--reference-rows", type=int, default=1_000_000,
        help="rows of the reference (a training snapshot does not grow with traffic)",
    )  # fmt: skip
    parser.add_argument("--columns-per-task", type=int, default=6, help="dask: columns per task")
    parser.add_argument("--skip-single", action="store_true", help="no single-process monitor")
    parser.add_argument("--results", help="write every figure to this JSON file")
    parser.add_argument(
        "--log", help="the SQLite log file to use and keep; a file a run with the same --rows, "
        "--reference-rows and --seed filled is reused (no write or compaction figures)",
    )  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.reference_rows = min(args.reference_rows, args.rows)
    if args.child:
        child(args.child, args.url, args)
        return
    args.json_rows = min(args.json_rows, args.rows)
    print(f"scale bench: {args.rows:,} rows x {len(NUM)} numeric + {len(CAT)} categorical features"
          f" (reference {args.reference_rows:,} rows)")  # fmt: skip
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    start = time.perf_counter()
    current = build(args.rows, args.seed, reference_rows=args.reference_rows)[1]
    print(f"generated {len(current):,} rows in {time.perf_counter() - start:.0f} s", flush=True)

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{Path(args.log) if args.log else Path(tmp) / 'log.db'}"
        if not args.only_postgres:
            results["sqlite"] = log_figures(sqlite_url, current, args)
            print(f"sqlite: {results['sqlite']}", flush=True)
        drop = None
        if not args.skip_postgres:
            pg_url, drop = new_postgres_database()
            try:
                results["postgresql"] = log_figures(pg_url, current, args)
                print(f"postgresql: {results['postgresql']}", flush=True)
            finally:
                drop()
        del current
        monitor = {}
        if not args.only_postgres:
            monitor["dask"] = run_child("dask", sqlite_url, args)
            print(f"dask: {monitor['dask']['seconds']:.1f} s", flush=True)
            if not args.skip_single:
                monitor["driftloop"] = run_child("driftloop", sqlite_url, args)
                print(f"driftloop: {monitor['driftloop']['seconds']:.1f} s", flush=True)
        if not args.skip_evidently and not args.only_postgres:
            monitor["evidently"] = run_child("evidently", sqlite_url, args)

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
        ok = "met" if r["read_columnar"] >= 1_000_000 else "NOT met"
        print(f"{name} columnar read: {r['read_columnar'] / r['read_json']:.0f}x the JSON read; "
              f"target 1,000,000 rows/s: {ok}; equal to the JSON read: {r['equal']}; "
              f"read again: {r['read_columnar_again']:,.0f} rows/s")  # fmt: skip
    print()
    print(
        f"{'monitor end to end':<22}{'seconds':>10}{'of it read':>12}{'rows/s':>12}{'peak MB':>10}"
    )
    names = {"driftloop": "driftloop, 1 process", "dask": "driftloop, Dask (2)"}
    for name, m in monitor.items():
        read_s = "-" if m["read_seconds"] is None else f"{m['read_seconds']:.1f}"
        print(f"{names.get(name, name):<22}{m['seconds']:>10.1f}{read_s:>12}"
              f"{m['rows'] / m['seconds']:>12,.0f}{m['peak_mb']:>10,.0f}")  # fmt: skip
    if "dask" in monitor:
        d = monitor["dask"]
        met = d["seconds"] <= 60 and d["peak_mb"] <= 2048
        verdict = ("met" if met else "NOT met") if args.rows >= 10_000_000 else "for 10M rows"
        print(f"dask: the monitor's process peaked at {d['monitor_peak_mb']:,.0f} MB, the "
              f"scheduler at {d['scheduler_peak_mb']:,.0f} MB, the workers at "
              f"{', '.join(f'{w:,.0f}' for w in d['worker_peak_mb'])} MB; target (within 60 s, "
              f"no process above 2,048 MB): {verdict}")  # fmt: skip
    if "driftloop" in monitor and "dask" in monitor:
        same, gap = compare(monitor["driftloop"]["verdicts"], monitor["dask"]["verdicts"])
        print(f"dask and the single process give identical verdicts and issues: {same}; "
              f"largest relative difference of a score or effect: {gap:.1e}")  # fmt: skip
    if "evidently" in monitor:
        fastest = min(m["seconds"] for k, m in monitor.items() if k != "evidently")
        ratio = monitor["evidently"]["seconds"] / fastest
        print(f"driftloop is {ratio:.1f}x faster than Evidently end to end; target 20x: "
              f"{'met' if ratio >= 20 else 'NOT met'}")  # fmt: skip
    some = monitor.get("driftloop") or monitor.get("dask")
    if some:
        columns = some["verdicts"]["drift"]["columns"]
        drifted = sorted(c["column"] for c in columns if c["drifted"])
        print(f"driftloop's drifted columns: {drifted}")
    if args.results:
        Path(args.results).write_text(json.dumps({"args": vars(args), "log": results,
                                                  "monitor": monitor}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
