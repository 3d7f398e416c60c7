"""The Evidently workspace: a project per model, a snapshot per monitor run, the dashboard.

The dashboard lives in one tab (:data:`DASHBOARD_TAB`) whose panels have ids derived from the
model name and the panel's role, so configuring it again replaces driftloop's panels in place
and leaves any tab or panel a person added in the UI alone. ``driftloop ui`` runs
``evidently ui`` on this workspace (:func:`ui_command`, :func:`serve_ui`).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from evidently.core.report import Snapshot
from evidently.sdk.models import DashboardModel, DashboardPanelPlot, DashboardTabModel, PanelMetric
from evidently.sdk.panels import counter_panel, line_plot_panel
from evidently.ui.workspace import Project, SnapshotRef, Workspace

from core.errors import DriftloopError
from monitoring.reports import with_timestamp

Task = Literal["classification", "regression"]

DASHBOARD_TAB = "driftloop"
#: Namespace for the deterministic panel/tab ids (uuid5 of model name and panel key).
_NAMESPACE = uuid.UUID("7d3f6f0e-5b7c-4f5e-9a77-2f4c1d0d1f10")
#: Quality metrics charted per task (Evidently metric type, legend).
QUALITY_METRICS: dict[str, list[tuple[str, str, dict[str, str]]]] = {
    "classification": [
        ("Accuracy", "accuracy", {}),
        ("RocAuc", "roc_auc", {}),
        ("F1Score", "f1", {}),
    ],
    "regression": [
        ("RMSE", "rmse", {}),
        ("MAE", "mae", {"value_type": "mean"}),
        ("R2Score", "r2", {}),
    ],
}


#: The lock file that serializes publishing into one workspace directory.
LOCK_FILE = ".driftloop-publish.lock"
#: Seconds a publisher waits for another one before giving up.
LOCK_TIMEOUT_SECONDS = 120.0


class WorkspaceError(DriftloopError, ValueError):
    """A workspace operation cannot proceed; the message names the project or setting."""


@contextlib.contextmanager
def publishing_lock(path: str | Path, *, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Exclusive right to change the workspace at ``path`` (one publisher at a time, across
    processes on this host). Evidently's local workspace rewrites its JSON files in place, so a
    second monitor publishing at the same moment would read a half-written file.

    Raises:
        WorkspaceError: another publisher held the lock for ``timeout`` seconds.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a+b") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WorkspaceError(
                        f"another monitor has been publishing to {directory} for {timeout:g} s; "
                        f"if none runs, delete {directory / LOCK_FILE}"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def open_workspace(path: str | Path) -> Workspace:
    """The local Evidently workspace at `path` (created on first use)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return Workspace(str(path))


def _workspace(workspace: Workspace | str | Path) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else open_workspace(workspace)


def find_project(workspace: Workspace | str | Path, model_name: str) -> Project | None:
    """The project named after the model, or None.

    Raises:
        WorkspaceError: several projects carry the name (someone created one by hand).
    """
    found = _workspace(workspace).search_project(model_name)
    if len(found) > 1:
        ids = [str(p.id) for p in found]
        raise WorkspaceError(
            f"{len(found)} Evidently projects are named {model_name!r} ({ids}); "
            "delete the extra ones in the Evidently UI so snapshots go to one place"
        )
    return found[0] if found else None


def ensure_project(
    workspace_path: Workspace | str | Path,
    model_name: str,
    *,
    description: str | None = None,
) -> Project:
    """The model's project, created when missing (idempotent: found by name)."""
    workspace = _workspace(workspace_path)
    project = find_project(workspace, model_name)
    if project is not None:
        return project
    text = (
        description or f"driftloop monitoring of model {model_name!r}: one snapshot per monitor run"
    )
    return workspace.create_project(model_name, description=text)


