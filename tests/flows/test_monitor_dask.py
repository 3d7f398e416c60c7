"""The monitor's drift on a real Dask cluster through Prefect (monitoring.partitions): the
window's partitions summarised by Prefect tasks on a LocalCluster of 2 worker processes, the
verdict equal to the single-process engine's on the same window."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import dask
import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.runtime import flow_run

from core.config import load_config
from core.settings import Settings
from flows.monitor import monitor_once
from flows.partitioned import DaskUnavailableError, dask_runner
from flows.train import train
from monitoring.verdict import MonitorOutcome
from pipelines.scenarios import apply_scenario
from tests.conftest import fresh_prefect_home
from tests.flows.conftest import write_config
from tests.flows.test_monitor_flow import MONITORING, _serve

PARTITIONS = 3


def _close(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-12 (NaN equal to NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=0)
    return a == b


def test_the_monitor_on_a_dask_cluster_gives_the_single_process_verdict(
    tmp_path: Path,
    mlflow_env: dict[str, str],
    small_employment: pd.DataFrame,
    live: pd.DataFrame,
    cluster: LocalCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config_path = write_config(
        tmp_path, small_employment, monitoring={**MONITORING, "partitions": PARTITIONS}
    )
    train(config_path=str(config_path))
    _serve(mlflow_env, apply_scenario(live, "sudden", start_fraction=0.3))  # some columns drift
    monkeypatch.setenv("DRIFTLOOP_DASK_ADDRESS", cluster.scheduler_address)

    config = load_config(config_path)

    @flow
    def monitor_run(partitions: int) -> tuple[MonitorOutcome, UUID]:
        """One monitor run (the `monitor` flow's body, without the retraining it may start)."""
        mon = config.monitoring.model_copy(update={"partitions": partitions})
        outcome = monitor_once(
            config.model_copy(update={"monitoring": mon}),
            Settings(),
            publish_views=False,
            deliver_alerts=False,
        )
        return outcome, flow_run.id

    with Client(cluster, set_as_default=False) as watcher, get_task_stream(watcher) as stream:
        on_dask, flow_run_id = monitor_run(PARTITIONS)

    # one Prefect task run per partition, run by the cluster's worker processes
    workers = set(cluster.scheduler_info["workers"])
    ran = [t for t in stream.data if t["key"].startswith("summarise_partition")]
    assert len(ran) == PARTITIONS and {t["worker"] for t in ran} <= workers, stream.data
    with get_client(sync_client=True) as prefect:
        tasks = prefect.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    partition_runs = [t for t in tasks if t.name.startswith("partition-statistics")]
    assert len(partition_runs) == PARTITIONS
    assert all(t.state is not None and t.state.is_completed() for t in partition_runs)

    # the same window judged in this process only (monitoring.partitions: 0, the default)
    alone, _ = monitor_run(0)

    a, b = on_dask.result, alone.result
    assert a.drift is not None and b.drift is not None
    assert a.window_rows == b.window_rows == len(alone.window.frame) >= 500
    assert a.drift.drifted_features, "the scenario should make some columns drift"
    assert _close(a.drift.to_dict(), b.drift.to_dict()), (a.drift, b.drift)
    assert _close(a.to_dict(), b.to_dict())
    assert (a.status, a.severity, a.failed) == (b.status, b.severity, b.failed)


PER_TASK = 2


def test_the_monitor_by_column_tasks_reads_no_feature_and_gives_the_single_process_verdict(
    tmp_path: Path,
    mlflow_env: dict[str, str],
    small_employment: pd.DataFrame,
    live: pd.DataFrame,
    cluster: LocalCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """monitoring.columns_per_task: the column tasks read the window's features from the (just
    compacted) log, the monitor's process reads only the window's outputs and labels and its
    newest rows for the report, and the verdict is the one of the window read whole."""
    config_path = write_config(
        tmp_path, small_employment, monitoring={**MONITORING, "columns_per_task": PER_TASK}
    )
    train(config_path=str(config_path))
    _serve(mlflow_env, apply_scenario(live, "sudden", start_fraction=0.3))
    monkeypatch.setenv("DRIFTLOOP_DASK_ADDRESS", cluster.scheduler_address)
    config = load_config(config_path)

    @flow
    def monitor_run(per_task: int, publish: bool) -> tuple[MonitorOutcome, UUID]:
        mon = config.monitoring.model_copy(update={"columns_per_task": per_task})
        outcome = monitor_once(
            config.model_copy(update={"monitoring": mon}),
            Settings(),
            publish_views=publish,
            deliver_alerts=False,
        )
        return outcome, flow_run.id

    with Client(cluster, set_as_default=False) as watcher, get_task_stream(watcher) as stream:
        by_columns, flow_run_id = monitor_run(PER_TASK, True)
    alone, _ = monitor_run(0, False)

    whole, light = alone.window.frame, by_columns.window.frame
    features = [c for c in whole.columns if c not in light.columns and c != "request_id"]
    assert len(features) >= 4 and "request_id" not in light.columns
    assert set(light.columns) == {"prediction", "probability", config.target, "model_version", "ts"}
    sample = by_columns.window.sample
    assert sample is not None and set(features) <= set(sample.columns)
    pd.testing.assert_frame_equal(sample, whole.tail(len(sample)).reset_index(drop=True))
    assert by_columns.report_path is not None and by_columns.report_path.exists()

    # one task per group of PER_TASK compared columns (the features, then the prediction)
    groups = math.ceil((len(features) + 1) / PER_TASK)
    ran = [t for t in stream.data if t["key"].startswith("check_group_task")]
    assert len(ran) == groups and {t["worker"] for t in ran} <= set(
        cluster.scheduler_info["workers"]
    ), stream.data
    with get_client(sync_client=True) as prefect:
        tasks = prefect.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    group_runs = [t for t in tasks if t.name.startswith("column-group-checks")]
    assert len(group_runs) == groups
    assert all(t.state is not None and t.state.is_completed() for t in group_runs)

    a, b = by_columns.result, alone.result
    assert a.drift is not None and a.drift.drifted_features and a.quality is not None
    assert a.window_rows == b.window_rows == len(whole) >= 500
    assert _close(a.drift.to_dict(), b.drift.to_dict()), (a.drift, b.drift)
    assert a.quality == b.quality
    assert _close(a.to_dict(), b.to_dict())
    assert (a.status, a.severity, a.failed) == (b.status, b.severity, b.failed)


def test_without_an_address_the_runner_starts_two_local_worker_processes() -> None:
    with dask_runner(None) as runner:
        info = runner.client.scheduler_info()
        pids = runner.client.run(os.getpid)
    assert len(info["workers"]) == 2
    assert {w["nthreads"] for w in info["workers"].values()} == {1}
    assert len(set(pids.values()) - {os.getpid()}) == 2  # two processes of their own


def test_an_address_where_no_scheduler_answers_is_a_clear_error() -> None:
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(DaskUnavailableError, match=r"DRIFTLOOP_DASK_ADDRESS=tcp://127.0.0.1:9 "),
        dask_runner("tcp://127.0.0.1:9"),
    ):
        pass


EPHEMERAL = """
import sys
from distributed import LocalCluster
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from flows.partitioned import dask_runner


def api_url() -> str:
    with get_client(sync_client=True) as client:
        return str(client.api_url)


@task(cache_policy=NO_CACHE)
def where() -> str:
    return api_url()


@flow
def monitor_like() -> tuple[str, str]:
    with LocalCluster(n_workers=1, processes=True, dashboard_address=None) as cluster:
        with dask_runner(cluster.scheduler_address) as runner:
            return runner.submit(where, parameters={}).result(), api_url()


if __name__ == "__main__":
    print("URLS", *monitor_like())
"""


def test_without_a_prefect_server_the_workers_report_to_the_flows_ephemeral_api(
    tmp_path: Path,
) -> None:
    """Without PREFECT_API_URL each process would start an ephemeral server of its own: the
    task runs would be recorded elsewhere, on the same database (locked)."""
    script = tmp_path / "ephemeral.py"
    script.write_text(EPHEMERAL)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(fresh_prefect_home(tmp_path / "prefect")),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("URLS")] or [done.stderr[-3000:]]
    _, on_worker, in_flow = line.split()
    assert on_worker == in_flow


def test_versions_are_compared_on_at_most_compared_rows_when_the_window_lacks_features() -> None:
    """With column tasks the window's rows are not read with their features; the rows two
    versions are compared on (predecessor, shadow challenger) still are, so they are capped."""
    from flows.monitor import COMPARED_ROWS, compared_rows

    base = load_config_dict({"window": {"kind": "last_rows", "rows": 10 * COMPARED_ROWS}})
    assert compared_rows(base) == 10 * COMPARED_ROWS  # read whole: every window row
    by_columns = load_config_dict(
        {"window": {"kind": "last_rows", "rows": 10 * COMPARED_ROWS}, "columns_per_task": 6}
    )
    assert compared_rows(by_columns) == COMPARED_ROWS
    small = load_config_dict({"window": {"kind": "last_rows", "rows": 2000}, "columns_per_task": 6})
    assert compared_rows(small) == 2000


def load_config_dict(monitoring: dict[str, Any]) -> Any:
    from core.config import parse_config

    return parse_config(
        {
            "model_name": "m",
            "task": "classification",
            "target": "y",
            "data": {"train": "d.csv"},
            "monitoring": monitoring,
        }
    )
