"""Activities every obligation family's ladder runs: read-model writes, reminders, digests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.packs import load_version, person_attributes
from domain.contracts.digest import DigestRequest, DigestResult
from domain.contracts.obligation import ObligationUpdate, ReminderRequest, ReminderResult
from domain.ids import BUILTIN_PACK
from duly.settings import Settings
from notifications.ack import ack_url, make_ack_token
from notifications.channels import Channel
from notifications.delivery import (
    Budget,
    Deliverer,
    Outcome,
    Recipient,
    Rendered,
    Renderer,
    RetryLater,
    Step,
)
from notifications.messages import render_message
from notifications.outbox import OutboxSender, idempotency_key
from notifications.planning import (
    DeliveryPlan,
    Learner,
    Preference,
    audience,
    defer_until,
    plan_delivery,
)
from notifications.recipients import Resolved, person_recipient, resolve, stage_skip
from rules.model import Pack
from store.db import Database
from store.decisions import latest_status, record_decision
from store.models import Notification, NotificationPreference, Obligation, Person
from store.types import utcnow

#: How long an acknowledgement link in a reminder stays valid.
ACK_LINK_LIFETIME = timedelta(days=45)


#: Ledger statuses of a digest item that has not gone out yet.
WAITING = frozenset({"queued", "retrying", "pending", "held"})


class DigestSink(Protocol):
    """Where a queued reminder goes to be folded into the person's digest of the day.

    The worker wires :class:`workflows.digest.DigestStarter` (it starts the digest workflow,
    a floor above the activities).
    """

    def add(self, person: str, day: date, channel: str, notification_id: int) -> None:
        """Queue one notification for ``person``'s digest of ``day`` on ``channel``."""
        ...


def ledger_stage(request: ReminderRequest) -> str:
    """The stage as the ledger keys it: ``c2:-30d`` for a certification's second cycle."""
    return f"c{request.cycle}:{request.stage}" if request.cycle is not None else request.stage


def resolved_people(resolved: Resolved) -> list[Person]:
    """The directory entries among a stage's recipients (mailboxes and channels have none)."""
    return [r.person for r in resolved.recipients if r.person is not None]


def _preferences(session: Session, people: Sequence[Person]) -> dict[str, Preference]:
    """Each person's delivery preferences as plain data, by external id."""
    found: dict[str, Preference] = {}
    for person in people:
        row = session.get(NotificationPreference, person.id)
        found[person.external_id] = Preference(
            time_zone=person.time_zone,
            quiet_start=row.quiet_start if row else None,
            quiet_end=row.quiet_end if row else None,
            channels=list(row.channels) if row and row.channels is not None else None,
            sms_opt_out=bool(row.sms_opt_out) if row else False,
        )
    return found


class UnknownPerson(ApplicationError):
    """The person left the directory; retrying cannot help."""


def _attempt_budget() -> Budget | None:
    """This activity attempt's time left for provider calls (None outside an activity)."""
    if not activity.in_activity():
        return None
    timeout = activity.info().start_to_close_timeout
    return Budget(timeout.total_seconds() if timeout else None)


def _continue_later(outcomes: list[Outcome]) -> ApplicationError | None:
    """A retryable error when this attempt must leave sends to a later one, else None.

    ``in_flight``: an earlier attempt still holds the row's lease (it is inside the provider
    call); Temporal's backoff retries until that attempt has recorded the outcome. ``postponed``:
    this attempt ran out of time; the next one starts at once with the rest.
    """
    in_flight = sum(o.status == "in_flight" for o in outcomes)
    postponed = sum(o.status == "postponed" for o in outcomes)
    if in_flight:
        return ApplicationError(
            f"{in_flight} send(s) are in flight in an earlier attempt of this activity (ledger "
            "lease held); retrying to confirm their outcome without sending them again"
        )
    if postponed:
        return ApplicationError(
            f"{postponed} send(s) left: continuing in a new attempt so this one ends inside its "
            "start-to-close timeout (what went out is recorded in the ledger)",
            next_retry_delay=timedelta(seconds=1),
        )
    return None


