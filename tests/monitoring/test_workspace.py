"""The Evidently workspace: project per model, snapshots, driftloop's dashboard, the real UI."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from evidently.sdk.models import DashboardTabModel
from evidently.sdk.panels import text_panel

from monitoring.reports import run_report
from monitoring.workspace import (
    DASHBOARD_TAB,
    WorkspaceError,
    add_snapshot,
    configure_dashboard,
    dashboard_panels,
    ensure_project,
    find_project,
    list_snapshots,
    open_workspace,
    publish_run,
    ui_command,
)
from tests.monitoring.test_reports import CATEGORICAL, NUMERIC, frame

FEATURES = NUMERIC + CATEGORICAL
VALUES = ("drift_share", "estimated_accuracy")


def _snapshot(shift: float, drift_share: float, seed: int):
    return run_report(
        reference=frame(300, seed=1),
        current=frame(200, seed=seed, shift=shift),
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        target="y",
        task="classification",
        driftloop_values={"drift_share": drift_share, "estimated_accuracy": 0.8},
    )


def _configure(workspace, project):
    return configure_dashboard(
        project,
        workspace=workspace,
        features=FEATURES,
        task="classification",
        driftloop_values=VALUES,
    )


def test_ensure_project_is_idempotent(tmp_path: Path) -> None:
    first = ensure_project(tmp_path / "ws", "employment")
    again = ensure_project(tmp_path / "ws", "employment")
    other = ensure_project(tmp_path / "ws", "churn")
    assert first.id == again.id != other.id
    names = sorted(p.name for p in open_workspace(tmp_path / "ws").list_projects())
    assert names == ["churn", "employment"]


def test_duplicate_project_names_are_an_error(tmp_path: Path) -> None:
    workspace = open_workspace(tmp_path / "ws")
    workspace.create_project("employment")
    workspace.create_project("employment")
    with pytest.raises(WorkspaceError, match="2 Evidently projects are named 'employment'"):
        find_project(workspace, "employment")


def test_dashboard_panels_read_back_through_the_workspace(tmp_path: Path) -> None:
    workspace = open_workspace(tmp_path / "ws")
    project = ensure_project(workspace, "employment")
    _configure(workspace, project)

    dashboard = open_workspace(tmp_path / "ws").get_dashboard(project.id)
    assert [t.title for t in dashboard.tabs] == [DASHBOARD_TAB]
    titles = {p.title: p for p in dashboard.panels}
    assert set(dashboard.tabs[0].panels) == {p.id for p in dashboard.panels}

    share = titles["Share of drifted features"]
    assert {(v.metric, tuple(v.metric_labels.items())) for v in share.values} == {
        ("evidently:metric_v2:DriftedColumnsCount", (("value_type", "share"),)),
        ("evidently:metric_v2:DriftloopValue", (("name", "drift_share"),)),
    }
    per_feature = titles["Per-feature drift scores"]
    assert [v.metric_labels["column"] for v in per_feature.values] == FEATURES
    missing = titles["Missing values (share)"]
    assert {v.metric.rsplit(":", 1)[1] for v in missing.values} == {
        "DatasetMissingValueCount",
        "MissingValueCount",
    }
    quality = titles["Model quality on labeled rows"]
    assert {v.metric.rsplit(":", 1)[1] for v in quality.values} == {"Accuracy", "RocAuc", "F1Score"}
    assert titles["driftloop monitor values"].values[0].metric_labels == {
        "name": "estimated_accuracy"
    }


def test_configure_dashboard_twice_does_not_duplicate(tmp_path: Path) -> None:
    workspace = open_workspace(tmp_path / "ws")
    project = ensure_project(workspace, "employment")
    first = _configure(workspace, project)
    second = _configure(workspace, project)
    assert [p.id for p in second.panels] == [p.id for p in first.panels]
    assert len(second.tabs) == 1 and len(second.tabs[0].panels) == len(first.panels)


def test_configure_dashboard_keeps_panels_people_added(tmp_path: Path) -> None:
    workspace = open_workspace(tmp_path / "ws")
    project = ensure_project(workspace, "employment")
    _configure(workspace, project)
    project.dashboard.add_panel(text_panel(title="Notes from the on-call"), tab="Team")

    dashboard = _configure(workspace, project)
    assert sorted(t.title for t in dashboard.tabs) == sorted([DASHBOARD_TAB, "Team"])
    assert "Notes from the on-call" in {p.title for p in dashboard.panels}


def test_configure_dashboard_follows_task_and_feature_changes(tmp_path: Path) -> None:
    workspace = open_workspace(tmp_path / "ws")
    project = ensure_project(workspace, "employment")
    _configure(workspace, project)
    dashboard = configure_dashboard(project, workspace=workspace, features=["x"], task="regression")
    titles = {p.title: p for p in dashboard.panels}
    quality = {v.metric.rsplit(":", 1)[1] for v in titles["Model quality on labeled rows"].values}
    assert quality == {"RMSE", "MAE", "R2Score"}
    assert [v.metric_labels["column"] for v in titles["Per-feature drift scores"].values] == ["x"]
    assert "driftloop monitor values" not in titles  # no stale panels left behind
    assert isinstance(dashboard.tabs[0], DashboardTabModel)


def test_dashboard_panels_ids_are_stable_per_model() -> None:
    def ids(model: str) -> list:
        return [
            p.id
            for p in dashboard_panels(model_name=model, features=FEATURES, task="classification")
        ]

    assert ids("employment") == ids("employment") != ids("churn")


def test_add_snapshot_stores_the_run_at_its_time(tmp_path: Path) -> None:
    when = datetime(2024, 6, 1, 12, 30)
    ref = add_snapshot(tmp_path / "ws", "employment", _snapshot(0.0, 0.1, seed=2), timestamp=when)
    workspace = open_workspace(tmp_path / "ws")
    project = find_project(workspace, "employment")
    assert project is not None and ref.project_id == project.id
    assert list_snapshots(workspace, "employment") == [ref.id]
    stored = workspace.get_run(project.id, ref.id)
    assert stored.timestamp == when
    types = {r.metric_value_location.metric.params["type"] for r in stored.metric_results.values()}
    assert {
        "evidently:metric_v2:DriftedColumnsCount",
        "evidently:metric_v2:DriftloopValue",
        "evidently:metric_v2:Accuracy",
    } <= types


def test_publish_run_twice_adds_two_snapshots_and_one_dashboard(tmp_path: Path) -> None:
    for day, seed in ((1, 2), (2, 3)):
        publish_run(
            tmp_path / "ws",
            "employment",
            _snapshot(0.0, 0.1, seed=seed),
            features=FEATURES,
            task="classification",
            timestamp=datetime(2024, 6, day),
            driftloop_values=VALUES,
        )
    workspace = open_workspace(tmp_path / "ws")
    project = find_project(workspace, "employment")
    assert project is not None
    assert len(list_snapshots(workspace, "employment")) == 2
    dashboard = workspace.get_dashboard(project.id)
    assert (
        len(dashboard.panels)
        == len({p.id for p in dashboard.panels})
        == len(dashboard.tabs[0].panels)
    )


def test_list_snapshots_of_an_unknown_model_is_empty(tmp_path: Path) -> None:
    assert list_snapshots(tmp_path / "ws", "nobody") == []


def test_ui_command(tmp_path: Path) -> None:
    argv = ui_command(tmp_path / "ws", "127.0.0.1", 8123)
    assert Path(argv[0]).name == "evidently"
    assert argv[1:] == [
        "ui",
        "--workspace",
        str((tmp_path / "ws").resolve()),
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
    ]


@pytest.mark.parametrize(
    ("host", "port", "message"), [("0.0.0.0", 8000, "no login"), ("127.0.0.1", 0, "port")]
)
def test_ui_command_refuses(host: str, port: int, message: str) -> None:
    with pytest.raises(WorkspaceError, match=message):
        ui_command("ws", host, port)


# --- the real Evidently UI on loopback -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def filled_workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    project = ensure_project(path, "employment")
    _configure(open_workspace(path), project)
    add_snapshot(path, "employment", _snapshot(0.0, 0.1, seed=2), timestamp=datetime(2024, 6, 1))
    add_snapshot(path, "employment", _snapshot(2.0, 0.6, seed=3), timestamp=datetime(2024, 6, 2))
    return path


@pytest.fixture
def evidently_ui(filled_workspace: Path, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    log = (tmp_path / "ui.log").open("w")
    proc = subprocess.Popen(
        ui_command(filled_workspace, "127.0.0.1", port), stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"evidently ui exited with {proc.returncode}:\n{(tmp_path / 'ui.log').read_text()}"
                )
            try:
                if httpx.get(f"{base}/api/projects", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"evidently ui did not answer on {base}:\n{(tmp_path / 'ui.log').read_text()}"
                )
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.e2e
def test_evidently_ui_lists_project_dashboard_and_series(evidently_ui: str) -> None:
    projects = httpx.get(f"{evidently_ui}/api/projects", timeout=10).json()
    assert [p["name"] for p in projects] == ["employment"]
    project_id = projects[0]["id"]

    dashboard = httpx.get(f"{evidently_ui}/api/v2/dashboards/{project_id}", timeout=10).json()
    assert "Share of drifted features" in {p["title"] for p in dashboard["panels"]}

    snapshots = httpx.get(f"{evidently_ui}/api/projects/{project_id}/snapshots", timeout=10).json()
    assert len(snapshots) == 2

    # the dashboard's series come from both snapshots, in time order, incl. driftloop's own value
    share = next(p for p in dashboard["panels"] if p["title"] == "Share of drifted features")
    filters = [
        {"tags": [], "metadata": {}, "metric": v["metric"], "metric_labels": v["metric_labels"]}
        for v in share["values"]
    ]
    series = httpx.post(
        f"{evidently_ui}/api/v2/snapshots/{project_id}/data_series_batch",
        json={"series_filter": filters},
        timeout=30,
    ).json()
    assert [s["timestamp"][:10] for s in series["sources"]] == ["2024-06-01", "2024-06-02"]
    by_type = {s["metric_type"].rsplit(":", 1)[1]: s["values"] for s in series["series"]}
    assert by_type["DriftloopValue"] == [0.1, 0.6]
    assert by_type["DriftedColumnsCount"][1] > by_type["DriftedColumnsCount"][0]


def _publish_many(workspace: str, start: int, count: int) -> int:
    """A separate monitor process publishing `count` runs (returns how many succeeded)."""
    snapshot = _snapshot(0.0, 0.1, seed=start)
    done = 0
    for n in range(count):
        publish_run(
            workspace,
            "employment",
            snapshot,
            features=FEATURES,
            task="classification",
            timestamp=datetime(2024, 6, 1) + timedelta(minutes=start + n),
            driftloop_values=VALUES,
        )
        done += 1
    return done


def test_concurrent_monitors_both_publish_every_run(tmp_path: Path) -> None:
    import multiprocessing

    workspace = str(tmp_path / "ws")
    publish_run(  # the project exists, as after a first monitor run
        workspace,
        "employment",
        _snapshot(0.0, 0.1, seed=9),
        features=FEATURES,
        task="classification",
        driftloop_values=VALUES,
    )
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        done = pool.starmap(_publish_many, [(workspace, 0, 15), (workspace, 100, 15)])
    assert done == [15, 15]
    assert len(list_snapshots(workspace, "employment")) == 31
    project = find_project(open_workspace(workspace), "employment")
    dashboard = open_workspace(workspace).get_dashboard(project.id)
    assert len(dashboard.tabs) == 1 and len(dashboard.panels) == len(dashboard.tabs[0].panels)
