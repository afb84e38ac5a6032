"""Delivering one step to one recipient: ledger first, exactly once, with fallback.

The ledger row is written (status ``pending``, unique idempotency key) and committed *before*
the provider is called, then updated with the outcome. So:

* a retried activity or a replayed workflow finds the key: ``sent``/``delivered`` rows are not
  sent again; a ``retrying`` or ``held`` row is attempted again (attempt counter, last error);
* a transient failure (5xx, timeout, 429) is recorded and re-raised, so Temporal's retry policy
  backs off (honouring ``Retry-After`` through ``next_retry_delay``);
* a permanent failure (invalid number, unknown Slack user, unsubscribed) is recorded as
  ``failed`` and the next allowed channel for that recipient is tried, in a new ledger row that
  points back to the failed one (``fallback_of``);
* a configuration failure (the provider refused Duly's credentials, permissions or sender) is
  recorded as ``held``: no fallback (every recipient would "fail" the same way), one log line per
  provider naming the fix, and the caller retries the row with backoff until it goes out.

**One live attempt per row (the lease).** Temporal starts a new attempt of an activity when the
previous one timed out, but cannot stop the old one: a synchronous activity keeps running,
possibly inside a provider call. So the right to call the provider is a *lease* on the ledger
row: a random claim token and an expiry, taken with a compare-and-set ``UPDATE`` (only when no
other live lease exists) in a transaction committed before the call, and released when the
outcome is recorded. An attempt that finds a live lease does not send; it reports the row as
``in_flight`` and the caller retries later, when the holder has recorded the outcome. The lease
(:attr:`Deliverer.lease`, ``DULY_SEND_LEASE_SECONDS``) must outlast the slowest provider call
(the SDK clients time out after 10 s).

The remaining window: a worker that dies after the provider accepted a message but before the
outcome was committed leaves a ``pending`` row whose lease expires; the next attempt sends
again. Providers offer no idempotency keys for these APIs (SendGrid, Twilio SMS, Slack chat), so
this is the smallest window the design allows; it is logged as ``resumed pending``.

**No usable acknowledgement token is stored.** The provider gets the message as rendered, with
its live link; the ledger row keeps it redacted (``…/ack/<redacted>``, see
:func:`notifications.ack.redact`), because HR, auditors, managers and integrations read the
ledger and a token acts as its learner. Each attempt renders again (a fresh link); a queued
message released later gets a fresh token for its row (:meth:`Deliverer.release`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from duly.metrics import record_reminder
from notifications.ack import (
    ACK_LINK_LIFETIME,
    REDACTED,
    redact,
    redact_json,
    restore,
    restore_json,
    token_for,
)
from notifications.channels import (
    Channel,
    ChannelMessage,
    ConfigurationSendError,
    PermanentSendError,
    TransientSendError,
)
from notifications.outbox import idempotency_key
from notifications.preferences import is_mandatory, permitted_channels
from store.db import Database
from store.models import Notification, NotificationPreference, Person
from store.types import utcnow

log = logging.getLogger("duly.delivery")

#: The order channels are tried in after a permanent failure.
FALLBACK_ORDER: tuple[str, ...] = ("email", "slack", "sms", "in_app")
ALL_CHANNELS = frozenset(FALLBACK_ORDER)
DONE = frozenset({"sent", "delivered"})
#: Outcomes that are final for a key: a later attempt never sends it again.
SETTLED = DONE | {"failed", "folded", "skipped"}
#: Statuses an attempt may take a lease on (and then call the provider).
CLAIMABLE = ("pending", "retrying", "held", "queued")
#: The default lease: well over the providers' 10 s client timeout (connect + read).
DEFAULT_LEASE = timedelta(seconds=120)


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
    #: Days to the due date when the stage fired (< 0: overdue), when the caller knows it: it
    #: makes a labelled stage (``final warning``) mandatory; otherwise the name decides
    #: (:func:`notifications.preferences.is_mandatory`).
    days_before_due: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened to one (recipient, requested channel).

    ``status`` is a ledger status, or one of: ``in_flight`` (another live attempt holds the
    row's lease: retry later to learn its outcome), ``postponed`` (this attempt ran out of time
    before calling the provider: a new attempt sends it), ``unreachable`` (no allowed channel).
    """

    channel: str
    status: str
    notification_id: int | None
    duplicate: bool = False
    fallback_from: str | None = None
    #: Provider calls made for this row so far (a held row backs off on it).
    attempts: int = 0
    #: ``held``/``skipped``: the ledger's error code (``sendgrid:401``, ``learner:terminated``).
    error_code: str | None = None


