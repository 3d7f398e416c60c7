"""state.json: what a stack records about itself."""

from __future__ import annotations

from pathlib import Path

from driftloop.stack.processes import ServiceRecord
from driftloop.stack.state import StackState


def test_state_round_trips_through_json(tmp_path: Path) -> None:
    state = StackState(
        root=str(tmp_path),
        state_dir=str(tmp_path),
        started_at="t",
        backend="sqlite",
        prefect_ui_url="http://127.0.0.1:1",
        services=[ServiceRecord(name="x", pid=1, command=["a"], log="l", proc_start=5)],
    )
    assert StackState.from_json(state.to_json()) == state
    assert state.urls() == {"Prefect UI": "http://127.0.0.1:1"}
