"""Bulk assignments: start a :class:`workflows.bulk.BulkAssignWorkflow` and read its progress.

Register this router *before* the assignments router: that one has a catch-all
``GET /assignments/{assignment_id:path}`` that would otherwise swallow
``GET /assignments/bulk/{bulk_id}``.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.packs import active_pack
from api.deps import (
    ClockDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    ensure_visible,
    require_roles,
    within,
)
from duly.domain import BoundedDate, ExternalId, ObligationKind, Role
from store import audit
from store.models import Person
from store.tokens import Principal
from workflows.bulk import (
    BulkAssignInput,
    BulkAssignRequest,
    BulkAssignWorkflow,
    BulkProgress,
    BulkSelector,
    bulk_workflow_id,
)

router = APIRouter(prefix="/assignments/bulk", tags=["assignments"])

QUERY_TIMEOUT = 5.0

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


def _scope_selector(
    session: SessionDep, principal: Principal, selector: BulkSelector
) -> BulkSelector:
    """Limit a manager's selector to their own team (transitively); HR is not limited."""
    if principal.role is not Role.MANAGER:
        return selector
    if principal.person_external_id is None or principal.person_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this token has no person")
    if selector.manager is None:
        return selector.model_copy(update={"manager": principal.person_external_id})
    manager = session.scalar(select(Person).where(Person.external_id == selector.manager))
    if manager is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
    ensure_visible(session, principal, manager.id)
    return selector


def _check_requirement(session: SessionDep, body: BulkAssignCreate) -> None:
    """422 now, rather than a failed job later, when the title or due date is unknown."""
    pack = active_pack(session)
    requirement = pack.requirement(body.requirement_id) if pack is not None else None
    if requirement is None and body.requirement_title is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"requirement {body.requirement_id!r} is not in the active pack; "
            "give requirement_title",
        )
    if requirement is not None and requirement.kind is ObligationKind.CERTIFICATION:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"requirement {body.requirement_id!r} is a certification: it follows its"
            " expiry date, not a due date; register certificates with POST /certifications",
        )
    if body.due_date is None and (requirement is None or requirement.due_in_days is None):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"requirement {body.requirement_id!r} has no due_in_days; give due_date",
        )


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
    _check_requirement(session, body)
    request = BulkAssignRequest(
        bulk_id=body.bulk_id or uuid.uuid4().hex,
        requirement_id=body.requirement_id,
        requirement_title=body.requirement_title,
        due_date=body.due_date,
        selector=_scope_selector(session, principal, body.selector),
        assigned_by=principal.actor,
    )
    client = await temporal()
    try:
        await client.start_workflow(
            BulkAssignWorkflow.run,
            BulkAssignInput(request=request),
            id=bulk_workflow_id(request.bulk_id),
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            memo={"assigned_by": principal.actor},
        )
    except WorkflowAlreadyStartedError:
        pass
    else:
        audit.record(
            session,
            actor=principal.actor,
            actor_role=principal.role.value,
            action="assignment.bulk",
            target=bulk_workflow_id(request.bulk_id),
            after=request.model_dump(mode="json"),
        )
    return BulkAccepted(bulk_id=request.bulk_id, status_url=f"{router.prefix}/{request.bulk_id}")


@router.get("/{bulk_id}", response_model=BulkStatus)
async def bulk_progress(
    bulk_id: ExternalId, principal: BulkAssigner, temporal: TemporalDep
) -> BulkStatus:
    """Progress of a bulk job (managers see only the jobs they started)."""
    # Untyped handle: mypy cannot bind get_workflow_handle_for through the import cycle.
    handle = (await temporal()).get_workflow_handle(
        bulk_workflow_id(bulk_id), result_type=BulkProgress
    )
    try:
        description = await handle.describe()
        if principal.role is Role.MANAGER and (
            await description.memo_value("assigned_by", None) != principal.actor
        ):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
        run_status = description.status or WorkflowExecutionStatus.RUNNING
        if run_status is WorkflowExecutionStatus.COMPLETED:
            progress = await handle.result()
        else:
            progress = await handle.query(BulkAssignWorkflow.progress, rpc_timeout=_timeout())
    except WorkflowQueryFailedError as error:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"progress unavailable ({error})"
        ) from error
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found") from error
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"progress unavailable ({error.message})"
        ) from error
    return BulkStatus(**progress.model_dump(), status=run_status.name)


def _timeout() -> timedelta:
    return timedelta(seconds=QUERY_TIMEOUT)
