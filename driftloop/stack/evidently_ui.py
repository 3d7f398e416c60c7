"""The stack's Evidently UI (``evidently ui``) on the workspace the monitor flow writes to."""

from __future__ import annotations

import sys
from pathlib import Path

from driftloop.stack.launch import Launch
from driftloop.stack.processes import HOST, wait_healthy


def workspace_dir(root: Path) -> Path:
    """The Evidently workspace of the checkout (``DRIFTLOOP_WORKSPACE`` of every process)."""
    return root / "evidently-workspace"


def start_ui(launch: Launch) -> None:
    """``evidently ui`` on the chosen port; wait for ``/api/version``."""
    url = launch.url("evidently")
    workspace = workspace_dir(launch.root)
    workspace.mkdir(exist_ok=True)
    launch.echo(f"starting Evidently UI on {url}")
    command = [sys.executable, "-m", "evidently.cli", "ui", "--workspace", str(workspace)]
    command += ["--host", HOST, "--port", str(launch.ports["evidently"])]
    record = launch.spawn("evidently", command, url=url, health_url=f"{url}/api/version")
    wait_healthy(record, timeout=launch.timeout)
    launch.record(evidently_url=url)
