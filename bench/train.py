"""Time `train_model` on 100,000 employment rows with the driftloop.yaml candidates.

Peer, measured in the same run: one plain logistic Pipeline (same preprocessing) fitted once on
the same rows, under the same 1-thread limit train_model uses. With --dask, the same search
again with every fit a Prefect task (`fit-and-score`, `model.search_on_dask`) on a local Dask
cluster of 2 single-threaded worker processes (started before the clock starts), and whether it
chose the same model. Run:
`.venv/bin/python bench/train.py [--rows 100000] [--native] [--dask]` (--native: gradient
boosting on native category codes instead of one-hot columns).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from core.config import load_config
from pipelines.evaluation import evaluate
from pipelines.schema import infer_features, prepare_features
from pipelines.training import TrainingResult, build_pipeline, train_model

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "employment"


def employment_rows(rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`rows` labelled rows (2015 reference + labelled 2016-2018) and 20,000 other rows to score."""
    reference = pd.read_parquet(DATA / "reference_2015.parquet")
    live = pd.read_parquet(DATA / "live_2016_2018.parquet").merge(
        pd.read_parquet(DATA / "live_2016_2018_labels.parquet"), on="id"
    )
    frame = pd.concat([reference, live], ignore_index=True).sample(frac=1.0, random_state=seed)
    return frame.iloc[:rows], frame.iloc[rows : rows + 20_000]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--native", action="store_true", help="native categorical boosting")
    parser.add_argument(
        "--dask", action="store_true", help="the search on a local Dask cluster too"
    )
    args = parser.parse_args()
    config = load_config(REPO / "driftloop.yaml")
    train, test = employment_rows(args.rows, config.model.seed)
    spec = infer_features(
        train,
        target=config.target,
        id_column=config.id_column,
        time_column=config.time_column,
        numeric=config.features.numeric,
        categorical=config.features.categorical,
        drop=config.features.drop,
    )
    X, y = prepare_features(train, spec), train[config.target]
    X_test, y_test = prepare_features(test, spec), test[config.target]
    print(
        f"{len(X):,} rows, {len(spec.numeric)} numeric + {len(spec.categorical)} categorical; "
        f"{os.cpu_count()} cores"
    )

    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    started = time.perf_counter()
    peer = build_pipeline(spec, task=config.task, family="logistic", seed=config.model.seed)
    with threadpool_limits(limits=1):
        peer.fit(X, y)
    peer_seconds = time.perf_counter() - started
    peer_auc = evaluate(peer, X_test, y_test, task=config.task)["roc_auc"]

    search = {
        "spec": spec,
        "task": config.task,
        "candidates": [c.model_dump() for c in config.model.candidates],
        "cv_folds": config.model.cv_folds,
        "search_iterations": config.model.search_iterations,
        "seed": config.model.seed,
        "cv_metric": config.promotion.metric,
        "max_search_rows": config.model.max_train_rows,
        "native_categorical": args.native,
    }
    started = time.perf_counter()
    result = train_model(X, y, **search)
    search_seconds = time.perf_counter() - started
    auc = evaluate(result.pipeline, X_test, y_test, task=config.task)["roc_auc"]

    print(result.candidates.to_string(index=False))
    print(
        f"peer: one logistic Pipeline fit     {peer_seconds:8.1f} s   "
        f"holdout roc_auc {peer_auc:.4f}"
    )
    print(
        f"train_model (search + refit)        {search_seconds:8.1f} s   holdout roc_auc {auc:.4f}"
        f"   winner {result.family}"
    )
    print(f"load average at end: {os.getloadavg()[0]:.1f}; native categorical: {args.native}")
    print(f"ratio train_model / peer            {search_seconds / peer_seconds:8.1f} x")
    if args.dask:
        on_dask(X, y, search, result, search_seconds)


def on_dask(
    X: pd.DataFrame, y: pd.Series, search: dict, alone: TrainingResult, alone_s: float
) -> None:
    """The same search with every fit a Prefect task on a local cluster of 2 worker processes."""
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    from distributed import LocalCluster

    from flows.search import dask_jobs

    # outside a flow run: the tasks carry no flow run context (a flow defined in this script
    # would be pickled by value with every task, and whatever its closure holds with it)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        runner = dask_jobs(cluster.scheduler_address)
        runner(*_warm_up(X, y, search))  # connects, ships the code once
        started = time.perf_counter()
        result = train_model(X, y, runner=runner, **search)
        seconds = time.perf_counter() - started
    same = (result.family, result.params, result.cv_score) == (
        alone.family,
        alone.params,
        alone.cv_score,
    )
    print(f"search + refit, fits as Prefect tasks on Dask (2 workers) {seconds:8.1f} s")
    print(f"ratio in-process / on Dask          {alone_s / seconds:8.2f} x   same model: {same}")


def _warm_up(X: pd.DataFrame, y: pd.Series, search: dict) -> tuple:
    """A one-fit plan on 200 rows (its task run is not timed)."""
    from pipelines.training import plan_search, search_jobs

    small = {**search, "candidates": search["candidates"][:1], "max_search_rows": None}
    plan = plan_search(X.iloc[:200], y.iloc[:200], **small)
    return plan, search_jobs(plan)[:1]


if __name__ == "__main__":
    main()
