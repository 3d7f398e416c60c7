"""The stack's Prefect half, for real: server, process worker, `prefect deploy --all`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.schemas.objects import StateType

from driftloop.stack import stack_status
from driftloop.stack.prefect_server import deployment_names
from driftloop.stack.processes import is_alive
from driftloop.stack.state import PID_FILE, read_state
from tests.e2e.harness import REPO, Stack, run_deployment_and_wait, wait_for_flow_run

pytestmark = pytest.mark.e2e


def test_every_deployment_in_prefect_yaml_is_on_the_server(prefect_stack: Stack) -> None:
    expected = deployment_names(REPO / "prefect.yaml")
    assert expected, "prefect.yaml declares no deployments"
    found = {d.name for d in prefect_stack.client.read_deployments()}
    assert set(expected) <= found
    for dep in prefect_stack.client.read_deployments():
        assert dep.work_pool_name == "driftloop"


def test_state_file_records_exactly_the_processes_started(prefect_stack: Stack) -> None:
    state = read_state(prefect_stack.root)
    assert state is not None
    assert [s.name for s in state.services] == ["prefect-server", "worker"]
    assert all(is_alive(s) for s in state.services)
    pids = (Path(state.state_dir) / PID_FILE).read_text().split()
    assert pids == [
        "prefect-server",
        str(state.services[0].pid),
        "worker",
        str(state.services[1].pid),
    ]
    status = stack_status(prefect_stack.root)
    assert status["running"] and all(s["healthy"] for s in status["services"].values())
    json.dumps(status)  # printable as JSON by `driftloop stack status`


def test_worker_runs_a_deployment_from_the_repo_in_place(prefect_stack: Stack) -> None:
    run = run_deployment_and_wait(prefect_stack.client, "ingest/ingest", timeout=300)
    assert run.state_type == StateType.COMPLETED, (
        f"{run.name}: {run.state.message if run.state else ''}"
    )


def test_listing_endpoints_accept_null_limits(prefect_stack: Stack) -> None:
    """Prefect's client sends `"limit": null` on every listing; the unpatched server takes it."""
    import httpx

    response = httpx.post(
        f"{prefect_stack.api_url}/deployments/filter", json={"limit": None, "sort": None}
    )
    assert response.status_code == 200, response.text


def test_scheduler_creates_runs_of_the_scheduled_deployment(prefect_stack: Stack) -> None:
    """The server's scheduler inserts the monitor deployment's runs (its loop runs every 60 s)."""
    runs = wait_for_flow_run(
        prefect_stack.client, "monitor/monitor", timeout=240, states=set(StateType), poll=2.0
    )
    scheduled = [r for r in runs if r.auto_scheduled]
    assert scheduled, [(r.name, r.state_name) for r in runs]
