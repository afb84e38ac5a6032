"""An obligation's story for auditors: its raw Temporal history and a readable timeline.

The audit API (``/audit/workflows/{id}/…``) and the auditor's page both read it here.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from services.errors import NotFound
from store.db import committed
from store.models import Notification


def _payload(payloads: Any) -> Any:
    """The first payload of a Temporal Payloads as JSON (Duly uses the pydantic JSON converter)."""
    items = list(getattr(payloads, "payloads", []) or [])
    if not items:
        return None
    try:
        return json.loads(items[0].data)
    except ValueError:
        return None


async def history(client: Client, workflow_id: str) -> WorkflowHistory:
    """The workflow's Temporal event history.

    Raises:
        NotFound: Temporal does not know the workflow.
    """
    try:
        return await client.get_workflow_handle(workflow_id).fetch_history()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound("no such workflow") from exc
        raise


async def history_json(client: Client, workflow_id: str) -> dict[str, Any]:
    """The raw history as JSON (what Temporal's Replayer accepts)."""
    return cast(dict[str, Any], json.loads((await history(client, workflow_id)).to_json()))


async def timeline(session: Session, client: Client, workflow_id: str) -> list[dict[str, Any]]:
    """A readable account of one workflow, in order.

    Assignment, each reminder and message (recipient, channel, provider id, delivery),
    acknowledgements, extensions, exemptions, every status decision (status, rule, pack hash)
    and completion.
    """
    events = await history(client, workflow_id)
    scheduled: dict[int, str] = {}
    timeline: list[dict[str, Any]] = []
    for event in events.events:
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
