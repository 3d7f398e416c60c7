"""The micro-batcher: small requests of a fast model on the event loop, the rest batched on one
scoring thread that runs with one OpenMP thread."""

from __future__ import annotations

import asyncio
from typing import Any

from core.spec import FeatureSpec
from pipelines.training import build_pipeline
from serving.microbatch import MicroBatcher
from serving.model import with_fast_path
from tests.serving.conftest import CATEGORICAL, NUMERIC, check_rows, served

SPEC = FeatureSpec(numeric=tuple(NUMERIC), categorical=tuple(CATEGORICAL))


def test_small_requests_of_a_fast_model_skip_the_scoring_thread(split_data: Any) -> None:
    X, y, check = split_data
    pipeline = build_pipeline(SPEC, task="classification", family="logistic").fit(X, y)
    fast_model = with_fast_path(served(pipeline), check_rows(check))
    slow_model = served(pipeline)

    async def run() -> tuple[int, int, list[Any]]:
        batcher = MicroBatcher(max_rows=64, inline_rows=4)
        try:
            await batcher.score(fast_model, check_rows(check.head(2)), 2)
            inline = batcher.inline_calls
            await batcher.score(fast_model, check_rows(check.head(10)), 10)
            await batcher.score(slow_model, check_rows(check.head(2)), 2)
            limits = await asyncio.get_running_loop().run_in_executor(
                batcher._executor, _openmp_threads
            )
            return inline, batcher.calls, limits
        finally:
            await batcher.close()

    inline, threaded, limits = asyncio.run(run())
    assert inline == 1 and threaded == 2
    assert limits and all(n == 1 for n in limits)  # one OpenMP thread on the scoring thread


def _openmp_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]
