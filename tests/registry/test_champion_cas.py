"""Compare-and-set of `champion` on a real MLflow registry (SQLite), under the champion lock of
the driftloop database: only a promotion judged against the current champion moves it, and the
champion history loses no promotion, with threads and with processes."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
from mlflow import MlflowClient

import registry
from core.settings import Settings
from flows.champion import promote_by_hand, promote_if_unchanged

NAME = "cas"


def _versions(client: MlflowClient, source: Path, n: int) -> None:
    """A registered model with ``n`` versions (metadata only: nothing here loads a model)."""
    source.mkdir(exist_ok=True)
    client.create_registered_model(NAME)
    for _ in range(n):
        client.create_model_version(NAME, source=str(source))


@pytest.fixture
def client(mlflow_env: dict[str, str], tmp_path: Path) -> MlflowClient:
    client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
    _versions(client, tmp_path / "source", 6)
    registry.set_champion(client, NAME, 1, reason="first", actor="test")
    return client


def _champion(client: MlflowClient) -> int:
    return int(client.get_model_version_by_alias(NAME, registry.CHAMPION).version)


def _history(client: MlflowClient) -> list[int]:
    return [int(h["version"]) for h in registry.champion_history(client, NAME)]


@pytest.mark.parametrize("lock_in", ["sqlite", "postgresql"])
def test_of_candidates_all_judged_against_v1_exactly_one_takes_the_alias(
    client: MlflowClient,
    lock_in: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lock in the driftloop database on SQLite (a file lock) or PostgreSQL (advisory)."""
    if lock_in == "postgresql":
        monkeypatch.setenv("DRIFTLOOP_DATABASE_URL", request.getfixturevalue("postgres_database"))
    start = threading.Barrier(5)

    def attempt(version: int) -> registry.AliasMove:
        start.wait()
        return promote_if_unchanged(
            Settings(), client, NAME, version, expected=1, reason="beat v1", actor="test"
        )

    with ThreadPoolExecutor(5) as pool:
        moves = list(pool.map(attempt, [2, 3, 4, 5, 6]))

    winners = [m.version for m in moves if m.moved]
    assert len(winners) == 1, moves
    (winner,) = winners
    assert _champion(client) == winner and _history(client) == [1, winner]
    for move in moves:
        if not move.moved:  # each loser saw the winner, not the v1 it was judged against
            assert move.found == winner and move.expected == 1
            assert f"champion is v{winner}, not v1" in move.conflict()
    tags = client.get_model_version(NAME, str(winner)).tags
    assert tags[registry.JUDGED_AGAINST_TAG] == "1"


def test_overlapping_promotions_lose_no_history_entry(client: MlflowClient) -> None:
    """Five writers that each promote against whatever the champion is when they look: every
    promotion is in the history once, in the order the alias moved."""
    start = threading.Barrier(5)
    order: list[int] = []

    def promote(version: int) -> None:
        start.wait()
        promote_by_hand(Settings(), client, NAME, version, reason="by hand", actor="test")
        order.append(version)

    with ThreadPoolExecutor(5) as pool:
        list(pool.map(promote, [2, 3, 4, 5, 6]))

    history = _history(client)
    assert sorted(history) == [1, 2, 3, 4, 5, 6] and history[0] == 1
    assert _champion(client) == history[-1]


def _attempt_in_process(env: dict[str, str], version: int, go: str) -> bool:
    import os
    import time

    os.environ.update(env)
    while not Path(go).exists():  # start together
        time.sleep(0.01)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    move = promote_if_unchanged(
        Settings(), client, NAME, version, expected=1, reason="beat v1", actor=f"p{version}"
    )
    return move.moved


def test_two_processes_judged_against_v1_only_one_moves_the_alias(
    client: MlflowClient, mlflow_env: dict[str, str], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        futures = [pool.submit(_attempt_in_process, mlflow_env, v, str(go)) for v in (2, 3)]
        go.touch()
        moved = [f.result(timeout=120) for f in futures]
    assert sorted(moved) == [False, True]
    winner = 2 if moved[0] else 3
    assert _champion(client) == winner and _history(client) == [1, winner]


class Intruder(MlflowClient):
    """A writer that takes no lock: right after each alias move, it points `champion` at v6."""

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        super().set_registered_model_alias(name, alias, version)
        super().set_registered_model_alias(name, alias, "6")


def test_the_read_back_after_setting_sees_a_writer_that_moved_the_alias_in_between(
    client: MlflowClient, mlflow_env: dict[str, str]
) -> None:
    intruded = Intruder(mlflow_env["MLFLOW_TRACKING_URI"])
    move = registry.set_champion_if(intruded, NAME, 2, expected=1, reason="x", actor="test")
    assert not move.moved and move.found == 6
    assert _history(client) == [1]  # no entry for a promotion that did not stand
    assert "role" not in "".join(client.get_model_version(NAME, "2").tags)


def test_a_version_that_was_rolled_back_is_never_promoted_again(client: MlflowClient) -> None:
    registry.set_champion(client, NAME, 2, reason="by hand", actor="test")
    move = registry.roll_back(client, NAME, current=2, target=1, reason="worse", actor="test")
    assert move.moved and _champion(client) == 1
    tags = client.get_model_version(NAME, "2").tags
    assert tags[registry.ROLLED_BACK_TAG] == "worse" and tags["driftloop.role"] == "rolled_back"
    with pytest.raises(registry.PromotionRefused, match="version 2 was rolled back"):
        registry.set_champion(client, NAME, 2, reason="again", actor="test")
    assert _champion(client) == 1


def test_a_stale_rollback_does_not_move_the_alias(client: MlflowClient) -> None:
    registry.set_champion(client, NAME, 3, reason="newer", actor="test")
    move = registry.roll_back(client, NAME, current=2, target=1, reason="worse", actor="test")
    assert not move.moved and _champion(client) == 3
    assert registry.ROLLED_BACK_TAG not in client.get_model_version(NAME, "2").tags