class RetryLater(Exception):
    """A transient failure: the activity should fail and let Temporal retry after a delay."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Budget:
    """How long one activity attempt may keep starting provider calls.

    Temporal times an attempt out after its start-to-close timeout and starts another while
    the first may still be running; an attempt that stops starting sends when the time left
    is less than its slowest send so far (x1.5) hands the rest to a fresh attempt instead of
    being cut off mid-fan-out. The first send of an attempt is always allowed (progress). The
    lease, not this budget, is what makes a send exclusive; the budget keeps attempts from
    overlapping in the first place.
    """

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        """Start the budget now; ``seconds`` None means unbounded."""
        self._clock = clock
        self._deadline = None if seconds is None else clock() + seconds
        self._slowest = 0.0
        self._sends = 0

    def allows_another(self) -> bool:
        """Whether one more provider call is likely to finish inside this attempt."""
        if self._deadline is None or self._sends == 0:
            return True
        return self._deadline - self._clock() > 1.5 * self._slowest

    def now(self) -> float:
        """The budget's clock (monotonic seconds)."""
        return self._clock()

    def spent(self, seconds: float) -> None:
        """Record one provider call's duration."""
        self._sends += 1
        self._slowest = max(self._slowest, seconds)


class CredentialAlerts:
    """One clear log line per provider whose credentials are refused, and one when fixed.

    A broken key makes every send on that provider fail the same way; logging each would bury
    the one thing an operator must do. Per process: each worker says it once.
    """

    def __init__(self) -> None:
        """No provider is known to be broken yet."""
        self._lock = threading.Lock()
        self._broken: dict[str, str] = {}

    def refused(self, provider: str, channel: str, error: ConfigurationSendError) -> None:
        """Log (once until fixed) that ``provider`` refused Duly, and how to fix it."""
        with self._lock:
            if provider in self._broken:
                return
            self._broken[provider] = error.code
        # Codes, provider reasons (scrubbed of addresses) and setting names only: no secrets.
        log.error(
            "%s refused Duly's credentials or configuration (%s: %s). %s messages are HELD, not "
            "failed, and retried with backoff until this is fixed: %s. "
            "See them with GET /notifications?status=held",
            provider,
            error.code,
            error.reason,
            channel,
            error.fix,
        )

    def accepted(self, provider: str) -> None:
        """``provider`` accepted a message: if it was broken, say it works again."""
        with self._lock:
            code = self._broken.pop(provider, None)
        if code is not None:
            log.info(
                "%s accepts Duly's credentials again (was %s); held messages go out", provider, code
            )

    def reset(self) -> None:
        """Forget every provider (tests; a worker starts with none)."""
        with self._lock:
            self._broken.clear()

    def broken(self) -> dict[str, str]:
        """Providers currently refusing Duly, with the error code (for health checks, tests)."""
        with self._lock:
            return dict(self._broken)


#: The process-wide alerts (every Deliverer of a worker shares them).
credential_alerts = CredentialAlerts()


def step_key(step: Step, recipient: Recipient, channel: str) -> str:
    """The ledger's exactly-once key of one (step, recipient, channel)."""
    return idempotency_key(
        workflow_id=step.workflow_id,
        pack_hash=step.pack_hash,
        stage=step.stage,
        recipient=recipient.key,
        channel=channel,
    )


class ChannelChoice(Protocol):
    """A person's channel preferences (``store.models.NotificationPreference`` fits)."""

    @property
    def channels(self) -> list[str] | None:
        """The channels they accept (None: every channel)."""
        ...

    @property
    def sms_opt_out(self) -> bool:
        """They answered STOP to an SMS."""
        ...


def allowed(
    preference: ChannelChoice | None,
    recipient: Recipient,
    channel: str,
    *,
    mandatory: bool = False,
) -> bool:
    """Whether ``recipient`` may be reached on ``channel`` (address known, not opted out).

    ``mandatory`` (due-day and overdue notices): a ``channels`` preference that leaves no
    reachable channel is set aside (see :func:`notifications.preferences.permitted_channels`).
    """
    if recipient.address(channel) is None:
        return False
    if preference is None:
        return True
    if channel == "sms" and preference.sms_opt_out:
        return False
    reachable = {
        c
        for c in FALLBACK_ORDER
        if recipient.address(c) is not None and not (c == "sms" and preference.sms_opt_out)
    }
    permitted = permitted_channels(preference.channels, reachable, mandatory=mandatory)
    return permitted is None or channel in permitted


