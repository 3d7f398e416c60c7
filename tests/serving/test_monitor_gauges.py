"""The monitor gauges on a real service's /metrics: read from drift_runs on PostgreSQL, cached for
a few seconds, left out (and nothing else affected) while the database hangs."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from monitoring import runs, store
from serving.prometheus import MONITOR_GAUGES_TTL_SECONDS
from tests.serving.conftest import Registry, records
from tests.serving.proxy import TcpProxy


def drift_run(started_at: datetime, drift_share: float, **overrides: Any) -> dict[str, Any]:
    """A complete drift_runs row, as the monitor writes it."""
    return {
        "model_name": "employment",
        "model_version": 1,
        "started_at": started_at,
        "finished_at": started_at,
        "triggered_by": "test",
        "window_kind": "last_rows",
        "window_rows": 2000,
        "labeled_rows": 0,
        "status": "drift",
        "dataset_drift": drift_share >= 0.5,
        "drift_share": drift_share,
        "drifted_features": ["AGEP"],
        "scores": {"AGEP": 0.0001, "SEX": 0.8},
        "failed_checks": ["data_drift"],
        "alerted": True,
        "alert_reason": "test",
        "retrain": False,
        "retrain_reason": "test",
        "details": {},
        "severity": "warning",
        **overrides,
    }


def monitor_samples(text: str) -> dict[tuple[str, ...], float]:
    return {
        (s.name, *s.labels.values()): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(
            ("driftloop_d", "driftloop_perf", "driftloop_monitor", "driftloop_feature")
        )
    }


def test_metrics_serve_the_newest_run_cached_and_drop_it_while_the_database_hangs(
    make_server: Any, registry_template: Registry, postgres_database: str
) -> None:
    proxy = TcpProxy("127.0.0.1", 5432).start()
    server = make_server(
        database_url=proxy.url(postgres_database),
        serving={"db_timeout_seconds": 1.0, "db_retry_seconds": 0.5},
    )
    engine = store.make_engine(postgres_database)
    try:
        t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
        runs.record_run(engine, drift_run(t0, 0.25))
        runs.record_run(engine, drift_run(t0.replace(hour=11), 0.9, model_version=7))  # older
        metrics = httpx.get(f"{server.url}/metrics", timeout=10)
        assert metrics.status_code == 200
        samples = monitor_samples(metrics.text)
        assert samples == {
            ("driftloop_drift_share", "employment", "1"): 0.25,
            ("driftloop_dataset_drift", "employment", "1"): 0.0,
            ("driftloop_drifted_features", "employment", "1"): 1.0,
            ("driftloop_monitor_severity", "employment", "1"): 1.0,
            ("driftloop_monitor_last_run_timestamp_seconds", "employment", "1"): t0.timestamp(),
            ("driftloop_monitor_window_rows", "employment", "1"): 2000.0,
            ("driftloop_feature_drift_score", "employment", "1", "AGEP"): 0.0001,
            ("driftloop_feature_drift_score", "employment", "1", "SEX"): 0.8,
            ("driftloop_feature_drifted", "employment", "1", "AGEP"): 1.0,
            ("driftloop_feature_drifted", "employment", "1", "SEX"): 0.0,
        }

        # a newer run: scrapes within the cache's ttl still see the old one, later ones the new
        runs.record_run(engine, drift_run(t0.replace(hour=13), 0.6, model_version=2))
        cached = monitor_samples(httpx.get(f"{server.url}/metrics", timeout=10).text)
        assert cached[("driftloop_drift_share", "employment", "1")] == 0.25
        time.sleep(MONITOR_GAUGES_TTL_SECONDS + 0.5)
        fresh = monitor_samples(httpx.get(f"{server.url}/metrics", timeout=10).text)
        assert fresh[("driftloop_drift_share", "employment", "2")] == 0.6
        assert not any(key[2] == "1" for key in fresh)  # the old version's series are gone

        # the database hangs: /metrics answers in about db_timeout_seconds, without the gauges
        proxy.freeze()
        time.sleep(MONITOR_GAUGES_TTL_SECONDS + 0.5)
        begun = time.monotonic()
        hung = httpx.get(f"{server.url}/metrics", timeout=10)
        assert hung.status_code == 200 and time.monotonic() - begun < 5
        assert monitor_samples(hung.text) == {}
        assert "driftloop_requests_total" in hung.text
        again = httpx.get(f"{server.url}/metrics", timeout=10)  # the hung read is not repeated
        assert again.status_code == 200 and monitor_samples(again.text) == {}
        predicted = httpx.post(
            f"{server.url}/predict", json=records(registry_template.holdout, 1)[0], timeout=10
        )
        assert predicted.status_code == 200, predicted.text  # serving goes on (to the spool)
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200

        # back: the gauges return on a later scrape
        proxy.restore()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            back = monitor_samples(httpx.get(f"{server.url}/metrics", timeout=10).text)
            if back:
                break
            time.sleep(1)
        assert back[("driftloop_drift_share", "employment", "2")] == 0.6
    finally:
        proxy.restore()
        server.stop()
        engine.dispose()