def _pid(model_name: str, key: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{model_name}/{key}")


def _metric(metric: str, legend: str, **labels: str) -> PanelMetric:
    return PanelMetric(metric=metric, legend=legend, metric_labels=labels)


def dashboard_panels(
    *,
    model_name: str,
    features: Sequence[str],
    task: Task,
    prediction: str | None = "prediction",
    driftloop_values: Sequence[str] = (),
    driftloop_feature_scores: bool = False,
    driftloop_feature_importances: bool = False,
) -> list[DashboardPanelPlot]:
    """driftloop's panels for one model, with stable ids (pure: no workspace access).

    Args:
        driftloop_values: names passed as ``run_report(driftloop_values=...)`` to chart, e.g.
            ``("drift_share", "estimated_accuracy", "performance_drop")``.
        driftloop_feature_scores: also chart driftloop's per-feature scores of the full window.
        driftloop_feature_importances: also chart each feature's importance to the version
            (``run_report(driftloop_feature_importances=...)``), next to the per-feature scores.
    """
    if task not in QUALITY_METRICS:
        raise WorkspaceError(f"task must be one of {sorted(QUALITY_METRICS)}, got {task!r}")

    def panel(key: str, built: DashboardPanelPlot) -> DashboardPanelPlot:
        built.id = _pid(model_name, key)
        return built

    share = [_metric("DriftedColumnsCount", "Evidently (report sample)", value_type="share")]
    if "drift_share" in driftloop_values:
        share.append(_metric("DriftloopValue", "driftloop (full window)", name="drift_share"))
    panels = [
        panel(
            "drifted-now",
            counter_panel(
                title="Drifted features (last run)",
                values=[_metric("DriftedColumnsCount", "drifted", value_type="count")],
                description="Evidently's UI shows a count of 0 as 'no value': none drifted",
                size="half",
                aggregation="last",
            ),
        ),
        panel(
            "rows-now",
            counter_panel(
                title="Rows in the last window",
                values=[_metric("RowCount", "rows")],
                size="half",
                aggregation="last",
            ),
        ),
        panel(
            "drift-share",
            line_plot_panel(
                title="Share of drifted features",
                values=share,
                description="per monitor run",
                size="full",
            ),
        ),
        panel(
            "feature-drift",
            line_plot_panel(
                title="Per-feature drift scores",
                values=[_metric("ValueDrift", column, column=column) for column in features],
                description="Evidently's score per feature (method and threshold as configured)",
                size="full",
            ),
        ),
    ]
    if driftloop_feature_scores:
        panels.append(
            panel(
                "driftloop-feature-drift",
                line_plot_panel(
                    title="Per-feature drift scores (driftloop, full window)",
                    values=[
                        _metric("DriftloopValue", column, name="drift_score", column=column)
                        for column in features
                    ],
                    size="half" if driftloop_feature_importances else "full",
                ),
            )
        )
    if driftloop_feature_importances:
        panels.append(
            panel(
                "driftloop-feature-importance",
                line_plot_panel(
                    title="Feature importance (permutation, on the version's holdout)",
                    values=[
                        _metric("DriftloopValue", column, name="importance", column=column)
                        for column in features
                    ],
                    description="drift_rule: weighted counts a drifted feature by this weight",
                    size="half",
                ),
            )
        )
    if prediction:
        panels.append(
            panel(
                "prediction-drift",
                line_plot_panel(
                    title="Prediction drift score",
                    values=[_metric("ValueDrift", prediction, column=prediction)],
                    size="half",
                ),
            )
        )
    panels.append(
        panel(
            "missing",
            line_plot_panel(
                title="Missing values (share)",
                values=[_metric("DatasetMissingValueCount", "all features", value_type="share")]
                + [
                    _metric("MissingValueCount", column, column=column, value_type="share")
                    for column in features
                ],
                size="half",
            ),
        )
    )
    panels.append(
        panel(
            "quality",
            line_plot_panel(
                title="Model quality on labeled rows",
                values=[
                    _metric(metric, legend, **labels)
                    for metric, legend, labels in QUALITY_METRICS[task]
                ],
                description="only runs whose window had labels",
                size="full",
            ),
        )
    )
    performance = [name for name in driftloop_values if name.startswith("performance.")]
    if performance:
        panels.append(
            panel(
                "driftloop-performance",
                line_plot_panel(
                    title="Primary metric: estimated (with its band) and measured",
                    values=[
                        _metric("DriftloopValue", name.removeprefix("performance."), name=name)
                        for name in performance
                        if name != "performance.estimation_error"
                    ],
                    description="estimated: labeled rows measured, the rest estimated from "
                    "calibrated probabilities (or the loss model); measured: labeled rows only",
                    size="full",
                ),
            )
        )
        if "performance.estimation_error" in performance:
            panels.append(
                panel(
                    "driftloop-estimation-error",
                    line_plot_panel(
                        title="Estimation error once labels came (estimate minus measured)",
                        values=[
                            _metric(
                                "DriftloopValue",
                                "estimate - measured",
                                name="performance.estimation_error",
                            )
                        ],
                        description="of the newest earlier window whose labels arrived",
                        size="half",
                    ),
                )
            )
    others = [
        name for name in driftloop_values if name != "drift_share" and name not in performance
    ]
    if others:
        panels.append(
            panel(
                "driftloop-values",
                line_plot_panel(
                    title="driftloop monitor values",
                    values=[_metric("DriftloopValue", name, name=name) for name in others],
                    size="full",
                ),
            )
        )
    return panels


def configure_dashboard(
    project: Project,
    *,
    workspace: Workspace | str | Path,
    features: Sequence[str],
    task: Task,
    prediction: str | None = "prediction",
    driftloop_values: Sequence[str] = (),
    driftloop_feature_scores: bool = False,
    driftloop_feature_importances: bool = False,
) -> DashboardModel:
    """Put driftloop's panels in the project's dashboard tab; idempotent.

    Panels of earlier runs of this function are replaced (same ids), so re-running never
    duplicates them; tabs and panels added by people are kept.
    """
    ws = _workspace(workspace)
    panels = dashboard_panels(
        model_name=project.name,
        features=features,
        task=task,
        prediction=prediction,
        driftloop_values=driftloop_values,
        driftloop_feature_scores=driftloop_feature_scores,
        driftloop_feature_importances=driftloop_feature_importances,
    )
    current = ws.get_dashboard(project.id)
    tab_id = _pid(project.name, "tab")
    old_tab = next((t for t in current.tabs if t.id == tab_id or t.title == DASHBOARD_TAB), None)
    ours = {p.id for p in panels} | set(old_tab.panels if old_tab else [])
    tab = DashboardTabModel(id=tab_id, title=DASHBOARD_TAB, panels=[p.id for p in panels])
    others = [t for t in current.tabs if t is not old_tab]
    for other in others:  # a panel belongs to one tab: ours now
        other.panels = [p for p in other.panels if p not in ours]
    dashboard = DashboardModel(
        tabs=[tab, *others],
        panels=panels + [p for p in current.panels if p.id not in ours],
    )
    if dashboard.dict() == current.dict():
        return current  # unchanged: no rewrite of the project's file
    ws.save_dashboard(project.id, dashboard)
    return ws.get_dashboard(project.id)


def add_snapshot(
    workspace: Workspace | str | Path,
    model_name: str,
    snapshot: Snapshot,
    timestamp: datetime | None = None,
    *,
    name: str | None = None,
) -> SnapshotRef:
    """Store a run's snapshot in the model's project (created if needed).

    Args:
        timestamp: when the window was monitored (dashboards order runs by it); defaults to the
            snapshot's own time.
    """
    ws = _workspace(workspace)
    project = ensure_project(ws, model_name)
    if timestamp is not None:
        snapshot = with_timestamp(snapshot, timestamp)
    return ws.add_run(project.id, snapshot, include_data=False, name=name)


def publish_run(
    workspace: Workspace | str | Path,
    model_name: str,
    snapshot: Snapshot,
    *,
    features: Sequence[str],
    task: Task,
    timestamp: datetime | None = None,
    prediction: str | None = "prediction",
    driftloop_values: Sequence[str] = (),
    driftloop_feature_scores: bool = False,
    driftloop_feature_importances: bool = False,
    name: str | None = None,
) -> SnapshotRef:
    """Project, dashboard and snapshot in one call: what a monitor run does after its report.

    With a workspace path, concurrent publishers (several monitors) take turns
    (:func:`publishing_lock`), so each run's snapshot lands and no one reads a half-written file.
    """
    if isinstance(workspace, Workspace):
        lock: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    else:
        lock = publishing_lock(workspace)
    with lock:
        ws = _workspace(workspace)
        project = ensure_project(ws, model_name)
        configure_dashboard(
            project,
            workspace=ws,
            features=features,
            task=task,
            prediction=prediction,
            driftloop_values=driftloop_values,
            driftloop_feature_scores=driftloop_feature_scores,
            driftloop_feature_importances=driftloop_feature_importances,
        )
        return add_snapshot(ws, model_name, snapshot, timestamp, name=name)


def list_snapshots(workspace: Workspace | str | Path, model_name: str) -> list[uuid.UUID]:
    """Snapshot ids stored for the model (empty when the project does not exist)."""
    ws = _workspace(workspace)
    project = find_project(ws, model_name)
    return [] if project is None else list(ws.list_runs(project.id))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ui_command(
    workspace: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    allow_remote: bool = False,
) -> list[str]:
    """argv of ``evidently ui --workspace DIR --host HOST --port N``.

    Raises:
        WorkspaceError: a non-loopback host without `allow_remote` (the UI has no login), or a
            port outside 1-65535.
    """
    if not (0 < int(port) < 65536):
        raise WorkspaceError(f"port must be between 1 and 65535, got {port}")
    if not allow_remote and not _is_loopback(host):
        raise WorkspaceError(
            f"refusing to serve the Evidently UI on {host!r}: it has no login. Use 127.0.0.1 "
            "and an SSH tunnel, or pass allow_remote=True behind an authenticating proxy"
        )
    local = Path(sys.executable).with_name("evidently")
    exe = str(local) if local.exists() else (shutil.which("evidently") or "evidently")
    return [
        exe,
        "ui",
        "--workspace",
        str(Path(workspace).resolve()),
        "--host",
        host,
        "--port",
        str(int(port)),
    ]


def serve_ui(
    workspace: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    allow_remote: bool = False,
) -> int:
    """Run the Evidently UI in the foreground until it exits (Ctrl-C stops it); returns its code."""
    argv = ui_command(workspace, host, port, allow_remote=allow_remote)
    Path(workspace).mkdir(parents=True, exist_ok=True)
    try:
        return subprocess.call(argv)
    except KeyboardInterrupt:
        return 0
