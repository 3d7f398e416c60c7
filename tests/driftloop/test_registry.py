"""Pure parts of the registry helpers."""

from __future__ import annotations

import pytest

from driftloop.registry import rollback_target


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
    from driftloop.registry import SPEC_TAG, model_spec_tag, read_model_spec

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
    from driftloop.registry import replaced

    history = [{"version": 1}, {"version": 2}, {"version": 1}, {"version": 3}]
    assert replaced(history, 3) == 1  # the last time 3 became champion, 1 served
    assert replaced(history, 2) == 1
    assert replaced(history, 1) == 2  # 1 came back after 2
    assert replaced([{"version": 1}], 1) is None
    assert replaced(history, 9) is None
