"""The monitor's drift on a Dask cluster through Prefect against the single process.

The frames of bench/drift.py (20 numeric and 5 categorical features, a few drifted; reference
and window of --rows rows each). Reference statistics are computed once (as at registration)
and are not timed. Rows:

  single process   compute_drift on the window (driftloop's default method)
  dask, N parts    what `monitoring.partitions: N` runs: the window split into N partitions,
                   one Prefect task each (flows.partitioned.summarise_partition) on a
                   DaskTaskRunner connected to a LocalCluster of 2 worker processes of one
                   thread, then drift_from_partitions in the flow's process; "merge" is that
                   last step alone
The cluster is started once before the timings (its start is printed apart); the monitor
starts one per run when DRIFTLOOP_DASK_ADDRESS is unset. "same verdicts" compares every
column's method, score, effect and verdict with the single process.

    .venv/bin/python bench/partitions.py                  # 1,000,000 rows
    .venv/bin/python bench/partitions.py --rows 100000    # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distributed import LocalCluster  # noqa: E402
from prefect import flow  # noqa: E402

from bench.drift import CAT, NUM, build  # noqa: E402
from flows.partitioned import dask_runner, summarise_partition  # noqa: E402
from monitoring.drift import compute_drift, reference_stats  # noqa: E402
from monitoring.partitions import drift_from_partitions, split_frame  # noqa: E402

#: The frames, statistics and cluster of one run (module-level, not in the flow's closure: the
#: flow is pickled by reference into every task's context).
STATE: dict = {}


def same(a, b) -> bool:  # noqa: ANN001 - two DriftResults
    def key(r):  # noqa: ANN001, ANN202
        return [(c.column, c.method, c.score, c.effect, c.drifted, c.note) for c in r.columns]

    return key(a) == key(b) and a.drifted_features == b.drifted_features


@flow(name="bench-partitions")
def partitioned(n_parts: int) -> tuple[float, float, bool]:
    """What `monitoring.partitions: N` runs, timed: tasks on the cluster, then the merge."""
    columns = {"numeric": NUM, "categorical": CAT}
    start = time.perf_counter()
    with dask_runner(STATE["address"]) as runner:
        futures = [
            runner.submit(summarise_partition, parameters={"frame": part, **columns})
            for part in split_frame(STATE["current"], n_parts)
        ]
        summaries = [f.result() for f in futures]
    merge_start = time.perf_counter()
    result = drift_from_partitions(reference_stats=STATE["stats"], partitions=summaries, **columns)
    end = time.perf_counter()
    return end - start, end - merge_start, same(result, STATE["single"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import bench.partitions as this  # the importable module, so workers find its flow

    reference, current = build(args.rows, args.seed)
    stats = reference_stats(reference, numeric=NUM, categorical=CAT)

    start = time.perf_counter()
    single = compute_drift(
        reference=None, current=current, reference_stats=stats, numeric=NUM, categorical=CAT
    )
    single_s = time.perf_counter() - start

    start = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    cluster_s = time.perf_counter() - start
    this.STATE.update(
        address=cluster.scheduler_address, current=current, stats=stats, single=single
    )

    rows = [("single process", single_s, None, True)]
    for n in args.parts:
        total, merge, equal = this.partitioned(n)
        rows.append((f"dask, {n} parts", total, merge, equal))
    cluster.close()

    print(
        f"\n{args.rows:,} window rows x {len(NUM)} numeric + {len(CAT)} categorical features; "
        f"local cluster of 2 worker processes started in {cluster_s:.1f} s (not in the times)\n"
    )
    print(f"{'engine':<16} {'wall s':>8} {'rows/s':>12} {'merge s':>8}  same verdicts")
    for name, seconds, merge, equal in rows:
        merged = f"{merge:8.2f}" if merge is not None else f"{'-':>8}"
        print(f"{name:<16} {seconds:8.2f} {args.rows / seconds:12,.0f} {merged}  {equal}")


if __name__ == "__main__":
    main()
