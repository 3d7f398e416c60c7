"""`promotion.approval: manual` on a real Prefect server: the training that the gate promotes
pauses with its evidence until a person answers (`driftloop approve/reject`), and no answer in
time leaves the champion unchanged; without a waiting flow run the commands act themselves."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

from driftloop.cli import app
from flows.approval import APPROVAL_RUN_TAG, APPROVAL_TAG, AWAITING, JUDGED_TAG
from flows.train import train
from tests.flows.conftest import write_config

runner = CliRunner()


def champion(client: MlflowClient) -> int:
    return int(client.get_model_version_by_alias("employment", "champion").version)


def first_champion_that_learned_noise(tmp_path: Path, frame: pd.DataFrame) -> None:
    shuffled = frame.assign(employed=frame["employed"].sample(frac=1.0, random_state=3).to_numpy())
    train(config_path=str(write_config(tmp_path, shuffled, promotion={"floor": None})))


def training_in_background(config: Path) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(train(config_path=str(config))))
    thread.start()
    return thread, out


def wait_paused(client: MlflowClient, version: int, timeout: float = 180.0) -> str:
    """The flow run that waits for an answer about ``version``, once it is paused."""
    deadline, state = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            tags = client.get_model_version("employment", str(version)).tags
        except Exception:  # not registered yet
            tags = {}
        if tags.get(APPROVAL_TAG) == AWAITING and tags.get(APPROVAL_RUN_TAG):
            with get_client(sync_client=True) as prefect:
                state = prefect.read_flow_run(tags[APPROVAL_RUN_TAG]).state
            if state is not None and state.is_paused():
                return tags[APPROVAL_RUN_TAG]
        time.sleep(0.5)
    raise AssertionError(f"v{version} never waited for approval (flow run state {state})")


def test_a_person_rejects_then_approves_through_the_paused_flow_run(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    first_champion_that_learned_noise(tmp_path, small_employment)
    client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
    config = write_config(
        tmp_path, small_employment, promotion={"approval": "manual", "floor": None}
    )

    thread, out = training_in_background(config)
    wait_paused(client, 2)
    assert champion(client) == 1  # waiting: nothing moved yet
    rejected = runner.invoke(app, ["reject", "--version", "2", "--config", str(config)])
    assert rejected.exit_code == 0, rejected.output
    thread.join(300)
    assert out and out[0]["promoted"] is False and "rejected" in out[0]["reason"]
    assert champion(client) == 1
    assert client.get_model_version("employment", "2").tags[APPROVAL_TAG] == "rejected"

    thread, out = training_in_background(config)
    run_id = wait_paused(client, 3)
    approved = runner.invoke(
        app, ["approve", "--version", "3", "--config", str(config), "--note", "checked the plots"]
    )
    assert approved.exit_code == 0 and f"resumed flow run {run_id}" in approved.output
    thread.join(300)
    assert out and out[0]["promoted"] is True and "approved (checked the plots)" in out[0]["reason"]
    assert champion(client) == 3
    again = runner.invoke(app, ["approve", "--version", "3", "--config", str(config)])
    assert again.exit_code == 2 and "does not wait for approval (approved)" in again.output


def test_no_answer_in_time_leaves_the_champion(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    first_champion_that_learned_noise(tmp_path, small_employment)
    client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
    config = write_config(
        tmp_path,
        small_employment,
        promotion={"approval": "manual", "approval_timeout_hours": 0.0005, "floor": None},  # 1 s
    )
    result = train(config_path=str(config))
    assert result["promoted"] is False and "no approval in time" in result["reason"]
    assert champion(client) == 1
    tags = client.get_model_version("employment", "2").tags
    assert tags[APPROVAL_TAG] == "timed_out" and tags["driftloop.role"] == "challenger"
    late = runner.invoke(app, ["approve", "--version", "2", "--config", str(config)])
    assert late.exit_code == 2 and "does not wait for approval (timed_out)" in late.output


def test_without_a_waiting_flow_run_the_commands_decide_by_compare_and_set(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    config = write_config(tmp_path, small_employment, promotion={"floor": None})
    train(config_path=str(config))
    train(config_path=str(config))  # v2: identical, a challenger
    client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
    waiting = {APPROVAL_TAG: AWAITING, APPROVAL_RUN_TAG: "", JUDGED_TAG: "7"}  # judged vs v7
    for name, value in waiting.items():
        client.set_model_version_tag("employment", "2", name, value)
    stale = runner.invoke(app, ["approve", "--version", "2", "--config", str(config)])
    assert stale.exit_code == 2 and "was judged against v7, but `champion` is v1" in stale.output
    client.set_model_version_tag("employment", "2", JUDGED_TAG, "1")
    approved = runner.invoke(app, ["approve", "--version", "2", "--config", str(config)])
    assert approved.exit_code == 0 and "champion is now version 2 (approved)" in approved.output
    assert champion(client) == 2
