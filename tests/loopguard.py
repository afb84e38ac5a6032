"""A guard that fails any test whose route does database I/O on the event loop (issue 13 item 2).

A blocking database call on the event loop stops every other request in the process (and a
lock held across an ``await`` lets one request hang the rest). Route handlers therefore run
their database sections in a worker thread (``store.db.committed``) or are plain ``def``
handlers (FastAPI's threadpool). :class:`LoopGuard` checks it while the tests call the routes:

- a SQLAlchemy ``before_cursor_execute`` listener on every engine records a violation when a
  statement runs on a thread that has a running event loop while a route is being handled;
- a request that awaits Temporal (``LazyTemporal.__call__``) while its transaction has written
  (or taken a lock) is recorded too: that transaction would be held across the await.

``tests/api/conftest.py`` installs it for every API test (so the role matrix, which calls every
route, and the schemathesis run cover each new route) and fails the test on any violation.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from api.deps import LazyTemporal


@dataclass
class _Request:
    """What the guard knows of the request being handled (shared with its worker threads)."""

    route: str
    #: Open transactions that wrote or locked, by connection id: the first such statement.
    writes: dict[int, str] = field(default_factory=dict)


_current: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "loopguard_request", default=None
)
_WRITES = ("insert", "update", "delete", "select pg_advisory", "select pg_try_advisory")


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _short(statement: str) -> str:
    text = " ".join(statement.split())
    return text if len(text) <= 160 else text[:157] + "..."


@dataclass
class LoopGuard:
    """Records routes that use the database on the event loop; see the module docstring."""

    violations: list[str] = field(default_factory=list)

    def _before_cursor_execute(
        self,
        conn: Connection,
        _cursor: Any,
        statement: str,
        _parameters: Any,
        _context: Any,
        _executemany: bool,
    ) -> None:
        request = _current.get()
        if request is None:
            return  # the test itself (seeding, assertions), not a route
        if _on_event_loop():
            self.violations.append(
                f"{request.route}: database I/O on the event loop thread: {_short(statement)} "
                "(run it in a worker thread with store.db.committed, or make the handler a def)"
            )
        if statement.lstrip().lower().startswith(_WRITES):
            request.writes.setdefault(id(conn), _short(statement))

    def _end(self, conn: Connection) -> None:
        request = _current.get()
        if request is not None:
            request.writes.pop(id(conn), None)

    def _awaiting_temporal(self) -> None:
        request = _current.get()
        if request is not None and request.writes:
            first = next(iter(request.writes.values()))
            self.violations.append(
                f"{request.route}: awaits Temporal inside a transaction that wrote ({first}); "
                "commit it first (store.db.committed) so no lock is held across the await"
            )

    @contextmanager
    def installed(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopGuard]:
        """Listen on every engine and mark every route's handling, while the block runs."""
        listeners = [
            ("before_cursor_execute", self._before_cursor_execute),
            ("commit", self._end),
            ("rollback", self._end),
        ]
        for name, listener in listeners:
            event.listen(Engine, name, listener)

        original_handle = APIRoute.handle

        async def handle(route: APIRoute, scope: Any, receive: Any, send: Any) -> None:
            methods = ",".join(sorted(route.methods or ()))
            token = _current.set(_Request(f"{scope.get('method', methods)} {route.path}"))
            try:
                await original_handle(route, scope, receive, send)
            finally:
                _current.reset(token)

        original_temporal = LazyTemporal.__call__

        async def temporal(lazy: LazyTemporal) -> Any:
            self._awaiting_temporal()
            return await original_temporal(lazy)

        monkeypatch.setattr(APIRoute, "handle", handle)
        monkeypatch.setattr(LazyTemporal, "__call__", temporal)
        try:
            yield self
        finally:
            for name, listener in listeners:
                event.remove(Engine, name, listener)

    def check(self) -> None:
        """Fail the test, naming each route and statement, when anything was recorded."""
        if self.violations:
            unique = list(dict.fromkeys(self.violations))
            pytest.fail(
                f"{len(unique)} event-loop violation(s) (issue 13 item 2):\n  "
                + "\n  ".join(unique),
                pytrace=False,
            )