class ObligationActivities:
    """The activities every family's ladder runs: the obligation read model and reminders.

    Bound to one database (sync: the worker runs them on a thread pool). Assignments,
    certifications and the families after them share them through ``workflows.ladder``.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings | None = None,
        channels: Mapping[str, Channel] | None = None,
        digest: DigestSink | None = None,
    ) -> None:
        """Bind the database, settings (secret, links), provider channels and digest starter."""
        self._db = db
        self._settings = settings or Settings()
        self._deliverer = Deliverer(
            db,
            channels or {},
            OutboxSender(),
            lease=timedelta(seconds=self._settings.send_lease_seconds),
            ack_key=self._settings.key_ring().ack_link,
        )
        self._digest = digest

    @property
    def deliverer(self) -> Deliverer:
        """The deliverer (channels, ledger, lease): other families' notices share it."""
        return self._deliverer

    def _person(self, session_person: Person | None, external_id: str) -> Person:
        if session_person is None:
            raise UnknownPerson(
                f"person {external_id!r} is not in the directory", non_retryable=True
            )
        return session_person

    @activity.defn(name="record_obligation")
    def record_obligation(self, update: ObligationUpdate) -> None:
        """Upsert the obligation read model; an older update never overwrites a newer one.

        Every fact the workflow decides with is written (see ``Obligation.facts``), so the
        sweep and ``rules preview`` decide from the same facts. Each write bumps ``version``
        (in SQL, so concurrent writers never reuse a number): a sweep that read the row
        before this write will not overwrite it.
        """
        with self._db.session() as session:
            person = self._person(
                session.scalar(select(Person).where(Person.external_id == update.person)),
                update.person,
            )
            row = session.scalar(
                select(Obligation).where(Obligation.workflow_id == update.workflow_id)
            )
            if row is None:
                row = Obligation(workflow_id=update.workflow_id, person_id=person.id, version=1)
                session.add(row)
            elif row.as_of > update.as_of:
                return
            else:
                row.version = Obligation.version + 1
            row.kind = update.kind.value
            row.requirement_id = update.requirement_id
            row.requirement_title = update.requirement_title
            row.cycle = update.cycle
            row.due_date = update.due_date
            row.stage = update.stage
            row.status = update.status
            row.pack_hash = update.pack_hash
            row.acknowledged_at = update.acknowledged_at
            row.completed_at = update.completed_at
            row.expiry_date = update.expiry_date
            row.started_at = update.started_at
            row.exempt = update.exempt
            row.exempt_until = update.exempt_until
            row.ce_credits_short = update.ce_credits_short
            row.suspended = update.suspended
            row.time_zone = update.time_zone
            row.as_of = update.as_of
            # A status the workflow decided itself (built-in rules, cancelled, held) has no
            # decide_status row: record it here when it differs from the one in force.
            if latest_status(session, workflow_id=update.workflow_id, at=update.as_of) != (
                update.status
            ):
                record_decision(
                    session,
                    workflow_id=update.workflow_id,
                    person_id=person.id,
                    kind=update.kind.value,
                    requirement_id=update.requirement_id,
                    status=update.status,
                    rule=update.rule or "recorded",
                    pack_hash=update.pack_hash,
                    facts=update.facts().model_dump(mode="json"),
                    decided_at=update.as_of,
                    source="workflow",
                    trigger=update.trigger,
                )

    @activity.defn(name="send_reminder")
    def send_reminder(self, request: ReminderRequest) -> ReminderResult:
        """Deliver one stage to each of its recipients on each of its channels, exactly once.

        Recipients and channels come from the pinned pack's stage (built-in ladder: the learner
        by email). Transient provider failures fail the activity so Temporal retries it (the
        ledger turns already-sent parts into no-ops); permanent ones fall back to the next
        allowed channel inside this attempt. A send another attempt still holds (its ledger
        lease) is never repeated: this attempt fails and retries to confirm it. Messages held
        because a provider refused Duly's credentials come back in ``deferred_until`` (with
        backoff), like quiet hours: the workflow runs the stage again then. People who left,
        or are on leave, are recorded ``skipped`` (see :mod:`notifications.recipients`).

        Who gets what, when, is :func:`notifications.planning.plan_delivery`'s (pure); this
        adapter reads the directory for it, then sends and records through the ledger.
        """
        budget = _attempt_budget()  # the attempt's clock starts before the directory reads
        plan, pack, learner_name = self._plan(request)
        if plan.unless is not None:
            return ReminderResult(
                idempotency_key="",
                status="skipped",
                duplicate=False,
                deliveries=[f"skipped: unless {plan.unless!r} holds"],
            )
        step = Step(
            workflow_id=request.workflow_id,
            pack_hash=request.pack_hash,
            stage=ledger_stage(request),
            kind=request.kind.value,
            fired_at=request.fired_at,
        )
        lines = [f"{role}: nobody to notify" for role in plan.missing]
        if plan.gone is not None:
            return self._skip_stage(step, plan, plan.gone, lines)
        skips = self._pass_over(step, plan, lines)
        outcomes = self._deliver(request, step, plan, pack, learner_name, budget, lines)
        later = _continue_later(outcomes + skips)
        if later is not None:
            raise later
        return self._result(request, plan, outcomes, skips, lines)

    def _plan(self, request: ReminderRequest) -> tuple[DeliveryPlan, Pack | None, str]:
        """Read the learner, the pinned pack, the recipients and their preferences; plan."""
        with self._db.session() as session:
            person = self._person(
                session.scalar(select(Person).where(Person.external_id == request.person)),
                request.person,
            )
            pack = (
                load_version(session, request.pack_hash)
                if request.pack_hash != BUILTIN_PACK
                else None
            )
            who = audience(request, pack)
            resolved = resolve(person, who.roles, pack, who.stage)
            plan = plan_delivery(
                request=request,
                pack=pack,
                audience=who,
                learner=Learner(person.external_id, person.time_zone, person_attributes(person)),
                resolved=resolved,
                preferences=_preferences(session, [person, *resolved_people(resolved)]),
                digest=self._digest is not None,
            )
            return plan, pack, person.name

    def _skip_stage(
        self, step: Step, plan: DeliveryPlan, gone: tuple[str, str], lines: list[str]
    ) -> ReminderResult:
        """The learner has left: nobody is reminded or escalated to about them (all skipped)."""
        code, reason = gone
        channels = plan.audience.channels
        everyone = [
            *(p.recipient for p in plan.recipients),
            *(p.recipient for p in plan.passed_over),
        ]
        for recipient in everyone:
            got = self._deliverer.skip(step, recipient, channels, code, reason)
            lines += [f"{recipient.role} {o.channel} {o.status} ({code})" for o in got]
        return ReminderResult(
            idempotency_key="", status="skipped", duplicate=False, deliveries=lines
        )

    def _pass_over(self, step: Step, plan: DeliveryPlan, lines: list[str]) -> list[Outcome]:
        """Record ``skipped`` for the people passed over for their employment status."""
        skips: list[Outcome] = []
        for entry in plan.passed_over:
            got = self._deliverer.skip(
                step, entry.recipient, plan.audience.channels, entry.code, entry.reason
            )
            skips += got
            lines += [f"{entry.recipient.role} {o.channel} {o.status}: {entry.reason}" for o in got]
        return skips

    def _deliver(
        self,
        request: ReminderRequest,
        step: Step,
        plan: DeliveryPlan,
        pack: Pack | None,
        learner_name: str,
        budget: Budget | None,
        lines: list[str],
    ) -> list[Outcome]:
        """Send (or queue for the digest) what the plan says goes out now.

        Raises:
            ApplicationError: Retryable, when a provider failed transiently (after every
                recipient was tried: the ledger makes what went out a no-op on the retry).
        """
        outcomes: list[Outcome] = []
        retry: RetryLater | None = None
        for part in plan.recipients:
            recipient = part.recipient
            if part.deferred_until is not None:
                lines.append(
                    f"{recipient.role} deferred to {part.deferred_until.isoformat()}"
                    " (quiet hours or weekend)"
                )
                continue
            render = self._renderer(request, recipient, learner_name, pack)
            direct = list(part.direct)
            for channel in part.folded:
                notification_id, status = self._deliverer.queue(step, recipient, channel, render)
                if status == "failed":
                    direct.append(channel)  # bounced: deliver() falls back at once
                    continue
                if status != "queued":
                    continue  # already went out (or was folded) on an earlier attempt
                assert self._digest is not None and part.digest_day is not None
                self._digest.add(recipient.key, part.digest_day, channel, notification_id)
                lines.append(f"{recipient.role} {channel} queued for today's digest")
            try:
                got = self._deliverer.deliver(step, recipient, direct, render, budget)
            except RetryLater as error:
                retry = error
                continue
            outcomes += got
            lines += [
                f"{recipient.role} {o.channel} {o.status}"
                + (f" ({o.error_code})" if o.error_code else "")
                + (f" (fallback from {o.fallback_from})" if o.fallback_from else "")
                for o in got
            ]
        if retry is not None:
            delay = timedelta(seconds=retry.retry_after) if retry.retry_after else None
            raise ApplicationError(f"transient provider failure: {retry}", next_retry_delay=delay)
        return outcomes

    def _result(
        self,
        request: ReminderRequest,
        plan: DeliveryPlan,
        outcomes: list[Outcome],
        skips: list[Outcome],
        lines: list[str],
    ) -> ReminderResult:
        """What the ledger holds, and when the workflow should run the stage again."""
        held = [o for o in outcomes if o.status == "held"]
        wake_at = [p.deferred_until for p in plan.recipients if p.deferred_until is not None]
        if held:
            # Like quiet hours: the workflow sleeps (a completion meanwhile stops it) and runs
            # the stage again; workflow time, so the timer is right in tests that skip time.
            retry_at = request.fired_at + self._held_backoff(max(o.attempts for o in held))
            wake_at.append(retry_at)
            lines.append(
                f"{len(held)} held ({', '.join(sorted({str(o.error_code) for o in held}))}):"
                f" a provider refused Duly's credentials; retrying at {retry_at.isoformat()}"
            )
        first = next((o for o in outcomes + skips if o.notification_id is not None), None)
        key = idempotency_key(
            workflow_id=request.workflow_id,
            pack_hash=request.pack_hash,
            stage=ledger_stage(request),
            recipient=request.person,  # the learner's external id (looked up by it)
            channel=first.channel if first else request.channel,
        )
        return ReminderResult(
            idempotency_key=key,
            status=first.status if first else ("deferred" if wake_at else "unreachable"),
            duplicate=bool(outcomes) and all(o.duplicate for o in outcomes),
            deliveries=lines,
            deferred_until=min(wake_at) if wake_at else None,
        )

    def _held_backoff(self, attempts: int) -> timedelta:
        """The wait before held messages are tried again: doubling, capped (never a tight loop)."""
        initial = self._settings.held_retry_initial_seconds
        seconds = min(
            initial * 2 ** max(0, min(attempts, 32) - 1), self._settings.held_retry_max_seconds
        )
        return timedelta(seconds=max(1, seconds))

    @activity.defn(name="send_digest")
    def send_digest(self, request: DigestRequest) -> DigestResult:
        """Send a person's queued reminders of one day: as they are if one, else one digest."""
        with self._db.session() as session:
            person = self._person(
                session.scalar(select(Person).where(Person.external_id == request.person)),
                request.person,
            )
            rows = [session.get(Notification, i) for i in request.notification_ids]
            # "retrying"/"pending": an earlier attempt of this activity failed mid-send;
            # "held": a provider refused Duly's credentials on an earlier attempt.
            queued = [r for r in rows if r is not None and r.status in WAITING]
            gone = stage_skip(person) or (
                ("learner:leave", f"{person.external_id} is on leave: not reminded while on leave")
                if person.employment_status == "leave"
                else None
            )
            items = []
            for row in queued:
                obligation = session.scalar(
                    select(Obligation).where(Obligation.workflow_id == row.workflow_id)
                )
                if obligation is None or obligation.due_date is None:
                    continue
                items.append(
                    {
                        "title": obligation.requirement_title,
                        "due_date": obligation.due_date.isoformat(),
                        "days_before_due": (obligation.due_date - request.day).days,
                        "stage": row.stage,
                    }
                )
            recipient = person_recipient("learner", person)
        if not queued:
            return DigestResult(sent=0, folded=0, status="nothing queued")
        if gone is not None:
            skipped = self._deliverer.skip_rows([r.id for r in queued], *gone)
            return DigestResult(sent=0, folded=0, status=f"skipped {skipped} ({gone[0]})")
        try:
            if len(queued) == 1 or len(items) < len(queued):
                budget = _attempt_budget()
                outcomes = [self._deliverer.release(r.id, recipient, budget) for r in queued]
                self._raise_unless_settled(outcomes)
                return DigestResult(sent=len(outcomes), folded=0, status=outcomes[-1].status)
            result = self._fold(request, person, recipient, queued, items)
            self._raise_unless_settled([result[1]])
            return result[0]
        except RetryLater as error:
            delay = timedelta(seconds=error.retry_after) if error.retry_after else None
            raise ApplicationError(
                f"transient provider failure: {error}", next_retry_delay=delay
            ) from None

    def _raise_unless_settled(self, outcomes: list[Outcome]) -> None:
        """A digest is one activity: held, in-flight or postponed sends fail it for a retry."""
        later = _continue_later(outcomes)
        if later is not None:
            raise later
        held = [o for o in outcomes if o.status == "held"]
        if held:
            raise ApplicationError(
                f"held: a provider refused Duly's credentials ({held[0].error_code}); "
                "retrying with backoff until the setting is fixed",
                next_retry_delay=self._held_backoff(max(o.attempts for o in held)),
            )

    def _fold(
        self,
        request: DigestRequest,
        person: Person,
        recipient: Recipient,
        queued: list[Notification],
        items: list[dict[str, Any]],
    ) -> tuple[DigestResult, Outcome]:
        kind, pack_hash = queued[0].kind, queued[0].pack_hash
        nearest = min(items, key=lambda i: int(str(i["days_before_due"])))
        days = int(str(nearest["days_before_due"]))

        def render(channel: str, notification_id: int) -> Rendered:
            message = render_message(
                kind,
                "digest",
                channel,
                {
                    "first_name": person.name.split()[0] if person.name else None,
                    "title": str(nearest["title"]),
                    "kind": kind,
                    "due_date": str(nearest["due_date"]),
                    "days_before_due": days,
                    "days_left_phrase": f"{days} day{'s' if days != 1 else ''} left",
                    "late_notice": False,
                    "stage": "digest",
                    "workflow_id": f"digest/{request.person}/{request.day.isoformat()}",
                    "recipient_role": "learner",
                    "learner_name": person.name,
                    # One link cannot acknowledge several obligations: each reminder's own
                    # link, SMS ACK or Slack button does that.
                    "ack_url": None,
                    "ce_credits_short": 0,
                    "digest_items": items,
                },
            )
            return Rendered(message.subject, message.text, message.html, message.blocks)

        step = Step(
            workflow_id=f"digest/{request.person}/{request.day.isoformat()}",
            pack_hash=pack_hash,
            stage=f"digest-{min(r.id for r in queued)}",
            kind=kind,
            fired_at=utcnow(),
        )
        outcome = self._deliverer.fold(
            [r.id for r in queued], recipient, request.channel, step, render
        )
        return DigestResult(sent=1, folded=len(queued), status=outcome.status), outcome

    def _defer_until(
        self,
        session: Session,
        request: ReminderRequest,
        recipient: Recipient,
        business_days: bool,
    ) -> datetime | None:
        """When a message to ``recipient`` may go out, if not now (None: now).

        See :func:`notifications.planning.defer_until`; this reads the recipient's preferences.
        """
        if recipient.person is None:
            return None  # mailboxes and Slack channels have no quiet hours
        preference = _preferences(session, [recipient.person])[recipient.person.external_id]
        return defer_until(request, preference, business_days=business_days)

    def _renderer(
        self, request: ReminderRequest, recipient: Recipient, learner_name: str, pack: Pack | None
    ) -> Renderer:
        days = request.days_before_due
        first_name = (
            recipient.person.name.split()[0]
            if recipient.person is not None and recipient.person.name
            else "team"
        )

        def render(channel: str, notification_id: int) -> Rendered:
            ack_link = None
            if recipient.role == "learner":
                # Bound to the ledger row's workflow, stage and recipient (see notifications.ack).
                assert recipient.person is not None
                token = make_ack_token(
                    self._settings.key_ring().ack_link,
                    notification_id,
                    request.workflow_id,
                    ledger_stage(request),
                    f"person:{recipient.person.id}",
                    request.fired_at + ACK_LINK_LIFETIME,
                )
                ack_link = ack_url(self._settings.api_base_url, token)
            context: dict[str, Any] = {
                "first_name": first_name,
                "title": request.requirement_title,
                "kind": request.kind.value,
                "due_date": request.due_date.isoformat(),
                "days_before_due": days,
                "days_left_phrase": f"{days} day{'s' if days != 1 else ''} left",
                "late_notice": request.late_notice,
                "stage": request.stage,
                "workflow_id": request.workflow_id,
                "recipient_role": recipient.role,
                "learner_name": learner_name,
                "ack_url": ack_link,
                "ce_credits_short": request.ce_credits_short,
                "event": request.event,
                "detail": request.detail,
                "digest_items": None,
            }
            message = render_message(
                request.kind.value,
                request.stage,
                channel,
                context,
                overrides=pack.templates if pack else None,
            )
            return Rendered(
                subject=message.subject, text=message.text, html=message.html, blocks=message.blocks
            )

        return render

    def all(self) -> list[Callable[..., Any]]:
        """Every activity callable, for the worker."""
        return [self.record_obligation, self.send_reminder, self.send_digest]


#: The name workers and tests have always used; the activities serve every family.
AssignmentActivities = ObligationActivities
