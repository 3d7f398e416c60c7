"""Speed and memory of drift computation: Evidently's DataDriftPreset against driftloop.

1,000,000 reference and 1,000,000 current rows of 20 numeric and 5 categorical (string)
features, a few of them drifted. Each computation runs in its own subprocess that builds the
same frames from the same seed; the kernel's peak-RSS mark is reset once the frames are built
(Linux /proc/self/clear_refs), so "peak MB" is the process's peak during the computation, with
both frames resident ("frames MB" is that resident baseline).

    .venv/bin/python bench/drift.py                 # the full size (Evidently takes minutes)
    .venv/bin/python bench/drift.py --rows 100000   # a quick look

Rows:
  evidently           Report([DataDriftPreset()]) on the frames (its automatic methods)
  driftloop/evidently compute_drift(method="evidently"): the same methods and thresholds,
                      verdicts compared column by column with Evidently's
  driftloop/default   the monitor's default computation: compute_drift (driftloop method) plus
                      compute_quality
Reference statistics (sorted samples, category counts) are computed once per model version at
registration; their time is printed apart ("ref stats") and is not in the timed computation.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_NUM, N_CAT = 20, 5
NUM = [f"n{i}" for i in range(N_NUM)]
CAT = [f"c{i}" for i in range(N_CAT)]


def build(
    rows: int, seed: int, *, reference_rows: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference (``reference_rows``, default ``rows``) and current frames; n0 shifted 0.3 sd,
    n1 0.05 sd, n2 wider, c0 re-weighted."""
    rng = np.random.default_rng(seed)
    levels = np.array([f"level_{i}" for i in range(12)], dtype=object)
    weights = rng.dirichlet(np.ones(levels.size))

    def one(drifted: bool, rows: int) -> pd.DataFrame:
        data = {}
        for i, name in enumerate(NUM):
            x = rng.standard_normal(rows) if i % 2 == 0 else rng.gamma(2.0 + i % 5, 1.0, rows)
            if drifted and i == 0:
                x += 0.3
            if drifted and i == 1:
                x += 0.05 * np.std(x)
            if drifted and i == 2:
                x *= 1.5
            data[name] = x
        for i, name in enumerate(CAT):
            p = weights
            if drifted and i == 0:
                p = np.roll(weights, 3)
            data[name] = rng.choice(
                levels[: 4 + 2 * i], rows, p=p[: 4 + 2 * i] / p[: 4 + 2 * i].sum()
            )
        frame = pd.DataFrame(data)
        frame.loc[::97, "n3"] = np.nan
        return frame

    return one(False, rows if reference_rows is None else reference_rows), one(True, rows)


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux), so the peak is the computation's, not the
    frames' construction's; the frames stay resident and are counted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mb() -> float:
    """Resident memory now."""
    now = _status_mb("VmRSS")
    return now if now is not None else peak_mb()


