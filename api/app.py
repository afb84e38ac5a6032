"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from api import errors, web
from api.deps import Clock, wall_clock
from api.limits import LIMIT_RESPONSES, RequestLimits
from api.observability import RequestMetrics
from api.routers import (
    ack,
    apprenticeship,
    assignments,
    audit,
    bulk,
    certifications,
    compliance,
    dashboards,
    health,
    integrations,
    mentorship,
    metrics,
    notifications,
    obligations,
    pages,
    pages_apprenticeships,
    pages_mentorship,
    pages_tracks,
    people,
    projects,
    rules,
    scim,
    signin,
    tokens,
    tracks,
    verify,
    webhooks,
    xapi,
)
from api.token_cache import TokenCache
from duly import __version__
from duly.settings import Settings, get_settings
from duly.temporal import connect
from duly.tracing import instrument_api
from store.db import Database

log = logging.getLogger("duly.api")


class TemporalHolder:
    """Connects to Temporal on first use and reconnects after a failure.

    The API must start (and answer /healthz) while Temporal is still coming up.
    """

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self._client = client
        self._lock = asyncio.Lock()

    async def get(self) -> Client:
        """Return a connected client."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                self._client = await connect(self._settings)
            return self._client


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    temporal_client: Client | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """Build the API.

    Args:
        settings: Configuration; read from the environment when omitted.
        database: An existing database (tests); one is created from settings otherwise.
        temporal_client: An existing Temporal client (tests); connected lazily otherwise.
        clock: "Now" for input bounds and default evidence times (tests on a time-skipping
            server pass its clock); the wall clock otherwise.
    """
    settings = settings or get_settings()
    owns_db = database is None
    db = database or Database.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_db:
            db.dispose()

    app = FastAPI(
        title="Duly",
        version=__version__,
        description="Training & certification compliance. Authenticate with "
        "`Authorization: Bearer <token>` (create one with `duly tokens create --role ROLE`).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = db
    app.state.temporal = TemporalHolder(settings, temporal_client)
    app.state.clock = clock or wall_clock
    app.state.token_cache = TokenCache(settings.token_cache_seconds)
    errors.install(app)
    webhooks.warn_unconfigured(settings)
    # Body caps and rate limits run before routing and auth (a 401 must not read a huge body).
    app.add_middleware(RequestLimits, settings=settings)
    # Outermost (added last): times every answer, the limits' 413s and 429s included.
    app.add_middleware(RequestMetrics)
    instrument_api(app, db.engine, settings)  # DULY_OTEL_ENABLED; a no-op otherwise
    for module in (
        health,
        metrics,
        people,
        bulk,  # before assignments: its catch-all GET /assignments/{id:path} would match
        assignments,
        obligations,
        notifications,
        audit,
        rules,
        ack,
        webhooks,
        xapi,
        certifications,
        apprenticeship,
        tokens,
        tracks,
        projects,
        verify,
        mentorship,
        pages_mentorship,
        scim,
        compliance,
        integrations,
        signin,
        pages,
        pages_tracks,
        pages_apprenticeships,
        dashboards,
    ):
        app.include_router(module.router, responses=LIMIT_RESPONSES)
        if module is bulk:
            # GET /assignments (the list) is also registered ahead of the catch-all.
            app.include_router(obligations.assignments_router, responses=LIMIT_RESPONSES)
    web.install(app)
    # Last: SCIM answers errors under /scim/v2 in its own schema and hands the rest to the
    # handlers installed before it (pages, then the JSON error shape).
    scim.install(app)
    return app
