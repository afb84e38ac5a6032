"""The audit log: read-only, for auditors and HR."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from api.deps import SessionDep, TemporalDep, require_roles
from api.pagination import Limit, Offset
from api.schemas import AuditRead
from domain.roles import Role
from services import timeline
from store import audit
from store.models import AuditEntry
from store.tokens import Principal

router = APIRouter(prefix="/audit", tags=["audit"])

Reader = Annotated[Principal, Depends(require_roles(Role.AUDITOR, Role.HR_ADMIN))]


@router.get("", response_model=list[AuditRead])
def list_audit(
    session: SessionDep,
    _principal: Reader,
    target: Annotated[str | None, Query(description="e.g. a workflow id")] = None,
    action: Annotated[str | None, Query(description="e.g. assignment.create")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[AuditEntry]:
    """Audit entries, oldest first."""
    stmt = select(AuditEntry)
    if target:
        stmt = stmt.where(AuditEntry.target == target)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    return list(session.scalars(stmt.order_by(AuditEntry.id).limit(limit).offset(offset)))


@router.get("/verify")
def verify_audit(session: SessionDep, _principal: Reader) -> dict[str, object]:
    """Recompute the hash chain; ``intact`` is false and ``broken`` lists ids if edited."""
    broken = audit.verify_chain(session)
    return {"intact": not broken, "broken": broken}


@router.get("/workflows/{workflow_id:path}/history")
async def workflow_history(
    workflow_id: str, _principal: Reader, temporal: TemporalDep
) -> dict[str, Any]:
    """The raw Temporal event history of a workflow (JSON that Temporal's Replayer accepts)."""
    return await timeline.history_json(await temporal(), workflow_id)


@router.get("/workflows/{workflow_id:path}/timeline")
async def workflow_timeline(
    workflow_id: str, session: SessionDep, _principal: Reader, temporal: TemporalDep
) -> list[dict[str, Any]]:
    """A readable account of one workflow, in order.

    Assignment, each reminder and message (recipient, channel, provider id, delivery),
    acknowledgements, extensions, exemptions, every status decision (status, rule, pack hash)
    and completion.
    """
    return await timeline.timeline(session, await temporal(), workflow_id)
