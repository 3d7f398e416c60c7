"""The stack's MLflow tracking server: the registry on the stack's database, artifacts under the
checkout's ``mlruns/`` served by the server itself (``--serve-artifacts``)."""

from __future__ import annotations

import sys
from pathlib import Path

from driftloop.stack.launch import Launch
from driftloop.stack.processes import HOST, wait_healthy


def artifacts_dir(root: Path) -> Path:
    return root / "mlruns"


def client_env(*, url: str, root: Path) -> dict[str, str]:
    """The settings that point every process of the stack at this server."""
    return {
        "MLFLOW_TRACKING_URI": url,
        # The server rejects an explicit `mlflow-artifacts://` experiment location; experiments
        # created without one get `mlflow-artifacts:/<id>` (proxied). driftloop passes a location,
        # so point it at the directory the server proxies: same files either way.
        "DRIFTLOOP_ARTIFACT_ROOT": str(artifacts_dir(root)),
        "DRIFTLOOP_MLFLOW_UI_URL": url,
    }


def start_server(launch: Launch, *, backend_store_uri: str) -> None:
    """``mlflow server`` on the chosen port with one worker; wait for ``/health``."""
    url = launch.url("mlflow")
    launch.echo(f"starting MLflow tracking server on {url}")
    artifacts = artifacts_dir(launch.root)
    artifacts.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "mlflow", "server", "--host", HOST]
    command += ["--port", str(launch.ports["mlflow"]), "--backend-store-uri", backend_store_uri]
    command += ["--serve-artifacts", "--artifacts-destination", artifacts.as_uri()]
    command += ["--workers", "1"]
    record = launch.spawn("mlflow", command, url=url, health_url=f"{url}/health")
    wait_healthy(record, timeout=launch.timeout)
    launch.record(mlflow_url=url)


def champion_exists(mlflow_url: str, model_name: str) -> bool:
    """The registry at ``mlflow_url`` has a ``champion`` alias for ``model_name``."""
    import httpx

    response = httpx.get(
        f"{mlflow_url}/api/2.0/mlflow/registered-models/alias",
        params={"name": model_name, "alias": "champion"},
        timeout=10,
    )
    return response.status_code == 200
