"""What every obligation family shares: facts, the ladder's activity requests and signals.

One input model per workflow, signal, query and activity; :class:`ObligationMessages` names the
signals every family's workflow answers.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field
from temporalio import workflow

from domain.base import Contract
from domain.bounds import BoundedInstant
from domain.calendar import LadderStage
from domain.contracts.packs import AdoptPackSignal
from domain.kinds import ObligationKind

#: How many lines of one kind a message a client may repeat at will (a failed attempt, an
#: ignored completion) adds to a workflow's timeline; the rest are counted, not listed.
NOTED_REPEATS = 20

#: A ladder workflow's run continues as new (carrying its state) once its history reaches this
#: many events, or earlier when the server suggests it: Temporal ends a run at 51,200 events, and
#: every signal is an event whatever the workflow does with it. An ordinary run stays far below
#: (a few hundred). Read at each check, so tests may lower it.
HISTORY_LIMIT = 10_000


class ObligationFacts(Contract):
    """What an obligation's workflow knows that a status rule or an ``unless`` condition uses.

    Plain data, the input of the one fact builder (:func:`rules.obligation_facts.build_facts`):
    ``decide_status`` builds it from the workflow's request, a stage's ``unless`` from the
    reminder request, the sweep and ``rules preview`` from the read model (which stores every
    field). The calendar facts (days until due/expiry, grace, an exemption's end) are derived
    by the builder from these dates and the person's local "today".
    """

    kind: ObligationKind
    requirement_id: str
    #: Trainings, apprenticeships, mentorships. A certification is due when it expires: with
    #: no due date the builder counts ``days_until_due`` to ``expiry_date``.
    due_date: date | None = None
    expiry_date: date | None = None
    completed: bool = False
    acknowledged: bool = False
    started: bool = False
    #: An exemption was granted; it is in force through ``exempt_until`` (None: until revoked).
    exempt: bool = False
    exempt_until: date | None = None
    ce_credits_short: int = 0


class AcknowledgeSignal(Contract):
    """The learner (or someone on their behalf) acknowledged the reminders."""

    acknowledged_at: BoundedInstant
    actor: str = Field(max_length=128)
    channel: str = Field(default="api", max_length=32)


class LadderEvent(Contract):
    """One line of an obligation workflow's own readable timeline."""

    at: datetime
    kind: str
    detail: str


class ObligationUpdate(Contract):
    """Activity input: upsert the obligation read model from the workflow's state."""

    workflow_id: str
    person: str
    kind: ObligationKind
    requirement_id: str
    requirement_title: str
    cycle: int
    due_date: date | None
    stage: str | None
    #: A built-in status or one the pinned rules pack declares.
    status: str
    pack_hash: str
    acknowledged_at: datetime | None = None
    completed_at: datetime | None = None
    as_of: datetime
    #: Certifications: the current cycle's expiry date (``due_date`` is the same day).
    expiry_date: date | None = None
    # The rest of the facts the workflow decides with, so the sweep and ``rules preview``
    # decide from exactly what the workflow knows. Defaults: updates recorded before them.
    started_at: datetime | None = None
    exempt: bool = False
    exempt_until: date | None = None
    ce_credits_short: int = 0
    #: A status the workflow holds itself (a suspended certification): the sweep leaves it.
    suspended: bool = False
    #: The IANA zone the workflow planned its stages in (None: one fixed UTC offset).
    time_zone: str | None = None
    #: The rule of a status the workflow decided itself (built-in rules, cancelled, held);
    #: recorded as a decision when the status differs from the one in force.
    rule: str | None = None
    #: The workflow event that led to this update (recorded with a decision it carries).
    trigger: str | None = None

    def facts(self) -> ObligationFacts:
        """The obligation facts this update records (what the read model will hold)."""
        return ObligationFacts(
            kind=self.kind,
            requirement_id=self.requirement_id,
            due_date=self.due_date,
            expiry_date=self.expiry_date,
            completed=self.completed_at is not None,
            acknowledged=self.acknowledged_at is not None,
            started=self.started_at is not None,
            exempt=self.exempt,
            exempt_until=self.exempt_until,
            ce_credits_short=self.ce_credits_short,
        )


class ReminderRequest(Contract):
    """Activity input: send one reminder for one stage to the learner."""

    workflow_id: str
    person: str
    kind: ObligationKind
    requirement_title: str
    due_date: date
    stage: str
    #: Days from the learner's local today to the due date when the stage fires (< 0: overdue).
    days_before_due: int
    pack_hash: str
    fired_at: datetime
    late_notice: bool = False
    acknowledged: bool = False
    started: bool = False
    #: The channel of the built-in ladder; a pinned pack's stage names its own channels.
    channel: str = "email"
    #: The requirement, to find the stage's recipients and channels in the pinned pack.
    requirement_id: str | None = None
    #: Certifications keep one workflow id across cycles: the cycle scopes the ledger key
    #: (the ledger's stage reads ``c2:-30d``) so cycle 2's ``-30d`` is not cycle 1's.
    cycle: int | None = None
    #: Continuing-education credits still missing (certifications), for the message.
    ce_credits_short: int = 0
    #: A notice that is not a ladder stage (``revoked``, ``suspended``, ``lapsed``…): who is
    #: told, on which channels, and the event the message describes.
    notify: list[str] | None = None
    channels: list[str] | None = None
    event: str | None = None
    #: One plain sentence the message adds (why a mentorship request lost its slot...); no
    #: personal data. Templates read it as ``detail``.
    detail: str | None = Field(default=None, max_length=300)

    def facts(self) -> ObligationFacts:
        """The obligation facts a stage's ``unless`` condition is evaluated on.

        A stage never fires for a completed or exempt obligation, so both are false here.
        """
        certification = self.kind is ObligationKind.CERTIFICATION
        return ObligationFacts(
            kind=self.kind,
            requirement_id=self.requirement_id or "",
            due_date=None if certification else self.due_date,
            expiry_date=self.due_date if certification else None,
            acknowledged=self.acknowledged,
            started=self.started,
            ce_credits_short=self.ce_credits_short,
        )


class ReminderResult(Contract):
    """Activity output: what the ledger holds for this reminder."""

    #: The learner's email key on the built-in ladder; the first send's key otherwise.
    idempotency_key: str
    status: str
    duplicate: bool
    #: One line per (recipient, channel): "manager slack sent", "learner sms failed -> email".
    deliveries: list[str] = Field(default_factory=list)
    #: Some recipients are in quiet hours (or it is a weekend under a business-days policy):
    #: the workflow runs the stage again at this instant; the ledger skips what went out.
    deferred_until: datetime | None = None


class PlanRequest(Contract):
    """Activity input: the stages a requirement follows under a pinned pack (or ``builtin``).

    With ``person`` and ``due_date`` the activity also plans every instant in the person's
    IANA time zone (:class:`StagePlan` ``stages``, ``due_at``...). Requests recorded before
    zone-aware planning lack both and get the ladder's offsets only.
    """

    pack_hash: str
    requirement_id: str
    person: str | None = None
    #: The due date (trainings) or expiry date (certifications) the ladder counts from.
    due_date: date | None = None
    #: The last day of an exemption in force, to plan when it lapses.
    exempt_until: date | None = None
    #: The track that assigned the obligation: its course's own pass mark applies to the gate.
    track_id: str | None = Field(default=None, max_length=80)


class GateSpec(Contract):
    """A requirement's assessment gate as the pinned pack has it (see ``rules.assessment``)."""

    passing_score: float | None = Field(default=None, ge=0, le=100)
    max_attempts: int | None = Field(default=None, ge=1)
    retake_after_days: int = Field(default=0, ge=0)


class StagePlan(Contract):
    """Activity output: the requirement's ladder under that pack (``found``: it is in it).

    The instants (``stages`` … ``exemption_lapses_at``) are planned in ``time_zone`` when the
    request named a person and a date; a plan recorded before zone-aware planning has none,
    and the workflow falls back to its input's fixed UTC offset.
    """

    pack_hash: str
    found: bool
    #: Days before the due date of each stage (negative: after it), the policy's order.
    days_before: list[int] = Field(default_factory=list)
    grace_days: int = 0
    #: The longest extension a manager or HR may grant (the requirement's max_extension_days).
    max_extension_days: int = 30
    #: Recurrence: every N months (None: one-off), counted per ``basis``.
    recurrence_months: int | None = None
    basis: str | None = None
    #: "MM-DD" with basis fixed_anniversary.
    anniversary: str | None = None
    #: Certifications: validity, renewal window, CE credits and how a renewal is dated.
    validity_months: int | None = None
    renewal_window_days: int | None = None
    ce_credits: float = 0
    renewal_basis: str = "from_renewal"
    #: The zone every instant below was planned in (the person's, from the directory).
    time_zone: str | None = None
    #: Each stage at 09:00 local on its own day (DST-correct), in firing order.
    stages: list[LadderStage] | None = None
    #: The end of the due (expiry) day: overdue (expired) from this instant.
    due_at: datetime | None = None
    #: Certifications: the renewal window opens (00:00 local), the grace period ends.
    window_opens_at: datetime | None = None
    grace_ends_at: datetime | None = None
    #: The end of the exemption's last day (the request's ``exempt_until``).
    exemption_lapses_at: datetime | None = None
    #: The zone's UTC offset on the due date, for the workflow's local-date arithmetic.
    utc_offset_minutes: int | None = None
    #: The requirement's assessment gate (None: none; plans recorded before gates have none).
    gate: GateSpec | None = None


class DecideRequest(Contract):
    """Activity input: decide one obligation's status with its pinned pack."""

    workflow_id: str
    pack_hash: str
    person: str
    kind: ObligationKind
    requirement_id: str
    due_date: date | None
    expiry_date: date | None = None
    completed: bool = False
    acknowledged: bool = False
    started: bool = False
    exempt: bool = False
    #: Workflow time of the decision; "today" is the person's local date at this instant.
    as_of: datetime
    #: Certifications: CE credits still needed for renewal.
    ce_credits_short: int = 0
    #: The exemption's last day (None: until revoked, or not exempt).
    exempt_until: date | None = None
    #: The workflow event that led to this decision (recorded with it, for as-of answers).
    trigger: str | None = None

    @classmethod
    def of(
        cls,
        facts: ObligationFacts,
        *,
        workflow_id: str,
        pack_hash: str,
        person: str,
        as_of: datetime,
    ) -> DecideRequest:
        """The request deciding ``facts`` (what workflows send; the sweep reads the same)."""
        return cls(
            workflow_id=workflow_id,
            pack_hash=pack_hash,
            person=person,
            kind=facts.kind,
            requirement_id=facts.requirement_id,
            due_date=facts.due_date,
            expiry_date=facts.expiry_date,
            completed=facts.completed,
            acknowledged=facts.acknowledged,
            started=facts.started,
            exempt=facts.exempt,
            exempt_until=facts.exempt_until,
            as_of=as_of,
            ce_credits_short=facts.ce_credits_short,
        )

    def facts(self) -> ObligationFacts:
        """The obligation facts of this request."""
        return ObligationFacts(
            kind=self.kind,
            requirement_id=self.requirement_id,
            due_date=self.due_date,
            expiry_date=self.expiry_date,
            completed=self.completed,
            acknowledged=self.acknowledged,
            started=self.started,
            exempt=self.exempt,
            exempt_until=self.exempt_until,
            ce_credits_short=self.ce_credits_short,
        )


class RedeliverSignal(Contract):
    """Signal: a sent message bounced or went undelivered; re-send the stage (next channel)."""

    notification_id: int
    stage: str
    reason: str = Field(default="", max_length=300)


class ReplanSignal(Contract):
    """The person's time zone changed: re-plan the stages not yet sent in their new zone."""

    time_zone: str = Field(max_length=64)
    actor: str = Field(default="directory", max_length=128)


class ObligationMessages:
    """The signals every obligation family's workflow answers, for senders to reference.

    Each family's workflow subclasses this and overrides every method with the same
    decorator (the SDK refuses an undecorated override). Activities and services send
    ``handle.signal(ObligationMessages.replan, ReplanSignal(...))`` to any family's workflow:
    the signal's name and argument type come from here, never from a string, and the
    workflows (a floor above) need not be imported to send them.
    """

    @workflow.signal
    def acknowledge(self, signal: AcknowledgeSignal) -> None:
        """The person acknowledged a reminder."""
        raise NotImplementedError

    @workflow.signal
    def adopt_pack(self, signal: AdoptPackSignal) -> None:
        """A newer rules pack was deployed."""
        raise NotImplementedError

    @workflow.signal
    def redeliver(self, signal: RedeliverSignal) -> None:
        """A message of a sent stage bounced permanently: send that stage again."""
        raise NotImplementedError

    @workflow.signal
    def replan(self, signal: ReplanSignal) -> None:
        """The person's time zone changed: plan what has not happened yet again."""
        raise NotImplementedError
