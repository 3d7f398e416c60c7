"""`driftloop backtest`: replay the monitoring and retraining policy on history.

Fresh state under a work directory (MLflow registry, inference log, workspace); the initial
champion trains on `data.train`; then, batch by batch in file order: the current champion scores
the rows with the served model (the loaded, verified Pipeline) and they are logged, the labels
of the batch K batches old arrive, the monitor and the retraining policy run exactly as in
production (retraining and promotion included), and a record is appended. Each batch counts as
`batch_hours` of simulated time for the policy's cooldown and daily limit. Alerts are decided
but not delivered, and the Evidently views are drawn only for the last batch.

Two baselines run on the same batches: the never-retrained first model, and with
``compare_every`` a fixed schedule (the same data policy retrained every K batches and used
without a gate). :func:`summary_lines` prints them side by side around each detected change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow
from threadpoolctl import threadpool_limits

import registry
from core.config import ProjectConfig
from core.errors import DriftloopError
from core.settings import Settings, local_state_environment
from core.spec import FeatureSpec
from flows.ingest import ingest_config
from flows.monitor import monitor_once
from flows.retrain import retrain_asked
from flows.score import score_and_log
from flows.sources import read_table
from flows.train import train_and_gate
from monitoring import store
from monitoring.estimation import window_estimate
from monitoring.verdict import VersionReference
from pipelines.holdout import scores_of
from pipelines.retraining import RetrainRefused, Rows, build_challenger, retrain_settings
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


def pipeline_metric(
    pipeline: Any,
    spec: FeatureSpec,
    frame: pd.DataFrame,
    labels: pd.Series,
    *,
    metric: str,
    task: str,
    classes: tuple[Any, ...],
) -> float:
    """A Pipeline's primary metric on a batch's true labels (NaN where undefined or unlabeled)."""
    known = labels.notna().to_numpy()
    if not known.any():
        return float("nan")
    X = prepare_features(frame.loc[known], spec).reset_index(drop=True)
    y = labels[known].to_numpy()
    if task == "classification" and classes:
        y = y.astype(type(classes[0]))
    try:
        return scores_of(pipeline, X, y, task=task, classes=classes or None).metric(metric)
    except ValueError:
        return float("nan")


def primary_metric(
    model: ServedModel, frame: pd.DataFrame, labels: pd.Series, metric: str
) -> float:
    """The served model's primary metric on a batch's true labels."""
    return pipeline_metric(
        model.pipeline,
        model.spec,
        frame,
        labels,
        metric=metric,
        task=model.task,
        classes=model.classes,
    )


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


def batch_estimate(
    served: ServedModel, reference: VersionReference | None, frame: pd.DataFrame, target: str
) -> tuple[float | None, float | None, float | None]:
    """The served model's primary metric on a batch estimated before its labels arrive, and
    its band (None where the version cannot be estimated)."""
    facts = reference.estimation if reference is not None else None
    if facts is None:
        return None, None, None
    spec = served.spec
    X = prepare_features(frame, spec).reset_index(drop=True)
    outputs = scores_of(
        served.pipeline, X, np.zeros(len(X)), task=served.task, classes=served.classes or None
    )
    window = X.assign(**{target: np.nan, "prediction": outputs.prediction})
    if outputs.proba is not None:
        keys = [str(c) for c in served.classes]
        window["probability"] = (
            outputs.proba[:, -1] if len(keys) == 2 else outputs.proba.max(axis=1)
        )
        window["probabilities"] = [
            dict(zip(keys, row, strict=True)) for row in outputs.proba.tolist()
        ]
    result = window_estimate(window, facts, target=target, spec=spec, reference_value=None)
    if result is None:
        return None, None, None
    return _clean(result.value), _clean(result.low), _clean(result.high)


@dataclass
class Schedule:
    """The fixed-schedule baseline: the same data policy retrained every ``every`` batches from
    the labels known at that point, and used without a gate."""

    every: int
    pipeline: Any
    retrains: int = 0

    def due(self, index: int) -> bool:
        return (index + 1) % self.every == 0


def labeled_rows(inputs: BacktestInputs, spec: FeatureSpec, upto: int) -> Rows:
    """The live rows before position ``upto`` whose labels are known, oldest first."""
    labels = inputs.labels.iloc[:upto]
    known = labels.notna().to_numpy()
    X = prepare_features(inputs.live.iloc[:upto].loc[known], spec).reset_index(drop=True)
    return Rows(X, labels[known].to_numpy())


def retrain_on_schedule(
    schedule: Schedule,
    config: ProjectConfig,
    *,
    live: Rows,
    reference: Rows,
    classes: tuple[Any, ...],
) -> None:
    """Rebuild the scheduled model from the labels known now (same data policy, no gate)."""
    if len(live) < config.monitoring.retrain.min_labeled_rows:
        return
    challenger = build_challenger(
        schedule.pipeline,
        live=live,
        reference=reference,
        task=config.task,
        metric=config.promotion.metric,
        classes=classes,
        settings=retrain_settings(config),
    )
    if challenger.pipeline is not None:
        schedule.pipeline = challenger.pipeline
        schedule.retrains += 1


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


@dataclass
class Replay:
    """What the replay carries from batch to batch: the model serving now, the first model (the
    never-retrained baseline), the reference rows, the fixed schedules, the loaded references and
    the labels still on their way (request ids and values, oldest batch first)."""

    client: Any
    engine: Any
    served: ServedModel
    baseline: ServedModel
    reference: Rows
    schedules: list[Schedule]
    references: dict[int, VersionReference] = field(default_factory=dict)
    pending: list[tuple[list[str], list[Any]]] = field(default_factory=list)


def first_champion(config: ProjectConfig, settings: Settings, live: pd.DataFrame) -> ServedModel:
    """Train the initial champion on `data.train` and load it as the service would."""
    client = registry.make_client(settings.mlflow_tracking_uri)
    first = train_and_gate(
        config, settings, ingested=ingest_config(config), lineage={"trigger": "backtest"}
    )
    if not first.promoted:
        raise BacktestError(f"the initial model was not made champion: {first.reason}")
    baseline = load_version(client, config.model_name, first.version)
    check_features(config, baseline, live)
    return baseline


def reference_rows(client: Any, config: ProjectConfig, model: ServedModel) -> Rows:
    """The version's training snapshot as model inputs and labels (the retraining reference)."""
    snapshot = registry.load_reference(client, config.model_name, model.version)
    return Rows(
        prepare_features(snapshot, model.spec).reset_index(drop=True),
        snapshot[config.target].to_numpy(),
    )


