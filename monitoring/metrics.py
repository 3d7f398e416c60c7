"""The monitor's latest result as Prometheus gauges (text exposition format 0.0.4).

The inference service appends :func:`render_monitor_gauges` of the newest ``drift_runs`` row of
its model to its ``/metrics`` response (``serving.prometheus.MonitorGaugeCache``), so every
replica exports them and no pushgateway is needed. The alert rules in
``monitoring/prometheus/driftloop-rules.yml`` read these names.

Labels are bounded: ``model`` and ``version`` (the version the run judged) on every series, plus
``feature`` on the per-feature series. Only the newest run of a model is exported, so when a new
version is judged the old version's series disappear (Prometheus marks them stale) and cannot
keep an alert firing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.errors import DriftloopError

#: Gauge name, help text, for every key of :attr:`MonitorGauges.values`.
GAUGES: dict[str, tuple[str, str]] = {
    "drift_share": (
        "driftloop_drift_share",
        "Share of features flagged as drifted in the last monitor run.",
    ),
    "dataset_drift": (
        "driftloop_dataset_drift",
        "1 when the last monitor run found dataset drift, else 0.",
    ),
    "drifted_features": (
        "driftloop_drifted_features",
        "Number of drifted features in the last monitor run.",
    ),
    "performance_drop": (
        "driftloop_performance_drop",
        "Drop of the primary metric versus the reference (positive is worse), last monitor run "
        "(measured on labels, else estimated).",
    ),
    "severity": (
        "driftloop_monitor_severity",
        "Severity of the last monitor run: 0 none, 1 warning (drift without harm), "
        "2 critical (harm: a significant drop, broken inputs, a regression).",
    ),
    "last_run_timestamp_seconds": (
        "driftloop_monitor_last_run_timestamp_seconds",
        "Unix time of the last monitor run.",
    ),
    "window_rows": ("driftloop_monitor_window_rows", "Rows in the window of the last monitor run."),
}

#: Per-feature gauge name, help text (label ``feature``).
FEATURE_GAUGES: dict[str, tuple[str, str]] = {
    "score": (
        "driftloop_feature_drift_score",
        "Drift score of a feature in the last monitor run (the drift method's statistic: a "
        "p-value for tests, a distance otherwise).",
    ),
    "drifted": (
        "driftloop_feature_drifted",
        "1 when the last monitor run flagged the feature as drifted, else 0.",
    ),
}

#: ``drift_runs.severity`` as a number.
SEVERITY_VALUES = {"none": 0.0, "warning": 1.0, "critical": 2.0}


class MetricsError(DriftloopError, ValueError):
    """The values handed in cannot be rendered as gauges; the message names them."""


@dataclass(frozen=True)
class MonitorGauges:
    """One model's latest monitor result: its labels and the values to export."""

    model: str
    version: int | None
    values: Mapping[str, object] = field(default_factory=dict)
    #: feature name -> (score, drifted)
    features: Mapping[str, tuple[float, bool]] = field(default_factory=dict)


def gauges_of_run(row: Mapping[str, Any]) -> MonitorGauges:
    """The gauges of one ``drift_runs`` row (a mapping of its columns).

    A run without a verdict (``not_enough_data``) has no drift values: only its time, window
    and severity are exported.
    """
    drifted = set(row.get("drifted_features") or ())
    scores = row.get("scores") or {}
    return MonitorGauges(
        model=str(row["model_name"]),
        version=row.get("model_version"),
        values={
            "drift_share": row.get("drift_share"),
            "dataset_drift": row.get("dataset_drift"),
            "drifted_features": len(drifted) if row.get("drift_share") is not None else None,
            "performance_drop": row.get("performance_drop"),
            "severity": SEVERITY_VALUES.get(row.get("severity") or "none", 0.0),
            "last_run_timestamp_seconds": row.get("started_at"),
            "window_rows": row.get("window_rows"),
        },
        features={
            str(name): (score, name in drifted)
            for name, score in scores.items()
            if score is not None
        },
    )


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(key: str, value: object) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise MetricsError(
                f"{key}: timezone-naive datetime {value!r}; pass an aware datetime (UTC)"
            )
        return value.timestamp()
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)  # numpy scalars
    except (TypeError, ValueError):
        raise MetricsError(f"{key}: expected a number, bool or datetime, got {value!r}") from None


def _format(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _labels(gauges: MonitorGauges, feature: str | None = None) -> str:
    version = "" if gauges.version is None else str(gauges.version)
    parts = [f'model="{_escape_label(gauges.model)}"', f'version="{version}"']
    if feature is not None:
        parts.append(f'feature="{_escape_label(feature)}"')
    return "{" + ",".join(parts) + "}"


def _normalise(gauges: MonitorGauges) -> dict[str, float]:
    unknown = [k for k in gauges.values if k not in GAUGES]
    if unknown:
        raise MetricsError(
            f"unknown monitor values for model {gauges.model!r}: {sorted(unknown)}; "
            f"expected some of {sorted(GAUGES)}"
        )
    return {k: _number(k, v) for k, v in gauges.values.items() if v is not None}


def render_monitor_gauges(latest: Iterable[MonitorGauges]) -> str:
    """Gauges for several models, each metric family with one HELP/TYPE header.

    Values that are None or absent are left out (Prometheus then has no sample, rather than a
    made-up zero).

    Raises:
        MetricsError: an unknown key or a value that is not a number.
    """
    items = list(latest)
    values = [(g, _normalise(g)) for g in items]
    lines: list[str] = []
    for key, (name, help_text) in GAUGES.items():
        samples = [(g, v[key]) for g, v in values if key in v]
        if not samples:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{_labels(g)} {_format(value)}" for g, value in samples]
    for index, (name, help_text) in enumerate(FEATURE_GAUGES.values()):
        samples_f = [
            (g, feature, _number(name, pair[index]))
            for g in items
            for feature, pair in g.features.items()
        ]
        if not samples_f:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{_labels(g, f)} {_format(value)}" for g, f, value in samples_f]
    return "\n".join(lines) + ("\n" if lines else "")
