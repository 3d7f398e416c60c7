"""Shadow scoring in the service: the `challenger` version also scores a share of live requests.

After a `/predict` answer is durably logged, :meth:`ShadowScorer.submit` queues its validated
columns (never waiting: a full queue drops the request's shadow, counted). One task takes them off
the queue and, on a thread of its own, scores them with the challenger and writes the predictions to
`shadow_predictions` (:mod:`monitoring.shadow`) under the same request ids. Nothing here is on the
response path: a challenger that fails to load or to score is logged and counted, never answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from monitoring.shadow import write_shadow
from registry import CHALLENGER, get_alias
from serving.holder import ModelHolder
from serving.model import ServedModel

logger = logging.getLogger("driftloop.serving")
#: Queued requests one shadow step scores and writes together (one transaction).
_DRAIN = 64


def _one_thread() -> None:
    """One OpenMP/BLAS thread: the challenger never takes the champion's cores."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


@dataclass(frozen=True)
class _Job:
    model: ServedModel
    columns: dict[str, list[Any]]
    request_ids: list[str]
    ts: datetime


@dataclass
class ShadowStats:
    scored: int = 0
    dropped: int = 0
    failed: int = 0


def shadow_columns(
    model: ServedModel, columns: dict[str, list[Any]]
) -> dict[str, list[Any]] | None:
    """The columns the challenger takes, out of those validated for the champion (None: it needs
    a feature the champion's contract does not carry, so it cannot be scored on these rows)."""
    if any(name not in columns for name in model.features):
        return None
    return {name: columns[name] for name in model.features}


def shadow_rows(
    model: ServedModel, scores: Any, request_ids: list[str], ts: datetime
) -> list[dict[str, Any]]:
    """The `shadow_predictions` rows of one scored request (pure)."""
    rows = []
    for i, request_id in enumerate(request_ids):
        rows.append(
            {
                "request_id": request_id,
                "ts": ts,
                "model_name": model.name,
                "model_version": model.version,
                "prediction": scores.predictions[i],
                "probability": scores.probability[i] if scores.probability is not None else None,
                "probabilities": (
                    scores.probabilities[i] if scores.probabilities is not None else None
                ),
            }
        )
    return rows


class ShadowScorer:
    """The challenger, polled with the champion, scoring ``share`` of requests off the response
    path; at most ``queue_requests`` requests wait for it."""

    def __init__(
        self,
        client: Any,
        model_name: str,
        engine: Engine,
        *,
        share: float,
        queue_requests: int = 256,
        seed: int | None = None,
    ) -> None:
        self.holder = ModelHolder(client, model_name, alias=CHALLENGER)
        self.client = client
        self.model_name = model_name
        self.engine = engine
        self.share = share
        self.stats = ShadowStats()
        self._rng = random.Random(seed)
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_requests)
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="driftloop-shadow", initializer=_one_thread
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def model(self) -> ServedModel | None:
        return self.holder.current

    def refresh(self) -> None:
        """Follow the `challenger` alias: load a new one, drop a removed one (blocking)."""
        if self.share <= 0:
            return
        try:
            found = get_alias(self.client, self.model_name, CHALLENGER)
        except Exception as exc:  # the registry is down: keep what is loaded
            logger.warning("shadow: cannot read the challenger alias: %s", exc)
            return
        if found is None:
            self.holder.current = None
            return
        with contextlib.suppress(Exception):  # logged by the holder; no shadow until it loads
            self.holder.refresh()

    def submit(self, columns: dict[str, list[Any]], request_ids: list[str], ts: datetime) -> None:
        """Queue one answered request for the challenger (never blocks, never raises)."""
        model = self.holder.current
        if model is None or self.share <= 0 or self._rng.random() >= self.share:
            return
        mine = shadow_columns(model, columns)
        if mine is None:
            self.stats.dropped += len(request_ids)
            return
        try:
            self._queue.put_nowait(_Job(model, mine, list(request_ids), ts))
        except asyncio.QueueFull:
            self.stats.dropped += len(request_ids)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        """Take what is queued (up to ``_DRAIN`` requests at once), score and write it in one
        transaction on the shadow thread."""
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < _DRAIN and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            try:
                written = await loop.run_in_executor(self._executor, self._score_and_write, jobs)
                self.stats.scored += written
            except Exception as exc:
                self.stats.failed += sum(len(job.request_ids) for job in jobs)
                logger.warning(
                    "shadow: %s v%s could not score or log %d requests: %s",
                    jobs[0].model.name,
                    jobs[0].model.version,
                    len(jobs),
                    exc,
                )
            finally:
                for _ in jobs:
                    self._queue.task_done()

    def _score_and_write(self, jobs: list[_Job]) -> int:
        rows = []
        for job in jobs:
            scores = job.model.score_columns(job.columns)
            rows += shadow_rows(job.model, scores, job.request_ids, job.ts)
        return write_shadow(self.engine, rows)
