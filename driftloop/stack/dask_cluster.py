"""The stack's Dask cluster: a scheduler and :data:`WORKERS` workers of one thread each, every one
a process of its own (``dask scheduler``, ``dask worker``). Every process the stack starts gets
``DRIFTLOOP_DASK_ADDRESS`` naming the scheduler, so the flows the Prefect worker runs send their
Dask tasks here (``monitoring.partitions``, ``model.search_on_dask``, ``score --partitions``)
instead of starting a local cluster per run. The scheduler's HTTP port answers ``/health`` and
serves Prometheus metrics on ``/metrics``."""

from __future__ import annotations

import sys

from driftloop.stack.launch import Launch
from driftloop.stack.processes import HOST, free_port, http_ok, wait_healthy

#: Worker processes of the stack's cluster.
WORKERS = 2


def scheduler_address(port: int) -> str:
    return f"tcp://{HOST}:{port}"


def start_cluster(launch: Launch) -> None:
    """The scheduler, then the workers; wait until the scheduler counts them all."""
    address = scheduler_address(launch.ports["dask"])
    http = launch.url("dask_http")
    launch.echo(f"starting a Dask scheduler on {address} and {WORKERS} workers")
    command = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", HOST]
    command += [
        "--port",
        str(launch.ports["dask"]),
        "--dashboard-address",
        f"{HOST}:{launch.ports['dask_http']}",
    ]
    scheduler = launch.spawn("dask-scheduler", command, url=http, health_url=f"{http}/health")
    wait_healthy(scheduler, timeout=launch.timeout)
    for n in range(1, WORKERS + 1):
        worker_http = f"http://{HOST}:{free_port()}"
        command = [sys.executable, "-m", "distributed.cli.dask_worker", address]
        command += ["--name", f"driftloop-{n}", "--nthreads", "1", "--nworkers", "1"]
        command += ["--dashboard-address", worker_http.removeprefix("http://")]
        launch.spawn(
            f"dask-worker-{n}", command, url=worker_http, health_url=f"{worker_http}/health"
        )
    wait_healthy(
        scheduler, timeout=launch.timeout, check=lambda: workers_connected(http) >= WORKERS
    )
    launch.record(dask_address=address, dask_http_url=http)


def workers_connected(http: str) -> int:
    """How many workers the scheduler whose HTTP port is at ``http`` counts (0 if it does not answer)."""
    import httpx

    if not http_ok(f"{http}/health"):
        return 0
    try:
        return int(httpx.get(f"{http}/json/counts.json", timeout=5).json()["workers"])
    except (httpx.HTTPError, ValueError, KeyError):
        return 0
