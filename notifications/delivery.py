"""Delivering one step to one recipient: ledger first, exactly once, with fallback.

The ledger row is written (status ``pending``, unique idempotency key) and committed *before*
the provider is called, then updated with the outcome. So:

* a retried activity or a replayed workflow finds the key: ``sent``/``delivered`` rows are not
  sent again; a ``retrying`` row is attempted again (attempt counter, last error kept);
* a transient failure (5xx, timeout, 429) is recorded and re-raised, so Temporal's retry policy
  backs off (honouring ``Retry-After`` through ``next_retry_delay``);
* a permanent failure (invalid number, unknown Slack user, unsubscribed) is recorded as
  ``failed`` and the next allowed channel for that recipient is tried, in a new ledger row that
  points back to the failed one (``fallback_of``).

The remaining window: a worker that dies after the provider accepted a message but before the
outcome was committed leaves a ``pending`` row; the retry sends again. Providers offer no
idempotency keys for these APIs (SendGrid, Twilio SMS, Slack chat), so this is the smallest
window the design allows; it is logged as ``resumed pending``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from notifications.channels import (
    Channel,
    ChannelMessage,
    PermanentSendError,
    TransientSendError,
)
from notifications.outbox import idempotency_key
from store.db import Database
from store.models import Notification, NotificationPreference, Person
from store.types import utcnow

log = logging.getLogger("duly.delivery")

#: The order channels are tried in after a permanent failure.
FALLBACK_ORDER: tuple[str, ...] = ("email", "slack", "sms", "in_app")
ALL_CHANNELS = frozenset(FALLBACK_ORDER)
DONE = frozenset({"sent", "delivered"})


@dataclass(frozen=True)
class Recipient:
    """Who a step goes to and where: a person (by id) or a mailbox/channel without a person."""

    role: str
    key: str  # person external id, or "mailbox:<address>", or "slack:#channel"
    person: Person | None
    email: str | None = None
    phone: str | None = None
    slack: str | None = None

    def address(self, channel: str) -> str | None:
        """The address on ``channel`` (None: not reachable there)."""
        return {
            "email": self.email,
            "sms": self.phone,
            "slack": self.slack,
            "in_app": self.key if self.person is not None else None,
        }.get(channel)


@dataclass(frozen=True)
class Rendered:
    """A rendered message for one channel."""

    subject: str
    text: str
    html: str | None = None
    blocks: list[dict[str, object]] | None = None


#: Renders a message for (channel, ledger row id) — the row id goes into the ack token.
Renderer = Callable[[str, int], Rendered]


@dataclass(frozen=True)
class Step:
    """One stage of one workflow: what identifies its sends in the ledger."""

    workflow_id: str
    pack_hash: str
    stage: str
    kind: str
    fired_at: datetime


@dataclass(frozen=True)
class Outcome:
    """What happened to one (recipient, requested channel)."""

    channel: str
    status: str
    notification_id: int | None
    duplicate: bool = False
    fallback_from: str | None = None


class RetryLater(Exception):
    """A transient failure: the activity should fail and let Temporal retry after a delay."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def step_key(step: Step, recipient: Recipient, channel: str) -> str:
    """The ledger's exactly-once key of one (step, recipient, channel)."""
    return idempotency_key(
        workflow_id=step.workflow_id,
        pack_hash=step.pack_hash,
        stage=step.stage,
        recipient=recipient.key,
        channel=channel,
    )


def allowed(preference: NotificationPreference | None, recipient: Recipient, channel: str) -> bool:
    """Whether ``recipient`` may be reached on ``channel`` (address known, not opted out)."""
    if recipient.address(channel) is None:
        return False
    if preference is None:
        return True
    if channel == "sms" and preference.sms_opt_out:
        return False
    return preference.channels is None or channel in preference.channels


