"""Bulk assignments: start a :class:`workflows.bulk.BulkAssignWorkflow` and read its progress.

Register this router *before* the assignments router: that one has a catch-all
``GET /assignments/{assignment_id:path}`` that would otherwise swallow
``GET /assignments/bulk/{bulk_id}``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.deps import (
    ClockDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    ensure_visible,
    require_roles,
    within,
)
from domain.bounds import BoundedDate
from domain.ids import ExternalId
from domain.roles import Role
from services import bulk, people
from store.db import committed
from store.tokens import Principal
from workflows.bulk import BulkAssignRequest, BulkProgress, BulkSelector

router = APIRouter(prefix="/assignments/bulk", tags=["assignments"])

BulkAssigner = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER))]


class BulkAssignCreate(BaseModel):
    """Assign one requirement to everyone a selector matches (active employees only)."""

    model_config = ConfigDict(extra="forbid")

    bulk_id: ExternalId | None = Field(
        default=None, description="Idempotency key of the job; generated when omitted."
    )
    requirement_id: ExternalId
    requirement_title: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Needed only when the active pack does not define the requirement.",
    )
    due_date: BoundedDate | None = Field(
        default=None,
        description="Defaults to today + the pack requirement's due_in_days; when given, within "
        "today - 5 years ... today + 10 years (DULY_DUE_DATE_PAST_YEARS / _FUTURE_YEARS).",
    )
    selector: BulkSelector = Field(
        default_factory=BulkSelector,
        description="Criteria are ANDed. Managers are limited to their own team: their "
        "selector's manager defaults to themself and must be in their team.",
    )


class BulkAccepted(BaseModel):
    """The job was started (or already existed); poll ``status_url``."""

    bulk_id: str
    status_url: str


class BulkStatus(BulkProgress):
    """Progress of a bulk job and its workflow's execution status."""

    status: str = Field(description="RUNNING, COMPLETED, FAILED, … (the workflow's status).")


def _scope_selector(session: Session, principal: Principal, selector: BulkSelector) -> BulkSelector:
    """Limit a manager's selector to their own team (transitively); HR is not limited."""
    if principal.role is not Role.MANAGER:
        return selector
    if principal.person_external_id is None or principal.person_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this token has no person")
    if selector.manager is None:
        return selector.model_copy(update={"manager": principal.person_external_id})
    manager = people.person(session, external_id=selector.manager)
    ensure_visible(session, principal, manager.id)
    return selector


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=BulkAccepted)
async def start_bulk_assignment(
    body: BulkAssignCreate,
    session: SessionDep,
    principal: BulkAssigner,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> BulkAccepted:
    """Start a bulk job; people who already have the obligation are skipped, not re-assigned.

    Idempotent per ``bulk_id``: the same id again answers 202 with the same status URL.
    **422** names ``due_date``, its value and the allowed range when it is out of the window.
    """
    if body.due_date is not None:
        within(settings.due_date_window((await clock()).date()), "due_date", body.due_date)

    def _checked_selector() -> BulkSelector:
        bulk.check_requirement(
            session,
            requirement_id=body.requirement_id,
            title=body.requirement_title,
            due_date_given=body.due_date is not None,
        )
        selector = _scope_selector(session, principal, body.selector)
        bulk.check_selector(session, selector, principal)
        return selector

    # Refused here (422/403), not by a failed job later; in a worker thread, committed.
    selector = await committed(session, _checked_selector)
    request = BulkAssignRequest(
        bulk_id=body.bulk_id or uuid.uuid4().hex,
        requirement_id=body.requirement_id,
        requirement_title=body.requirement_title,
        due_date=body.due_date,
        selector=selector,
        assigned_by=principal.actor,
    )
    await bulk.start_bulk(
        await temporal(),
        task_queue=settings.temporal_task_queue,
        request=request,
        session=session,
        principal=principal,
    )
    return BulkAccepted(bulk_id=request.bulk_id, status_url=f"{router.prefix}/{request.bulk_id}")


@router.get("/{bulk_id}", response_model=BulkStatus)
async def bulk_progress(
    bulk_id: ExternalId, principal: BulkAssigner, temporal: TemporalDep
) -> BulkStatus:
    """Progress of a bulk job (managers see only the jobs they started)."""
    run = await bulk.progress(await temporal(), bulk_id=bulk_id, principal=principal)
    return BulkStatus(**run.progress.model_dump(), status=run.status)
