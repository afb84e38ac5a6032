"""Acknowledging a reminder: signal its workflow, mark its ledger row, audit, once.

The ack page (``api/routers/ack.py``) and the channel webhooks (``api/routers/webhooks.py``)
call this after verifying the ack token (:mod:`notifications.ack` owns the token itself).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.contracts.obligation import AcknowledgeSignal
from store import audit
from store.db import committed
from store.models import Notification, Obligation, Person
from store.obligations import acknowledgement_recorded
from workflows.assignment import AssignmentWorkflow

#: Ledger recipient roles mapped to the audit log's actor roles.
ACTOR_ROLES = {
    "learner": "learner",
    "manager": "manager",
    "managers_manager": "manager",
    "hr": "hr_admin",
}


class AckOutcome(StrEnum):
    """What :func:`acknowledge_notification` did."""

    #: Signalled the workflow and marked the ledger row.
    ACKNOWLEDGED = "acknowledged"
    #: The row was already acknowledged; nothing was done.
    ALREADY = "already"
    #: The workflow has closed; the row was marked anyway.
    CLOSED = "closed"


class AcknowledgeUnavailable(Exception):
    """Temporal could not be reached or refused the signal; nothing was recorded."""


@dataclass(frozen=True)
class AckItem:
    """What a page shows about the acknowledged reminder (no personal data)."""

    title: str
    stage: str
    due_date: date | None
    acknowledged_at: datetime | None


def actor_for(session: Session, row: Notification) -> tuple[str, str]:
    """The audit ``(actor, actor_role)`` of whoever received ledger row ``row``."""
    role = ACTOR_ROLES.get(row.recipient_role or "learner", "recipient")
    person = session.get(Person, row.person_id) if row.person_id is not None else None
    if person is not None:
        return f"person:{person.external_id}", role
    return f"recipient:{row.recipient_role or 'unknown'}", role


def describe(session: Session, row: Notification) -> AckItem:
    """Title, stage and due date of the reminder behind ``row``."""
    obligation = session.scalar(select(Obligation).where(Obligation.workflow_id == row.workflow_id))
    return AckItem(
        title=obligation.requirement_title if obligation is not None else row.subject,
        stage=row.stage.replace("_", " "),
        due_date=obligation.due_date if obligation is not None else None,
        acknowledged_at=row.acknowledged_at,
    )


async def acknowledge_notification(
    session: Session,
    *,
    temporal: Callable[[], Awaitable[Client]],
    row: Notification,
    actor: str,
    actor_role: str,
    channel: str,
) -> AckOutcome:
    """Acknowledge ledger row ``row``: signal its workflow, mark the row, audit — once.

    A row that is already acknowledged is left alone (no second signal). A workflow that has
    closed (Temporal answers NOT_FOUND) still gets its row marked.

    Args:
        session: The request's session (the acknowledgement is committed here).
        temporal: Connects (lazily) to Temporal.
        row: The ledger row being acknowledged.
        actor: Who acknowledged, for the workflow and the audit log (``person:<external id>``).
        actor_role: The audit log's role of the actor.
        channel: How (``email-link``, ``sms``, ``slack``...).

    Returns:
        What was done.

    Raises:
        AcknowledgeUnavailable: Temporal is unreachable or failed; nothing was recorded.
    """
    if row.acknowledged_at is not None:
        return AckOutcome.ALREADY
    now = datetime.now(UTC)
    signal = AcknowledgeSignal(acknowledged_at=now, actor=actor, channel=channel)
    closed = False
    try:
        client = await temporal()
    except Exception as exc:  # the API's lazy client answers 503 when Temporal is down
        raise AcknowledgeUnavailable("Temporal is unreachable") from exc
    try:
        # Another row (or the API) already acknowledged this obligation: mark this row only;
        # a repeated signal would only grow the workflow's history.
        recorded = await committed(
            session, lambda: acknowledgement_recorded(session, row.workflow_id)
        )
        if not recorded:
            handle = client.get_workflow_handle(row.workflow_id)
            await handle.signal(AssignmentWorkflow.acknowledge, signal)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise AcknowledgeUnavailable(f"signal failed ({exc.status.name})") from exc
        closed = True
    except Exception as exc:  # any other failure: ask to retry, never a 500
        raise AcknowledgeUnavailable(f"signal failed ({type(exc).__name__})") from exc

    def _mark() -> bool:
        result = cast(
            CursorResult[Any],
            session.execute(
                update(Notification)
                .where(Notification.id == row.id, Notification.acknowledged_at.is_(None))
                .values(acknowledged_at=now)
            ),
        )
        session.refresh(row)
        if result.rowcount == 0:  # a concurrent request got there first
            return False
        audit.record(
            session,
            actor=actor,
            actor_role=actor_role,
            action="notification.acknowledge",
            target=row.workflow_id,
            after={
                "notification_id": row.id,
                "stage": row.stage,
                "channel": channel,
                "acknowledged_at": now.isoformat(),
                "workflow_closed": closed,
            },
        )
        return True

    # After the signal, in its own short transaction in a worker thread: neither the audit
    # log's advisory lock nor a blocking call is held across an await or on the event loop.
    if not await committed(session, _mark):
        return AckOutcome.ALREADY
    return AckOutcome.CLOSED if closed else AckOutcome.ACKNOWLEDGED
