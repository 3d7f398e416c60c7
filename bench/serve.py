"""Serving speed: `driftloop serve` against `mlflow models serve` on the same registered model.

Registers a model trained on the shipped employment data in a temporary MLflow registry, starts
both servers with one worker each (driftloop with its inference log ON, SQLite), and drives them
with the same single-row requests from `wrk` on loopback (closed loop, fixed connections). Then
an open-loop Python client, in its own process, sends a fixed 500 req/s to driftloop and
measures latency from each request's scheduled send time (no coordinated omission). Prints a
table, which scorer driftloop used (its fast path is checked against the pipeline on the
reference snapshot the bench logs with the run), the load average, and checks that every
answered driftloop request is in the inference log. Last, with a logistic `challenger`
registered, the same fixed-rate run twice: shadow scoring off (`serving.shadow_share: 0`) and on
(every request also scored by the challenger), the champion's latency side by side.

    .venv/bin/python bench/serve.py [--family hgb|logistic] [--seconds 10] [--connections 8]
        [--rate 500] [--skip-mlflow] [--skip-shadow]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "employment"
MODEL = "employment"
NUMERIC = ["AGEP"]
CATEGORICAL = [
    "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC", "NATIVITY", "DEAR", "DEYE", "DREM", "SEX",
    "RAC1P",
]  # fmt: skip


def features(frame: pd.DataFrame) -> pd.DataFrame:
    out = {c: frame[c].astype("float64").to_numpy() for c in NUMERIC}
    for c in CATEGORICAL:
        out[c] = frame[c].astype(str).astype(object).to_numpy()
    return pd.DataFrame(out)


def pipeline_for(family: str) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                CATEGORICAL,
            ),
        ]
    )
    estimator = (
        LogisticRegression(C=1.0, max_iter=1000)
        if family == "logistic"
        else HistGradientBoostingClassifier(max_leaf_nodes=31, learning_rate=0.1, random_state=0)
    )
    return Pipeline([("preprocess", pre), ("model", estimator)])


def register(root: Path, family: str, alias: str = "champion") -> tuple[str, pd.DataFrame]:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from registry import log_model_version, model_spec_tag

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name("bench")
    experiment = (
        found.experiment_id
        if found is not None
        else client.create_experiment("bench", artifact_location=(root / "mlruns").as_uri())
    )
    frame = pd.read_parquet(DATA / "reference_2015.parquet")
    train, holdout = frame.iloc[:20_000], frame.iloc[20_000:22_000]
    X, y = features(train), train["employed"]
    pipeline = pipeline_for(family).fit(X, y)
    example = X.head(5)
    with mlflow.start_run(experiment_id=experiment):
        # the reference snapshot the training flow stores: the service checks its fast path on it
        version = log_model_version(
            client,
            model_name=MODEL,
            pipeline=pipeline,
            reference=features(holdout).assign(employed=holdout["employed"].to_numpy()),
            signature=infer_signature(example, pipeline.predict(example)),
            input_example=example,
            tags=model_spec_tag(
                task="classification",
                target="employed",
                numeric=NUMERIC,
                categorical=CATEGORICAL,
                not_null=NUMERIC,
                classes=[int(c) for c in pipeline.classes_],
            ),
        )
    client.set_registered_model_alias(MODEL, alias, str(version))
    return uri, holdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 180.0, method: str = "GET") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.request(method, url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=REPO
    )  # noqa: SIM115


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wrk(url: str, body: str, *, seconds: int, connections: int, workdir: Path) -> dict[str, float]:
    script = workdir / f"post-{abs(hash(url))}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "requests": requests,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


async def fixed_rate(url: str, body: bytes, *, rate: int, seconds: int) -> dict[str, float]:
    """Open loop: request i is due at t0 + i/rate; latency counts from that due time."""
    import aiohttp

    total = rate * seconds
    latencies: list[float] = []
    statuses: list[int] = []
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter() + 0.2

        async def one(i: int) -> None:
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                await response.read()
                statuses.append(response.status)
            latencies.append((time.perf_counter() - due) * 1000)

        await asyncio.gather(*(one(i) for i in range(total)))
    values = np.asarray(latencies)
    return {
        "rps": total / (max(latencies) / 1000 + seconds) if latencies else 0.0,
        "p50": float(np.percentile(values, 50)),
        "p99": float(np.percentile(values, 99)),
        "ok": sum(1 for s in statuses if s == 200),
        "sent": total,
    }


def fixed_rate_in_child(url: str, body: bytes, *, rate: int, seconds: int) -> dict[str, float]:
    """:func:`fixed_rate` in a fresh interpreter.

    This process holds MLflow, pandas and the fitted model: its garbage collections paused the
    client for 100+ ms, and an open-loop client counts its own pauses as server latency.
    """
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_fixed_rate_blocking, (url, body, rate, seconds))


def _fixed_rate_blocking(url: str, body: bytes, rate: int, seconds: int) -> dict[str, float]:
    gc.collect()
    gc.freeze()
    return asyncio.run(fixed_rate(url, body, rate=rate, seconds=seconds))


def logged_rows(database_url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        return int(conn.scalar(sa.text("SELECT count(*) FROM inference_log")))


def shadow_rows(database_url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT COUNT(*) FROM shadow_predictions")).scalar_one()
    engine.dispose()
    return int(n)


def shadow_latency(
    root: Path, env: dict[str, str], body: str, *, rate: int, seconds: int, database_url: str
) -> dict[str, dict[str, float]]:
    """The champion's latency at a fixed rate with a challenger scoring every request in the
    shadow, and with shadow scoring off (serving.shadow_share 0), same server otherwise."""
    out = {}
    for name, share in (("shadow off", 0.0), ("shadow on (share 1.0)", 1.0)):
        config = yaml.safe_load((root / "driftloop.yaml").read_text())
        config["serving"] = {**config["serving"], "shadow_share": share}
        path = root / f"driftloop-shadow-{share}.yaml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        serve = start(
            [sys.executable, "-m", "serving.server", "--config", str(path), "--port", str(port)],
            env, root / f"driftloop-serve-shadow-{share}.log",
        )  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{port}/ready")
            url = f"http://127.0.0.1:{port}/predict"
            fixed_rate_in_child(url, body.encode(), rate=rate, seconds=2)  # warm-up
            time.sleep(2.0)  # the warm-up's shadow is written before counting
            before = shadow_rows(database_url)
            out[name] = fixed_rate_in_child(url, body.encode(), rate=rate, seconds=seconds)
            time.sleep(2.0)  # the shadow queue drains after the last answer
            out[name]["shadow_rows"] = shadow_rows(database_url) - before
        finally:
            stop(serve)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", choices=["hgb", "logistic"], default="hgb")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-shadow", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: `apt-get install -y wrk` (or `make system-deps`)")
    root = Path(tempfile.mkdtemp(prefix="driftloop-bench-"))
    print(f"registering a {args.family} pipeline in {root} ...", flush=True)
    tracking_uri, holdout = register(root, args.family)
    row = features(holdout.head(1)).to_dict(orient="records")[0]
    database_url = f"sqlite:///{root / 'driftloop.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "MLFLOW_"))}
    env.update(
        {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "DRIFTLOOP_DATABASE_URL": database_url,
            "PYTHONPATH": str(REPO),
        }
    )
    # mlflow models serve runs `uvicorn` from PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    config = yaml.safe_load((REPO / "driftloop.yaml").read_text())
    config["data"] = {"train": str(DATA / "reference_2015.parquet")}
    config["serving"] = {"spool_dir": str(root / "spool")}
    (root / "driftloop.yaml").write_text(yaml.safe_dump(config))

    results: dict[str, dict[str, float]] = {}
    bin_dir = Path(sys.executable).parent
    if not args.skip_mlflow:
        port = free_port()
        mlflow_proc = start(
            [str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager",
             "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
            env, root / "mlflow-serve.log",
        )  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{port}/ping")
            body = json.dumps({"dataframe_records": [row]})
            wrk(
                f"http://127.0.0.1:{port}/invocations",
                body,
                seconds=2,
                connections=args.connections,
                workdir=root,
            )
            results["mlflow models serve"] = wrk(
                f"http://127.0.0.1:{port}/invocations", body, seconds=args.seconds,
                connections=args.connections, workdir=root,
            )  # fmt: skip
        finally:
            stop(mlflow_proc)

    port = free_port()
    serve = start(
        [sys.executable, "-m", "serving.server", "--config", str(root / "driftloop.yaml"), "--port", str(port)],
        env, root / "driftloop-serve.log",
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/ready")
        scorer = httpx.get(f"http://127.0.0.1:{port}/model").json().get("scorer_note", "?")
        url = f"http://127.0.0.1:{port}/predict"
        body = json.dumps(row)
        wrk(url, body, seconds=2, connections=args.connections, workdir=root)  # warm-up
        results["driftloop serve"] = wrk(
            url, body, seconds=args.seconds, connections=args.connections, workdir=root
        )
        steady = fixed_rate_in_child(url, body.encode(), rate=args.rate, seconds=args.seconds)
    finally:
        stop(serve)
    answered = sum(int(r["requests"] - r["non2xx"]) for r in [results["driftloop serve"]])
    logged = logged_rows(database_url)
    shadow: dict[str, dict[str, float]] = {}
    if not args.skip_shadow:
        print("registering a logistic challenger for the shadow run ...", flush=True)
        register(root, "logistic", alias="challenger")
        shadow = shadow_latency(
            root, env, json.dumps(row), rate=args.rate, seconds=args.seconds,
            database_url=database_url,
        )  # fmt: skip

    print()
    print(
        f"model: {args.family} pipeline, 1 worker each, loopback, wrk -t1 -c{args.connections} -d{args.seconds}s"
    )
    print(f"driftloop scorer: {scorer}")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average after the runs (1, 5, 15 min): {load} on {os.cpu_count()} CPUs")
    print("| server | req/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {int(r['non2xx'])} |"
        )
    if "mlflow models serve" in results:
        ratio = results["driftloop serve"]["rps"] / results["mlflow models serve"]["rps"]
        print(f"\nthroughput ratio driftloop / mlflow: {ratio:.1f}x (target >= 10x)")
    print(
        f"driftloop at a fixed {args.rate} req/s for {args.seconds}s: p50 {steady['p50']:.2f} ms, "
        f"p99 {steady['p99']:.2f} ms (target < 15 ms), {steady['ok']}/{steady['sent']} answered 200"
    )
    expected = answered + steady["ok"] + 0  # warm-up requests are logged too
    print(
        f"inference log rows: {logged:,} (>= {expected:,} answered in the measured runs: {logged >= expected})"
    )
    if shadow:
        off, on = shadow["shadow off"], shadow["shadow on (share 1.0)"]
        print(
            f"\nshadow scoring at a fixed {args.rate} req/s for {args.seconds}s (challenger: logistic):"
        )
        print("| champion latency | p50 ms | p99 ms | answered | shadow rows |")
        print("|---|---:|---:|---:|---:|")
        for name, r in shadow.items():
            print(
                f"| {name} | {r['p50']:.2f} | {r['p99']:.2f} | {r['ok']}/{r['sent']} | {int(r['shadow_rows'])} |"
            )
        print(
            f"p50 ratio on/off {on['p50'] / off['p50']:.2f}x, p99 ratio {on['p99'] / off['p99']:.2f}x "
            f"(target: within noise); shadow rows {int(on['shadow_rows'])} of {on['ok']} answered"
        )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
