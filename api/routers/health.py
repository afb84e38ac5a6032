"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import text

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
    """The database and Temporal are reachable (503 naming what is not)."""
    checks: dict[str, str] = {}
    try:
        with request.app.state.database.engine.connect() as conn:
            conn.execute(text("select 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - report, do not crash the probe
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        client = await asyncio.wait_for(request.app.state.temporal.get(), timeout=5)
        await asyncio.wait_for(client.service_client.check_health(), timeout=5)
        checks["temporal"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["temporal"] = f"unreachable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    response.status_code = status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "ready" if ok else "not ready", **checks}
