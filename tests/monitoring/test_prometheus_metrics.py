"""The monitor's gauges in Prometheus text format (monitoring/metrics.py)."""

from __future__ import annotations

import math
import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from monitoring.metrics import GAUGES, MetricsError, monitor_gauges_text, render_monitor_gauges
from tests.monitoring.test_prometheus_rules import RULES


def _samples(text: str) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels["model"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_renders_every_gauge_for_the_model() -> None:
    text = monitor_gauges_text(
        "employment",
        {
            "drift_share": 0.25,
            "dataset_drift": True,
            "drifted_features": 4,
            "performance_drop": 0.031,
            "last_run_timestamp_seconds": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
            "window_rows": 5000,
            "schedule_seconds": 3600,
        },
    )
    samples = _samples(text)
    assert samples == {
        ("driftloop_drift_share", "employment"): 0.25,
        ("driftloop_dataset_drift", "employment"): 1.0,
        ("driftloop_drifted_features", "employment"): 4.0,
        ("driftloop_performance_drop", "employment"): 0.031,
        ("driftloop_monitor_last_run_timestamp_seconds", "employment"): 1714564800.0,
        ("driftloop_monitor_window_rows", "employment"): 5000.0,
        ("driftloop_monitor_schedule_seconds", "employment"): 3600.0,
    }
    assert text.count("# TYPE driftloop_drift_share gauge") == 1


def test_absent_values_are_left_out_and_nan_is_kept() -> None:
    text = monitor_gauges_text("m", {"drift_share": math.nan, "performance_drop": None})
    samples = _samples(text)
    assert list(samples) == [("driftloop_drift_share", "m")]
    assert math.isnan(samples[("driftloop_drift_share", "m")])
    assert monitor_gauges_text("m", {}) == ""


def test_aliases_and_aware_datetimes() -> None:
    when = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    samples = _samples(monitor_gauges_text("m", {"last_run_at": when, "n_current": 12}))
    assert samples[("driftloop_monitor_last_run_timestamp_seconds", "m")] == 1714564800.0
    assert samples[("driftloop_monitor_window_rows", "m")] == 12.0


def test_several_models_share_one_header_per_family() -> None:
    text = render_monitor_gauges({"a": {"drift_share": 0.1}, "b": {"drift_share": 0.2}})
    assert text.count("# HELP driftloop_drift_share") == 1
    assert _samples(text) == {
        ("driftloop_drift_share", "a"): 0.1,
        ("driftloop_drift_share", "b"): 0.2,
    }


def test_model_label_is_escaped() -> None:
    name = 'we"ird\\name'
    samples = _samples(monitor_gauges_text(name, {"drift_share": 0.5}))
    assert samples == {("driftloop_drift_share", name): 0.5}


@pytest.mark.parametrize(
    ("latest", "message"),
    [
        ({"drift_shares": 0.1}, "drift_shares"),
        ({"drift_share": "high"}, "expected a number"),
        ({"last_run_at": datetime(2024, 1, 1)}, "timezone-naive"),
    ],
)
def test_bad_values_name_the_key(latest: dict[str, object], message: str) -> None:
    with pytest.raises(MetricsError, match=message):
        monitor_gauges_text("m", latest)


def test_alert_rules_only_use_gauges_that_are_exported() -> None:
    rules_text = RULES.read_text()
    exported = {name for name, _ in GAUGES.values()}
    monitor_names = {
        word
        for rule in (r for g in yaml.safe_load(rules_text)["groups"] for r in g["rules"])
        for word in rule["expr"].replace("(", " ").replace(")", " ").split()
        if word.startswith(
            ("driftloop_drift", "driftloop_dataset", "driftloop_perf", "driftloop_monitor")
        )
    }
    assert monitor_names and monitor_names <= exported


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not found: apt package 'prometheus'"
)
def test_promtool_lints_the_text() -> None:
    text = monitor_gauges_text(
        "employment", {"drift_share": 0.25, "dataset_drift": False, "window_rows": 10}
    )
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@given(
    model=st.text(min_size=1, max_size=30),
    value=st.floats(allow_nan=False, allow_infinity=True, width=64),
)
def test_any_value_and_model_name_round_trip(model: str, value: float) -> None:
    samples = _samples(monitor_gauges_text(model, {"performance_drop": value}))
    assert samples == {("driftloop_performance_drop", model): value}
