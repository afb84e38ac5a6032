"""Request metrics: a latency histogram per route template, method and status code.

Plain ASGI middleware, outermost in the app, so it also times the 413s and 429s that
:class:`api.limits.RequestLimits` answers before routing. The route label is the matched
route's *template* (``/assignments/{assignment_id}``), never the concrete path, so ids never
become label values; a request no route matched is labelled ``unmatched``.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from duly.metrics import HTTP_REQUEST_SECONDS

UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The template of the route that served ``scope`` (``unmatched`` when none did)."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else UNMATCHED


class RequestMetrics:
    """ASGI middleware observing ``duly_http_request_duration_seconds``."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request from its arrival to its last response byte (or its failure)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception escaping every handler ends as a 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            HTTP_REQUEST_SECONDS.labels(
                route=route_template(scope), method=scope["method"], status=str(status)
            ).observe(time.perf_counter() - started)
