"""What a manager does from the team page besides extending: remind now, ask for an exemption.

* :func:`remind_now` sends the learner a reminder at once, **exactly once per obligation per
  day** (UTC): the ledger's unique idempotency key ``manual|<workflow id>|<day>`` is claimed
  before anything is sent, so a double click, a retry or a second manager all get
  :class:`AlreadyRemindedToday`. It goes through the notification machinery (the configured
  email provider, else the outbox) and is audited.
* :func:`request_exemption` records a manager's request for HR (exempting stays HR's:
  ``POST /assignments/{id}/exempt``); HR's organisation page lists the open requests from the
  audit log, where the request is kept with its reason.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from duly.settings import Settings
from notifications.channels import Channel, ChannelMessage, SendError
from notifications.outbox import OutboxSender
from notifications.providers import build_channels
from services.errors import Conflict, Invalid, NotFound
from store import audit
from store.models import AuditEntry, Notification, Obligation
from store.tokens import Principal

log = logging.getLogger("duly.reminders")

#: Statuses that no longer need anyone reminded.
CLOSED = frozenset({"completed", "cancelled", "exempt", "revoked", "closed"})
EXEMPTION_REQUEST = "obligation.exemption_request"


class AlreadyRemindedToday(Conflict):
    """This obligation's learner was already reminded by hand today."""


def _obligation(session: Session, workflow_id: str) -> Obligation:
    row = session.scalar(select(Obligation).where(Obligation.workflow_id == workflow_id))
    if row is None:
        raise NotFound(f"no obligation {workflow_id!r}")
    return row


def remind_key(workflow_id: str, day: str) -> str:
    """The ledger key that makes a manual reminder once per obligation per day."""
    return f"manual|{workflow_id}|{day}"


def remind_now(
    session: Session,
    *,
    settings: Settings,
    workflow_id: str,
    principal: Principal,
    now: datetime,
    channel: Channel | None = None,
) -> Notification:
    """Remind the obligation's learner now, once per day.

    Raises:
        NotFound: No such obligation.
        Conflict: It is closed.
        AlreadyRemindedToday: Someone already did today (UTC).
    """
    row = _obligation(session, workflow_id)
    if row.status in CLOSED:
        raise Conflict(f"the obligation is {row.status}; nobody needs reminding")
    person = row.person
    due = row.due_date or row.expiry_date
    when = f" by {due.isoformat()}" if due else ""
    subject = f"Reminder: {row.requirement_title}"
    text = (
        f"Hello {person.name},\n\nA reminder from your manager: {row.requirement_title} is "
        f"{row.status.replace('_', ' ')}{when}. Please complete it as soon as you can.\n\n"
        f"{settings.api_base_url.rstrip('/')}/ui/me"
    )
    ledger = Notification(
        idempotency_key=remind_key(workflow_id, now.date().isoformat()),
        workflow_id=workflow_id,
        person_id=person.id,
        recipient_address=person.email,
        channel="email",
        provider="outbox",
        kind=row.kind,
        stage="manual",
        pack_hash=row.pack_hash,
        subject=subject,
        body=text,
        status="pending",
        recipient_role="learner",
        fired_at=now,
    )
    try:
        with session.begin_nested():
            session.add(ledger)
            session.flush()
    except IntegrityError:
        raise AlreadyRemindedToday(
            f"{person.external_id} was already reminded about this today; one reminder a day"
        ) from None
    sender: Channel = channel or build_channels(settings).get("email") or OutboxSender()
    ledger.provider = sender.provider
    if not person.email and channel is None:
        sender = OutboxSender()
        ledger.provider = sender.provider
    try:
        result = sender.send(
            ChannelMessage(
                idempotency_key=ledger.idempotency_key,
                to=person.email or "",
                subject=subject,
                text=text,
                metadata={
                    "workflow_id": workflow_id,
                    "stage": "manual",
                    "channel": "email",
                    "recipient": person.external_id,
                    "notification_id": str(ledger.id),
                },
            )
        )
        ledger.status = "sent"
        ledger.provider_message_id = result.provider_message_id
    except SendError as exc:
        ledger.status, ledger.error_code, ledger.error_reason = "failed", exc.code, exc.reason
        log.warning("manual reminder %s not sent: %s", ledger.id, exc.code)
    audit.record(
        session,
        actor=principal.actor,
        actor_role=principal.role.value,
        action="obligation.remind",
        target=workflow_id,
        after={"notification_id": ledger.id, "status": ledger.status},
    )
    return ledger


def request_exemption(
    session: Session, *, workflow_id: str, reason: str, principal: Principal
) -> None:
    """Record a request that HR exempt this obligation (audited; HR decides).

    Raises:
        NotFound: No such obligation.
        Invalid: No reason (3 to 500 characters).
        Conflict: It is closed.
    """
    reason = reason.strip()
    if not 3 <= len(reason) <= 500:
        raise Invalid("say why (3 to 500 characters)")
    row = _obligation(session, workflow_id)
    if row.status in CLOSED or row.exempt:
        raise Conflict(f"the obligation is {'exempt' if row.exempt else row.status} already")
    audit.record(
        session,
        actor=principal.actor,
        actor_role=principal.role.value,
        action=EXEMPTION_REQUEST,
        target=workflow_id,
        after={"reason": reason},
    )


def exemption_requests(session: Session, *, limit: int = 50) -> list[AuditEntry]:
    """The latest exemption requests whose obligation is still open and not exempt."""
    entries = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.action == EXEMPTION_REQUEST)
        .order_by(AuditEntry.id.desc())
        .limit(limit * 2)
    )
    open_rows = []
    for entry in entries:
        row = session.scalar(select(Obligation).where(Obligation.workflow_id == entry.target))
        if row is not None and not row.exempt and row.status not in CLOSED:
            open_rows.append(entry)
    return open_rows[:limit]
