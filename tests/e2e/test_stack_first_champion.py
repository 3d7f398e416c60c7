"""`make stack` on an empty registry: the stack trains a first champion, then serves it ready."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from driftloop.stack import StackPorts, start_stack, stop_stack
from tests.e2e.harness import LINKED, link_repo, write_small_config

pytestmark = pytest.mark.e2e


def test_an_empty_registry_gets_a_first_champion_that_the_service_serves(tmp_path: Path) -> None:
    root = link_repo(tmp_path / "root", [n for n in LINKED if n != "driftloop.yaml"])
    write_small_config(root)
    said: list[str] = []
    state = start_stack(
        root,
        ports=StackPorts(**{k: 0 for k in StackPorts.__dataclass_fields__}),
        services=("prefect", "mlflow", "train", "serve"),
        train_timeout=600,
        echo=said.append,
    )
    try:
        assert "no champion for 'employment': training one (driftloop train)" in said
        assert state.notes == []
        assert state.serve_url
        ready = httpx.get(f"{state.serve_url}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["model_version"] == 1
    finally:
        stopped = stop_stack(root, echo=lambda _: None)
    assert stopped == ["serve", "mlflow", "prefect-server"]
