"""Prefect's event machinery on the stack's real server and worker, with a small probe project.

What driftloop's `retrain` deployment relies on, checked with flows written here (the repo's own
monitor/retrain flows have their own end-to-end test): a deployment trigger on a custom event
emitted from a flow run executed by the worker, parameters templated from the event, and
`concurrency_limit` with `collision_strategy: CANCEL_NEW` so a burst of events runs one retrain.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prefect.client.schemas.objects import StateType

from tests.e2e.harness import Stack, flow_runs_of, run_deployment_and_wait, wait_for_flow_run

pytestmark = pytest.mark.e2e

PROBE_FLOWS = '''
"""Probe flows for the event-trigger test."""

import time

from prefect import flow
from prefect.events import emit_event


@flow
def probe_monitor(model_name: str = "probe", events: int = 1) -> list[str]:
    ids = []
    for i in range(events):
        event = emit_event(
            event="driftloop.drift.detected",
            resource={"prefect.resource.id": f"driftloop.model.{model_name}"},
            payload={"drift_run_id": f"drift-{i}"},
        )
        ids.append(str(event.id))
    return ids


@flow
def probe_retrain(model: str = "", drift_run_id: str = "", seconds: float = 0.0) -> str:
    time.sleep(seconds)
    return f"{model} {drift_run_id}"
'''

PROBE_YAML = """
name: probe
prefect-version: 3.9.1
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{directory}"
definitions:
  work_pools:
    process: &process
      name: driftloop
deployments:
  - name: probe-monitor
    entrypoint: probe_flows.py:probe_monitor
    work_pool: *process
  - name: probe-retrain
    entrypoint: probe_flows.py:probe_retrain
    work_pool: *process
    parameters:
      seconds: {seconds}
    concurrency_limit:
      limit: 1
      collision_strategy: CANCEL_NEW
    triggers:
      - type: event
        enabled: true
        match:
          prefect.resource.id: "driftloop.model.*"
        expect:
          - driftloop.drift.detected
        parameters:
          model: "{{{{ event.resource.id }}}}"
          drift_run_id: "{{{{ event.payload.drift_run_id }}}}"
"""


@pytest.fixture(scope="module")
def probe_deployments(prefect_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The probe deployments, created with `prefect deploy --all` on the session's server."""
    directory = tmp_path_factory.mktemp("probe")
    (directory / "probe_flows.py").write_text(textwrap.dedent(PROBE_FLOWS))
    (directory / "prefect.yaml").write_text(PROBE_YAML.format(directory=directory, seconds=25))
    env = {
        **prefect_stack.state.env,
        "PATH": str(Path(sys.executable).parent),
        "PREFECT_API_URL": prefect_stack.api_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return directory


def test_drift_event_burst_runs_exactly_one_retrain(
    prefect_stack: Stack, probe_deployments: Path
) -> None:
    client = prefect_stack.client
    monitor = run_deployment_and_wait(
        client, "probe-monitor/probe-monitor", parameters={"events": 3}, timeout=180
    )
    assert monitor.state_type == StateType.COMPLETED
    # three events -> three runs created by the automation; one runs, two are cancelled
    runs = wait_for_flow_run(client, "probe-retrain/probe-retrain", timeout=180, count=3)
    completed = [r for r in runs if r.state_type == StateType.COMPLETED]
    cancelled = [r for r in runs if r.state_type == StateType.CANCELLED]
    assert len(completed) == 1, [(r.name, r.state_name) for r in runs]
    assert len(cancelled) == 2
    assert all("concurrency limit" in (r.state.message or "") for r in cancelled if r.state)
    run = completed[0]
    assert run.parameters["model"] == "driftloop.model.probe"
    assert run.parameters["drift_run_id"].startswith("drift-")
    assert run.created_by is not None and run.created_by.type == "AUTOMATION"
    assert len(flow_runs_of(client, "probe-retrain/probe-retrain")) == 3
