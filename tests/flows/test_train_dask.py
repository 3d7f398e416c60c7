"""The cross-validated search on a real Dask cluster through Prefect (model.search_on_dask):
one `fit-and-score` task per fit on 2 worker processes, the model equal to the in-process
search's."""

from __future__ import annotations

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

from core.config import load_config
from flows.ingest import ingest_config
from flows.train import fit_searched
from pipelines.schema import split_xy
from pipelines.training import TrainingResult
from tests.flows.conftest import write_config

MODEL = {
    "candidates": [
        {"family": "logistic", "search": {"C": [0.1, 1.0]}},
        {
            "family": "hist_gradient_boosting",
            "params": {"max_iter": 20},
            "search": {"learning_rate": [0.1, 0.3]},
        },
    ],
    "cv_folds": 3,
    "search_iterations": 2,
    "seed": 7,
}
FITS = 2 * 2 * 3  # families x settings x folds


def test_the_search_on_a_dask_cluster_trains_the_in_process_model(
    tmp_path: Path,
    small_employment: pd.DataFrame,
    cluster: LocalCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = load_config(write_config(tmp_path, small_employment, model=MODEL))
    ingested = ingest_config(config)
    monkeypatch.setenv("DRIFTLOOP_DASK_ADDRESS", cluster.scheduler_address)

    @flow
    def search_run(on_dask: bool) -> tuple[TrainingResult, UUID]:
        model = config.model.model_copy(update={"search_on_dask": on_dask})
        cfg = config.model_copy(update={"model": model})
        return fit_searched(cfg, ingested.frame, ingested.spec), flow_run.id

    with Client(cluster, set_as_default=False) as watcher, get_task_stream(watcher) as stream:
        on_dask, flow_run_id = search_run(True)

    workers = set(cluster.scheduler_info["workers"])
    ran = [t for t in stream.data if t["key"].startswith("fit_task")]
    assert len(ran) == FITS and {t["worker"] for t in ran} <= workers, stream.data
    with get_client(sync_client=True) as prefect:
        tasks = prefect.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    fits = [t for t in tasks if t.name.startswith("fit-and-score")]
    assert len(fits) == FITS
    assert all(t.state is not None and t.state.is_completed() for t in fits)

    alone, _ = search_run(False)
    assert (on_dask.family, on_dask.params, on_dask.cv_metric) == (
        alone.family,
        alone.params,
        alone.cv_metric,
    )
    assert on_dask.cv_score == pytest.approx(alone.cv_score, rel=1e-12)
    timing = ["fit_seconds", "search_seconds"]
    pd.testing.assert_frame_equal(
        on_dask.candidates.drop(columns=timing), alone.candidates.drop(columns=timing)
    )
    X, _ = split_xy(ingested.frame, ingested.spec, config.target)
    np.testing.assert_array_equal(
        on_dask.pipeline.predict_proba(X), alone.pipeline.predict_proba(X)
    )
