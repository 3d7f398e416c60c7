"""Screenshots of the three UIs a person opens, in a real (headless Chromium) browser.

They run on the loop's stack after the loop (``loop_run``): the registry holds the retrained
champion, the Evidently workspace holds the monitor run's snapshot, the Prefect server holds the
deployments with the monitor schedule and the retrain trigger. Each picture is saved under the
test's tmp dir and copied to ``.driftloop/screenshots/`` for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from monitoring.workspace import find_project, list_snapshots
from tests.e2e.browser import chromium, keep, shoot
from tests.e2e.harness import Stack

pytestmark = pytest.mark.e2e

MODEL = "employment"


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        try:
            yield context.new_page()
        finally:
            context.close()


def test_mlflow_registered_model_page(
    loop_stack: Stack, loop_run: Any, page: Page, tmp_path: Path
) -> None:
    url = f"{loop_stack.state.mlflow_url}/#/models/{MODEL}"
    path = tmp_path / "mlflow-model.png"
    text = shoot(page, url, path, expect=["Version 2", "champion"])
    keep(path, "mlflow-model.png")
    assert "Version 1" in text and "Version 2" in text, text[:2000]
    assert "@ champion" in text or "champion" in text
    assert "error" not in text.lower(), text[:2000]
    # the versions table sits below the tags; the page scrolls inside a pane, so scroll to it
    page.get_by_text("Version 1", exact=True).first.scroll_into_view_if_needed()
    path = tmp_path / "mlflow-versions.png"
    page.screenshot(path=str(path))
    keep(path, "mlflow-versions.png")


def test_evidently_project_dashboard(
    loop_stack: Stack, loop_run: Any, page: Page, tmp_path: Path
) -> None:
    workspace = loop_stack.state.env["DRIFTLOOP_WORKSPACE"]
    project = find_project(workspace, MODEL)
    assert project is not None, f"no Evidently project {MODEL!r} in {workspace}"
    assert list_snapshots(workspace, MODEL), "the monitor run stored no snapshot"
    url = f"{loop_stack.state.evidently_url}/projects/{project.id}"
    path = tmp_path / "evidently-dashboard.png"
    panels = ["Drifted features (last run)", "Rows in the last window", "Share of drifted features"]
    text = shoot(page, url, path, expect=panels)
    keep(path, "evidently-dashboard.png")
    for title in panels:
        assert title in text
    assert "no data" not in text.lower(), text[:3000]
    # the broken feature (age all missing) is left out of Evidently's own metrics: driftloop's
    # number for it must be on the dashboard, or the panels say "0% missing" during the incident
    assert "missing_share.AGEP" in text, text[:3000]


def test_prefect_deployments_page(
    loop_stack: Stack, loop_run: Any, page: Page, tmp_path: Path
) -> None:
    ui = loop_stack.state.prefect_ui_url
    path = tmp_path / "prefect-deployments.png"
    text = shoot(page, f"{ui}/deployments", path, expect=["monitor", "retrain", "train"])
    keep(path, "prefect-deployments.png")
    assert "Every 15 minutes" in text or "every 15 minutes" in text.lower(), text[:3000]

    client = loop_stack.client
    retrain = client.read_deployment_by_name("retrain/retrain")
    path = tmp_path / "prefect-retrain-deployment.png"
    text = shoot(
        page, f"{ui}/deployments/deployment/{retrain.id}", path, expect=["Triggers", "Completed"]
    )
    keep(path, "prefect-retrain-deployment.png")
    (automation,) = [
        a
        for a in client.read_automations()
        if any(getattr(x, "deployment_id", None) == retrain.id for x in a.actions)
    ]
    assert automation.name in text and "Cancelled" in text, text[:3000]
    assert "Concurrency Limit\n1" in text, text[:3000]

    path = tmp_path / "prefect-retrain-automation.png"
    text = shoot(
        page, f"{ui}/automations/automation/{automation.id}", path, expect=[automation.name]
    )
    keep(path, "prefect-retrain-automation.png")
    assert "driftloop.drift.detected" in text, text[:3000]  # the trigger's description
