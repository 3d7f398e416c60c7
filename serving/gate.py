"""The ASGI gate in front of every route: API key with failed-attempt backoff, body limits and
timeouts, JSON content type, request metrics, and POST /predict itself.

Every request body is read here, once, under the same size limit and time limit whatever the
endpoint, and whether or not the client declared a length; routes behind the gate receive the
buffered body. Answering /predict here skips the framework's routing, exception and response
layers, a large share of a single-row request's CPU time.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

API_KEY_HEADER = "X-API-Key"
OPEN_PATHS = frozenset({"/health"})
#: Endpoints whose body must be JSON (415 otherwise).
JSON_PATHS = frozenset({"/predict", "/feedback"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class BodyTooLarge(Exception):
    """The body exceeds the limit (413)."""


class BodyTimeout(Exception):
    """The body did not arrive within the time limit (408)."""


def error_body(message: str, detail: Any = None) -> dict[str, Any]:
    """Every error the service sends: ``{"error": sentence, "detail": optional items}``."""
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return body


async def send_json(
    send: Send, status: int, body: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = orjson.dumps(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": payload})


def header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def declared_length(scope: dict[str, Any]) -> int:
    value = header(scope, b"content-length")
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        return 1 << 62


def is_json(content_type: bytes | None) -> bool:
    """True for application/json and any ``+json`` media type (parameters ignored)."""
    if content_type is None:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


def offered_key(scope: dict[str, Any]) -> bytes:
    """The key sent as ``X-API-Key`` or ``Authorization: Bearer``."""
    key = header(scope, b"x-api-key")
    if key is not None:
        return key
    auth = header(scope, b"authorization")
    if auth is not None and auth[:7].lower() == b"bearer ":
        return auth[7:]
    return b""


def client_address(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def receive_body(receive: Receive, *, limit: int, timeout: float) -> bytes | None:
    """The whole body from raw ASGI messages; None when the client went away.

    Raises:
        BodyTooLarge: more than ``limit`` bytes arrived.
        BodyTimeout: the body was not complete within ``timeout`` seconds.
    """
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BodyTimeout
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except TimeoutError:
            raise BodyTimeout from None
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the buffered body to the app, then waits for the disconnect."""
    sent = False

    async def again() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


@dataclass
class _Attempts:
    failures: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class AuthThrottle:
    """Failed API-key attempts per client address, with bounded memory.

    After ``free`` failures, each further failure locks the address out for a delay that
    doubles from ``base_delay`` up to ``max_delay``; while locked out every request of that
    address gets 429, whatever key it sends (checking it would tell a guess from the right key).
    A success or ``forget_after`` seconds without failures clears the address. At most
    ``max_clients`` addresses are remembered (the least recently failing are forgotten first).
    """

    def __init__(
        self,
        *,
        free: int = 10,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        forget_after: float = 600.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_clients = max_clients
        self.clock = clock
        self._clients: OrderedDict[str, _Attempts] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def retry_after(self, client: str) -> float:
        """Seconds the address must wait before it may try again (0: it may try now)."""
        attempts = self._clients.get(client)
        if attempts is None:
            return 0.0
        now = self.clock()
        if now - attempts.last > self.forget_after:
            del self._clients[client]
            return 0.0
        return max(0.0, attempts.locked_until - now)

    def failed(self, client: str) -> float:
        """Record a failed attempt; returns the lock-out it starts (0 within the free ones)."""
        now = self.clock()
        attempts = self._clients.pop(client, None) or _Attempts()
        if now - attempts.last > self.forget_after:
            attempts = _Attempts()
        attempts.failures += 1
        attempts.last = now
        delay = 0.0
        if attempts.failures > self.free:
            exponent = min(attempts.failures - self.free - 1, 30)
            delay = min(self.max_delay, self.base_delay * 2.0**exponent)
            attempts.locked_until = now + delay
        self._clients[client] = attempts
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        return delay

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)


@dataclass(frozen=True)
class GateLimits:
    """What the gate enforces on every request."""

    max_body_bytes: int
    body_timeout_seconds: float


PredictHandler = Callable[[bytes, float], Awaitable[tuple[int, Any]]]


class Gate:
    """Pure ASGI middleware in front of the FastAPI app (see the module docstring).

    ``state`` (the app's ``app.state``) holds the started service as its ``service`` attribute
    (absent while starting: 503). The service provides ``api_key`` (bytes or None), ``limits``
    (:class:`GateLimits`), ``throttle`` (:class:`AuthThrottle`),
    ``metrics.observe(path, status, seconds)`` and ``predict(body, start) -> (status, json body)``.
    """

    def __init__(self, app: Any, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service = getattr(self.state, "service", None)
        if service is None:
            await send_json(send, 503, error_body("the service is starting"))
            return
        start = time.perf_counter()
        path = scope["path"]
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self._refusal(service, scope)
            if refusal is not None:
                await send_json(send_status, *refusal)
                return
            if scope["method"] not in _BODY_METHODS:
                await self.app(scope, receive, send_status)
                return
            reply = await self._with_body(service, scope, receive, send_status, start)
            if reply is None:
                status = 499  # the client left before sending its body (nginx's code)
            elif reply is not True:
                await send_json(send_status, *reply)
        finally:
            service.metrics.observe(path, status, time.perf_counter() - start)

    def _refusal(self, service: Any, scope: dict[str, Any]) -> tuple[Any, ...] | None:
        """(status, body[, headers]) when the request is refused before its body is read."""
        path = scope["path"]
        key = service.api_key
        if key is not None and path not in OPEN_PATHS:
            client = client_address(scope)
            wait = service.throttle.retry_after(client)
            if wait > 0:
                return (
                    429,
                    error_body(
                        f"too many failed API-key attempts from this address; retry in "
                        f"{math.ceil(wait)} s"
                    ),
                    [(b"retry-after", str(math.ceil(wait)).encode())],
                )
            if not hmac.compare_digest(offered_key(scope), key):
                service.throttle.failed(client)
                return (
                    401,
                    error_body(
                        f"missing or wrong API key: send it in the {API_KEY_HEADER} header "
                        "or as Authorization: Bearer <key>"
                    ),
                    [(b"www-authenticate", b"ApiKey")],
                )
            service.throttle.succeeded(client)
        limit = service.limits.max_body_bytes
        if declared_length(scope) > limit:
            return 413, error_body(f"request body larger than {limit} bytes; split the batch")
        if (
            scope["method"] == "POST"
            and path in JSON_PATHS
            and not is_json(header(scope, b"content-type"))
        ):
            return 415, error_body("send the body as JSON with Content-Type: application/json")
        return None

    async def _with_body(
        self, service: Any, scope: dict[str, Any], receive: Receive, send: Send, start: float
    ) -> tuple[int, Any] | bool | None:
        """Read the body under the limits; answer /predict, or pass the body on (True)."""
        limits = service.limits
        try:
            body = await receive_body(
                receive, limit=limits.max_body_bytes, timeout=limits.body_timeout_seconds
            )
        except BodyTooLarge:
            return 413, error_body(
                f"request body larger than {limits.max_body_bytes} bytes; split the batch"
            )
        except BodyTimeout:
            return 408, error_body(
                f"the request body did not arrive within {limits.body_timeout_seconds:g} s"
            )
        if body is None:
            return None
        if scope["path"] == "/predict" and scope["method"] == "POST":
            return await service.predict(body, start)
        await self.app(scope, replay(body, receive), send)
        return True
