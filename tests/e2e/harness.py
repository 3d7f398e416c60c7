"""Real Prefect (and MLflow) servers for end-to-end tests, started with driftloop.stack.

The stack runs in a temporary root that links the repo's ``prefect.yaml``, flows, config and data,
so the worker runs the repo's code in place while every database, log and PREFECT_HOME stays in
the temporary directory. Nothing here fakes a server: these are the real processes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort

from driftloop.stack import StackPorts, StackState, start_stack, stop_stack

REPO = Path(__file__).resolve().parents[2]
#: What the temporary root links from the repo (the worker's working directory).
LINKED = ("prefect.yaml", "flows", "driftloop.yaml", "data", "pipelines", "monitoring", "serving")
FINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


class FlowRunTimeout(AssertionError):
    """No flow run of the deployment reached the wanted state in time (lists what was seen)."""


@dataclass
class Stack:
    """A running stack for tests: its state and a Prefect client on its API."""

    root: Path
    state: StackState
    client: SyncPrefectClient

    @property
    def api_url(self) -> str:
        assert self.state.prefect_api_url
        return self.state.prefect_api_url


def link_repo(root: Path, names: Iterable[str] = LINKED, *, repo: Path = REPO) -> Path:
    """Make ``root`` a working directory that runs the repo's code (symlinks, nothing copied)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = repo / name
        if source.exists() and not (root / name).exists():
            (root / name).symlink_to(source)
    return root


def start_test_stack(
    root: Path,
    *,
    services: Sequence[str] = ("prefect", "worker", "deploy"),
    worker_query_seconds: float = 2.0,
    env: dict[str, str] | None = None,
) -> Stack:
    """Start stack pieces on free loopback ports under ``root``; stop them again on failure."""
    state = start_stack(
        root,
        ports=StackPorts(**{k: 0 for k in StackPorts.__dataclass_fields__}),
        services=services,
        worker_query_seconds=worker_query_seconds,
        env=env,
        echo=lambda _: None,
    )
    assert state.prefect_api_url, "the test stack always includes the Prefect server"
    client = SyncPrefectClient(state.prefect_api_url)
    client.__enter__()
    return Stack(root=root, state=state, client=client)


def stop_test_stack(stack: Stack) -> list[str]:
    """Close the client and stop every process the stack started."""
    try:
        stack.client.__exit__(None, None, None)
    finally:
        stopped = stop_stack(stack.root, echo=lambda _: None)
    return stopped


def deployment_id(client: SyncPrefectClient, deployment_name: str) -> UUID:
    """The id of ``flow/deployment``."""
    return client.read_deployment_by_name(deployment_name).id


def flow_runs_of(client: SyncPrefectClient, deployment_name: str) -> list[FlowRun]:
    """Every flow run of a deployment, oldest first."""
    dep = deployment_id(client, deployment_name)
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep])),
        flow_run_filter=FlowRunFilter(),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        limit=200,
    )


def wait_for_flow_run(
    client: SyncPrefectClient,
    deployment_name: str,
    timeout: float,
    *,
    states: set[StateType] = FINAL,
    exclude: Iterable[UUID] = (),
    count: int = 1,
    poll: float = 1.0,
) -> list[FlowRun]:
    """Wait until ``count`` runs of the deployment (not in ``exclude``) are in ``states``.

    Raises:
        FlowRunTimeout: with every run of the deployment seen and its state.
    """
    skip = set(exclude)
    deadline = time.monotonic() + timeout
    runs: list[FlowRun] = []
    while True:
        runs = [r for r in flow_runs_of(client, deployment_name) if r.id not in skip]
        done = [r for r in runs if r.state_type in states]
        if len(done) >= count:
            return done
        if time.monotonic() > deadline:
            seen = ", ".join(f"{r.name}={r.state_name}" for r in runs) or "none"
            raise FlowRunTimeout(
                f"{deployment_name}: {len(done)}/{count} run(s) in {sorted(s.value for s in states)} "
                f"after {timeout:.0f}s; runs seen: {seen}"
            )
        time.sleep(poll)


def run_deployment_and_wait(
    client: SyncPrefectClient,
    deployment_name: str,
    *,
    parameters: dict[str, Any] | None = None,
    timeout: float = 300.0,
    poll: float = 1.0,
) -> FlowRun:
    """Create a flow run of the deployment, wait until the worker has finished it, return it.

    Raises:
        FlowRunTimeout: the run did not reach a final state in time (its last state is named).
    """
    dep = deployment_id(client, deployment_name)
    run = client.create_flow_run_from_deployment(dep, parameters=parameters or {})
    deadline = time.monotonic() + timeout
    while True:
        run = client.read_flow_run(run.id)
        if run.state_type in FINAL:
            return run
        if time.monotonic() > deadline:
            raise FlowRunTimeout(
                f"{deployment_name} run {run.name} still {run.state_name} after {timeout:.0f}s"
            )
        time.sleep(poll)


#: The small config of the loop tests: logistic only, small monitoring windows, no cooldown.
SMALL_MONITORING = {
    "window": {"kind": "last_rows", "rows": 2000},
    "min_window_rows": 500,
    "policy": {"cooldown_hours": 0, "min_labeled_rows": 100},
    "retrain": {"min_labeled_rows": 300},
}


def write_small_config(root: Path, *, rows: int = 3000, on_dask: bool = False) -> Path:
    """Write ``root/driftloop.yaml``: the shipped config on ``rows`` rows of the reference data;
    ``on_dask``: the monitor's drift in 2 partitions and the search's fits as tasks on Dask."""
    import pandas as pd
    import yaml

    frame = pd.read_parquet(REPO / "data" / "employment" / "reference_2015.parquet")
    data_path = root / "train_small.parquet"
    frame.sample(rows, random_state=0).reset_index(drop=True).to_parquet(data_path, index=False)
    config = yaml.safe_load((REPO / "driftloop.yaml").read_text())
    config["data"] = {"train": str(data_path)}
    config["model"] = {
        "candidates": [{"family": "logistic", "search": {"C": [0.1, 1.0]}}],
        "cv_folds": 2,
        "search_iterations": 2,
        "seed": 7,
        "search_on_dask": on_dask,
    }
    config["monitoring"] = {**SMALL_MONITORING, "partitions": 2 if on_dask else 0}
    config["serving"] = {"poll_interval_seconds": 1.0}
    path = root / "driftloop.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
