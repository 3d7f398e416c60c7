"""The whole loop on the real multi-process stack: train -> serve -> drift -> monitor -> event ->
retrain (by the automation) -> registry -> the service swaps models without a restart.

Every piece is a separate process started by ``driftloop.stack`` (Prefect server, process worker
running the deployments of ``prefect.yaml``, MLflow tracking server, inference service, Evidently
UI); the test only talks to them over HTTP (and reads the stack's own SQLite files).
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect.client.schemas.objects import FlowRun, StateType

from driftloop.stack.processes import is_alive
from monitoring import runs, store
from pipelines.scenarios import apply_scenario
from tests.e2e.harness import (
    REPO,
    Stack,
    flow_runs_of,
    run_deployment_and_wait,
    wait_for_flow_run,
)

pytestmark = pytest.mark.e2e

MODEL = "employment"
DRIFT_EVENT = "driftloop.drift.detected"
FEATURES = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC", "NATIVITY"]
FEATURES += ["DEAR", "DEYE", "DREM", "SEX", "RAC1P"]
TRAFFIC_ROWS = 2000
BATCH = 500


@dataclass
class LoopRun:
    """What the loop left behind, for the assertions (and the UI screenshots)."""

    train: FlowRun
    monitor: FlowRun
    first_version: int
    served_before: int
    retrains: list[FlowRun]
    drift_run_id: str
    extra_event_sent_while: str


def _state_message(run: FlowRun) -> str:
    return f"{run.name}={run.state_name}: {run.state.message if run.state else ''}"


def drifted_traffic() -> tuple[list[dict[str, Any]], list[int]]:
    """2,000 live rows with the broken-feature drift (age missing), as JSON records + labels."""
    data = REPO / "data" / "employment"
    live = pd.read_parquet(data / "live_2016_2018.parquet").iloc[:TRAFFIC_ROWS]
    labels = pd.read_parquet(data / "live_2016_2018_labels.parquet").set_index("id")["employed"]
    truth = live["id"].map(labels).astype(int).tolist()
    broken = apply_scenario(live, "broken-feature", start_fraction=0.0)[FEATURES]
    records = []
    for row in broken.astype(object).to_dict("records"):
        records.append(
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        )
    return records, truth


def send_traffic(serve_url: str) -> int:
    """POST the drifted traffic to /predict, then its labels to /feedback; return the version served."""
    records, truth = drifted_traffic()
    versions = set()
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        for start in range(0, len(records), BATCH):
            answer = http.post("/predict", json={"records": records[start : start + BATCH]})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            versions.add(body["model_version"])
            ids = [p["request_id"] for p in body["predictions"]]
            labels = [
                {"request_id": rid, "label": label}
                for rid, label in zip(ids, truth[start : start + BATCH], strict=True)
            ]
            fed = http.post("/feedback", json={"labels": labels})
            assert fed.status_code == 200, fed.text
            assert fed.json() == {"updated": len(ids), "unknown_request_ids": []}
    assert len(versions) == 1, versions
    return versions.pop()


def reload_until_ready(serve_url: str, timeout: float = 60.0) -> dict[str, Any]:
    """POST /reload until /ready answers 200; return /ready's body."""
    deadline = time.monotonic() + timeout
    while True:
        httpx.post(f"{serve_url}/reload", timeout=30)
        ready = httpx.get(f"{serve_url}/ready", timeout=10)
        if ready.status_code == 200:
            return ready.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"service never ready: {ready.status_code} {ready.text}")
        time.sleep(1)


