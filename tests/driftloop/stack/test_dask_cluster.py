"""The stack's Dask cluster: a scheduler and 2 workers as processes of their own, found by the
address every other process of the stack is given, stopped with the stack."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from distributed import Client

from driftloop.stack import AlertingOptions, StackPorts, start_stack, stop_stack
from driftloop.stack.lifecycle import child_environment
from driftloop.stack.processes import is_alive
from tests.e2e.harness import link_repo


def test_the_stack_starts_a_scheduler_and_two_worker_processes_and_stops_them(
    tmp_path: Path,
) -> None:
    state = start_stack(
        tmp_path,
        ports=StackPorts(**{k: 0 for k in StackPorts.__dataclass_fields__}),
        services=("dask",),
        timeout=120,
        echo=lambda _: None,
    )
    try:
        names = [s.name for s in state.services]
        assert names == ["dask-scheduler", "dask-worker-1", "dask-worker-2"]
        assert state.dask_address and state.env["DRIFTLOOP_DASK_ADDRESS"] == state.dask_address
        assert state.urls()["Dask scheduler"] == state.dask_address
        with Client(state.dask_address, timeout=30) as client:
            pids = client.run(os.getpid)
            assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        assert len(pids) == 2 and len(set(pids.values())) == 2
        assert os.getpid() not in pids.values()
    finally:
        stopped = stop_stack(tmp_path, echo=lambda _: None)
    assert sorted(stopped) == sorted(names)
    assert not any(is_alive(s) for s in state.services)


def test_children_get_the_schedulers_address_only_with_the_cluster(tmp_path: Path) -> None:
    common = {
        "ports": {"prefect": 4201, "mlflow": 5001, "dask": 8790},
        "databases": {"prefect": "sqlite+aiosqlite:///p.db", "driftloop": "sqlite:///d.db"},
        "with_mlflow": False,
        "extra": {"DRIFTLOOP_DASK_ADDRESS": "tcp://elsewhere:8786"},
    }
    env = child_environment(tmp_path, tmp_path / "state", with_dask=True, **common)
    assert env["DRIFTLOOP_DASK_ADDRESS"] == "tcp://127.0.0.1:8790"
    env = child_environment(tmp_path, tmp_path / "state", with_dask=False, **common)
    assert env["DRIFTLOOP_DASK_ADDRESS"] == "tcp://elsewhere:8786"


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus: make system-deps")
def test_the_stacks_prometheus_scrapes_the_dask_scheduler(tmp_path: Path) -> None:
    root = link_repo(tmp_path / "root")
    state = start_stack(
        root,
        ports=StackPorts(**{k: 0 for k in StackPorts.__dataclass_fields__}),
        services=("dask", "prometheus"),
        alerting_options=AlertingOptions(scrape_interval="1s", evaluation_interval="1s"),
        timeout=120,
        echo=lambda _: None,
    )
    try:
        assert state.prometheus_url
        deadline = time.monotonic() + 60
        while True:
            answer = httpx.get(
                f"{state.prometheus_url}/api/v1/query",
                params={"query": 'dask_scheduler_workers{job="dask-scheduler"}'},
                timeout=10,
            ).json()
            found = answer["data"]["result"]
            if found or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert found, answer
        by_state = {r["metric"].get("state"): float(r["value"][1]) for r in found}
        assert sum(by_state.values()) == 2, by_state
    finally:
        stop_stack(root, echo=lambda _: None)
