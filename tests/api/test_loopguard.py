"""The event-loop guard (tests/loopguard.py) itself: it catches what it is meant to catch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.concurrency import run_in_threadpool

from api.deps import SessionDep, TemporalDep
from store.db import Database, committed
from tests.fakes.temporal import FakeTemporal
from tests.loopguard import LoopGuard


class _Holder:
    async def get(self) -> FakeTemporal:
        return FakeTemporal()


@pytest.fixture
def client(sqlite_db: Database) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.database = sqlite_db
    app.state.temporal = _Holder()

    @app.get("/on-loop")
    async def on_loop(session: SessionDep) -> int:
        return int(session.scalar(sa.text("select 1")) or 0)

    @app.get("/in-thread")
    async def in_thread(session: SessionDep, temporal: TemporalDep) -> int:
        value = await committed(session, lambda: session.scalar(sa.text("select 1")))
        await temporal()
        return int(value or 0)

    @app.get("/sync")
    def sync(session: SessionDep) -> int:
        return int(session.scalar(sa.text("select 1")) or 0)

    @app.post("/write-then-await")
    async def write_then_await(session: SessionDep, temporal: TemporalDep) -> None:
        def write() -> None:
            session.execute(sa.text("update people set name = name where 1 = 0"))

        await committed(session, lambda: None)  # the token check's read, committed
        await run_in_threadpool(write)  # off the loop, but not committed before the await
        await temporal()

    with TestClient(app) as test_client:
        yield test_client


def test_database_io_on_the_event_loop_is_caught(client: TestClient, loop_guard: LoopGuard) -> None:
    assert client.get("/on-loop").status_code == 200
    found, loop_guard.violations[:] = list(loop_guard.violations), []
    assert len(found) == 1
    assert "GET /on-loop" in found[0] and "select 1" in found[0]


def test_a_write_held_across_an_await_on_temporal_is_caught(
    client: TestClient, loop_guard: LoopGuard
) -> None:
    assert client.post("/write-then-await").status_code == 200
    found, loop_guard.violations[:] = list(loop_guard.violations), []
    assert len(found) == 1
    assert "POST /write-then-await" in found[0] and "awaits Temporal" in found[0]


def test_worker_threads_and_sync_handlers_pass(client: TestClient, loop_guard: LoopGuard) -> None:
    assert client.get("/in-thread").json() == 1
    assert client.get("/sync").json() == 1
    assert loop_guard.violations == []


def test_the_guard_fails_the_test_naming_route_and_statement() -> None:
    guard = LoopGuard(violations=["GET /x: database I/O on the event loop thread: select 1"])
    with pytest.raises(pytest.fail.Exception, match=r"GET /x.*select 1"):
        guard.check()
