"""The cross-validated search past one process: every fit of the search (one family, one
parameter setting, one fold) is a Prefect task on a Dask cluster (``prefect_dask.DaskTaskRunner``).

``model.search_on_dask: true`` turns it on (off by default: the search runs in the flow's
process and needs no cluster). The plan, the folds and the choice of the winner are the
in-process search's (:func:`pipelines.training.plan_search` and ``choose``), so the same data
and seed register the same model either way. The cluster is the one
``DRIFTLOOP_DASK_ADDRESS`` names, else a local one of 2 worker processes started for the run
(:func:`flows.partitioned.dask_runner`). Each task is sent its fold's rows, so a search sends
its search rows about ``cv_folds`` times per setting: ``model.max_train_rows`` bounds that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.pipeline import Pipeline

from flows.partitioned import dask_runner
from pipelines.training import FitJob, FitScore, JobRunner, SearchPlan, fit_and_score, job_inputs


@task(name="fit-and-score", cache_policy=NO_CACHE)
def fit_task(
    pipeline: Pipeline,
    params: dict[str, Any],
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_test: pd.DataFrame,
    y_test: np.ndarray,
    metric: str,
    task: str,
    classes: list[Any],
) -> tuple[float, float, float]:
    """One fit of the search and its fold score (runs on a Dask worker, one thread)."""
    return fit_and_score(
        pipeline,
        params,
        X_train,
        y_train,
        X_test,
        y_test,
        metric=metric,
        task=task,
        classes=classes,
        threads=1,
    )


def dask_jobs(address: str | None) -> JobRunner:
    """A :data:`pipelines.training.JobRunner` that submits every job as a ``fit-and-score``
    task to the Dask cluster at ``address`` (None: a local one for the run); call the runner
    inside a flow run, so the tasks are recorded under it."""

    def run(plan: SearchPlan, jobs: Sequence[FitJob]) -> list[FitScore]:
        with dask_runner(address) as runner:
            futures = [runner.submit(fit_task, parameters=job_inputs(plan, job)) for job in jobs]
            results = [future.result() for future in futures]
        return [
            FitScore(job=job, score=score, fit_seconds=fit_s, score_seconds=score_s)
            for job, (score, fit_s, score_s) in zip(jobs, results, strict=True)
        ]

    return run
