"""Pure parts of the registry helpers."""

from __future__ import annotations

import pytest

from registry import rollback_target


@pytest.mark.parametrize(
    ("history", "current", "expected"),
    [
        ([], 1, None),
        ([1], 1, None),
        ([1, 2], 2, 1),
        ([1, 2, 3], 3, 2),
        ([1, 2, 3, 3], 3, 2),  # promoted twice in a row
        ([1, 3, 2], 2, 3),  # a manual promotion back and forth
        ([1, 2], 5, 2),  # champion moved outside driftloop: go back to the last recorded one
    ],
)
def test_rollback_target(history: list[int], current: int, expected: int | None) -> None:
    assert rollback_target([{"version": v} for v in history], current) == expected


def test_model_spec_tag_round_trips_and_bad_tags_are_named() -> None:
    from registry import SPEC_TAG, model_spec_tag, read_model_spec

    tags = model_spec_tag(
        task="classification", target="y", numeric=["a"], categorical=["b"], classes=[0, 1]
    )
    assert list(tags) == [SPEC_TAG]
    spec = read_model_spec(tags)
    assert spec["numeric"] == ["a"] and spec["classes"] == [0, 1] and spec["not_null"] == []
    with pytest.raises(KeyError, match="model_spec"):
        read_model_spec({})
    with pytest.raises(ValueError, match="not valid JSON"):
        read_model_spec({SPEC_TAG: "{oops"})
    with pytest.raises(KeyError, match="target"):
        read_model_spec({SPEC_TAG: '{"task": "regression", "numeric": [], "categorical": []}'})


def test_the_champion_a_version_replaced() -> None:
    from registry import replaced

    history = [{"version": 1}, {"version": 2}, {"version": 1}, {"version": 3}]
    assert replaced(history, 3) == 1  # the last time 3 became champion, 1 served
    assert replaced(history, 2) == 1
    assert replaced(history, 1) == 2  # 1 came back after 2
    assert replaced([{"version": 1}], 1) is None
    assert replaced(history, 9) is None


def test_make_client_sets_no_global_tracking_uri(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from registry import make_client

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'default.db'}")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    client = make_client(other)
    assert client.tracking_uri == other
    assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path / 'default.db'}"


def test_tracked_points_the_fluent_api_at_a_store_and_restores_the_environment(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import mlflow

    from registry import make_client, tracked

    default = f"sqlite:///{tmp_path / 'default.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", default)
    uri = f"sqlite:///{tmp_path / 'tracked.db'}"
    client = make_client(uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    with tracked(uri), mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_metric("m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    assert os.environ["MLFLOW_TRACKING_URI"] == default
    assert mlflow.get_tracking_uri() == default
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with tracked(uri):
        pass
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_log_run_metrics_adds_metrics_to_a_finished_run(tmp_path) -> None:
    from registry import log_run_metrics, make_client

    client = make_client(f"sqlite:///{tmp_path / 'm.db'}")
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(experiment)
    client.set_terminated(run.info.run_id)
    log_run_metrics(client, run.info.run_id, {"champion_holdout_auc": 0.75})
    assert client.get_run(run.info.run_id).data.metrics == {"champion_holdout_auc": 0.75}


@pytest.mark.parametrize(
    ("history", "current", "excluded", "expected"),
    [
        ([1, 2, 3], 3, [2], 1),  # v2 was rolled back: never the target again
        ([1, 2, 1], 1, [2], None),  # restored v1: nothing earlier that was not rolled back
        ([1, 2, 1, 3], 3, [2], 1),
    ],
)
def test_rollback_target_skips_rolled_back_versions(
    history: list[int], current: int, excluded: list[int], expected: int | None
) -> None:
    entries = [{"version": v} for v in history]
    assert rollback_target(entries, current, excluded=excluded) == expected


def test_promoted_at_is_the_last_time_a_version_became_champion() -> None:
    from datetime import UTC, datetime

    from registry import promoted_at

    history = [
        {"version": 1, "at": "2026-12-01T10:00:00+00:00"},
        {"version": 2, "at": "2026-12-01T11:00:00+00:00"},
        {"version": 1, "at": "2026-12-01T12:00:00+00:00"},
    ]
    assert promoted_at(history, 1) == datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert promoted_at(history, 2) == datetime(2026, 12, 1, 11, tzinfo=UTC)
    assert promoted_at(history, 3) is None
