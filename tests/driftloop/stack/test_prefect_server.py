"""The Prefect half's pure part: which deployments prefect.yaml declares."""

from __future__ import annotations

from pathlib import Path

from driftloop.stack.prefect_server import deployment_names


def test_deployment_names_come_from_prefect_yaml(tmp_path: Path) -> None:
    (tmp_path / "prefect.yaml").write_text(
        "deployments:\n"
        "  - name: nightly\n    entrypoint: flows/monitor.py:monitor\n"
        "  - name: retrain\n    entrypoint: flows/retrain.py:retrain\n"
    )
    assert deployment_names(tmp_path / "prefect.yaml") == ["nightly", "retrain"]
