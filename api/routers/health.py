"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import Engine, text

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


class Readiness(BaseModel):
    """What ``/readyz`` found (the same body with 200 and 503)."""

    status: str = Field(description="ready, or not ready")
    database: str = Field(description="ok, or unreachable: <why>")
    temporal: str = Field(description="ok, or unreachable: <why>")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: names what is unreachable"}},
)
async def readyz(request: Request, response: Response) -> dict[str, str]:
    """The database and Temporal are reachable (503 naming what is not).

    Both checks run at once, each bounded (the database's by ``DULY_DB_CONNECT_TIMEOUT_SECONDS``),
    and the database check runs in a worker thread: the probe never blocks the event loop.
    """
    database = request.app.state.database
    database_check, temporal_check = await asyncio.gather(
        _database(database.engine, database.timeouts.connect),
        _temporal(request.app.state.temporal),
    )
    checks = {"database": database_check, "temporal": temporal_check}
    ok = all(v == "ok" for v in checks.values())
    response.status_code = status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "ready" if ok else "not ready", **checks}


def _select_one(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("select 1"))


async def _database(engine: Engine, timeout: float) -> str:
    try:
        # The thread may outlive the timeout (the driver's own connect_timeout ends it).
        await asyncio.wait_for(asyncio.to_thread(_select_one, engine), timeout=timeout)
    except TimeoutError:
        return f"unreachable: no answer within {timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - report, do not crash the probe
        return f"unreachable: {type(exc).__name__}"
    return "ok"


async def _temporal(holder: Any) -> str:
    try:
        client = await asyncio.wait_for(holder.get(), timeout=5)
        await asyncio.wait_for(client.service_client.check_health(), timeout=5)
    except Exception as exc:  # noqa: BLE001
        return f"unreachable: {type(exc).__name__}"
    return "ok"
