"""The loop against baselines on generated drift of every kind (pipelines.synthetic).

For each scenario and label delay, one `driftloop backtest` replays a generated stream (5,000
training rows, 24,000 live rows in batches of 1,000, the change at 40% of the live rows) with a
minimal config (model_name, task, target, id_column, data.train: every other setting is the
default a user gets), and on the same batches three baselines: the never-retrained first model,
and the same data policy retrained every batch and every 10 batches, used without a gate.

    .venv/bin/python bench/loop.py                            # 7 scenarios x delays 0, 1, 5
    .venv/bin/python bench/loop.py --scenarios abrupt --delays 1

Printed per stream: the mean metric after the change (AUC, or RMSE for the regression), over
all batches, retrainings, critical alerts and warnings, detection delay in batches. Targets for
the default policy: on concept drift the mean after the change within 0.05 AUC (5% RMSE) of
retrain-every-batch, at most 2 retrainings per change; on no drift and harmless shift no
retraining and at most 1 critical alert per 20 batches; overall never below never-retrain by
more than 0.005 AUC (0.5% RMSE). Results also go to bench/results/loop.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.synthetic import SCENARIOS, generate  # noqa: E402

TRAIN_ROWS, LIVE_ROWS, BATCH_ROWS, CHANGE = 5_000, 24_000, 1_000, 0.4
CONCEPT = {"abrupt", "gradual", "recurring", "regression"}
#: changes per stream (the recurring concept changes twice)
CHANGES = {"abrupt": 1, "gradual": 1, "recurring": 2, "regression": 1}


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def run_stream(scenario: str, delay: int, *, seed: int, work: Path) -> dict[str, Any]:
    """One backtest of a generated stream, with the schedule baselines; its figures."""
    from core.config import load_config
    from flows.backtest import backtest

    stream = generate(
        scenario, train_rows=TRAIN_ROWS, live_rows=LIVE_ROWS, change=CHANGE, seed=seed
    )
    base = work / f"{scenario}-{delay}"
    base.mkdir(parents=True)
    stream.train.to_parquet(base / "train.parquet", index=False)
    stream.live.to_parquet(base / "live.parquet", index=False)
    stream.labels.to_parquet(base / "labels.parquet", index=False)
    config = {
        "model_name": "bench",
        "task": stream.task,
        "target": "y",
        "id_column": "id",
        "data": {"train": "train.parquet"},
    }
    (base / "driftloop.yaml").write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    summary = backtest(
        load_config(base / "driftloop.yaml"),
        base / "live.parquet",
        base / "labels.parquet",
        batch_rows=BATCH_ROWS,
        label_delay_batches=delay,
        workdir=base / "work",
        more_schedules=(1, 10),
    )
    seconds = time.perf_counter() - started
    batches = summary["batches"]
    change = None if stream.change_row is None else stream.change_row // BATCH_ROWS
    after = batches[change:] if change is not None else batches
    series = {
        "policy": [b["metric"] for b in batches],
        "never": [b["baseline_metric"] for b in batches],
        "every batch": [b["schedule_metrics"]["1"] for b in batches],
        "every 10": [b["schedule_metrics"]["10"] for b in batches],
    }
    first = 0 if change is None else change
    alarms = [
        b["index"]
        for b in batches
        if b["index"] >= first
        and b["incident_event"] in ("opened", "escalated")
        and b["event_severity"] == "critical"
    ]
    return {
        "scenario": scenario,
        "delay": delay,
        "metric": summary["metric_name"],
        "batches": len(batches),
        "change_batch": change,
        "after": {k: _mean(v[first:]) for k, v in series.items()},
        "overall": {k: _mean(v) for k, v in series.items()},
        "retrains": {
            "policy": summary["retrains"],
            "every batch": summary["schedules"][0]["retrains"],
            "every 10": summary["schedules"][1]["retrains"],
        },
        "promotions": summary["promotions"],
        "critical": summary["alerts_by_severity"]["critical"],
        "warnings": sum(
            b["incident_event"] in ("opened", "escalated") and b["event_severity"] == "warning"
            for b in batches
        ),
        "detection_delay": (alarms[0] - change) if change is not None and alarms else None,
        "after_rows": len(after),
        "seconds": seconds,
        "trace": [
            {
                k: b.get(k)
                for k in (
                    "index",
                    "severity",
                    "incident_event",
                    "metric",
                    "baseline_metric",
                    "estimated_metric",
                    "retrained",
                    "promoted",
                    "retrain_refused",
                    "retrain_window",
                )
            }
            for b in batches
        ],
    }


def targets(row: dict[str, Any]) -> list[str]:
    """The targets this stream misses (empty: all met)."""
    missed = []
    lower = row["metric"] in ("rmse", "mae")
    after, overall = row["after"], row["overall"]

    def gap(a: float, b: float) -> float:  # how much worse a is than b (>0 = worse)
        return (a - b) / abs(b) if lower else b - a

    if row["scenario"] in CONCEPT:
        allowed = 0.05
        if gap(after["policy"], after["every batch"]) > allowed:
            missed.append(
                f"after-change mean {gap(after['policy'], after['every batch']):+.3f} vs every batch"
            )
        if row["retrains"]["policy"] > 2 * CHANGES[row["scenario"]]:
            missed.append(
                f"{row['retrains']['policy']} retrainings for {CHANGES[row['scenario']]} change(s)"
            )
    if row["scenario"] in ("none", "harmless"):
        if row["retrains"]["policy"]:
            missed.append(f"{row['retrains']['policy']} retrainings without harm")
        if row["critical"] > row["batches"] / 20:
            missed.append(f"{row['critical']} critical alerts in {row['batches']} batches")
    never_gap = gap(overall["policy"], overall["never"])
    if never_gap > (0.005 if lower else 0.005):
        missed.append(f"overall {never_gap:+.4f} below never-retrain")
    return missed


def table(rows: list[dict[str, Any]]) -> list[str]:
    head = (
        f"{'scenario':<11}{'delay':>5} {'metric':<8}"
        f"{'after: policy':>14}{'never':>8}{'every1':>8}{'every10':>8}"
        f"{'all: policy':>12}{'never':>8}"
        f"{'retrains p/1/10':>16}{'crit':>5}{'warn':>5}{'delay':>6}  targets"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        a, o, k = r["after"], r["overall"], r["retrains"]
        missed = targets(r)
        lines.append(
            f"{r['scenario']:<11}{r['delay']:>5} {r['metric']:<8}"
            f"{a['policy']:>14.4f}{a['never']:>8.4f}{a['every batch']:>8.4f}{a['every 10']:>8.4f}"
            f"{o['policy']:>12.4f}{o['never']:>8.4f}"
            f"{k['policy']:>6}/{k['every batch']:>3}/{k['every 10']:>3}    "
            f"{r['critical']:>3}{r['warnings']:>5}"
            f"{'-' if r['detection_delay'] is None else r['detection_delay']:>6}  "
            + ("met" if not missed else "; ".join(missed))
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    import os

    from driftloop.logs import send_logs_to_file

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    log = send_logs_to_file(Path(tempfile.gettempdir()) / "driftloop-bench-loop.log")
    print(f"Prefect and MLflow logs: {log}", file=sys.stderr)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--delays", nargs="*", type=int, default=[0, 1, 5])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "loop.json")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-loop-") as tmp:
        for scenario in args.scenarios:
            for delay in args.delays:
                row = run_stream(scenario, delay, seed=args.seed, work=Path(tmp))
                rows.append(row)
                missed = "; ".join(targets(row)) or "targets met"
                print(
                    f"{scenario} delay {delay}: {row['seconds']:.0f} s, {missed}",
                    file=sys.stderr,
                    flush=True,
                )
                # written after every stream, so a long run's figures survive an interruption
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(rows, indent=1))
    print("\n".join(table(rows)))
    met = sum(not targets(r) for r in rows)
    print(f"\n{met} of {len(rows)} streams meet every target; figures in {args.out}")


if __name__ == "__main__":
    main()
