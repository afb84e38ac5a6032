"""PostgreSQL sessions carry connect, statement and lock timeouts (issue 13, item 2)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from store import audit
from store.db import Database, Timeouts
from store.migrate import upgrade
from tests.conftest import create_postgres_database, drop_postgres_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    url, name = create_postgres_database()
    upgrade(url)
    try:
        yield url
    finally:
        drop_postgres_database(name)


def test_sessions_carry_the_configured_timeouts(pg_url: str) -> None:
    database = Database(pg_url, Timeouts(connect=3, statement=7, lock=2))
    try:
        with database.engine.connect() as conn:
            assert conn.scalar(text("SHOW statement_timeout")) == "7s"
            assert conn.scalar(text("SHOW lock_timeout")) == "2s"
    finally:
        database.dispose()


def test_an_audit_append_gives_up_on_a_held_lock_instead_of_waiting_for_ever(
    pg_url: str,
) -> None:
    # Before: no lock_timeout, so a second writer waited on the audit log's advisory lock for
    # as long as the first transaction lived (and, on the event loop, stopped the API).
    database = Database(pg_url, Timeouts(connect=3, statement=30, lock=1))
    try:
        with database.session() as holder:
            audit.record(holder, actor="a", actor_role="hr_admin", action="x", target="t")
            start = time.monotonic()
            with (
                pytest.raises(OperationalError, match="lock timeout"),
                database.session() as waiter,
            ):
                audit.record(waiter, actor="b", actor_role="hr_admin", action="y", target="t")
            assert time.monotonic() - start < 5
    finally:
        database.dispose()
