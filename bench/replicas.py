"""Replicas on one PostgreSQL inference log: 1 process, `--workers 2` on one port, 2 processes.

Registers the bench model (`bench/serve.py`'s, a HistGradientBoosting pipeline by default) in a
temporary MLflow registry, makes a fresh PostgreSQL database, and for each topology starts the
servers (`python -m serving.server`, inference log ON), warms them up, drives single-row
requests with `wrk` on loopback (closed loop; with two ports, one `wrk` per port at once, half
the connections each), and counts the log's rows: every answered request must be there once.
Prints req/s, p50/p99 and rows logged against requests answered, with the load average: on a
machine shared with other work, the figures move with it.

    .venv/bin/python bench/replicas.py [--seconds 10] [--connections 8] [--family hgb|logistic]
        [--postgres postgresql+psycopg2://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.serve import (  # noqa: E402 - after the path set-up, like the other benches
    DATA,
    REPO,
    features,
    free_port,
    register,
    start,
    stop,
    wait_http,
    wrk,
)

#: topology -> (processes, uvicorn workers per process)
TOPOLOGIES = {
    "1 process": (1, 1),
    "1 process, --workers 2": (1, 2),
    "2 processes (2 ports)": (2, 1),
}


def fresh_database(admin_url: str) -> str:
    name = f"driftloop_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def log_counts(url: str) -> tuple[int, int]:
    """(rows, distinct request ids) of the inference log."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows, distinct = conn.execute(
                sa.text("SELECT count(*), count(DISTINCT request_id) FROM inference_log")
            ).one()
    finally:
        engine.dispose()
    return int(rows), int(distinct)


def run_topology(
    processes: int, workers: int, *, root: Path, env: dict[str, str], body: str, args: Any
) -> dict[str, Any]:
    """Start the servers, warm up, measure with wrk (one per port, at once), stop them."""
    ports = [free_port() for _ in range(processes)]
    servers = [
        start(
            [
                sys.executable,
                "-m",
                "serving.server",
                "--config",
                str(root / "driftloop.yaml"),
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env,
            root / f"serve-{port}.log",
        )  # fmt: skip
        for port in ports
    ]
    connections = max(1, args.connections // processes)
    urls = [f"http://127.0.0.1:{port}/predict" for port in ports]
    try:
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/ready")

        def drive(url: str, seconds: int) -> dict[str, float]:
            return wrk(url, body, seconds=seconds, connections=connections, workdir=root)

        with ThreadPoolExecutor(processes) as pool:
            warm = list(pool.map(lambda url: drive(url, 2), urls))
            before = log_counts(env["DRIFTLOOP_DATABASE_URL"])[0]
            results = list(pool.map(lambda url: drive(url, args.seconds), urls))
    finally:
        for server in servers:
            stop(server)  # flushes the log
    rows, distinct = log_counts(env["DRIFTLOOP_DATABASE_URL"])
    answered = sum(int(r["requests"] - r["non2xx"]) for r in results)
    return {
        "rps": sum(r["rps"] for r in results),
        "p50": max(r["p50"] for r in results),
        "p99": max(r["p99"] for r in results),
        "answered": answered,
        "logged": rows - before,
        "duplicates": rows - distinct,
        "non2xx": sum(int(r["non2xx"]) for r in [*warm, *results]),
        "connections": connections * processes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", choices=["hgb", "logistic"], default="hgb")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--postgres", default="postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: `apt-get install -y wrk` (or `make system-deps`)")
    root = Path(tempfile.mkdtemp(prefix="driftloop-bench-replicas-"))
    print(f"registering a {args.family} pipeline in {root} ...", flush=True)
    tracking_uri, holdout = register(root, args.family)
    body = json.dumps(features(holdout.head(1)).to_dict(orient="records")[0])
    config = yaml.safe_load((REPO / "driftloop.yaml").read_text())
    config["data"] = {"train": str(DATA / "reference_2015.parquet")}
    config["serving"] = {"spool_dir": str(root / "spool")}
    (root / "driftloop.yaml").write_text(yaml.safe_dump(config))
    results: dict[str, dict[str, Any]] = {}
    for name, (processes, workers) in TOPOLOGIES.items():
        database_url = fresh_database(args.postgres)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "MLFLOW_"))}
        env.update(
            {
                "MLFLOW_TRACKING_URI": tracking_uri,
                "DRIFTLOOP_DATABASE_URL": database_url,
                "PYTHONPATH": str(REPO),
            }
        )
        try:
            print(f"{name} ...", flush=True)
            results[name] = run_topology(
                processes, workers, root=root, env=env, body=body, args=args
            )
        finally:
            drop_database(args.postgres, database_url)

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print()
    print(
        f"model: {args.family} pipeline, one PostgreSQL inference log, loopback, "
        f"wrk -t1 -d{args.seconds}s, {args.connections} connections in all"
    )
    print(f"load average after the runs (1, 5, 15 min): {load} on {os.cpu_count()} CPUs")
    print("| topology | req/s | p50 ms | p99 ms | answered | rows logged | duplicates | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['answered']:,} "
            f"| {r['logged']:,} | {r['duplicates']} | {r['non2xx']} |"
        )
    one = results["1 process"]["rps"]
    for name in list(TOPOLOGIES)[1:]:
        print(f"{name} / 1 process: {results[name]['rps'] / one:.2f}x")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
