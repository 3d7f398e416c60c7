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
