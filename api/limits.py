"""Limits on what one client can send: body size and request rate, before any route runs.

:class:`RequestLimits` is plain ASGI middleware, outermost in the app, so both limits apply
before routing, authentication and body parsing:

* **Body size.** A ``Content-Length`` above the route's cap is refused with 413 before a byte of
  the body is read; a body without one (chunked) is counted as it streams and refused as soon as
  it passes the cap, so nothing larger than the cap is ever buffered. The cap is
  ``DULY_MAX_BODY_BYTES`` (1 MiB) everywhere except the people import
  (``DULY_MAX_IMPORT_BYTES``, 50 MiB).
* **Rate.** Requests carrying a bearer token are counted per token (``DULY_RATE_LIMIT_PER_TOKEN``,
  100 a minute and 1,000 an hour); requests without one per client IP
  (``DULY_RATE_LIMIT_ANONYMOUS``), and the public ``/verify`` page per client IP at
  ``DULY_VERIFY_RATE_LIMIT_PER_MINUTE`` whatever the token. Over the limit is 429 with
  ``Retry-After``. Health probes and the provider webhooks (authenticated by signature) are not
  counted. The counters live in the ``limits`` package's storage: in this process by default, in
  Redis when ``DULY_RATE_LIMIT_STORAGE`` names one, so several API processes share them.

The client IP is the ASGI peer. Behind a reverse proxy, run ``duly api --forwarded-allow-ips
PROXY_IP`` so uvicorn replaces it with the ``X-Forwarded-For`` client, and only for requests
that really come from that proxy: the header from any other peer is ignored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindowRateLimiter
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from duly.settings import Settings

log = logging.getLogger("duly.api.limits")

#: Paths never counted: load balancers, orchestrators and Prometheus poll them, and they must
#: answer fast.
UNCOUNTED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: Provider callbacks are authenticated by their signatures and come in bursts from a few IPs.
UNCOUNTED_PREFIXES = ("/webhooks/",)
VERIFY_PREFIX = "/verify/"
IMPORT_PATH = "/people/import"
#: Words that switch a rate limit setting off.
OFF = frozenset({"off", "none", "0", "false", "disabled"})


#: Documented on every route (the middleware can answer them anywhere).
LIMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "The request body is over DULY_MAX_BODY_BYTES (or the import's cap)."},
    429: {
        "description": "Too many requests from this token or address; retry after "
        "`Retry-After` seconds.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}


def parse_rate(value: str, setting: str) -> list[RateLimitItem]:
    """Parse ``"100/minute;1000/hour"`` (``limits`` notation); ``off`` gives no limits.

    Raises:
        ValueError: Naming the setting and the expected notation.
    """
    if value.strip().lower() in OFF:
        return []
    try:
        return parse_many(value)
    except ValueError as exc:
        raise ValueError(
            f"{setting}={value!r} is not a rate limit: write e.g. '100/minute;1000/hour' "
            "(N/second|minute|hour|day, several separated by ';'), or 'off'"
        ) from exc


def _async_storage_uri(uri: str) -> str:
    return uri if uri.startswith("async+") else f"async+{uri}"


class RateLimitedError(Exception):
    """Over a limit; ``retry_after`` is in whole seconds."""

    def __init__(self, what: str, item: RateLimitItem, retry_after: int) -> None:
        """Name what was limited, the limit passed and when to come back."""
        super().__init__(
            f"too many requests {what} (at most {item.amount} per {_per(item)}); "
            f"try again in {retry_after} s"
        )
        self.retry_after = retry_after


def _per(item: RateLimitItem) -> str:
    name = item.GRANULARITY.name
    return name if item.multiples == 1 else f"{item.multiples} {name}s"


@dataclass(frozen=True)
class _Rule:
    what: str
    key: str
    items: Sequence[RateLimitItem]


class RateLimiter:
    """Counts hits per key in the ``limits`` storage named by ``DULY_RATE_LIMIT_STORAGE``.

    In-memory storage is called directly (no I/O). Redis is reached through the ``limits``
    asyncio storage on redis-py; its connections belong to one event loop, so it is rebuilt
    when called from another (test clients start one loop per client).
    """

    def __init__(self, storage_uri: str) -> None:
        """Bind the storage (``memory://``, ``redis://host:6379/0``, ``rediss://…``)."""
        self._uri = storage_uri.strip()
        self._memory: MovingWindowRateLimiter | None = None
        if self._uri.removeprefix("async+").startswith("memory://"):
            self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._aio: tuple[asyncio.AbstractEventLoop, AsyncMovingWindowRateLimiter] | None = None

    def _async_limiter(self) -> AsyncMovingWindowRateLimiter:
        loop = asyncio.get_running_loop()
        if self._aio is None or self._aio[0] is not loop:
            options: dict[str, str] = {"key_prefix": "duly"}
            uri = _async_storage_uri(self._uri)
            if uri.startswith(("async+redis", "async+rediss")):
                options["implementation"] = "redispy"
            storage = storage_from_string(uri, **options)
            self._aio = (loop, AsyncMovingWindowRateLimiter(storage))
        return self._aio[1]

    async def check(self, rule: _Rule) -> None:
        """Count one hit against each of the rule's limits.

        Raises:
            RateLimitedError: When a limit is exceeded (with the seconds until it admits again).
        """
        for item in rule.items:
            if self._memory is not None:
                admitted = self._memory.hit(item, rule.key)
                reset = self._memory.get_window_stats(item, rule.key).reset_time
            else:
                limiter = self._async_limiter()
                admitted = await limiter.hit(item, rule.key)
                reset = 0.0
                if not admitted:
                    reset = (await limiter.get_window_stats(item, rule.key)).reset_time
            if not admitted:
                retry_after = max(1, math.ceil(reset - time.time()))
                raise RateLimitedError(rule.what, item, retry_after)


class _BodyTooLargeError(HTTPException):
    """Raised from ``receive`` once a streamed body passes its cap.

    An ``HTTPException``, so FastAPI's body parsing re-raises it (any other error there becomes
    a 400) and the app's handler answers 413 in the API's error shape.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=_too_large(limit))


def _too_large(limit: int) -> str:
    return (
        f"the request body is larger than {limit:,} bytes; send less (split an import into "
        "parts), or raise DULY_MAX_BODY_BYTES / DULY_MAX_IMPORT_BYTES"
    )


class RequestLimits:
    """ASGI middleware enforcing body caps and rate limits (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        """Wrap ``app`` with the limits from ``settings``."""
        self.app = app
        self.max_body = settings.max_body_bytes
        self.max_import = settings.max_import_bytes
        self.per_token = parse_rate(settings.rate_limit_per_token, "DULY_RATE_LIMIT_PER_TOKEN")
        self.anonymous = parse_rate(settings.rate_limit_anonymous, "DULY_RATE_LIMIT_ANONYMOUS")
        per_minute = settings.verify_rate_limit_per_minute
        self.verify = (
            parse_rate(f"{per_minute}/minute", "DULY_VERIFY_RATE_LIMIT_PER_MINUTE")
            if per_minute > 0
            else []
        )
        self.limiter = RateLimiter(settings.rate_limit_storage)
        self._storage_failing = False

    def body_limit(self, path: str) -> int:
        """The body cap of a path."""
        return self.max_import if path == IMPORT_PATH else self.max_body

    def rule(self, scope: Scope) -> _Rule | None:
        """Which counter a request hits (None: not counted)."""
        path: str = scope["path"]
        if path in UNCOUNTED_PATHS or path.startswith(UNCOUNTED_PREFIXES):
            return None
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        if path.startswith(VERIFY_PREFIX):
            return _Rule("from this address to /verify", f"verify:{ip}", self.verify)
        authorization = Headers(scope=scope).get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            # A digest: the token itself is a secret and never goes to the storage.
            digest = hashlib.sha256(token.strip().encode()).hexdigest()[:32]
            return _Rule("with this token", f"token:{digest}", self.per_token)
        return _Rule("from this address without a token", f"ip:{ip}", self.anonymous)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse over-limit requests; pass the rest on with a counting ``receive``."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.rule(scope)
        if rule is not None and rule.items:
            try:
                await self.limiter.check(rule)
            except RateLimitedError as limited:
                headers = [(b"retry-after", str(limited.retry_after).encode())]
                await _respond(send, 429, str(limited), headers)
                return
            except Exception as exc:  # noqa: BLE001 - the storage is down: serve, and say so
                if not self._storage_failing:
                    log.warning(
                        "rate limit storage unavailable (%s); requests are not rate limited "
                        "until it answers (DULY_RATE_LIMIT_STORAGE)",
                        type(exc).__name__,
                    )
                self._storage_failing = True
            else:
                self._storage_failing = False
        limit = self.body_limit(scope["path"])
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _respond(send, 400, "Content-Length is not a number")
                return
            if length > limit:
                await _respond(send, 413, _too_large(limit), close=True)
                return
        await self._call_counting(scope, receive, send, limit)

    async def _call_counting(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLargeError(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLargeError:
            # Raised outside the app's exception handlers (a streaming read in middleware or a
            # background task): answer here unless a response is already under way.
            if started:
                raise
            await _respond(send, 413, _too_large(limit), close=True)


async def _respond(
    send: Send,
    status_code: int,
    detail: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    close: bool = False,
) -> None:
    """A JSON ``{"detail": …}`` answer, the API's error shape."""
    body = json.dumps({"detail": detail}).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    if close:
        # The unread body is not drained: tell the client the connection will not be reused.
        raw_headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status_code, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