class Deliverer:
    """Sends steps through the configured channels; the outbox stands in for missing ones."""

    def __init__(
        self,
        db: Database,
        channels: Mapping[str, Channel],
        outbox: Channel,
        *,
        lease: timedelta = DEFAULT_LEASE,
        ack_key: bytes | None = None,
    ) -> None:
        """Bind the database, channels by name, the outbox fallback, the lease and link key.

        ``ack_key`` (``settings.key_ring().ack_link``) re-signs the acknowledgement link of a
        queued message when it is released; without it such a message goes out with its link
        redacted.
        """
        self._db = db
        self._channels = dict(channels)
        self._outbox = outbox
        self.lease = lease
        self._ack_key = ack_key

    def _channel(self, name: str) -> Channel:
        # in_app lives in the ledger (the app shows it); a channel without credentials too.
        return self._channels.get(name, self._outbox) if name != "in_app" else self._outbox

    def deliver(
        self,
        step: Step,
        recipient: Recipient,
        channels: Sequence[str],
        render: Renderer,
        budget: Budget | None = None,
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
        mandatory = is_mandatory(step.stage, step.days_before_due)
        for channel in channels:
            if channel in tried:
                continue
            if not allowed(preference, recipient, channel, mandatory=mandatory):
                replacement = self._next_allowed(
                    preference, recipient, tried | {channel}, mandatory=mandatory
                )
                if replacement is None:
                    outcomes.append(Outcome(channel, "unreachable", None))
                    continue
                outcomes.append(Outcome(channel, "skipped", None))
                channel = replacement
            try:
                outcomes += self._send_with_fallback(
                    step, recipient, channel, render, preference, tried, budget, mandatory
                )
            except RetryLater as error:
                record_reminder(channel, "retry")
                transient.append(error)
        for outcome in outcomes:
            record_reminder(outcome.channel, outcome.status, duplicate=outcome.duplicate)
        if transient:
            delays = [e.retry_after for e in transient if e.retry_after is not None]
            raise RetryLater(str(transient[0]), max(delays) if delays else None)
        return outcomes

    def _next_allowed(
        self,
        preference: NotificationPreference | None,
        recipient: Recipient,
        exclude: set[str],
        *,
        mandatory: bool = False,
    ) -> str | None:
        return next(
            (
                c
                for c in FALLBACK_ORDER
                if c not in exclude and allowed(preference, recipient, c, mandatory=mandatory)
            ),
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
        budget: Budget | None = None,
        mandatory: bool = False,
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        failed_from: str | None = None
        failed_id: int | None = None
        current: str | None = channel
        while current is not None:
            tried.add(current)
            outcome = self._send_once(step, recipient, current, render, failed_id, budget)
            outcome = replace(outcome, fallback_from=failed_from)
            outcomes.append(outcome)
            # Only a permanent failure moves on: held (Duly's credentials), in flight (another
            # attempt is sending it) and postponed are not the recipient's address failing.
            if outcome.status != "failed":
                break
            failed_from, failed_id = current, outcome.notification_id
            current = self._next_allowed(preference, recipient, tried, mandatory=mandatory)
        return outcomes

    def _claim(
        self,
        session: Session,
        key: str,
        step: Step,
        recipient: Recipient,
        channel: str,
        token: str | None,
        now: datetime,
    ) -> tuple[Notification, bool]:
        """The ledger row for ``key``; when new, created ``pending`` with this attempt's lease.

        Returns:
            (row, already existed). An existing row's lease is not taken here: see
            :meth:`_take_lease`.
        """
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
            claim_token=token,
            lease_until=now + self.lease if token is not None else None,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            # A concurrent attempt inserted the key first: its lease decides who sends.
            winner = session.scalar(select(Notification).where(Notification.idempotency_key == key))
            if winner is None:
                raise
            return winner, True
        return row, False

    def _take_lease(self, session: Session, row: Notification, token: str, now: datetime) -> bool:
        """Compare-and-set: take ``row``'s lease unless another attempt holds a live one.

        The ``WHERE`` is evaluated under the row's write lock (PostgreSQL re-checks it after a
        concurrent writer commits; SQLite serialises writers), so of two attempts racing for
        the same row exactly one gets ``rowcount == 1``. ``row`` is refreshed either way.
        """
        result = session.execute(
            update(Notification)
            .where(
                Notification.id == row.id,
                Notification.status.in_(CLAIMABLE),
                or_(Notification.lease_until.is_(None), Notification.lease_until <= now),
            )
            .values(claim_token=token, lease_until=now + self.lease)
            .execution_options(synchronize_session=False)
        )
        session.refresh(row)
        return bool(getattr(result, "rowcount", 0) == 1)

    def _busy(self, row: Notification, channel: str, now: datetime) -> Outcome:
        """The outcome for a row this attempt could not lease: settled meanwhile, or in flight."""
        if row.status in SETTLED:
            return Outcome(channel, row.status, row.id, duplicate=True, attempts=row.attempts)
        lease_left = (row.lease_until - now).total_seconds() if row.lease_until else 0.0
        log.info(
            "notification %s is being sent by another attempt (lease for %.0fs more): not sending",
            row.id,
            lease_left,
        )
        return Outcome(channel, "in_flight", row.id, duplicate=True, attempts=row.attempts)

    def _send_once(
        self,
        step: Step,
        recipient: Recipient,
        channel: str,
        render: Renderer,
        fallback_of: int | None,
        budget: Budget | None = None,
    ) -> Outcome:
        key = step_key(step, recipient, channel)
        token = uuid.uuid4().hex
        now = utcnow()
        with self._db.session() as session:
            row = session.scalar(select(Notification).where(Notification.idempotency_key == key))
            if row is not None and row.status in SETTLED:
                return Outcome(channel, row.status, row.id, duplicate=True, attempts=row.attempts)
            if budget is not None and not budget.allows_another():
                return Outcome(channel, "postponed", row.id if row else None)
            row, existed = self._claim(session, key, step, recipient, channel, token, now)
            if existed:
                previous = row.status
                if previous in SETTLED or not self._take_lease(session, row, token, now):
                    return self._busy(row, channel, now)
                if previous == "pending":
                    log.warning(
                        "resumed pending notification %s: the attempt that claimed it left no "
                        "outcome before its lease expired (it may have been sent)",
                        row.id,
                    )
            rendered = render(channel, row.id)
            # The provider gets the live link; the ledger keeps it redacted.
            row.subject, row.body = redact(rendered.subject)[:300], redact(rendered.text)
            row.attempts += 1
            row.fallback_of = fallback_of
            row.provider = self._channel(channel).provider
            notification_id, attempts = row.id, row.attempts
            address = recipient.address(channel)
        # The lease is committed: from here until the outcome is recorded, no other attempt
        # calls the provider for this key.
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
        started = budget.now() if budget is not None else 0.0
        try:
            result = sender.send(message)
        except TransientSendError as error:
            self._record(
                notification_id, token, "retrying", error_code=error.code, reason=error.reason
            )
            raise RetryLater(f"{channel} {error.code}: {error.reason}", error.retry_after) from None
        except ConfigurationSendError as error:
            self._record(
                notification_id,
                token,
                "held",
                error_code=error.code,
                reason=f"{error.reason}; fix: {error.fix}",
            )
            credential_alerts.refused(sender.provider, channel, error)
            return Outcome(
                channel, "held", notification_id, attempts=attempts, error_code=error.code
            )
        except PermanentSendError as error:
            self._record(
                notification_id, token, "failed", error_code=error.code, reason=error.reason
            )
            log.info(
                "notification %s failed permanently on %s: %s", notification_id, channel, error.code
            )
            return Outcome(channel, "failed", notification_id, attempts=attempts)
        finally:
            if budget is not None:
                budget.spent(budget.now() - started)
        self._record(
            notification_id,
            token,
            "sent",
            provider_message_id=result.provider_message_id,
            channel_ref=result.channel_ref,
            provider=result.provider,
        )
        credential_alerts.accepted(sender.provider)
        return Outcome(channel, "sent", notification_id, attempts=attempts)

    def _record(
        self,
        notification_id: int,
        token: str | None,
        status: str,
        *,
        error_code: str | None = None,
        reason: str | None = None,
        provider_message_id: str | None = None,
        channel_ref: str | None = None,
        provider: str | None = None,
    ) -> None:
        """Write the outcome and release this attempt's lease."""
        with self._db.session() as session:
            row = session.get(Notification, notification_id)
            assert row is not None
            if token is not None and row.claim_token != token:
                # The provider took longer than the lease: another attempt may have sent too.
                log.warning(
                    "notification %s: the lease expired before the provider answered "
                    "(raise DULY_SEND_LEASE_SECONDS above the slowest provider call)",
                    notification_id,
                )
            else:
                row.claim_token, row.lease_until = None, None
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

    def skip(
        self,
        step: Step,
        recipient: Recipient,
        channels: Sequence[str],
        code: str,
        reason: str,
    ) -> list[Outcome]:
        """Record that ``step`` deliberately does not go to ``recipient`` (status ``skipped``).

        One ledger row per channel, keyed like a send, so ``GET /notifications`` shows who was
        not told and why, and a later run of the stage does not send it either. A row that was
        waiting (held, retrying, queued) is skipped too; one already sent is left alone.
        """
        outcomes: list[Outcome] = []
        for channel in dict.fromkeys(channels):
            key = step_key(step, recipient, channel)
            token, now = uuid.uuid4().hex, utcnow()
            with self._db.session() as session:
                row, existed = self._claim(session, key, step, recipient, channel, token, now)
                if existed and (
                    row.status in SETTLED or not self._take_lease(session, row, token, now)
                ):
                    outcomes.append(self._busy(row, channel, now))
                    continue
                _mark_skipped(row, code, reason)
                outcomes.append(Outcome(channel, "skipped", row.id, error_code=code))
        return outcomes

    def skip_rows(self, notification_ids: Sequence[int], code: str, reason: str) -> int:
        """Mark waiting rows (queued, held, retrying) ``skipped``; returns how many."""
        skipped = 0
        for notification_id in notification_ids:
            token, now = uuid.uuid4().hex, utcnow()
            with self._db.session() as session:
                row = session.get(Notification, notification_id)
                if row is None or row.status in SETTLED:
                    continue
                if self._take_lease(session, row, token, now):
                    _mark_skipped(row, code, reason)
                    skipped += 1
        return skipped

    def queue(
        self, step: Step, recipient: Recipient, channel: str, render: Renderer
    ) -> tuple[int, str]:
        """Write the message to the ledger as ``queued`` (for a digest): (row id, its status).

        An existing row (queued, sent, folded, failed) is left as it is: queueing is idempotent.
        """
        key = step_key(step, recipient, channel)
        with self._db.session() as session:
            # No lease: the row is queued in this same transaction, nobody sends it from here.
            row, existed = self._claim(session, key, step, recipient, channel, None, utcnow())
            if existed and row.status != "pending":
                return row.id, row.status
            rendered = render(channel, row.id)
            # Kept redacted until it is sent: release() signs a fresh link for the row.
            row.subject, row.body = redact(rendered.subject)[:300], redact(rendered.text)
            row.payload = {
                "html": redact(rendered.html) if rendered.html is not None else None,
                "blocks": redact_json(rendered.blocks),
            }
            row.status = "queued"
            return row.id, row.status

    def release(
        self, notification_id: int, recipient: Recipient, budget: Budget | None = None
    ) -> Outcome:
        """Send a queued message as it was rendered (a digest of one), with a fresh link."""
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
            stored = self._relink(row, stored)
            channel = row.channel
        [outcome, *_] = self._send_with_fallback(
            step, recipient, channel, lambda _c, _n: stored, None, set(), budget
        )
        return outcome

    def _relink(self, row: Notification, stored: Rendered) -> Rendered:
        """A stored (redacted) message with a freshly signed link for ``row``."""
        parts = (stored.subject, stored.text, stored.html or "", str(stored.blocks or ""))
        if self._ack_key is None or not any(REDACTED in part for part in parts):
            return stored
        token = token_for(self._ack_key, row, row.fired_at + ACK_LINK_LIFETIME)
        return Rendered(
            subject=restore(stored.subject, token),
            text=restore(stored.text, token),
            html=restore(stored.html, token) if stored.html is not None else None,
            blocks=restore_json(stored.blocks, token),
        )

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
                    if row is not None and row.status in {"queued", "retrying", "pending", "held"}:
                        row.status = "folded"
                        row.channel_ref = f"digest:{outcome.notification_id}"
        return outcome


def _mark_skipped(row: Notification, code: str, reason: str) -> None:
    row.status = "skipped"
    row.error_code = code
    row.error_reason = reason[:300]
    row.claim_token, row.lease_until = None, None
    row.recipient_address = None  # never sent: the ledger needs no address for it
    row.updated_at = utcnow()
