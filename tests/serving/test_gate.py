"""The gate's pure parts: failed-key backoff, body reading under limits, JSON content types."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from serving.gate import AuthThrottle, BodyTimeout, BodyTooLarge, is_json, receive_body


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_free_failures_then_a_doubling_lock_out_capped() -> None:
    clock = Clock()
    throttle = AuthThrottle(free=3, base_delay=1.0, max_delay=8.0, clock=clock)
    assert [throttle.failed("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert throttle.retry_after("a") == 0.0
    delays = []
    for _ in range(6):
        delays.append(throttle.failed("a"))
        assert throttle.retry_after("a") == pytest.approx(delays[-1])
        clock.now += delays[-1]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert throttle.retry_after("b") == 0.0  # other addresses are not affected


def test_success_and_a_quiet_period_clear_the_address() -> None:
    clock = Clock()
    throttle = AuthThrottle(free=1, forget_after=60.0, clock=clock)
    throttle.failed("a")
    throttle.failed("a")
    assert throttle.retry_after("a") > 0
    throttle.succeeded("a")
    assert throttle.retry_after("a") == 0.0 and len(throttle) == 0
    throttle.failed("b")
    throttle.failed("b")
    clock.now += 61
    assert throttle.retry_after("b") == 0.0
    assert throttle.failed("b") == 0.0  # counting starts again


def test_memory_is_bounded_by_forgetting_the_oldest_addresses() -> None:
    throttle = AuthThrottle(free=1, max_clients=100, clock=Clock())
    for n in range(10_000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle) == 100
    assert throttle.retry_after("10.0.0.0") == 0.0  # forgotten
    assert throttle.retry_after("10.0.39.15") == 0.0  # remembered, but still within its free one


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        (b"application/json", True),
        (b"Application/JSON; charset=utf-8", True),
        (b"application/problem+json", True),
        (b"text/plain", False),
        (b"application/x-www-form-urlencoded", False),
        (b"text/json+x", False),
        (None, False),
    ],
)
def test_json_content_types(content_type: bytes | None, ok: bool) -> None:
    assert is_json(content_type) is ok


def _receiver(messages: list[dict[str, Any]], pause: float = 0.0) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if not queue:
            await asyncio.sleep(3600)
        await asyncio.sleep(pause)
        return queue.pop(0)

    return receive


def test_a_chunked_body_is_joined_and_cut_at_the_limit() -> None:
    chunks = [{"type": "http.request", "body": b"x" * 10, "more_body": True}] * 3
    last = {"type": "http.request", "body": b"y", "more_body": False}
    body = asyncio.run(receive_body(_receiver([*chunks, last]), limit=31, timeout=5))
    assert body == b"x" * 30 + b"y"
    with pytest.raises(BodyTooLarge):
        asyncio.run(receive_body(_receiver([*chunks, *chunks, last]), limit=50, timeout=5))


def test_a_body_that_never_finishes_times_out_and_a_gone_client_is_none() -> None:
    started = [{"type": "http.request", "body": b"{", "more_body": True}]
    with pytest.raises(BodyTimeout):
        asyncio.run(receive_body(_receiver(started), limit=100, timeout=0.2))
    trickle = [{"type": "http.request", "body": b"x", "more_body": True}] * 100
    with pytest.raises(BodyTimeout):  # the limit is on the whole body, not on each chunk
        asyncio.run(receive_body(_receiver(trickle, pause=0.05), limit=1000, timeout=0.5))
    gone = [{"type": "http.disconnect"}]
    assert asyncio.run(receive_body(_receiver(gone), limit=100, timeout=1)) is None
