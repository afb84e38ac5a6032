"""The pool pings only connections that sat idle (issue 19, item 2, round 2).

A connection returned a moment ago is handed out without a round trip; one idle for
``PING_IDLE_SECONDS`` or more is pinged first, and replaced if the server closed it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

import store.db
from store.db import PING_IDLE_SECONDS, make_engine
from tests.conftest import create_postgres_database, drop_postgres_database


class Clock:
    """A settable stand-in for ``time.monotonic`` as ``store.db`` sees it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Engine, Clock, list[int]]]:
    clock = Clock()
    monkeypatch.setattr(store.db, "time", clock)
    url, name = create_postgres_database()
    engine = make_engine(url)
    pings: list[int] = []
    real_ping = engine.dialect.do_ping

    def counting_ping(dbapi_conn: Any) -> bool:
        pings.append(1)
        return real_ping(dbapi_conn)

    monkeypatch.setattr(engine.dialect, "do_ping", counting_ping)
    try:
        yield engine, clock, pings
    finally:
        engine.dispose()
        drop_postgres_database(name)


def backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        pid = conn.scalar(text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


def test_a_connection_used_a_moment_ago_is_not_pinged(
    engine: tuple[Engine, Clock, list[int]],
) -> None:
    eng, clock, pings = engine
    first = backend_pid(eng)  # a new connection: just opened, nothing to ping
    clock.now += PING_IDLE_SECONDS - 0.1
    assert backend_pid(eng) == first
    assert pings == []


def test_an_idle_connection_is_pinged_and_replaced_if_the_server_closed_it(
    engine: tuple[Engine, Clock, list[int]],
) -> None:
    eng, clock, pings = engine
    first = backend_pid(eng)
    clock.now += PING_IDLE_SECONDS
    assert backend_pid(eng) == first  # alive: pinged, then reused
    assert pings == [1]

    admin = make_engine(eng.url.render_as_string(hide_password=False))
    try:
        with admin.connect() as conn:
            assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            conn.commit()
    finally:
        admin.dispose()
    clock.now += PING_IDLE_SECONDS
    # The ping finds the connection dead: the pool drops it and opens a new one, so the caller
    # never sees the error.
    assert backend_pid(eng) != first
    assert pings == [1, 1]
