"""``GET /metrics``: Prometheus text exposition of this API process."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Request, Response
from sqlalchemy import func, select

from duly.metrics import OpenObligations, exposition
from store.db import Database
from store.models import Obligation

router = APIRouter(tags=["health"])


def open_obligation_counts(database: Database) -> Iterable[tuple[str, str, int]]:
    """``(kind, status, count)`` of every open obligation: one ``GROUP BY`` on the read model."""
    query = (
        select(Obligation.kind, Obligation.status, func.count())
        .where(Obligation.completed_at.is_(None))
        .where(Obligation.status != "cancelled")
        .group_by(Obligation.kind, Obligation.status)
    )
    with database.session() as session:
        return [(kind, status, int(n)) for kind, status, n in session.execute(query)]


def open_obligations(request: Request) -> OpenObligations:
    """This app's open-obligations collector (one per app, so its cache is shared)."""
    collector: OpenObligations | None = getattr(request.app.state, "open_obligations", None)
    if collector is None:
        database: Database = request.app.state.database
        collector = OpenObligations(lambda: open_obligation_counts(database))
        request.app.state.open_obligations = collector
    return collector


@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus metrics of this process (a plain function: the count runs off the loop).

    Unauthenticated like ``/healthz``: the series carry counts and route templates only, no ids
    or personal data. Do not publish it past your network (README "Observability").
    """
    body, content_type = exposition([open_obligations(request)])
    return Response(content=body, media_type=content_type)
