"""Serve the API under uvicorn with a slow fake Temporal, for tests/api/test_event_loop.py.

Its own process: the test's HTTP client then does not share the server's GIL, so a ``/healthz``
that stalls is the server's event loop stalling. Usage::

    python -m tests.api.loop_server DATABASE_URL PORT CONNECT_TIMEOUT
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from api.app import create_app
from duly.settings import Settings
from store.db import Database, Timeouts
from tests.fakes.temporal import FakeHandle, FakeTemporal, HealthyService

#: Seconds the fake Temporal takes per signal (a real round trip is a few milliseconds).
SIGNAL_SECONDS = 0.005


class SlowHandle(FakeHandle):
    """A handle whose signals take :data:`SIGNAL_SECONDS` on the server's loop."""

    async def signal(self, signal: Any, arg: Any = None, **kwargs: Any) -> None:
        await asyncio.sleep(SIGNAL_SECONDS)
        await super().signal(signal, arg, **kwargs)


@dataclass
class SlowTemporal(FakeTemporal):
    """A fake Temporal that answers signals after a short await, and is healthy."""

    service_client: Any = field(default_factory=HealthyService)

    def get_workflow_handle(self, workflow_id: str, **_: Any) -> FakeHandle:
        return SlowHandle(workflow_id, self)


def main() -> None:
    """Serve until terminated."""
    url, port, connect = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    database = Database(url, Timeouts(connect=connect, statement=30, lock=10))
    settings = Settings(env="test", rate_limit_per_token="off", rate_limit_anonymous="off")
    app = create_app(settings, database=database, temporal_client=SlowTemporal())  # type: ignore[arg-type]
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