class Deliverer:
    """Sends steps through the configured channels; the outbox stands in for missing ones."""

    def __init__(self, db: Database, channels: Mapping[str, Channel], outbox: Channel) -> None:
        """Bind the database, the provider channels by name, and the outbox fallback."""
        self._db = db
        self._channels = dict(channels)
        self._outbox = outbox

    def _channel(self, name: str) -> Channel:
        # in_app lives in the ledger (the app shows it); a channel without credentials too.
        return self._channels.get(name, self._outbox) if name != "in_app" else self._outbox

    def deliver(
        self,
        step: Step,
        recipient: Recipient,
        channels: Sequence[str],
        render: Renderer,
    ) -> list[Outcome]:
        """Send ``step`` to ``recipient`` on each requested channel, exactly once each.

        Raises:
            RetryLater: A channel failed transiently (after the others were attempted).
        """
        with self._db.session() as session:
            preference = (
                session.get(NotificationPreference, recipient.person.id)
                if recipient.person is not None
                else None
            )
        outcomes: list[Outcome] = []
        transient: list[RetryLater] = []
        tried: set[str] = set()
        for channel in channels:
            if channel in tried:
                continue
            if not allowed(preference, recipient, channel):
                replacement = self._next_allowed(preference, recipient, tried | {channel})
                if replacement is None:
                    outcomes.append(Outcome(channel, "unreachable", None))
                    continue
                outcomes.append(Outcome(channel, "skipped", None))
                channel = replacement
            try:
                outcomes += self._send_with_fallback(
                    step, recipient, channel, render, preference, tried
                )
            except RetryLater as error:
                transient.append(error)
        if transient:
            delays = [e.retry_after for e in transient if e.retry_after is not None]
            raise RetryLater(str(transient[0]), max(delays) if delays else None)
        return outcomes

    def _next_allowed(
        self,
        preference: NotificationPreference | None,
        recipient: Recipient,
        exclude: set[str],
    ) -> str | None:
        return next(
            (c for c in FALLBACK_ORDER if c not in exclude and allowed(preference, recipient, c)),
            None,
        )

    def _send_with_fallback(
        self,
        step: Step,
        recipient: Recipient,
        channel: str,
        render: Renderer,
        preference: NotificationPreference | None,
        tried: set[str],
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        failed_from: str | None = None
        failed_id: int | None = None
        current: str | None = channel
        while current is not None:
            tried.add(current)
            outcome = self._send_once(step, recipient, current, render, failed_id)
            outcome = Outcome(
                outcome.channel,
                outcome.status,
                outcome.notification_id,
                outcome.duplicate,
                failed_from,
            )
            outcomes.append(outcome)
            if outcome.status != "failed":
                break
            failed_from, failed_id = current, outcome.notification_id
            current = self._next_allowed(preference, recipient, tried)
        return outcomes

    def _claim(
        self, session: Session, key: str, step: Step, recipient: Recipient, channel: str
    ) -> tuple[Notification, bool]:
        """The ledger row for ``key``, created ``pending`` when new; (row, already existed)."""
        row = session.scalar(select(Notification).where(Notification.idempotency_key == key))
        if row is not None:
            return row, True
        row = Notification(
            idempotency_key=key,
            workflow_id=step.workflow_id,
            person_id=recipient.person.id if recipient.person else None,
            recipient_address=recipient.address(channel),
            recipient_role=recipient.role,
            channel=channel,
            provider=self._channel(channel).provider,
            kind=step.kind,
            stage=step.stage,
            pack_hash=step.pack_hash,
            subject="",
            body="",
            status="pending",
            attempts=0,
            fired_at=step.fired_at,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            winner = session.scalar(select(Notification).where(Notification.idempotency_key == key))
            if winner is None:
                raise
            return winner, True
        return row, False

    def _send_once(
        self,
        step: Step,
        recipient: Recipient,
        channel: str,
        render: Renderer,
        fallback_of: int | None,
    ) -> Outcome:
        key = step_key(step, recipient, channel)
        with self._db.session() as session:
            row, existed = self._claim(session, key, step, recipient, channel)
            if existed and row.status in DONE | {"failed", "folded"}:
                return Outcome(channel, row.status, row.id, duplicate=True)
            if existed and row.status == "pending":
                log.warning("resumed pending notification %s (outcome unknown)", row.id)
            rendered = render(channel, row.id)
            row.subject, row.body = rendered.subject[:300], rendered.text
            row.attempts += 1
            row.fallback_of = fallback_of
            row.provider = self._channel(channel).provider
            notification_id = row.id
            address = recipient.address(channel)
        assert address is not None
        message = ChannelMessage(
            idempotency_key=key,
            to=address,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            blocks=rendered.blocks,
            metadata={
                "workflow_id": step.workflow_id,
                "stage": step.stage,
                "channel": channel,
                "notification_id": str(notification_id),
                # An HRIS id or a role, never an address: receipts and logs may show it.
                "recipient": recipient.key if recipient.person is not None else recipient.role,
                "recipient_is_person": "yes" if recipient.person is not None else "no",
            },
        )
        sender = self._channel(channel)
        try:
            result = sender.send(message)
        except TransientSendError as error:
            self._record(notification_id, "retrying", error_code=error.code, reason=error.reason)
            raise RetryLater(f"{channel} {error.code}: {error.reason}", error.retry_after) from None
        except PermanentSendError as error:
            self._record(notification_id, "failed", error_code=error.code, reason=error.reason)
            log.info(
                "notification %s failed permanently on %s: %s", notification_id, channel, error.code
            )
            return Outcome(channel, "failed", notification_id)
        self._record(
            notification_id,
            "sent",
            provider_message_id=result.provider_message_id,
            channel_ref=result.channel_ref,
            provider=result.provider,
        )
        return Outcome(channel, "sent", notification_id)

    def _record(
        self,
        notification_id: int,
        status: str,
        *,
        error_code: str | None = None,
        reason: str | None = None,
        provider_message_id: str | None = None,
        channel_ref: str | None = None,
        provider: str | None = None,
    ) -> None:
        with self._db.session() as session:
            row = session.get(Notification, notification_id)
            assert row is not None
            row.status = status
            row.error_code = error_code
            row.error_reason = reason[:300] if reason else None
            if provider_message_id is not None:
                row.provider_message_id = provider_message_id
            if channel_ref is not None:
                row.channel_ref = channel_ref
            if provider is not None:
                row.provider = provider
            row.updated_at = utcnow()

    def queue(
        self, step: Step, recipient: Recipient, channel: str, render: Renderer
    ) -> tuple[int, str]:
        """Write the message to the ledger as ``queued`` (for a digest): (row id, its status).

        An existing row (queued, sent, folded, failed) is left as it is: queueing is idempotent.
        """
        key = step_key(step, recipient, channel)
        with self._db.session() as session:
            row, existed = self._claim(session, key, step, recipient, channel)
            if existed and row.status != "pending":
                return row.id, row.status
            rendered = render(channel, row.id)
            row.subject, row.body = rendered.subject[:300], rendered.text
            row.payload = {"html": rendered.html, "blocks": rendered.blocks}
            row.status = "queued"
            return row.id, row.status

    def release(self, notification_id: int, recipient: Recipient) -> Outcome:
        """Send a queued message as it was rendered (a digest of one)."""
        with self._db.session() as session:
            row = session.get(Notification, notification_id)
            assert row is not None
            step = Step(row.workflow_id, row.pack_hash, row.stage, row.kind, row.fired_at)
            stored = Rendered(
                subject=row.subject,
                text=row.body,
                html=(row.payload or {}).get("html"),
                blocks=(row.payload or {}).get("blocks"),
            )
            channel = row.channel
        [outcome, *_] = self._send_with_fallback(
            step, recipient, channel, lambda _c, _n: stored, None, set()
        )
        return outcome

    def fold(
        self,
        notification_ids: Sequence[int],
        recipient: Recipient,
        channel: str,
        step: Step,
        render: Renderer,
    ) -> Outcome:
        """Send one digest for several queued messages and mark each of them ``folded``."""
        outcome = self._send_once(step, recipient, channel, render, None)
        if outcome.status in DONE and outcome.notification_id is not None:
            with self._db.session() as session:
                for notification_id in notification_ids:
                    row = session.get(Notification, notification_id)
                    if row is not None and row.status in {"queued", "retrying", "pending"}:
                        row.status = "folded"
                        row.channel_ref = f"digest:{outcome.notification_id}"
        return outcome
