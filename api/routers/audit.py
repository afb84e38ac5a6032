"""The audit log: read-only, for auditors and HR."""

from __future__ import annotations

import json
from datetime import UTC, date
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import Response
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from api.deps import ClockDep, SessionDep, TemporalDep, audit_action, require_roles
from api.pagination import Limit, Offset
from api.schemas import AuditRead
from domain.roles import Role
from services import evidence
from store import audit
from store.db import committed
from store.models import AuditEntry, Notification
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


def _payload(payloads: Any) -> Any:
    """The first payload of a Temporal Payloads as JSON (Duly uses the pydantic JSON converter)."""
    items = list(getattr(payloads, "payloads", []) or [])
    if not items:
        return None
    try:
        return json.loads(items[0].data)
    except ValueError:
        return None


async def _history(temporal: Any, workflow_id: str) -> WorkflowHistory:
    client = await temporal()
    try:
        return cast(WorkflowHistory, await client.get_workflow_handle(workflow_id).fetch_history())
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such workflow") from exc
        raise


@router.get("/workflows/{workflow_id:path}/history")
async def workflow_history(
    workflow_id: str, _principal: Reader, temporal: TemporalDep
) -> dict[str, Any]:
    """The raw Temporal event history of a workflow (JSON that Temporal's Replayer accepts)."""
    history = await _history(temporal, workflow_id)
    return cast(dict[str, Any], json.loads(history.to_json()))


@router.get("/workflows/{workflow_id:path}/timeline")
async def workflow_timeline(
    workflow_id: str, session: SessionDep, _principal: Reader, temporal: TemporalDep
) -> list[dict[str, Any]]:
    """A readable account of one workflow, in order.

    Assignment, each reminder and message (recipient, channel, provider id, delivery),
    acknowledgements, extensions, exemptions, every status decision (status, rule, pack hash)
    and completion.
    """
    history = await _history(temporal, workflow_id)
    scheduled: dict[int, str] = {}
    timeline: list[dict[str, Any]] = []
    for event in history.events:
        at = event.event_time.ToDatetime().replace(tzinfo=UTC).isoformat()
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            attrs = event.workflow_execution_started_event_attributes
            timeline.append({"at": at, "event": "assigned", "input": _payload(attrs.input)})
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs_s = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attrs_s.activity_type.name
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs_c = event.activity_task_completed_event_attributes
            name = scheduled.get(attrs_c.scheduled_event_id, "")
            result = _payload(attrs_c.result)
            if name == "decide_status" and isinstance(result, dict):
                timeline.append(
                    {
                        "at": at,
                        "event": "decision",
                        "status": result.get("status"),
                        "rule": result.get("rule"),
                        "pack_hash": result.get("pack_hash"),
                        "severity": result.get("severity"),
                    }
                )
            elif name == "send_reminder" and isinstance(result, dict):
                timeline.append(
                    {"at": at, "event": "reminder", "deliveries": result.get("deliveries", [])}
                )
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs_g = event.workflow_execution_signaled_event_attributes
            timeline.append(
                {"at": at, "event": attrs_g.signal_name, "input": _payload(attrs_g.input)}
            )
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            attrs_u = event.workflow_execution_update_accepted_event_attributes
            request = attrs_u.accepted_request
            timeline.append(
                {
                    "at": at,
                    "event": request.input.name,
                    "input": _payload(request.input.args),
                }
            )
        elif kind in _CLOSED:
            timeline.append({"at": at, "event": _CLOSED[kind]})
    rows = await committed(
        session,
        lambda: list(
            session.scalars(
                select(Notification)
                .where(Notification.workflow_id == workflow_id)
                .order_by(Notification.id)
            )
        ),
    )
    for row in rows:
        timeline.append(
            {
                "at": row.fired_at.isoformat(),
                "event": "message",
                "stage": row.stage,
                "recipient": row.recipient_role,
                "channel": row.channel,
                "provider": row.provider,
                "provider_message_id": row.provider_message_id,
                "status": row.status,
                "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
                "acknowledged_at": row.acknowledged_at.isoformat() if row.acknowledged_at else None,
            }
        )
    return sorted(timeline, key=lambda item: str(item["at"]))


_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: "closed: completed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "closed: terminated",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "closed: continued as new",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: "closed: failed",
}
