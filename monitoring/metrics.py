"""The monitor's latest results as Prometheus gauges (text exposition format 0.0.4).

The serving process appends :func:`monitor_gauges_text` to its ``/metrics`` response, so no
pushgateway is needed. The alert rules in ``monitoring/prometheus/driftloop-rules.yml`` read
these names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

#: Gauge name, help text, for every key accepted in ``latest``.
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
        "Drop of the primary metric versus the reference (positive is worse), last monitor run.",
    ),
    "last_run_timestamp_seconds": (
        "driftloop_monitor_last_run_timestamp_seconds",
        "Unix time of the last monitor run.",
    ),
    "window_rows": ("driftloop_monitor_window_rows", "Rows in the window of the last monitor run."),
    "schedule_seconds": (
        "driftloop_monitor_schedule_seconds",
        "Interval between scheduled monitor runs (MonitorStale fires after twice this).",
    ),
}

#: Other spellings accepted in ``latest`` (the drift result's own field names).
ALIASES = {
    "last_run_timestamp": "last_run_timestamp_seconds",
    "last_run_at": "last_run_timestamp_seconds",
    "finished_at": "last_run_timestamp_seconds",
    "n_current": "window_rows",
    "window": "window_rows",
    "schedule_interval_seconds": "schedule_seconds",
}


class MetricsError(ValueError):
    """The values handed in cannot be rendered as gauges; the message names them."""


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


def _normalise(model_name: str, latest: Mapping[str, object]) -> dict[str, float]:
    unknown = [k for k in latest if k not in GAUGES and k not in ALIASES]
    if unknown:
        raise MetricsError(
            f"unknown monitor values for model {model_name!r}: {sorted(unknown)}; "
            f"expected some of {sorted(GAUGES)}"
        )
    out: dict[str, float] = {}
    for key, value in latest.items():
        if value is None:
            continue
        canonical = ALIASES.get(key, key)
        out[canonical] = _number(key, value)
    return out


def render_monitor_gauges(latest_by_model: Mapping[str, Mapping[str, object]]) -> str:
    """Gauges for several models, each metric family with one HELP/TYPE header.

    Values that are None or absent are left out (Prometheus then has no sample, rather than a
    made-up zero).
    """
    values = {model: _normalise(model, latest) for model, latest in latest_by_model.items()}
    lines: list[str] = []
    for key, (name, help_text) in GAUGES.items():
        samples = [(model, v[key]) for model, v in values.items() if key in v]
        if not samples:
            continue
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        for model, value in samples:
            lines.append(f'{name}{{model="{_escape_label(model)}"}} {_format(value)}')
    return "\n".join(lines) + ("\n" if lines else "")


def monitor_gauges_text(model_name: str, latest: Mapping[str, object]) -> str:
    """Prometheus text for one model's latest monitor run (append to the /metrics body).

    Args:
        model_name: the registered model name (the ``model`` label).
        latest: values keyed by the names in :data:`GAUGES` (or :data:`ALIASES`); booleans become
            0/1 and datetimes Unix seconds.

    Raises:
        MetricsError: an unknown key or a value that is not a number.
    """
    return render_monitor_gauges({model_name: latest})