def arrived_labels(pending: list[tuple[list[str], list[Any]]], delay: int) -> dict[str, Any]:
    """The labels of the batch ``delay`` batches old, once there are more batches waiting than
    that (taken off ``pending``), without the missing ones."""
    if len(pending) <= delay:
        return {}
    ids, values = pending.pop(0)
    return {r: y for r, y in zip(ids, values, strict=True) if y == y and y is not None}


def batch_record(
    index: int, first_row: int, rows: int, outcome: Any, served: ServedModel
) -> dict[str, Any]:
    """The batch's line of the summary from the monitor's outcome (metrics are added after)."""
    result, step = outcome.result, outcome.alert.step
    return {
        "index": index,
        "first_row": first_row,
        "rows": rows,
        "status": result.status,
        "drift_detected": result.status == "drift",
        "drift_share": _clean(result.drift.drift_share) if result.drift else 0.0,
        "drifted_features": list(result.drift.drifted_features) if result.drift else [],
        "alert": outcome.alert.yes,
        "retrained": False,
        "promoted": False,
        "champion_version": served.version,
        "severity": result.severity,
        "incident_event": step.event if step else None,
        "event_severity": step.event_severity if step and step.event else None,
    }


def retrain_if_decided(
    config: ProjectConfig, settings: Settings, replay: Replay, outcome: Any, record: dict[str, Any]
) -> None:
    """Run the retraining the monitor asked for, in-process; a promotion changes what serves."""
    if not outcome.retrain.yes:
        return
    try:
        result = retrain_asked(config, settings, outcome, trigger="backtest")
    except RetrainRefused as exc:
        record["retrain_refused"] = str(exc)
        return
    record["retrained"] = True
    record["promoted"] = bool(result["promoted"])
    record["retrain_window"] = result["lineage"].get("window")
    if result["promoted"]:
        replay.served = load_alias(replay.client, config.model_name)


