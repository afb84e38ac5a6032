"""Obligations: the read model, scoped to what the caller may see."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from api.deps import CurrentPrincipal, SessionDep, visible_person_ids
from api.pagination import Limit, Offset
from api.schemas import ObligationRead
from services import obligations
from store.db import read_only
from store.tokens import Principal

router = APIRouter(prefix="/obligations", tags=["obligations"])
#: ``GET /assignments``: the same read model, training assignments by default.
assignments_router = APIRouter(prefix="/assignments", tags=["assignments"])


def _list(
    session: Session,
    principal: Principal,
    *,
    status: str | None,
    person: str | None,
    requirement: str | None,
    department: str | None,
    location: str | None,
    kind: str | None,
    limit: int,
    offset: int,
) -> list[ObligationRead]:
    # Core rows of just the answer's columns: no ORM objects to build for a page of 100.
    rows = obligations.list_obligation_rows(
        session,
        scope=visible_person_ids(session, principal),
        status=status,
        person=person,
        requirement=requirement,
        department=department,
        location=location,
        kind=kind,
        limit=limit,
        offset=offset,
    )
    return [ObligationRead.model_validate(row) for row in rows]


# The list routes are ``async def`` doing their database work in one worker-thread trip
# (``read_only``: no BEGIN/COMMIT round trips): a ``def`` route costs a threadpool hop for the
# handler and another for FastAPI's response validation.
@router.get("", response_model=list[ObligationRead])
async def list_obligations(
    session: SessionDep,
    principal: CurrentPrincipal,
    status: Annotated[str | None, Query(description="assigned, due_soon, overdue, …")] = None,
    person: Annotated[str | None, Query(description="A person's external id")] = None,
    requirement: Annotated[str | None, Query(description="A requirement id")] = None,
    department: Annotated[str | None, Query(description="The person's department")] = None,
    location: Annotated[str | None, Query(description="The person's location")] = None,
    kind: Annotated[str | None, Query(description="training, certification, …")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ObligationRead]:
    """List obligations: a learner sees their own, a manager their reports', HR and auditors all."""
    return await read_only(
        session,
        lambda: _list(
            session,
            principal,
            status=status,
            person=person,
            requirement=requirement,
            department=department,
            location=location,
            kind=kind,
            limit=limit,
            offset=offset,
        ),
    )


@assignments_router.get("", response_model=list[ObligationRead])
async def list_assignments(
    session: SessionDep,
    principal: CurrentPrincipal,
    status: Annotated[str | None, Query(description="assigned, due_soon, overdue, …")] = None,
    person: Annotated[str | None, Query(description="A person's external id")] = None,
    requirement: Annotated[str | None, Query(description="A requirement id")] = None,
    department: Annotated[str | None, Query(description="The person's department")] = None,
    location: Annotated[str | None, Query(description="The person's location")] = None,
    kind: Annotated[str, Query(description="training (default), certification, …")] = "training",
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ObligationRead]:
    """List training assignments from the read model, e.g. ``?status=overdue&department=ICU``."""
    return await list_obligations(
        session,
        principal,
        status=status,
        person=person,
        requirement=requirement,
        department=department,
        location=location,
        kind=kind,
        limit=limit,
        offset=offset,
    )
