"""False alarms and power: driftloop's default drift policy against Evidently's DataDriftPreset.

Ten independent standard-normal features; a 5,000-row reference drawn fresh for every trial;
windows of 100 to 100,000 rows with no drift, or with one feature shifted by 0.25 or 0.5
standard deviations. For each method, the share of trials where the dataset is declared drifted
(false-alarm rate on no-drift windows, detection rate on shifted ones).

    .venv/bin/python bench/detection.py                # 200 trials per cell (slow: see --help)
    .venv/bin/python bench/detection.py --trials 20    # a quick look

Evidently's verdict is read from the real Report: DataDriftPreset's share of drifted columns
against its drift_share (0.5). Targets for driftloop's defaults: false alarms <= 5% at every
size, detection of a 0.5 sd shift >= 90% from 1,000 rows.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitoring.drift import compute_drift, reference_stats  # noqa: E402

N_FEATURES = 10
REFERENCE_ROWS = 5_000
SIZES = (100, 500, 1_000, 10_000, 100_000)
SHIFTS = (0.0, 0.25, 0.5)
COLUMNS = [f"x{i}" for i in range(N_FEATURES)]


def frame(rng: np.random.Generator, rows: int, shift: float) -> pd.DataFrame:
    data = rng.standard_normal((rows, N_FEATURES))
    data[:, 0] += shift
    return pd.DataFrame(data, columns=COLUMNS)


def driftloop_verdict(reference: pd.DataFrame, current: pd.DataFrame, stats) -> bool:
    return compute_drift(
        reference=None,
        current=current,
        numeric=COLUMNS,
        categorical=(),
        reference_stats=stats,
    ).dataset_drift


def evidently_verdict(reference: pd.DataFrame, current: pd.DataFrame) -> bool:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=COLUMNS)
    preset = DataDriftPreset()
    snapshot = Report([preset]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    for metric in snapshot.dict()["metrics"]:
        if metric["config"]["type"].endswith("DriftedColumnsCount"):
            return metric["value"]["share"] >= preset.drift_share
    raise RuntimeError("DriftedColumnsCount missing from the Evidently snapshot")


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of a rate."""
    if n == 0:
        return float("nan"), float("nan")
    z = 1.96
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=200, help="trials per (size, shift) cell")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument(
        "--evidently-trials",
        type=int,
        default=None,
        help="trials for Evidently (default: --trials); fewer keeps the full run shorter",
    )
    parser.add_argument("--no-evidently", action="store_true", help="driftloop only")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    ev_trials = 0 if args.no_evidently else (args.evidently_trials or args.trials)

    print(
        f"reference {REFERENCE_ROWS} rows, {N_FEATURES} N(0,1) features, shift in x0 only; "
        f"{args.trials} trials (Evidently {ev_trials}) per cell\n"
    )
    header = (
        f"{'window':>8} {'shift':>6} | {'driftloop':>10} {'95% CI':>13} {'ms/check':>9} | "
        f"{'Evidently':>10} {'95% CI':>13} {'ms/check':>9}"
    )
    print(header, flush=True)
    print("-" * len(header))
    rng = np.random.default_rng(args.seed)
    for size in args.sizes:
        for shift in SHIFTS:
            hits_d = hits_e = 0
            time_d = time_e = 0.0
            for trial in range(max(args.trials, ev_trials)):
                reference = frame(rng, REFERENCE_ROWS, 0.0)
                current = frame(rng, size, shift)
                if trial < args.trials:
                    start = time.perf_counter()
                    stats = reference_stats(reference, numeric=COLUMNS, categorical=())
                    hits_d += driftloop_verdict(reference, current, stats)
                    time_d += time.perf_counter() - start
                if trial < ev_trials:
                    start = time.perf_counter()
                    hits_e += evidently_verdict(reference, current)
                    time_e += time.perf_counter() - start
            lo_d, hi_d = wilson(hits_d, args.trials)
            cells = (
                f"{size:>8} {shift:>6.2f} | {hits_d / args.trials:>10.1%} "
                f"[{lo_d:>5.1%},{hi_d:>6.1%}] {1000 * time_d / args.trials:>9.1f} | "
            )
            if ev_trials:
                lo_e, hi_e = wilson(hits_e, ev_trials)
                cells += (
                    f"{hits_e / ev_trials:>10.1%} [{lo_e:>5.1%},{hi_e:>6.1%}] "
                    f"{1000 * time_e / ev_trials:>9.1f}"
                )
            print(cells, flush=True)
    print(
        "\nshift 0.00 rows are false-alarm rates (target <= 5%); 0.25 and 0.50 rows are "
        "detection rates (target for 0.50: >= 90% from 1,000 rows)."
    )


if __name__ == "__main__":
    main()
