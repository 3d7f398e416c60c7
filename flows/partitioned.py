"""The monitor's drift past one process: the window split into partitions, each partition's
statistics a Prefect task on a Dask cluster (``prefect_dask.DaskTaskRunner``), merged exactly
in the monitor's process (:mod:`monitoring.partitions`), so the verdict equals the single
process engine's.

``monitoring.partitions: N`` turns it on (0, the default, keeps drift in the monitor's process
and needs no cluster). ``DRIFTLOOP_DASK_ADDRESS`` names an existing scheduler; without it the
runner starts a local cluster of :data:`LOCAL_WORKERS` worker processes for the run and stops
it after. Workers need this checkout importable (``pip install -e .``), as Prefect workers do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings
from prefect_dask import DaskTaskRunner

from core.config import ProjectConfig
from core.errors import DriftloopError
from monitoring.drift import DriftResult
from monitoring.partitions import (
    PartitionStats,
    drift_from_partitions,
    partition_stats,
    split_frame,
)
from monitoring.verdict import VersionReference, Window, drift_columns

#: Worker processes of the local cluster started when no address is configured.
LOCAL_WORKERS = 2


class DaskUnavailableError(DriftloopError, RuntimeError):
    """The configured Dask scheduler does not answer; the message names the address."""


def task_runner(address: str | None) -> DaskTaskRunner:
    """The task runner of the partitions: the cluster at ``address``, else a local cluster of
    :data:`LOCAL_WORKERS` single-threaded worker processes (started and stopped with it)."""
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": LOCAL_WORKERS,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


@contextmanager
def workers_report_here() -> Iterator[None]:
    """Task runs on the workers report to the Prefect API this process uses. Without
    ``PREFECT_API_URL`` that is Prefect's ephemeral server, one per process: each worker would
    start its own on the same database (and lock it), so its address is handed on."""
    if get_current_settings().api.url:
        yield
        return
    with get_client(sync_client=True) as client:
        url = str(client.api_url).rstrip("/")
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


@contextmanager
def dask_runner(address: str | None) -> Iterator[DaskTaskRunner]:
    """:func:`task_runner`, started and connected (a scheduler that does not answer is a
    :class:`DaskUnavailableError` here, before any task is submitted), its workers reporting
    to this process's Prefect API (:func:`workers_report_here`)."""
    with workers_report_here(), task_runner(address) as runner:
        try:
            runner.client  # noqa: B018 - connects, or starts the local cluster
        except OSError as exc:
            if not address:
                raise
            raise DaskUnavailableError(
                f"no Dask scheduler answers at DRIFTLOOP_DASK_ADDRESS={address} ({exc}); start "
                "one (`dask scheduler`, then `dask worker ADDRESS` per worker) or unset the "
                "variable for a local cluster per run"
            ) from exc
        yield runner


@task(name="partition-statistics", cache_policy=NO_CACHE)
def summarise_partition(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> PartitionStats:
    """One partition's drift statistics (runs on a Dask worker)."""
    return partition_stats(frame, numeric=numeric, categorical=categorical)


def partitioned_drift(
    config: ProjectConfig, ref: VersionReference, window: Window, *, address: str | None
) -> DriftResult:
    """The window's drift from ``monitoring.partitions`` partitions summarised on Dask; call it
    inside a flow run (the tasks are recorded under it)."""
    columns = drift_columns(ref.info)
    predicted = {columns["prediction_kind"]: [columns["prediction"]]}
    numeric = [*columns["numeric"], *predicted.get("numeric", [])]
    categorical = [*columns["categorical"], *predicted.get("categorical", [])]
    # only the compared columns travel to the workers
    frame = window.frame[[c for c in (*numeric, *categorical) if c in window.frame.columns]]
    parts = split_frame(frame, config.monitoring.partitions)
    with dask_runner(address) as runner:
        futures = [
            runner.submit(
                summarise_partition,
                parameters={"frame": part, "numeric": numeric, "categorical": categorical},
            )
            for part in parts
        ]
        summaries = [future.result() for future in futures]
    return drift_from_partitions(
        reference_stats=ref.stats,
        partitions=summaries,
        config=config.monitoring.drift,
        **columns,
    )
