"""Micro-batching: concurrent requests are scored together in one model call.

Requests queue their validated columns; one task takes everything queued (up to `max_rows`),
builds one frame per model version, and scores it on a dedicated thread. What arrives while that
runs forms the next batch, so a lone request is scored at once and a burst is scored in few calls.
Each request keeps the model it was validated against, so a champion swap mid-flight never mixes
versions in one call.

A model with a verified fast path scores small requests (at most `inline_rows`) directly on the
event loop: tens of microseconds, less than the hop to the scoring thread and back. The scoring
thread runs with one OpenMP/BLAS thread: on a small loaded machine, HistGradientBoosting with
several OpenMP threads is tens of times slower for a single row.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from serving.model import Scores, ServedModel

#: Requests of at most this many rows are scored on the event loop when the model has a fast path.
INLINE_ROWS = 16


def _one_thread_per_library() -> None:
    """Executor initializer: OpenMP and BLAS limits are per calling thread for OpenMP."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


@dataclass
class _Pending:
    model: ServedModel
    columns: dict[str, list[Any]]
    rows: int
    future: asyncio.Future[Scores]


class MicroBatcher:
    """Coalesce concurrent scoring calls of one event loop."""

    def __init__(self, *, max_rows: int = 512, inline_rows: int = INLINE_ROWS) -> None:
        self.max_rows = max_rows
        self.inline_rows = inline_rows
        self._pending: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="driftloop-score",
            initializer=_one_thread_per_library,
        )
        self.calls = 0
        self.rows = 0
        self.inline_calls = 0

    async def score(self, model: ServedModel, columns: dict[str, list[Any]], rows: int) -> Scores:
        """Score rows with `model`, batched with whatever else is waiting."""
        if model.fast is not None and rows <= self.inline_rows:
            self.inline_calls += 1
            return model.score_columns(columns)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Scores] = loop.create_future()
        self._pending.append(_Pending(model, columns, rows, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await future

    def _take(self) -> list[_Pending]:
        taken: list[_Pending] = []
        rows = 0
        while self._pending and (not taken or rows + self._pending[0].rows <= self.max_rows):
            item = self._pending.pop(0)
            taken.append(item)
            rows += item.rows
        return taken

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            taken = self._take()
            groups: dict[int, list[_Pending]] = {}
            for item in taken:
                groups.setdefault(id(item.model), []).append(item)
            for group in groups.values():
                await self._score_group(loop, group)

    async def _score_group(self, loop: asyncio.AbstractEventLoop, group: list[_Pending]) -> None:
        model = group[0].model
        if len(group) == 1:
            merged = group[0].columns
        else:
            merged = {
                name: [v for item in group for v in item.columns[name]] for name in group[0].columns
            }
        try:
            scores = await loop.run_in_executor(self._executor, model.score_columns, merged)
        except Exception as exc:
            if len(group) == 1:
                _fail(group[0].future, exc)
                return
            for item in group:  # isolate the request the model refuses; score the others alone
                await self._score_group(loop, [item])
            return
        self.calls += 1
        start = 0
        for item in group:
            end = start + item.rows
            part = Scores(
                predictions=scores.predictions[start:end],
                probability=scores.probability[start:end]
                if scores.probability is not None
                else None,
                probabilities=scores.probabilities[start:end]
                if scores.probabilities is not None
                else None,
            )
            self.rows += item.rows
            if not item.future.done():
                item.future.set_result(part)
            start = end

    async def close(self) -> None:
        """Finish queued work and stop the scoring thread."""
        if self._task is not None and not self._task.done():
            await self._task
        self._executor.shutdown(wait=True)


def _fail(future: asyncio.Future[Scores], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
