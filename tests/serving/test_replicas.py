"""Several inference replicas on one PostgreSQL inference log (issue 15, part 3).

Real `python -m serving.server` processes on one real PostgreSQL database and one real MLflow
registry on disk: two separate replicas on two ports, and one replica of `--workers 2` on one
port. Under concurrent load the `champion` alias moves; then every acknowledged request has
exactly one row, with the version that answered it, each process switched versions, and each
port's /metrics counts what was served there.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.conftest import MODEL, Load, Registry, Server, records
from tests.serving.proxy import TcpProxy

pytestmark = pytest.mark.postgres

THREADS = 3  # client threads per replica: each has at most one request in flight


def logged(database_url: str) -> dict[str, int]:
    """request_id -> model_version of every row of the log (duplicates would raise below)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT request_id, model_version FROM inference_log").all()
    finally:
        engine.dispose()
    ids = Counter(request_id for request_id, _ in rows)
    assert [i for i, n in ids.items() if n > 1] == []  # no request id logged twice
    return dict(rows)


def samples(server: Server) -> dict[tuple[str, tuple[Any, ...]], float]:
    """The /metrics samples of one scrape: (name, sorted labels) -> value."""
    text = httpx.get(f"{server.url}/metrics", headers=server.headers(), timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def served(metrics: dict[tuple[str, tuple[Any, ...]], float]) -> dict[str, float]:
    """What a scrape says was served: 200s on /predict, rows predicted, rows logged (database
    and spool)."""
    return {
        "predict_200": metrics[
            ("driftloop_requests_total", (("endpoint", "/predict"), ("status", "200")))
        ],
        "rows_predicted": metrics[("driftloop_rows_predicted_total", ())],
        "rows_logged": sum(
            metrics[("driftloop_rows_logged_total", (("destination", where),))]
            for where in ("database", "spool")
        ),
    }


def wait_logged(database_url: str, expected: dict[str, int], timeout: float = 30) -> dict[str, int]:
    """The log once it holds every expected request id (spool replays finish), or at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        found = logged(database_url)
        if expected.keys() <= found.keys() or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def model_versions(metrics: dict[tuple[str, tuple[Any, ...]], float]) -> list[float]:
    return [value for (name, _), value in metrics.items() if name == "driftloop_model_version"]


def promote_under_load(
    loads: list[Load], tracking_uri: str, new: int, *, before: int, after: int
) -> None:
    """`before` answers per load, move `champion` to `new`, wait until every load is answered by
    it, then `after` more answers per load."""
    for load in loads:
        load.wait_acked(before)
    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(MODEL, "champion", str(new))
    deadline = time.monotonic() + 60  # loading the new version competes with the load for CPU
    for load in loads:
        while not any(a["model_version"] == new for a in load.acked[-THREADS * 4 :]):
            assert time.monotonic() < deadline, "a replica never picked up the new champion"
            time.sleep(0.05)
    for load in loads:
        load.wait_acked(len(load.acked) + after)
    for load in loads:
        load.stop()


def assert_switched_once(
    versions_by_id: dict[str, int], old: int, new: int, in_flight: int
) -> None:
    """One process's rows, in the order it numbered them: old, then new. Only requests in flight
    at the swap (scored by the old model, numbered after the first new one) may interleave."""
    ordered = [versions_by_id[i] for i in sorted(versions_by_id)]
    assert ordered[0] == old and ordered[-1] == new and set(ordered) == {old, new}
    first_new = ordered.index(new)
    assert ordered[first_new:].count(old) <= in_flight


def by_process(versions_by_id: dict[str, int]) -> dict[str, dict[str, int]]:
    """Rows grouped by the process that answered: a request id starts with the process's prefix."""
    groups: dict[str, dict[str, int]] = {}
    for request_id, version in versions_by_id.items():
        groups.setdefault(request_id[:16], {})[request_id] = version
    return groups


@pytest.mark.slow
def test_two_replicas_share_one_postgres_log_through_a_promotion(
    make_server: Any,
    registry_template: Registry,
    tracking_uri: str,
    postgres_database: str,
    tmp_path: Path,
) -> None:
    old, new = registry_template.versions["logistic"], registry_template.versions["forest"]
    # one host: both replicas share the spool directory too (each process its own spool file)
    serving = {"poll_interval_seconds": 0.3, "spool_dir": str(tmp_path / "spool")}
    replicas = [
        make_server(database_url=postgres_database, serving=serving, start=False) for _ in range(2)
    ]
    for replica in replicas:  # at once: both migrate the fresh database as they start
        replica.start(wait=False)
    for replica in replicas:
        replica.wait_ready()
    rows = records(registry_template.holdout, 200)
    loads = [Load(replica, rows, threads=THREADS).start() for replica in replicas]
    promote_under_load(loads, tracking_uri, new, before=400, after=400)

    for load in loads:
        assert set(load.statuses) == {200} and not load.failures
    acked = {a["request_id"]: a["model_version"] for load in loads for a in load.acked}
    assert len(acked) == sum(len(load.acked) for load in loads)  # ids unique across replicas
    log = logged(postgres_database)
    assert log == acked  # every acknowledged request once, with its version; nothing else
    for load in loads:
        own = {a["request_id"]: a["model_version"] for a in load.acked}
        assert len({request_id[:16] for request_id in own}) == 1  # one process per replica
        assert_switched_once(own, old, new, in_flight=THREADS)
    for replica, load in zip(replicas, loads, strict=True):
        metrics = samples(replica)
        n = len(load.acked)
        assert served(metrics) == {"predict_200": n, "rows_predicted": n, "rows_logged": n}
        assert model_versions(metrics) == [new]
        assert metrics[("driftloop_model_reloads_total", ())] == 1
    for replica in replicas:
        assert replica.stop() in (0, -15)  # uvicorn re-raises SIGTERM after its graceful exit
        assert "Traceback" not in replica.output()


@pytest.mark.slow
def test_workers_of_one_port_spool_through_an_outage_swap_log_once_and_share_their_metrics(
    make_server: Any,
    registry_template: Registry,
    tracking_uri: str,
    postgres_database: str,
    tmp_path: Path,
) -> None:
    old, new = registry_template.versions["logistic"], registry_template.versions["forest"]
    proxy = TcpProxy("127.0.0.1", 5432).start()
    server = make_server(
        database_url=proxy.url(postgres_database),
        serving={"poll_interval_seconds": 0.3, "db_retry_seconds": 0.5},
        start=False,
    )
    server.options = ["--workers", "2"]
    server.env["TMPDIR"] = str(tmp_path / "tmp")  # where `serve` makes the metrics directory
    (tmp_path / "tmp").mkdir()
    server.start()
    load = Load(
        server, records(registry_template.holdout, 200), threads=THREADS, fresh_connections=True
    ).start()
    load.wait_acked(200)
    proxy.cut()  # both workers spool, each into its own file of the one spool directory
    load.wait_acked(len(load.acked) + 300)
    proxy.restore()  # ... and each replays its own
    promote_under_load([load], tracking_uri, new, before=len(load.acked) + 100, after=300)

    assert set(load.statuses) == {200} and not load.failures
    acked = {a["request_id"]: a["model_version"] for a in load.acked}
    assert len(acked) == len(load.acked)
    assert wait_logged(postgres_database, acked) == acked  # each acknowledged request once
    workers = by_process(acked)
    assert len(workers) == 2  # both workers answered and wrote
    for own in workers.values():
        assert_switched_once(own, old, new, in_flight=THREADS)
    n = len(acked)
    for _ in range(6):  # each scrape reaches either worker; each says what the port served
        metrics = samples(server)
        assert served(metrics) == {"predict_200": n, "rows_predicted": n, "rows_logged": n}
        spooled = metrics[("driftloop_rows_logged_total", (("destination", "spool"),))]
        assert 0 < spooled == metrics[("driftloop_rows_replayed_total", ())]
        assert metrics[("driftloop_spool_pending_rows", ())] == 0
        assert model_versions(metrics) == [new, new]  # one series per live worker
        pids = {
            dict(labels)["pid"] for name, labels in metrics if name == "driftloop_model_version"
        }
        assert len(pids) == 2
    assert server.stop() in (0, -15)
    assert "Traceback" not in server.output()
    assert list((tmp_path / "tmp").iterdir()) == []  # the metrics directory went with the run
    assert list((server.config.parent / "spool").rglob("spool-*")) == []  # all replayed