def emit_drift_event(stack: Stack, drift_run_id: str) -> None:
    """A second drift event for the same model, sent through Prefect's own CLI."""
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "event", "emit", DRIFT_EVENT]
        + ["--resource-id", f"driftloop.model.{MODEL}"]
        + ["--payload", f'{{"drift_run_id": "{drift_run_id}", "reason": "duplicate"}}'],
        env={**stack.state.env, "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def drift_events(stack: Stack) -> list[dict[str, Any]]:
    answer = httpx.post(
        f"{stack.api_url}/events/filter",
        json={"filter": {"event": {"name": [DRIFT_EVENT]}}, "limit": 50},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["events"]


def drive_loop(loop_stack: Stack) -> LoopRun:
    """Drive the loop once on the stack (conftest's ``loop_run``); the tests assert on what it left."""
    client = loop_stack.client
    serve_url = loop_stack.state.serve_url
    assert serve_url

    train = run_deployment_and_wait(client, "train/train", timeout=600)
    assert train.state_type == StateType.COMPLETED, _state_message(train)
    ready = reload_until_ready(serve_url)
    first_version = int(ready["model_version"])

    served_before = send_traffic(serve_url)

    monitor = run_deployment_and_wait(client, "monitor/monitor", timeout=600)
    assert monitor.state_type == StateType.COMPLETED, _state_message(monitor)

    # while the automation's retrain is under way, the same drift is reported again
    retrain = "retrain/retrain"
    try:
        (first,) = wait_for_flow_run(
            client,
            retrain,
            timeout=180,
            states={StateType.PENDING, StateType.RUNNING},
            poll=0.25,
        )
    except Exception:
        seen = [_state_message(r) for r in flow_runs_of(client, retrain)]
        raise AssertionError(
            f"no retrain run under way after the monitor run; seen {seen}"
        ) from None
    while_state = f"{first.state_type.value if first.state_type else ''} ({first.state_name})"
    drift_run_id = first.parameters.get("drift_run_id", "")
    emit_drift_event(loop_stack, drift_run_id)

    wait_for_flow_run(client, retrain, timeout=600, count=2)
    time.sleep(3)  # an automation that would queue a third run has had its chance
    retrains = flow_runs_of(client, retrain)
    for run in retrains:
        if run.state_type not in {StateType.COMPLETED, StateType.CANCELLED}:
            wait_for_flow_run(client, retrain, timeout=600, count=len(retrains))
            break
    retrains = flow_runs_of(client, retrain)
    return LoopRun(
        train=train,
        monitor=monitor,
        first_version=first_version,
        served_before=served_before,
        retrains=retrains,
        drift_run_id=drift_run_id,
        extra_event_sent_while=while_state,
    )


def test_deployments_have_the_schedule_and_the_trigger(loop_stack: Stack) -> None:
    client = loop_stack.client
    monitor = client.read_deployment_by_name("monitor/monitor")
    intervals = [s.schedule.interval.total_seconds() for s in monitor.schedules if s.active]
    assert intervals == [900.0], monitor.schedules
    retrain = client.read_deployment_by_name("retrain/retrain")
    assert retrain.global_concurrency_limit is not None
    assert retrain.global_concurrency_limit.limit == 1
    assert retrain.concurrency_options is not None
    assert retrain.concurrency_options.collision_strategy == "CANCEL_NEW"
    triggers = [
        a
        for a in client.read_automations()
        if DRIFT_EVENT in getattr(a.trigger, "expect", set())
        and any(getattr(x, "deployment_id", None) == retrain.id for x in a.actions)
    ]
    assert len(triggers) == 1, [(a.name, a.trigger) for a in client.read_automations()]
    assert triggers[0].enabled


def test_drift_that_hurts_retrains_once_and_the_service_swaps_models(
    loop_stack: Stack, loop_run: LoopRun
) -> None:
    assert loop_run.served_before == loop_run.first_version == 1

    # the monitor run (on the worker) judged the window and emitted the drift event
    engine = store.make_engine(loop_stack.state.env["DRIFTLOOP_DATABASE_URL"])
    try:
        latest = runs.latest_run(engine, MODEL)
    finally:
        engine.dispose()
    assert latest is not None and latest["window_rows"] == TRAFFIC_ROWS, latest
    assert latest["labeled_rows"] == TRAFFIC_ROWS
    assert latest["model_version"] == 1
    assert str(loop_run.monitor.id) in latest["triggered_by"], latest
    events = drift_events(loop_stack)
    from_monitor = [e for e in events if e["payload"].get("reason") != "duplicate"]
    assert len(from_monitor) == 1, events
    (event,) = from_monitor
    assert event["resource"]["prefect.resource.id"] == f"driftloop.model.{MODEL}"
    assert event["payload"]["drift_run_id"] == latest["run_id"] == loop_run.drift_run_id
    related = {r["prefect.resource.id"] for r in event["related"]}
    assert f"prefect.flow-run.{loop_run.monitor.id}" in related

    # exactly one retrain ran (created by the automation); the duplicate event's run was cancelled
    retrains = loop_run.retrains
    completed = [r for r in retrains if r.state_type == StateType.COMPLETED]
    cancelled = [r for r in retrains if r.state_type == StateType.CANCELLED]
    summary = [_state_message(r) for r in retrains]
    assert len(retrains) == 2 and len(completed) == 1 and len(cancelled) == 1, summary
    assert loop_run.extra_event_sent_while.startswith(("PENDING", "RUNNING"))
    assert "concurrency limit" in (cancelled[0].state.message or ""), summary
    (done,) = completed
    assert done.created_by is not None and done.created_by.type == "AUTOMATION", done.created_by
    assert done.parameters["drift_run_id"] == latest["run_id"]
    assert done.parameters["config_path"] == "driftloop.yaml"

    # the new version and its lineage in the registry (through the MLflow server)
    mlflow = MlflowClient(loop_stack.state.mlflow_url)
    versions = sorted(int(v.version) for v in mlflow.search_model_versions(f"name='{MODEL}'"))
    assert versions == [1, 2], versions
    new = mlflow.get_model_version(MODEL, "2")
    assert new.tags["driftloop.trigger"] == "drift"
    assert new.tags["driftloop.drift_run_id"] == latest["run_id"]
    decision = new.tags["driftloop.decision"]
    champion = mlflow.get_model_version_by_alias(MODEL, "champion")
    promoted = new.tags["driftloop.role"] == "champion"
    # the alias follows the decision, whichever way it went
    assert champion.version == ("2" if promoted else "1"), decision
    # and here the retrained model learned to do without age, the champion imputes it: it wins
    assert promoted, decision

    # the running service picks the new champion up by polling the alias: no restart, no reload
    serve_url = loop_stack.state.serve_url
    deadline = time.monotonic() + 60
    while True:
        info = httpx.get(f"{serve_url}/model", timeout=10).json()
        if info["version"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert info["version"] == 2 and info["alias"] == "champion", info
    records, _ = drifted_traffic()
    answer = httpx.post(f"{serve_url}/predict", json={"records": records[:5]}, timeout=30)
    assert answer.status_code == 200 and answer.json()["model_version"] == 2, answer.text
    serve = next(s for s in loop_stack.state.services if s.name == "serve")
    assert is_alive(serve), "the inference service process was replaced or died"


def test_the_flows_dask_tasks_ran_on_the_stacks_cluster(
    loop_stack: Stack, loop_run: LoopRun
) -> None:
    """The worker's flow runs got the stack's scheduler (DRIFTLOOP_DASK_ADDRESS): the monitor's
    partition statistics and every fit of the train flow's search ran on its 2 worker processes,
    and are task runs of those flow runs in Prefect."""
    from distributed import Client

    address = loop_stack.state.dask_address
    assert address and loop_stack.state.env["DRIFTLOOP_DASK_ADDRESS"] == address
    with Client(address, timeout=30) as client:
        prefixes = client.run_on_scheduler(
            lambda dask_scheduler: {
                name: sum(p.state_counts.values())
                for name, p in dask_scheduler.task_prefixes.items()
            }
        )
        workers = client.scheduler_info()["workers"]
    assert len(workers) == 2
    fits = 2 * 2  # the small config's search: 2 settings x 2 folds
    counts = {run.id: _task_names(loop_stack, run.id) for run in (loop_run.train, loop_run.monitor)}
    assert counts[loop_run.train.id].count("fit-and-score") == fits, counts
    assert counts[loop_run.monitor.id].count("partition-statistics") == 2, counts
    assert prefixes.get("fit_task", 0) >= fits and prefixes.get("summarise_partition", 0) >= 2


def _task_names(stack: Stack, flow_run_id: Any) -> list[str]:
    """The names of a flow run's task runs, without their numeric suffix."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    tasks = stack.client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    )
    return [t.name.rsplit("-", 1)[0] for t in tasks]
