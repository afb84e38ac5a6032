"""The audit log: read-only, for auditors and HR."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from sqlalchemy import select

from api.deps import ClockDep, SessionDep, TemporalDep, audit_action, require_roles
from api.pagination import Limit, Offset
from api.schemas import AuditRead
from domain.roles import Role
from services import evidence, timeline
from store import audit
from store.db import committed
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


@router.get(
    "/evidence",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "the evidence ZIP"}},
)
async def evidence_pack(
    session: SessionDep,
    _principal: Reader,
    temporal: TemporalDep,
    clock: ClockDep,
    since: Annotated[date, Query(description="first day (UTC), included")],
    until: Annotated[date, Query(description="last day (UTC), included")],
    person: Annotated[str | None, Query(description="a person's external id")] = None,
    team: Annotated[str | None, Query(description="a manager's external id: their reports")] = None,
    requirement: Annotated[str | None, Query(description="a requirement id")] = None,
) -> Response:
    """An evidence pack (ZIP) for a person, a team or a requirement and a date range.

    Obligations, decisions, notifications and receipts, acknowledgements, the audit-log slice
    with the chain verified, raw workflow histories, and a manifest of SHA-256 sums
    (``SHA256SUMS`` checks with ``sha256sum -c``).

    Without Temporal the pack still ships; ``histories/_missing.json`` says why.
    """

    def read() -> evidence.Evidence:
        gathered = evidence.gather(
            session, since=since, until=until, person=person, team=team, requirement=requirement
        )
        # Who took which evidence away is itself evidence (after the read: not in this pack).
        audit_action(
            session,
            _principal,
            "evidence.export",
            "evidence",
            {**gathered.selection, "since": since.isoformat(), "until": until.isoformat()},
        )
        return gathered

    gathered = await committed(session, read)
    try:
        fetch: evidence.HistoryFetcher | None = evidence.history_fetcher(await temporal())
    except HTTPException:
        fetch = None
    data = await evidence.evidence_pack(gathered, fetch=fetch, generated_at=await clock())
    name = evidence.file_name(gathered.selection, since, until)
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


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
