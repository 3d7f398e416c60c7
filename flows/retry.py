"""When a failed task is worth running again: the retry condition of every I/O task."""

from __future__ import annotations

from typing import Any

from core.errors import is_transient


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn``: retry only failures a retry can fix (not a missing
    file, a bad config or data that fails validation)."""
    del task, task_run
    error = state.data
    return not isinstance(error, BaseException) or is_transient(error)
