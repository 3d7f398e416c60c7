"""`driftloop backtest`: replay the monitoring and retraining policy on history.

Fresh state under a work directory (MLflow registry, inference log, workspace); the initial
champion trains on `data.train`; then, batch by batch in file order: the current champion scores
the rows through the serving code path and they are logged, the labels of the batch K batches
old arrive, the monitor and the retraining policy run exactly as in production (retraining and
promotion included), and a record is appended. Each batch counts as `batch_hours` of simulated
time for the policy's cooldown and daily limit. Alerts are decided but not delivered, and the
Evidently views are drawn only for the last batch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow
from threadpoolctl import threadpool_limits

from driftloop import registry
from driftloop.config import ProjectConfig
from driftloop.errors import DriftloopError
from driftloop.io import read_table
from driftloop.settings import Settings
from flows.ingest import ingest_config
from flows.monitor import VersionReference, monitor_once
from flows.retrain import RetrainRefused, retrain_once
from flows.score import score_and_log
from flows.train import train_and_gate
from monitoring import store
from pipelines.evaluation import evaluate
from pipelines.schema import prepare_features
from serving.model import ServedModel, load_alias, load_version

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
#: Native threads (OpenMP, BLAS) of the replay. The loop is sequential, and OpenMP threads that
#: spin-wait for cores other processes hold make HistGradientBoosting 10-15x slower on a busy
#: machine (measured on this 2-core host under load: a fit on the 68,785 reference rows takes
#: 14-19 s on two threads, 1.1-1.3 s on one, with identical predictions; scoring 1,000 rows
#: 0.03-0.25 s against 0.02 s).
BACKTEST_THREADS = 1


class BacktestError(DriftloopError, ValueError):
    """The backtest inputs do not fit together; the message names the mismatch."""


@dataclass(frozen=True)
class BacktestInputs:
    live: pd.DataFrame
    labels: pd.Series  # aligned with live rows


def load_inputs(config: ProjectConfig, live_path: Path, labels_path: Path | None) -> BacktestInputs:
    """Read the live file and its labels and check that they fit the config."""
    live = read_table(live_path).reset_index(drop=True)
    if live.empty:
        raise BacktestError(f"{live_path} has no rows")
    if labels_path is None:
        if config.target not in live.columns:
            raise BacktestError(
                f"{live_path} has no {config.target!r} column and no --labels file was given"
            )
        return BacktestInputs(live=live, labels=live[config.target])
    labels = read_table(labels_path)
    key = config.id_column
    if key is None:
        raise BacktestError("--labels needs `id_column` in the config to join labels to live rows")
    for frame, name, needed in (
        (live, live_path, [key]),
        (labels, labels_path, [key, config.target]),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise BacktestError(f"{name} lacks column(s) {missing}")
    if labels[key].duplicated().any():
        dup = labels.loc[labels[key].duplicated(), key].head(5).tolist()
        raise BacktestError(f"{labels_path} has duplicate {key!r} values, e.g. {dup}")
    joined = live[key].map(labels.set_index(key)[config.target])
    unmatched = int(joined.isna().sum() - live[key].isna().sum())
    if unmatched == len(live):
        raise BacktestError(
            f"no {key!r} of {live_path} matches {labels_path}: is it the right labels file?"
        )
    return BacktestInputs(live=live, labels=joined)


def check_features(config: ProjectConfig, model: ServedModel, live: pd.DataFrame) -> None:
    missing = [c for c in model.features if c not in live.columns]
    if missing:
        raise BacktestError(
            f"the live file lacks feature column(s) {missing} that the model was trained on"
        )


def primary_metric(
    model: ServedModel, frame: pd.DataFrame, labels: pd.Series, metric: str
) -> float:
    """The model's primary metric on a batch's true labels (NaN where undefined or unlabeled)."""
    known = labels.notna().to_numpy()
    if not known.any():
        return float("nan")
    X = prepare_features(frame.loc[known], _spec(model))[model.column_order]
    y = labels[known].reset_index(drop=True)
    if model.task == "classification":
        y = y.astype(type(model.classes[0])) if model.classes else y
        if y.nunique() < 2 and metric in {"roc_auc", "log_loss"}:
            return float("nan")
    try:
        return float(
            evaluate(model.pipeline, X.reset_index(drop=True), y, task=model.task).get(
                metric, np.nan
            )
        )
    except ValueError:
        return float("nan")


def batch_metrics(
    served: ServedModel, baseline: ServedModel, frame: pd.DataFrame, labels: pd.Series, metric: str
) -> tuple[float, float]:
    """The primary metric of the serving model and of the first model on a batch.

    While the first model still serves, both are the same number: it is computed once.
    """
    value = primary_metric(served, frame, labels, metric)
    if served.version == baseline.version:
        return value, value
    return value, primary_metric(baseline, frame, labels, metric)


def _spec(model: ServedModel):  # noqa: ANN202 - tiny adapter
    from pipelines.schema import FeatureSpec

    return FeatureSpec(model.numeric, model.categorical)


@contextmanager
def isolated_state(workdir: Path) -> Iterator[Settings]:
    """Environment pointing every store at the work directory, restored afterwards."""
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
        "DRIFTLOOP_ARTIFACT_ROOT": str(workdir / "mlruns"),
        "DRIFTLOOP_DATABASE_URL": f"sqlite:///{workdir / 'driftloop.db'}",
        "DRIFTLOOP_WORKSPACE": str(workdir / "workspace"),
    }
    saved = {k: os.environ.get(k) for k in [*env, "PREFECT_API_URL"]}
    os.environ.update(env)
    os.environ.pop("PREFECT_API_URL", None)  # retraining runs in-process
    try:
        yield Settings()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _clean(value: float) -> float | None:
    return None if value != value else round(float(value), 6)


def check_arguments(
    config: ProjectConfig,
    live_path: Path,
    labels_path: Path | None,
    *,
    batch_rows: int,
    label_delay_batches: int,
    workdir: Path,
) -> BacktestInputs:
    """Every argument check, before anything is trained; raises BacktestError or DataSourceError."""
    if batch_rows < 1:
        raise BacktestError(f"--batch-rows must be at least 1, got {batch_rows}")
    if label_delay_batches < 0:
        raise BacktestError(f"--label-delay-batches must be 0 or more, got {label_delay_batches}")
    if workdir.exists() and any(workdir.iterdir()):
        raise BacktestError(f"--workdir {workdir} is not empty: a backtest needs fresh state")
    return load_inputs(config, live_path, labels_path)


# The parameters are driftloop's own typed objects, already validated by the caller.
@flow(name="backtest", log_prints=True, validate_parameters=False)
def backtest(
    config: ProjectConfig,
    live_path: Path,
    labels_path: Path | None,
    *,
    batch_rows: int,
    label_delay_batches: int,
    workdir: Path,
    batch_hours: float = 24.0,
) -> dict[str, Any]:
    """Replay the policy on history; returns the SUMMARY.json document."""
    inputs = check_arguments(
        config,
        live_path,
        labels_path,
        batch_rows=batch_rows,
        label_delay_batches=label_delay_batches,
        workdir=workdir,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    metric = config.promotion.metric
    with isolated_state(workdir) as settings, threadpool_limits(BACKTEST_THREADS):
        client = registry.make_client(settings.mlflow_tracking_uri)
        first = train_and_gate(
            config, settings, ingested=ingest_config(config), lineage={"trigger": "backtest"}
        )
        if not first.promoted:
            raise BacktestError(f"the initial model was not made champion: {first.reason}")
        baseline = load_version(client, config.model_name, first.version)
        check_features(config, baseline, inputs.live)
        store.upgrade_database(settings.database_url)
        engine = store.make_engine(settings.database_url)
        served = baseline
        references: dict[int, VersionReference] = {}
        batches: list[dict[str, Any]] = []
        pending: list[tuple[list[str], list[Any]]] = []
        n_batches = (len(inputs.live) + batch_rows - 1) // batch_rows
        try:
            for index in range(n_batches):
                start = index * batch_rows
                rows = inputs.live.iloc[start : start + batch_rows]
                truth = inputs.labels.iloc[start : start + batch_rows].reset_index(drop=True)
                now = EPOCH + timedelta(hours=batch_hours * (index + 1))
                ids = [f"b{index}-{j}" for j in range(len(rows))]
                score_and_log(
                    served, rows, engine=engine, ts=now - timedelta(minutes=1), request_ids=ids
                )
                pending.append((ids, truth.tolist()))
                if len(pending) > label_delay_batches:
                    arrived_ids, arrived = pending.pop(0)
                    known = {
                        r: y
                        for r, y in zip(arrived_ids, arrived, strict=True)
                        if y == y and y is not None
                    }
                    store.record_labels(engine, known, at=now)
                outcome = monitor_once(
                    config,
                    settings,
                    now=now,
                    triggered_by="backtest",
                    publish_views=index == n_batches - 1,
                    deliver_alerts=False,
                    references=references,
                )
                served_metric, baseline_metric = batch_metrics(
                    served, baseline, rows, truth, metric
                )
                record = {
                    "index": index,
                    "first_row": start,
                    "rows": len(rows),
                    "status": outcome.result.status,
                    "drift_detected": outcome.result.status == "drift",
                    "drift_share": _clean(outcome.result.drift.drift_share)
                    if outcome.result.drift
                    else 0.0,
                    "drifted_features": list(outcome.result.drift.drifted_features)
                    if outcome.result.drift
                    else [],
                    "alert": outcome.alert.yes,
                    "retrained": False,
                    "promoted": False,
                    "champion_version": served.version,
                    "metric": _clean(served_metric),
                    "baseline_metric": _clean(baseline_metric),
                }
                if outcome.retrain.yes:
                    try:
                        result = retrain_once(
                            config,
                            settings,
                            drift_run_id=outcome.run_id,
                            reason=outcome.retrain.reason,
                            trigger="backtest",
                        )
                        record["retrained"] = True
                        record["promoted"] = bool(result["promoted"])
                        if result["promoted"]:
                            served = load_alias(client, config.model_name)
                    except RetrainRefused as exc:
                        record["retrain_refused"] = str(exc)
                batches.append(record)
                print(
                    f"batch {index + 1}/{n_batches}: {record['status']}, drift share {record['drift_share']}, "
                    f"v{record['champion_version']} {metric} {record['metric']} (baseline {record['baseline_metric']})"
                    + (", retrained" if record["retrained"] else "")
                    + (", promoted" if record["promoted"] else "")
                )
        finally:
            engine.dispose()
    return {
        "metric_name": metric,
        "batches": batches,
        "retrains": sum(b["retrained"] for b in batches),
        "promotions": sum(b["promoted"] for b in batches),
        "alerts": sum(b["alert"] for b in batches),
    }


def write_summary(summary: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, allow_nan=False))
