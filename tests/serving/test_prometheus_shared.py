"""Metrics shared by the workers of `serve --workers N` (prometheus_client multiprocess mode):
real worker processes write into one directory, and any of them renders what all of them did."""

from __future__ import annotations

import multiprocessing
import os
import queue
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.prometheus import MetricsDirectoryError, ServiceMetrics


def _state(queue: int, database_up: int, version: int, rows: int) -> dict[str, Any]:
    return {
        "model_name": "m",
        "model_version": version,
        "queue": queue,
        "database_up": database_up,
        "rows_database": rows,
    }


def _serve(directory: str, state: dict[str, Any], requests: int) -> ServiceMetrics:
    """A worker's metrics after `requests` answers and one log batch (which publishes)."""
    metrics = ServiceMetrics(lambda: state, shared_dir=Path(directory))
    for _ in range(requests):
        metrics.observe("/predict", 200, 0.001)
    metrics.observe_batch(requests, 0.002)  # as the writer thread does
    return metrics


def _worker(
    directory: str, state: dict[str, Any], requests: int, retire: bool, ready: Any, go: Any
) -> None:
    metrics = _serve(directory, state, requests)
    if retire:  # a worker that shut down
        metrics.retire()
    ready.put(os.getpid())
    go.wait(60)  # stay alive while the test scrapes


def _scraped_worker(directory: str, state: dict[str, Any], requests: int, answers: Any) -> None:
    metrics = _serve(directory, state, requests)
    answers.put(metrics.render().decode())


def test_any_worker_renders_the_sum_of_every_worker_and_each_live_worker_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = multiprocessing.get_context("spawn")
    directory = str(tmp_path)
    # inherited by the workers, which import prometheus_client after it is set (as under uvicorn)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", directory)
    ready, go, gone, answers = context.Queue(), context.Event(), context.Event(), context.Queue()
    live = context.Process(
        target=_worker, args=(directory, _state(4, 1, 1, 7), 7, False, ready, go)
    )
    retired = context.Process(
        target=_worker, args=(directory, _state(9, 0, 1, 11), 11, True, ready, go)
    )
    killed = context.Process(  # dies without retiring, like a worker killed with -9
        target=_worker, args=(directory, _state(6, 0, 3, 13), 13, False, ready, gone)
    )
    scraped = context.Process(  # e.g. the worker uvicorn starts in place of the killed one
        target=_scraped_worker, args=(directory, _state(3, 1, 2, 5), 5, answers)
    )
    processes = (live, retired, killed, scraped)
    try:
        for process in processes[:3]:
            process.start()
        for _ in range(3):
            ready.get(timeout=60)
        killed.kill()
        killed.join(30)
        scraped.start()
        text = answers.get(timeout=60)
    except queue.Empty:
        codes = [process.exitcode for process in processes]
        raise AssertionError(f"a worker did not answer; exit codes {codes}") from None
    finally:
        go.set()
        for process in processes:
            if process.pid is not None:
                process.join(30)
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests = {
        tuple(sorted(s.labels.items())): s.value
        for s in families["driftloop_requests"].samples
        if s.name == "driftloop_requests_total"
    }
    assert (
        requests[(("endpoint", "/predict"), ("status", "200"))] == 5 + 7 + 11 + 13
    )  # all, gone too
    logged = families["driftloop_rows_logged"]
    assert logged.type == "counter"  # published as a summed gauge, exposed as the counter it is
    assert {s.labels["destination"]: s.value for s in logged.samples}["database"] == 5 + 7 + 11 + 13
    assert [s.value for s in families["driftloop_log_queue_depth"].samples] == [3 + 4]  # live ones
    # the lowest of the live workers' (the retired and the killed one had 0)
    assert [s.value for s in families["driftloop_log_database_up"].samples] == [1]
    versions = sorted(
        (s.labels["pid"], s.value) for s in families["driftloop_model_version"].samples
    )
    assert versions == sorted([(str(scraped.pid), 2.0), (str(live.pid), 1.0)])  # live ones


def test_shared_metrics_outside_multiprocess_mode_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MetricsDirectoryError, match="PROMETHEUS_MULTIPROC_DIR"):
        ServiceMetrics(lambda: {}, shared_dir=tmp_path)
