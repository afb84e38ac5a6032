"""The outbox channel: every message lands in the ledger and on the console.

Used whenever a channel has no provider credentials, so Duly runs fully offline. The ledger's
unique idempotency key makes a retried activity or a replayed workflow a no-op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from notifications.channels import ChannelMessage, SendResult
from store.models import Notification

log = logging.getLogger("duly.outbox")


def idempotency_key(
    *, workflow_id: str, pack_hash: str, stage: str, recipient: str, channel: str
) -> str:
    """The exactly-once key of one step: (workflow id, pack hash, stage, recipient, channel)."""
    return "|".join((workflow_id, pack_hash, stage, recipient, channel))


@dataclass(frozen=True)
class OutboundMessage:
    """A rendered message ready for a channel."""

    idempotency_key: str
    workflow_id: str
    person_id: int
    person_external_id: str
    recipient_address: str | None
    channel: str
    kind: str
    stage: str
    pack_hash: str
    subject: str
    body: str
    fired_at: datetime


@dataclass(frozen=True)
class Delivery:
    """The ledger row's outcome for a message."""

    notification_id: int
    status: str
    duplicate: bool


class OutboxChannel:
    """Writes messages to the notification ledger and prints a PII-free line to the console."""

    provider = "outbox"

    def deliver(self, session: Session, message: OutboundMessage) -> Delivery:
        """Record ``message`` once; a second call with the same key returns the first row."""
        existing = session.scalar(
            select(Notification).where(Notification.idempotency_key == message.idempotency_key)
        )
        if existing is not None:
            return Delivery(existing.id, existing.status, duplicate=True)
        row = Notification(
            idempotency_key=message.idempotency_key,
            workflow_id=message.workflow_id,
            person_id=message.person_id,
            recipient_address=message.recipient_address,
            channel=message.channel,
            provider=self.provider,
            kind=message.kind,
            stage=message.stage,
            pack_hash=message.pack_hash,
            subject=message.subject,
            body=message.body,
            status="sent",
            fired_at=message.fired_at,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            # A concurrent attempt won the race on the unique key: that one is the send.
            winner = session.scalar(
                select(Notification).where(Notification.idempotency_key == message.idempotency_key)
            )
            if winner is None:
                raise
            return Delivery(winner.id, winner.status, duplicate=True)
        row.provider_message_id = f"outbox-{row.id}"
        # External ids only: addresses and names are personal data and stay out of logs. The
        # subject is left out too: a manager's or HR's subject names the learner.
        log.info(
            "OUTBOX %s to person %s [%s %s]: %s notification %s",
            message.channel,
            message.person_external_id,
            message.workflow_id,
            message.stage,
            message.kind,
            row.id,
        )
        return Delivery(row.id, row.status, duplicate=False)


class OutboxSender:
    """The outbox as a :class:`~notifications.channels.Channel`: the ledger row is the message.

    Used for ``in_app`` and for every channel without provider credentials, so Duly runs
    offline and ``make run`` shows each message on the console (person id only, no address).
    """

    name = "outbox"
    provider = "outbox"

    def send(self, message: ChannelMessage) -> SendResult:
        """Log the message; the delivery layer has already written it to the ledger.

        The line names the recipient by external id (or role) and points at the ledger row;
        never the subject or body, which name the learner in a manager's or HR's message.
        """
        meta = message.metadata
        recipient = meta.get("recipient", "?")
        default = "yes" if recipient.startswith("p") else "no"
        is_person = meta.get("recipient_is_person", default) == "yes"
        log.info(
            "OUTBOX %s to %s [%s %s]: notification %s (GET /notifications)",
            meta.get("channel", "email"),
            f"person {recipient}" if is_person else recipient,
            meta.get("workflow_id", ""),
            meta.get("stage", ""),
            meta.get("notification_id", "?"),
        )
        return SendResult(
            provider=self.provider, provider_message_id=f"outbox-{meta.get('notification_id', '')}"
        )