def replay_batch(
    config: ProjectConfig,
    settings: Settings,
    replay: Replay,
    inputs: BacktestInputs,
    *,
    index: int,
    n_batches: int,
    batch_rows: int,
    label_delay_batches: int,
    batch_hours: float,
    compare_every: int | None,
) -> dict[str, Any]:
    """One batch as production would see it: the champion scores and logs the rows, older labels
    arrive, the monitor runs and may retrain; then each baseline is scored on the same rows."""
    metric = config.promotion.metric
    start = index * batch_rows
    rows = inputs.live.iloc[start : start + batch_rows]
    truth = inputs.labels.iloc[start : start + batch_rows].reset_index(drop=True)
    now = EPOCH + timedelta(hours=batch_hours * (index + 1))
    ids = [f"b{index}-{j}" for j in range(len(rows))]
    served = replay.served
    score_and_log(
        served, rows, engine=replay.engine, ts=now - timedelta(minutes=1), request_ids=ids
    )
    replay.pending.append((ids, truth.tolist()))
    store.record_labels(replay.engine, arrived_labels(replay.pending, label_delay_batches), at=now)
    outcome = monitor_once(
        config,
        settings,
        now=now,
        triggered_by="backtest",
        publish_views=index == n_batches - 1,
        deliver_alerts=False,
        references=replay.references,
    )
    served_metric, baseline_metric = batch_metrics(served, replay.baseline, rows, truth, metric)
    record = batch_record(index, start, len(rows), outcome, served)
    record.update(metric=_clean(served_metric), baseline_metric=_clean(baseline_metric))
    scheduled = {
        str(plan.every): _clean(
            pipeline_metric(
                plan.pipeline,
                replay.baseline.spec,
                rows,
                truth,
                metric=metric,
                task=config.task,
                classes=replay.baseline.classes,
            )
        )
        for plan in replay.schedules
    }
    estimate, low, high = batch_estimate(
        served, replay.references.get(served.version), rows, config.target
    )
    record.update(estimated_metric=estimate, estimated_low=low, estimated_high=high)
    if compare_every:
        record["scheduled_metric"] = scheduled[str(compare_every)]
    if len(replay.schedules) > (1 if compare_every else 0):
        record["schedule_metrics"] = scheduled
    retrain_if_decided(config, settings, replay, outcome, record)
    known_upto = max(0, (index + 1 - label_delay_batches) * batch_rows)
    for plan in (p for p in replay.schedules if p.due(index)):
        retrain_on_schedule(
            plan,
            config,
            live=labeled_rows(inputs, replay.baseline.spec, known_upto),
            reference=replay.reference,
            classes=replay.baseline.classes,
        )
    return record


def batch_line(record: dict[str, Any], n_batches: int, metric: str) -> str:
    return (
        f"batch {record['index'] + 1}/{n_batches}: {record['status']}, drift share {record['drift_share']}, "
        f"v{record['champion_version']} {metric} {record['metric']} (baseline {record['baseline_metric']})"
        + (", retrained" if record["retrained"] else "")
        + (", promoted" if record["promoted"] else "")
    )