def peak_mb() -> float:
    """Peak resident memory since the last reset (ru_maxrss where /proc is unavailable)."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_evidently(reference: pd.DataFrame, current: pd.DataFrame) -> dict:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUM, categorical_columns=CAT)
    start, cpu = time.perf_counter(), time.process_time()
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    metrics = snapshot.dict()["metrics"]
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    columns = {}
    for metric in metrics:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            columns[config["column"]] = {
                "method": config["method"],
                "threshold": config["threshold"],
                "score": metric["value"],
            }
    return {"seconds": seconds, "cpu": cpu, "columns": columns}


def run_driftloop(reference: pd.DataFrame, current: pd.DataFrame, mode: str) -> dict:
    from core.config_monitoring import DriftConfig
    from monitoring.drift import compute_drift, reference_stats
    from monitoring.quality import compute_quality

    start = time.perf_counter()
    stats = reference_stats(reference, numeric=NUM, categorical=CAT)
    stats_seconds = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    config = DriftConfig(method="evidently") if mode == "evidently" else DriftConfig()
    result = compute_drift(
        reference=None,
        current=current,
        numeric=NUM,
        categorical=CAT,
        config=config,
        reference_stats=stats,
    )
    if mode == "default":
        compute_quality(
            reference=None, current=current, numeric=NUM, categorical=CAT, reference_stats=stats
        )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    columns = {
        c.column: {
            "method": c.method,
            "threshold": c.threshold,
            "score": c.score,
            "drifted": c.drifted,
        }
        for c in result.columns
    }
    return {"seconds": seconds, "cpu": cpu, "stats_seconds": stats_seconds, "columns": columns}


def child(which: str, rows: int, seed: int) -> None:
    warnings.simplefilter("ignore")
    reference, current = build(rows, seed)
    frames_mb = rss_mb()  # the process with both frames resident, before any computation
    reset_peak()
    if which == "evidently":
        out = run_evidently(reference, current)
    else:
        out = run_driftloop(reference, current, which.split("/")[1])
    out.update(peak_mb=peak_mb(), frames_mb=frames_mb)
    print(json.dumps(out))


EVIDENTLY_NAMES = {
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
}


def evidently_verdict(method: str, score: float, threshold: float) -> bool:
    name = EVIDENTLY_NAMES.get(method, method)
    if name == "ks":
        return score <= threshold
    if name in ("chisquare", "z"):
        return score < threshold
    return score >= threshold


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows in each of reference and current"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-evidently", action="store_true", help="skip Evidently (no comparison)"
    )
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rows, args.seed)
        return

    results = {}
    order = ["driftloop/default", "driftloop/evidently"] + (
        [] if args.no_evidently else ["evidently"]
    )
    for which in order:
        print(f"running {which} ...", flush=True)
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                which,
                "--rows",
                str(args.rows),
                "--seed",
                str(args.seed),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results[which] = json.loads(proc.stdout.strip().splitlines()[-1])

    if "evidently" not in results:
        for which, r in results.items():
            print(
                f"{which:<22} wall {r['seconds']:.2f} s, CPU {r['cpu']:.2f} s, "
                f"peak {r['peak_mb']:.0f} MB (frames {r['frames_mb']:.0f} MB)"
            )
        return
    ev = results["evidently"]
    print(
        f"\n{args.rows:,} reference + {args.rows:,} current rows, {N_NUM} numeric + {N_CAT} categorical\n"
    )
    header = (
        f"{'computation':<22} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'frames MB':>10} "
        f"{'x (wall)':>9} {'x (CPU)':>8} {'ref stats s':>12}"
    )
    print(header)
    print("-" * len(header))
    for which, r in results.items():
        stats_s = f"{r['stats_seconds']:.2f}" if "stats_seconds" in r else "-"
        print(
            f"{which:<22} {r['seconds']:>8.2f} {r['cpu']:>8.2f} {r['peak_mb']:>8.0f} "
            f"{r['frames_mb']:>10.0f} {ev['seconds'] / r['seconds']:>9.1f} "
            f"{ev['cpu'] / r['cpu']:>8.1f} {stats_s:>12}"
        )

    ours = results["driftloop/evidently"]["columns"]
    agree = 0
    print(
        f"\n{'column':<7} {'method':<14} {'threshold':>9} {'Evidently':>14} {'driftloop':>14} {'verdicts':>9}"
    )
    for column in NUM + CAT:
        theirs = ev["columns"][column]
        mine = ours[column]
        their_verdict = evidently_verdict(theirs["method"], theirs["score"], theirs["threshold"])
        same_method = EVIDENTLY_NAMES.get(theirs["method"]) == mine["method"]
        same = (
            same_method
            and their_verdict == mine["drifted"]
            and theirs["threshold"] == mine["threshold"]
        )
        agree += same
        print(
            f"{column:<7} {mine['method']:<14} {mine['threshold']:>9g} {theirs['score']:>14.8g} "
            f"{mine['score']:>14.8g} {('agree' if same else 'DIFFER') + (' (D)' if their_verdict else ''):>9}"
        )
    default = results["driftloop/default"]["columns"]
    drifted = [c for c, v in default.items() if v["drifted"]]
    print(f"\nper-column verdicts agree: {agree}/{len(NUM) + len(CAT)} (D = drift detected)")
    print(f"driftloop default flags: {drifted}")


if __name__ == "__main__":
    main()
