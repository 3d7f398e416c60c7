"""The stack's Prefect half: the server, the ``driftloop`` process work pool, a process worker,
and ``prefect deploy --all`` from the checkout's ``prefect.yaml``. Plain Prefect commands, run
with this interpreter (``python -m prefect ...``)."""

from __future__ import annotations

import sys
from pathlib import Path

from driftloop.stack.launch import Launch
from driftloop.stack.processes import HOST, StackError, http_ok, wait_healthy
from driftloop.stack.state import WORK_POOL

PREFECT = [sys.executable, "-m", "prefect"]


def client_env(*, api_url: str, database_url: str, home: Path) -> dict[str, str]:
    """The Prefect settings of every process of the stack (the server reads the database URL)."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
    }


def start_server(launch: Launch) -> None:
    """``prefect server start`` on the chosen port; wait for ``/api/health``."""
    url = launch.url("prefect")
    launch.echo(f"starting Prefect server on {url} ({launch.state.backend})")
    command = [*PREFECT, "server", "start", "--host", HOST, "--port", str(launch.ports["prefect"])]
    record = launch.spawn("prefect-server", command, url=url, health_url=f"{url}/api/health")
    wait_healthy(record, timeout=launch.timeout)
    launch.record(prefect_api_url=f"{url}/api", prefect_ui_url=url)


def create_work_pool(launch: Launch) -> None:
    """Create the ``driftloop`` process work pool (one that already exists is fine)."""
    launch.run_step(
        "work-pool",
        [*PREFECT, "work-pool", "create", WORK_POOL, "--type", "process"],
        timeout=120,
        ok_if=lambda out: "already exists" in out,
    )


def start_worker(launch: Launch, *, query_seconds: float | None) -> None:
    """A process worker on the pool, with its health endpoint; wait until the server sees it online.

    Args:
        query_seconds: how often the worker polls (None: Prefect's default, 10 s).
    """
    launch.echo(f"starting process worker for pool {WORK_POOL!r}")
    port = str(launch.ports["worker_health"])
    env = {
        **launch.env,
        "PREFECT_WORKER_WEBSERVER_HOST": HOST,
        "PREFECT_WORKER_WEBSERVER_PORT": port,
    }
    if query_seconds is not None:
        env["PREFECT_WORKER_QUERY_SECONDS"] = str(query_seconds)
    health = f"http://{HOST}:{port}/health"
    command = [*PREFECT, "worker", "start", "--pool", WORK_POOL, "--type", "process"]
    record = launch.spawn("worker", [*command, "--with-healthcheck"], env=env, health_url=health)
    api = f"{launch.url('prefect')}/api"
    wait_healthy(
        record,
        timeout=launch.timeout,
        check=lambda: http_ok(health) and worker_online(api, WORK_POOL),
    )


def deploy_all(launch: Launch) -> None:
    """``prefect deploy --all``; check every deployment of ``prefect.yaml`` is on the server.

    Raises:
        StackError: ``prefect.yaml`` is missing, the deploy failed, or a deployment is missing.
    """
    prefect_yaml = launch.root / "prefect.yaml"
    if not prefect_yaml.is_file():
        raise StackError(f"{prefect_yaml} is missing: nothing to deploy")
    launch.echo("prefect deploy --all")
    launch.run_step("deploy", [*PREFECT, "--no-prompt", "deploy", "--all"], timeout=300)
    found = prefect_deployments(f"{launch.url('prefect')}/api")
    missing = sorted(set(deployment_names(prefect_yaml)) - {n.split("/", 1)[1] for n in found})
    if missing:
        raise StackError(
            f"prefect deploy --all did not create {missing}; see {launch.log_dir / 'deploy.log'}"
        )
    launch.record(deployments=found)


def deployment_names(prefect_yaml: Path) -> list[str]:
    """Deployment names declared in a prefect.yaml (flow names come from the code, not here)."""
    import yaml

    raw = yaml.safe_load(prefect_yaml.read_text()) or {}
    return [str(dep["name"]) for dep in raw.get("deployments") or []]


def prefect_deployments(api_url: str) -> list[str]:
    """``flow/deployment`` names registered on the Prefect server at ``api_url``."""
    import httpx

    with httpx.Client(base_url=api_url, timeout=10) as client:
        deployments = client.post("/deployments/filter", json={"limit": 200}).json()
        flow_ids = sorted({d["flow_id"] for d in deployments})
        flows = client.post("/flows/filter", json={"flows": {"id": {"any_": flow_ids}}}).json()
    flow_names = {f["id"]: f["name"] for f in flows}
    return sorted(f"{flow_names.get(d['flow_id'], '?')}/{d['name']}" for d in deployments)


def worker_online(api_url: str, pool: str) -> bool:
    """The server lists an ONLINE worker in ``pool``."""
    import httpx

    try:
        response = httpx.post(
            f"{api_url}/work_pools/{pool}/workers/filter",
            json={"workers": {"status": {"any_": ["ONLINE"]}}, "limit": 10},
            timeout=5,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and bool(response.json())
