"""The audit log: read-only, for auditors and HR."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from api.deps import SessionDep, require_roles
from api.schemas import AuditRead
from duly.domain import Role
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
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
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
