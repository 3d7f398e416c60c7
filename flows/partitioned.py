"""The monitor's checks past one process, as Prefect tasks on a Dask cluster
(``prefect_dask.DaskTaskRunner``), with the verdicts of the single process engine:

* :func:`partitioned_drift`: a window the monitor has read, split into row partitions, each
  partition's statistics a task, merged exactly in the monitor's process
  (:mod:`monitoring.partitions`);
* :func:`window_statistics`: drift and data quality of a window no process reads whole. Each
  task reads a few of its columns from the log itself (:func:`monitoring.store.read_window_columns`)
  and checks them; the monitor's process combines the columns' results (Holm's correction, the
  dataset rule, the issues) and never holds a row. A task's memory grows with the window's rows
  times its columns (``columns_per_task``), not with the window's width.

``monitoring.partitions: N`` turns it on (0, the default, keeps drift in the monitor's process
and needs no cluster). ``DRIFTLOOP_DASK_ADDRESS`` names an existing scheduler; without it the
runner starts a local cluster of :data:`LOCAL_WORKERS` worker processes for the run and stops
it after. Workers need this checkout importable (``pip install -e .``), as Prefect workers do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings
from prefect_dask import DaskTaskRunner

from core.config import ProjectConfig
from core.config_monitoring import DriftConfig, QualityConfig
from core.errors import DriftloopError
from monitoring import store
from monitoring.columnar import release_memory
from monitoring.drift import (
    DriftResult,
    Kind,
    ReferenceStats,
    UnadjustedDrift,
    combine_drift,
    frame_samples,
    unadjusted_drift,
)
from monitoring.partitions import (
    ColumnGroup,
    PartitionStats,
    column_groups,
    drift_from_partitions,
    partition_stats,
    split_frame,
)
from monitoring.quality import QualityResult, combine_quality, compute_quality
from monitoring.store import LogWindow
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


@dataclass(frozen=True)
class Checks:
    """What the window's columns are compared by: the features, the prediction column (or
    None) and its kind, the reference's statistics and the tolerances."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    prediction: str | None
    prediction_kind: Kind
    reference: ReferenceStats
    drift: DriftConfig
    quality: QualityConfig


@dataclass(frozen=True)
class GroupResult:
    """One column group's drift (before the corrections across columns) and quality."""

    drift: UnadjustedDrift
    quality: QualityResult


#: Columns a task of :func:`window_statistics` checks unless told otherwise: a worker peaked at
#: 1.8 GB for a 10M-row window (bench/scale.py); a task's memory grows with rows x columns.
COLUMNS_PER_TASK = 6


def check_group(window: LogWindow, group: ColumnGroup, checks: Checks) -> GroupResult:
    """Read one group's columns of the window from the log and check them (pure but for the
    read): the drift and quality :func:`monitoring.verdict.judge` computes for them."""
    engine = store.make_engine(window.database_url)
    try:
        frame = store.read_window_columns(
            engine,
            model_name=window.model_name,
            numeric=group.numeric,
            categorical=group.categorical,
            prediction=group.prediction and checks.prediction is not None,
            since=window.since,
            until=window.until,
            last_n=window.last_n,
            version=window.version,
            upto_id=window.upto_id,
        )
    finally:
        engine.dispose()
    if group.prediction and checks.prediction is not None:
        frame = frame.rename(columns={"prediction": checks.prediction})
    prediction = checks.prediction if group.prediction else None
    drift = unadjusted_drift(
        reference=None,
        current_sample=frame_samples(frame),
        n_current=len(frame),
        numeric=group.numeric,
        categorical=group.categorical,
        config=checks.drift,
        prediction=prediction,
        prediction_kind=checks.prediction_kind,
        reference_stats=checks.reference,
    )
    quality = compute_quality(
        reference=None,
        current=frame[list(group.features())],
        numeric=group.numeric,
        categorical=group.categorical,
        config=checks.quality,
        reference_stats=checks.reference,
    )
    del frame
    release_memory()  # a worker runs many groups: what this one freed goes back to the system
    return GroupResult(drift, quality)


@task(name="column-group-checks", cache_policy=NO_CACHE)
def check_group_task(window: LogWindow, group: ColumnGroup, checks: Checks) -> GroupResult:
    """:func:`check_group` on a Dask worker."""
    return check_group(window, group, checks)


def window_statistics(
    window: LogWindow,
    checks: Checks,
    *,
    address: str | None,
    columns_per_task: int = COLUMNS_PER_TASK,
) -> tuple[DriftResult, QualityResult]:
    """The window's drift and data quality, its columns checked in groups of
    ``columns_per_task`` by Prefect tasks on Dask, each reading its own columns from the log:
    equal to :func:`monitoring.drift.compute_drift` and :func:`monitoring.quality.compute_quality`
    on the window :func:`monitoring.store.read_window` returns. Call it inside a flow run.

    Without ``window.upto_id`` the window is pinned to the rows logged so far
    (:func:`monitoring.store.last_log_id`), so every task reads the same rows while the log grows.
    """
    if window.upto_id is None:
        engine = store.make_engine(window.database_url)
        try:
            window = dataclasses.replace(window, upto_id=store.last_log_id(engine))
        finally:
            engine.dispose()
    groups = column_groups(
        checks.numeric,
        checks.categorical,
        prediction=checks.prediction is not None,
        per_group=columns_per_task,
    )
    with dask_runner(address) as runner:
        futures = [
            runner.submit(
                check_group_task,
                parameters={"window": window, "group": group, "checks": _for(checks, group)},
            )
            for group in groups
        ]
        results = [future.result() for future in futures]
    drift = combine_drift([r.drift for r in results], checks.drift)
    quality = combine_quality([r.quality for r in results])
    return drift, quality


def _for(checks: Checks, group: ColumnGroup) -> Checks:
    """The checks with only the reference statistics a group needs (what travels to it)."""
    predicted = [checks.prediction] if group.prediction and checks.prediction else []
    numeric = [*group.numeric, *(predicted if checks.prediction_kind == "numeric" else [])]
    categorical = [
        *group.categorical,
        *(predicted if checks.prediction_kind == "categorical" else []),
    ]
    return dataclasses.replace(checks, reference=checks.reference.subset(numeric, categorical))


def column_checks(
    config: ProjectConfig, ref: VersionReference, window: LogWindow, *, address: str | None
) -> tuple[DriftResult, QualityResult]:
    """The monitor's drift and quality of ``window`` against the version ``ref`` by column tasks
    (:func:`window_statistics`, ``monitoring.columns_per_task`` columns each): what
    :func:`monitoring.verdict.judge` computes on the window read whole. Call it inside a flow run."""
    columns = drift_columns(ref.info)
    checks = Checks(
        numeric=tuple(columns["numeric"]),
        categorical=tuple(columns["categorical"]),
        prediction=columns["prediction"],
        prediction_kind=columns["prediction_kind"],
        reference=ref.stats,
        drift=config.monitoring.drift,
        quality=config.monitoring.quality,
    )
    return window_statistics(
        window, checks, address=address, columns_per_task=config.monitoring.columns_per_task
    )
