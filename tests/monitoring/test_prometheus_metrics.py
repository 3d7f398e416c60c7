"""The monitor's gauges in Prometheus text format (monitoring/metrics.py)."""

from __future__ import annotations

import math
import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from monitoring.metrics import (
    MetricsError,
    MonitorGauges,
    gauges_of_run,
    render_monitor_gauges,
)


def _samples(text: str) -> dict[tuple[str, ...], float]:
    return {
        (sample.name, *sample.labels.values()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _run_row(**overrides: object) -> dict[str, object]:
    """The columns of a drift_runs row that the gauges read, as runs.latest_run returns them."""
    return {
        "model_name": "employment",
        "model_version": 3,
        "started_at": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "window_rows": 5000,
        "drift_share": 0.25,
        "dataset_drift": True,
        "drifted_features": ["AGEP", "SCHL"],
        "scores": {"AGEP": 0.001, "SCHL": 0.02, "SEX": 0.7},
        "performance_drop": 0.031,
        "severity": "critical",
        **overrides,
    }


def test_a_run_row_becomes_every_gauge_labelled_by_model_and_version() -> None:
    samples = _samples(render_monitor_gauges([gauges_of_run(_run_row())]))
    assert samples == {
        ("driftloop_drift_share", "employment", "3"): 0.25,
        ("driftloop_dataset_drift", "employment", "3"): 1.0,
        ("driftloop_drifted_features", "employment", "3"): 2.0,
        ("driftloop_performance_drop", "employment", "3"): 0.031,
        ("driftloop_monitor_severity", "employment", "3"): 2.0,
        ("driftloop_monitor_last_run_timestamp_seconds", "employment", "3"): 1714564800.0,
        ("driftloop_monitor_window_rows", "employment", "3"): 5000.0,
        ("driftloop_feature_drift_score", "employment", "3", "AGEP"): 0.001,
        ("driftloop_feature_drift_score", "employment", "3", "SCHL"): 0.02,
        ("driftloop_feature_drift_score", "employment", "3", "SEX"): 0.7,
        ("driftloop_feature_drifted", "employment", "3", "AGEP"): 1.0,
        ("driftloop_feature_drifted", "employment", "3", "SCHL"): 1.0,
        ("driftloop_feature_drifted", "employment", "3", "SEX"): 0.0,
    }


def test_a_run_without_a_verdict_exports_only_its_time_window_and_severity() -> None:
    row = _run_row(
        drift_share=None,
        dataset_drift=None,
        drifted_features=[],
        scores={},
        performance_drop=None,
        severity="none",
        window_rows=12,
    )
    names = {key[0] for key in _samples(render_monitor_gauges([gauges_of_run(row)]))}
    assert names == {
        "driftloop_monitor_severity",
        "driftloop_monitor_last_run_timestamp_seconds",
        "driftloop_monitor_window_rows",
    }


def test_absent_values_are_left_out_and_nan_is_kept() -> None:
    text = render_monitor_gauges(
        [MonitorGauges("m", 1, {"drift_share": math.nan, "performance_drop": None})]
    )
    samples = _samples(text)
    assert list(samples) == [("driftloop_drift_share", "m", "1")]
    assert math.isnan(samples[("driftloop_drift_share", "m", "1")])
    assert render_monitor_gauges([]) == ""


def test_aware_datetimes_become_unix_seconds() -> None:
    when = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    text = render_monitor_gauges([MonitorGauges("m", None, {"last_run_timestamp_seconds": when})])
    assert _samples(text) == {
        ("driftloop_monitor_last_run_timestamp_seconds", "m", ""): 1714564800.0
    }


def test_several_models_share_one_header_per_family() -> None:
    text = render_monitor_gauges(
        [MonitorGauges("a", 1, {"drift_share": 0.1}), MonitorGauges("b", 2, {"drift_share": 0.2})]
    )
    assert text.count("# HELP driftloop_drift_share") == 1
    assert _samples(text) == {
        ("driftloop_drift_share", "a", "1"): 0.1,
        ("driftloop_drift_share", "b", "2"): 0.2,
    }


def test_model_and_feature_labels_are_escaped() -> None:
    name = 'we"ird\\name'
    text = render_monitor_gauges([MonitorGauges(name, 1, {}, {name: (0.5, True)})])
    assert _samples(text)[("driftloop_feature_drift_score", name, "1", name)] == 0.5


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"drift_shares": 0.1}, "drift_shares"),
        ({"drift_share": "high"}, "expected a number"),
        ({"last_run_timestamp_seconds": datetime(2024, 1, 1)}, "timezone-naive"),
    ],
)
def test_bad_values_name_the_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(MetricsError, match=message):
        render_monitor_gauges([MonitorGauges("m", 1, values)])


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not found: apt package 'prometheus'"
)
def test_promtool_lints_the_text() -> None:
    text = render_monitor_gauges([gauges_of_run(_run_row())])
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@given(
    model=st.text(min_size=1, max_size=30),
    value=st.floats(allow_nan=False, allow_infinity=True, width=64),
)
def test_any_value_and_model_name_round_trip(model: str, value: float) -> None:
    text = render_monitor_gauges([MonitorGauges(model, 7, {"performance_drop": value})])
    assert _samples(text) == {("driftloop_performance_drop", model, "7"): value}