def backtest_summary(
    batches: list[dict[str, Any]],
    metric: str,
    schedules: list[Schedule],
    *,
    compare_every: int | None,
    more_schedules: tuple[int, ...],
) -> dict[str, Any]:
    """The SUMMARY.json document: every batch, the counts, and each detected change."""
    summary: dict[str, Any] = {
        "metric_name": metric,
        "batches": batches,
        "retrains": sum(b["retrained"] for b in batches),
        "promotions": sum(b["promoted"] for b in batches),
        "alerts": sum(b["alert"] for b in batches),
        "alerts_by_severity": {
            level: sum(b["alert"] and b["event_severity"] == level for b in batches)
            for level in ("warning", "critical")
        },
        "changes": detected_changes(batches, metric),
    }
    if compare_every:
        summary["schedule"] = {"every": schedules[0].every, "retrains": schedules[0].retrains}
    if more_schedules:
        summary["schedules"] = [{"every": p.every, "retrains": p.retrains} for p in schedules]
    return summary


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
    compare_every: int | None = None,
    more_schedules: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Replay the policy on history; returns the SUMMARY.json document.

    ``compare_every`` adds the fixed schedule ``scheduled_metric`` and ``schedule`` report;
    ``more_schedules`` (the benchmark's) add one metric per batch each, under
    ``schedule_metrics``.
    """
    inputs = check_arguments(
        config,
        live_path,
        labels_path,
        batch_rows=batch_rows,
        label_delay_batches=label_delay_batches,
        workdir=workdir,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    # every store under the work directory; the rest of the environment as it is. Retraining
    # runs in this process (retrain_if_decided), whatever Prefect server is configured.
    settings = Settings(**local_state_environment(workdir))
    n_batches = (len(inputs.live) + batch_rows - 1) // batch_rows
    with threadpool_limits(BACKTEST_THREADS):
        baseline = first_champion(config, settings, inputs.live)
        client = registry.make_client(settings.mlflow_tracking_uri)
        everies = ([compare_every] if compare_every else []) + list(more_schedules)
        store.upgrade_database(settings.database_url)
        replay = Replay(
            client=client,
            engine=store.make_engine(
                settings.database_url, synchronous=settings.sqlite_synchronous
            ),
            served=baseline,
            baseline=baseline,
            reference=reference_rows(client, config, baseline),
            schedules=[Schedule(k, baseline.pipeline) for k in everies],
        )
        batches = []
        try:
            for index in range(n_batches):
                record = replay_batch(
                    config,
                    settings,
                    replay,
                    inputs,
                    index=index,
                    n_batches=n_batches,
                    batch_rows=batch_rows,
                    label_delay_batches=label_delay_batches,
                    batch_hours=batch_hours,
                    compare_every=compare_every,
                )
                batches.append(record)
                print(batch_line(record, n_batches, config.promotion.metric))
        finally:
            replay.engine.dispose()
    return backtest_summary(
        batches,
        config.promotion.metric,
        replay.schedules,
        compare_every=compare_every,
        more_schedules=more_schedules,
    )


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 6) if known else None


def detected_changes(batches: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Each critical incident the policy opened (or escalated to), with the mean metric of every
    policy in the batches before it (since the previous one) and after it (until the next)."""
    starts = [
        b["index"]
        for b in batches
        if b.get("incident_event") in ("opened", "escalated")
        and b.get("event_severity") == "critical"
    ]
    keys = [
        k for k in ("metric", "baseline_metric", "scheduled_metric") if batches and k in batches[0]
    ]
    out = []
    for n, start in enumerate(starts):
        before = batches[(starts[n - 1] if n else 0) : start]
        after = batches[start : starts[n + 1] if n + 1 < len(starts) else len(batches)]
        out.append(
            {
                "batch": start,
                "before": {k: _mean([b[k] for b in before]) for k in keys},
                "after": {k: _mean([b[k] for b in after]) for k in keys},
            }
        )
    return out


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The comparison a person reads after a backtest: the policy against never retraining (and
    the fixed schedule), around each detected change and overall."""
    batches = summary["batches"]
    schedule = summary.get("schedule")
    columns = [("policy", "metric"), ("never retrain", "baseline_metric")]
    if schedule:
        columns.append((f"every {schedule['every']} batches", "scheduled_metric"))
    metric = summary["metric_name"]
    width = max(len(name) for name, _ in columns) + 2
    lines = [f"{'mean ' + metric:<34}" + "".join(f"{name:>{width}}" for name, _ in columns)]

    def row(label: str, values: dict[str, float | None]) -> str:
        return f"{label:<34}" + "".join(
            f"{_format(values.get(key)):>{width}}" for _, key in columns
        )

    overall = {key: _mean([b.get(key) for b in batches]) for _, key in columns}
    lines.append(row(f"all {len(batches)} batches", overall))
    for change in summary["changes"]:
        lines.append(row(f"before the change at batch {change['batch']}", change["before"]))
        lines.append(row("after it (to the next)", change["after"]))
    retrains = [summary["retrains"], 0] + ([schedule["retrains"]] if schedule else [])
    lines.append(f"{'retrainings':<34}" + "".join(f"{r:>{width}}" for r in retrains))
    severity = summary["alerts_by_severity"]
    lines.append(
        f"promotions {summary['promotions']}; alerts {severity['critical']} critical, "
        f"{severity['warning']} warnings; {len(summary['changes'])} change(s) detected"
    )
    return lines


def _format(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def write_summary(summary: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, allow_nan=False))
