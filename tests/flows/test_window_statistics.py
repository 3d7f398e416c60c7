"""Drift and data quality of a window no process reads whole (flows.partitioned.window_statistics):
Prefect tasks on a real LocalCluster of 2 worker processes, each reading its column group of
the window from a real log (compacted segments and rows past them), give the verdicts of
compute_drift and compute_quality on the window read_window returns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.runtime import flow_run

from core.config_monitoring import DriftConfig, QualityConfig
from flows.partitioned import Checks, LogWindow, window_statistics
from monitoring import store
from monitoring.drift import compute_drift, reference_stats
from monitoring.quality import compute_quality
from tests.flows.test_monitor_dask import _close

NUMERIC = ["a", "b", "c"]
CATEGORICAL = ["k", "j"]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def frame(rng: np.random.Generator, n: int, *, drifted: bool) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "a": rng.normal(0.4 if drifted else 0.0, 1.0, n),
            "b": rng.gamma(2.0, 1.0, n),
            "c": rng.normal(0, 1, n) * (1.5 if drifted else 1.0),
            "k": rng.choice(["x", "y", "z"] + (["new"] if drifted else []), n),
            "j": rng.choice(["u", "v"], n),
            "prediction": rng.integers(0, 2, n),
        }
    )
    out.loc[::13, "b"] = np.nan
    return out


def log(url: str, window: pd.DataFrame) -> None:
    """The window's rows in a log: most compacted into several segments, the rest after them."""
    store.upgrade_database(url)
    engine = store.make_engine(url)
    rows = window.to_dict("records")
    records = [
        store.log_record(
            request_id=f"r{i}",
            ts=T0 + timedelta(seconds=i),
            model_name="m",
            model_version=1,
            features={k: row[k] for k in (*NUMERIC, *CATEGORICAL)},
            prediction=int(row["prediction"]),
            probability=0.5,
            latency_ms=1.0,
        )
        for i, row in enumerate(rows)
    ]
    cut = len(records) * 3 // 4
    store.insert_records(engine, records[:cut])
    store.compact_log(
        engine, model_name="m", numeric=NUMERIC, categorical=CATEGORICAL, segment_rows=400
    )
    store.insert_records(engine, records[cut:])
    engine.dispose()


@pytest.mark.parametrize("per_task", [2, 4])
def test_column_groups_read_by_the_workers_give_the_single_process_verdicts(
    tmp_path: Path, cluster: LocalCluster, per_task: int
) -> None:
    rng = np.random.default_rng(per_task)
    reference = frame(rng, 2_000, drifted=False)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log(url, frame(rng, 3_000, drifted=True))
    stats = reference_stats(reference, numeric=NUMERIC, categorical=[*CATEGORICAL, "prediction"])
    checks = Checks(
        numeric=tuple(NUMERIC),
        categorical=tuple(CATEGORICAL),
        prediction="prediction",
        prediction_kind="categorical",
        reference=stats,
        drift=DriftConfig(),
        quality=QualityConfig(),
    )
    window = LogWindow(url, "m", since=T0 + timedelta(seconds=100), version=1)
    if per_task == 4:  # an explicit pin; otherwise window_statistics pins the rows logged so far
        window = LogWindow(url, "m", since=T0 + timedelta(seconds=100), version=1, upto_id=2_900)

    address = cluster.scheduler_address  # the flow is pickled with every task: not the cluster

    @flow
    def checked() -> tuple[object, object, UUID]:
        drift, quality = window_statistics(
            window, checks, address=address, columns_per_task=per_task
        )
        return drift, quality, flow_run.id

    with Client(cluster, set_as_default=False) as watcher, get_task_stream(watcher) as stream:
        drift, quality, flow_run_id = checked()

    groups = -(-(len(NUMERIC) + len(CATEGORICAL) + 1) // per_task)
    workers = set(cluster.scheduler_info["workers"])
    ran = [t for t in stream.data if t["key"].startswith("check_group_task")]
    assert len(ran) == groups and {t["worker"] for t in ran} <= workers, stream.data
    with get_client(sync_client=True) as prefect:
        tasks = prefect.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    assert sum(t.name.startswith("column-group-checks") for t in tasks) == groups
    assert all(t.state is not None and t.state.is_completed() for t in tasks)

    engine = store.make_engine(url)
    whole = store.read_window(
        engine,
        model_name="m",
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        target="y",
        since=window.since,
        version=1,
        upto_id=window.upto_id,
    )
    engine.dispose()
    assert len(whole) == (2_800 if window.upto_id else 2_900)
    single_drift = compute_drift(
        reference=None,
        current=whole,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        prediction="prediction",
        prediction_kind="categorical",
        reference_stats=stats,
    )
    single_quality = compute_quality(
        reference=None,
        current=whole[[*NUMERIC, *CATEGORICAL]],
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        reference_stats=stats,
    )
    # the same code on the same values; sums over categories follow each process's string
    # hashing, so scores may differ in the last bits
    assert _close(drift.to_dict(), single_drift.to_dict()), (drift, single_drift)
    assert _close(quality.to_dict(), single_quality.to_dict())
    assert set(drift.drifted_features) == {"a", "c", "k"}, drift
    assert not quality.passed and any(i.kind == "new_categories" for i in quality.issues)
