"""Domain types shared by the API, the workflows and the activities.

Everything here is pure (no I/O) so workflows may import it inside the Temporal sandbox.
"""

from __future__ import annotations

import calendar
import math
import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError
from temporalio import workflow

#: External ids end up in workflow ids and URLs, so they stay URL- and path-safe.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ExternalId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

#: The skeleton's fixed reminder ladder, in days before the due date (0 = the due day).
DEFAULT_LADDER_DAYS: tuple[int, ...] = (90, 60, 30, 14, 7, 0)

#: Reminders land at this local hour in the learner's time zone.
REMINDER_HOUR = 9

#: Marks decisions made before a rules pack is deployed (the skeleton's built-in ladder).
BUILTIN_PACK = "builtin"


# ---------------------------------------------------------------------------------------------
# Bounds. Two layers, because workflow inputs are validated inside workflows too (when a run
# decodes its input, a signal or an update), where there is no trustworthy "today":
#
# * absolute bounds (here, on the models): every date 1970-01-01 … 2200-12-31, every instant in
#   those years, cycles 1 … 1000, scores finite. Clock-free, so replay-safe, and wide enough
#   that no ladder (stages at most ~10 years from the date), grace period or recurrence (at
#   most 20 years) can overflow date arithmetic or an int4 column;
# * the relative window (DateWindow / InstantWindow below, fed by settings at the API, CLI and
#   service layer): due and expiry dates today − 5 y … today + 10 y, evidence no later than
#   now + 5 min. A value outside either answers 422 naming the field, the value and the range.
# ---------------------------------------------------------------------------------------------

#: The earliest and latest dates any workflow input may carry.
MIN_DATE = date(1970, 1, 1)
MAX_DATE = date(2200, 12, 31)
#: The earliest and latest instants any workflow input may carry (UTC).
MIN_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
MAX_INSTANT = datetime(2200, 12, 31, 23, 59, 59, tzinfo=UTC)
#: Cycles of one obligation (a monthly training for 80 years is under 1,000).
MAX_CYCLE = 1000
#: The largest magnitude a reported score may have (any LMS scale fits).
MAX_SCORE = 1_000_000.0


class OutOfRange(ValueError):
    """A value outside its allowed range: which field, the value, the range and how to fix it.

    The API turns it into a 422 in FastAPI's validation shape (``loc``, ``msg``, ``input``,
    ``ctx``); the CLI prints :meth:`__str__`.

    Args:
        field: The field as the caller named it (``due_date``, ``cycle``).
        value: The value given.
        minimum: The smallest allowed value.
        maximum: The largest allowed value.
        hint: Why the range is what it is (a setting, "now + 5 min").
    """

    def __init__(
        self, field: str, value: object, minimum: object, maximum: object, hint: str = ""
    ) -> None:
        self.field = field
        self.value = value
        self.minimum = minimum
        self.maximum = maximum
        self.hint = hint
        super().__init__(f"{field} {_show(value)} is out of range: {self.detail}")

    @property
    def detail(self) -> str:
        """The allowed range in words (without the field)."""
        hint = f" ({self.hint})" if self.hint else ""
        return f"allowed {_show(self.minimum)} to {_show(self.maximum)}{hint}"

    def error(self, loc: tuple[str | int, ...] = ("body",)) -> dict[str, object]:
        """This problem as one item of a 422 ``detail`` list (FastAPI's validation shape)."""
        return {
            "type": "out_of_range",
            "loc": (*loc, self.field),
            "msg": f"{self.field} {_show(self.value)} is out of range: {self.detail}",
            "input": _show(self.value),
            "ctx": {"min": _show(self.minimum), "max": _show(self.maximum)},
        }


def _show(value: object) -> str:
    return value.isoformat() if isinstance(value, date | datetime) else str(value)


def _range_error(value: object, minimum: object, maximum: object) -> PydanticCustomError:
    return PydanticCustomError(
        "out_of_range",
        "{value} is out of range: allowed {min} to {max}",
        {"value": _show(value), "min": _show(minimum), "max": _show(maximum)},
    )


def _check_date(value: date) -> date:
    if not MIN_DATE <= value <= MAX_DATE:
        raise _range_error(value, MIN_DATE, MAX_DATE)
    return value


def _check_instant(value: datetime) -> datetime:
    # A time without an offset is read as UTC: compared with aware instants inside a workflow
    # it would otherwise raise TypeError there and fail the workflow task forever.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not MIN_INSTANT <= value <= MAX_INSTANT:
        raise _range_error(value, MIN_INSTANT, MAX_INSTANT)
    return value


def _check_cycle(value: int) -> int:
    if not 1 <= value <= MAX_CYCLE:
        raise _range_error(value, 1, MAX_CYCLE)
    return value


def _check_score(value: float) -> float:
    if not -MAX_SCORE <= value <= MAX_SCORE:  # also refuses NaN
        raise _range_error(value, -MAX_SCORE, MAX_SCORE)
    return value


#: A date a workflow input may carry (1970-01-01 … 2200-12-31).
BoundedDate = Annotated[date, AfterValidator(_check_date)]
#: An instant a workflow input may carry (in 1970 … 2200; no offset means UTC).
BoundedInstant = Annotated[datetime, AfterValidator(_check_instant)]
#: An obligation cycle (1 … 1000; part of the business key and an int4 column).
Cycle = Annotated[
    int, AfterValidator(_check_cycle), Field(json_schema_extra={"minimum": 1, "maximum": MAX_CYCLE})
]
#: A score as an LMS reports it: finite, within ±1,000,000.
Score = Annotated[
    float,
    AfterValidator(_check_score),
    Field(json_schema_extra={"minimum": -MAX_SCORE, "maximum": MAX_SCORE}),
]


class DateWindow(BaseModel):
    """The dates a caller may give for a due or expiry date, relative to today.

    Built from settings by the API, CLI and services (``Settings.due_date_window``); never
    inside a workflow, whose models only carry the absolute bounds.
    """

    model_config = ConfigDict(frozen=True)

    earliest: date
    latest: date
    hint: str = ""

    def check(self, field: str, value: date) -> None:
        """Raise :class:`OutOfRange` naming ``field`` when ``value`` is outside the window."""
        if not self.earliest <= value <= self.latest:
            raise OutOfRange(field, value, self.earliest, self.latest, self.hint)


class InstantWindow(BaseModel):
    """The instants a caller may give as evidence (completion, start): not in the future."""

    model_config = ConfigDict(frozen=True)

    earliest: datetime
    latest: datetime
    hint: str = ""

    def check(self, field: str, value: datetime) -> datetime:
        """``value`` (UTC when it has no offset), or :class:`OutOfRange` naming ``field``."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if not self.earliest <= value <= self.latest:
            raise OutOfRange(field, value, self.earliest, self.latest, self.hint)
        return value


def date_window(today: date, *, past_years: int, future_years: int) -> DateWindow:
    """Today − ``past_years`` … today + ``future_years``, kept inside the absolute bounds."""
    return DateWindow(
        earliest=max(MIN_DATE, add_months(today, -12 * past_years)),
        latest=min(MAX_DATE, add_months(today, 12 * future_years)),
        hint=f"today - {past_years} years to today + {future_years} years",
    )


def instant_window(now: datetime, *, past_years: int, skew_seconds: int) -> InstantWindow:
    """Now − ``past_years`` … now + ``skew_seconds`` (clocks differ a little, never by days)."""
    now = now.replace(microsecond=0)
    earliest = datetime.combine(add_months(now.date(), -12 * past_years), now.timetz())
    return InstantWindow(
        earliest=max(MIN_INSTANT, earliest),
        latest=min(MAX_INSTANT, now + timedelta(seconds=skew_seconds)),
        hint=f"not in the future: now + {skew_seconds} s clock skew at most,"
        f" and not before now - {past_years} years",
    )


class Role(StrEnum):
    """API roles; a token carries exactly one."""

    HR_ADMIN = "hr_admin"
    MANAGER = "manager"
    LEARNER = "learner"
    AUDITOR = "auditor"
    INTEGRATION = "integration"


class ObligationKind(StrEnum):
    """The kinds of obligation Duly tracks."""

    TRAINING = "training"
    CERTIFICATION = "certification"
    APPRENTICESHIP = "apprenticeship"
    MENTORSHIP = "mentorship"


class ObligationStatus(StrEnum):
    """An obligation's compliance status as shown to people."""

    ASSIGNED = "assigned"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class EmploymentStatus(StrEnum):
    """A person's employment status from the HRIS."""

    ACTIVE = "active"
    LEAVE = "leave"
    TERMINATED = "terminated"


def slugify(text: str) -> str:
    """Turn a title into a stable, id-safe slug (``HIPAA Privacy`` → ``hipaa-privacy``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:64] or "requirement"


def assignment_workflow_id(person: str, requirement: str, cycle: int) -> str:
    """The business key of a training assignment: one workflow per person, requirement and cycle."""
    return f"assignment/{person}/{requirement}/{cycle}"


def stage_label(days_before: int) -> str:
    """Name a ladder stage by its offset from the due date (``-30d``, ``0d``, ``+7d``)."""
    if days_before == 0:
        return "0d"
    return f"-{days_before}d" if days_before > 0 else f"+{-days_before}d"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LadderStage(_Model):
    """One planned reminder: its label, offset and the instant it fires (UTC)."""

    label: str
    days_before_due: int
    fire_at: datetime


def plan_ladder(
    due_date: date,
    utc_offset_minutes: int,
    days: tuple[int, ...] = DEFAULT_LADDER_DAYS,
) -> list[LadderStage]:
    """Plan the reminder ladder for a due date.

    Args:
        due_date: The calendar day the obligation is due.
        utc_offset_minutes: The learner's UTC offset on the due date, so reminders land at
            :data:`REMINDER_HOUR` local time. Resolved by the caller (time-zone data is I/O).
        days: Offsets in days before the due date.

    Returns:
        Stages ordered by firing time.
    """
    tz = timezone(timedelta(minutes=utc_offset_minutes))
    due_at = datetime.combine(due_date, time(REMINDER_HOUR), tzinfo=tz).astimezone(UTC)
    stages = [
        LadderStage(label=stage_label(d), days_before_due=d, fire_at=due_at - timedelta(days=d))
        for d in sorted(days, reverse=True)
    ]
    return stages


def due_instant(due_date: date, utc_offset_minutes: int) -> datetime:
    """The instant an obligation becomes overdue: the end of its due day, learner's local time.

    One fixed offset: kept for workflows started before zone-aware planning (see
    :func:`end_of_day_in_zone`, which the planning activity uses instead).
    """
    tz = timezone(timedelta(minutes=utc_offset_minutes))
    return datetime.combine(due_date + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)


# Zone-aware calendar maths. Pure: the caller passes a tzinfo (a ZoneInfo built in an activity,
# since reading the time-zone database is I/O a workflow may not do). Each instant is computed
# with the zone's offset *on its own day*, so a ladder that straddles a DST change still lands
# every stage at REMINDER_HOUR local time.


def local_instant(day: date, at: time, zone: tzinfo) -> datetime:
    """``day`` at wall-clock time ``at`` in ``zone``, as a UTC instant.

    A wall-clock time that does not exist (skipped by a DST change) resolves to the instant
    just after the gap, as ``zoneinfo`` does for ``fold=0``.
    """
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def plan_ladder_in_zone(
    due_date: date, zone: tzinfo, days: tuple[int, ...] | list[int] = DEFAULT_LADDER_DAYS
) -> list[LadderStage]:
    """Plan the ladder with every stage at :data:`REMINDER_HOUR` local time on its own day.

    Args:
        due_date: The calendar day the obligation is due (or the certificate expires).
        zone: The person's time zone.
        days: Offsets in days before the due date (negative: after it).

    Returns:
        Stages ordered by firing time.
    """
    return [
        LadderStage(
            label=stage_label(d),
            days_before_due=d,
            fire_at=local_instant(due_date - timedelta(days=d), time(REMINDER_HOUR), zone),
        )
        for d in sorted(days, reverse=True)
    ]


def end_of_day_in_zone(day: date, zone: tzinfo) -> datetime:
    """The instant ``day`` ends in ``zone`` (00:00 local on the next day), in UTC."""
    return local_instant(day + timedelta(days=1), time(0), zone)


def zone_offset_minutes(zone: tzinfo, day: date) -> int:
    """The zone's UTC offset at :data:`REMINDER_HOUR` on ``day`` (DST-correct for that date)."""
    offset = datetime.combine(day, time(REMINDER_HOUR), tzinfo=zone).utcoffset()
    return int(offset.total_seconds() // 60) if offset else 0


class ObligationFacts(_Model):
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


# ---------------------------------------------------------------------------------------------
# Assignment workflow contract (one input model per workflow, signal, query and activity).
# ---------------------------------------------------------------------------------------------


class AssignmentInput(_Model):
    """Starts an :class:`~workflows.assignment.AssignmentWorkflow`."""

    person: ExternalId
    requirement_id: ExternalId
    requirement_title: str = Field(min_length=1, max_length=200)
    due_date: BoundedDate
    cycle: Cycle = 1
    utc_offset_minutes: int = Field(default=0, ge=-14 * 60, le=14 * 60)
    assigned_by: str = "system"
    pack_hash: str = BUILTIN_PACK
    #: The requirement's kind (histories recorded before kinds were carried: training).
    kind: ObligationKind = ObligationKind.TRAINING
    #: Set when a run continued as new because its history grew long: where it stood.
    resume: AssignmentResume | None = None

    @property
    def workflow_id(self) -> str:
        """The business-key workflow id for this assignment."""
        return assignment_workflow_id(self.person, self.requirement_id, self.cycle)


class CompleteSignal(_Model):
    """Evidence that the learner completed the training."""

    completed_at: BoundedInstant
    source: str = Field(default="api", max_length=64)
    actor: str = Field(max_length=128)
    note: str | None = Field(default=None, max_length=1000)
    #: Score as reported by the LMS (scaled 0..1 for xAPI, or the LMS's own scale).
    score: Score | None = None
    #: False: a failed attempt — recorded, but it does not complete the obligation.
    passed: bool | None = None
    #: The LMS attempt / registration id or certificate number, for the audit trail.
    attempt_id: str | None = Field(default=None, max_length=200)
    certificate_id: str | None = Field(default=None, max_length=200)


class AcknowledgeSignal(_Model):
    """The learner (or someone on their behalf) acknowledged the reminders."""

    acknowledged_at: BoundedInstant
    actor: str = Field(max_length=128)
    channel: str = Field(default="api", max_length=32)


class LadderEvent(_Model):
    """One line of an obligation workflow's own readable timeline."""

    at: datetime
    kind: str
    detail: str


class AssignmentEvent(LadderEvent):
    """One line of an assignment's timeline (``assigned``, ``reminder_sent``, …)."""


class AssignmentState(_Model):
    """What the workflow's ``state`` query answers."""

    workflow_id: str
    person: str
    requirement_id: str
    requirement_title: str
    cycle: int
    due_date: date
    #: A built-in status or one the pinned rules pack declares.
    status: str
    stage: str | None
    stages: list[LadderStage]
    stages_sent: list[str]
    acknowledged_at: datetime | None
    completed_at: datetime | None
    pack_hash: str
    events: list[AssignmentEvent]
    #: Failed attempts (``complete`` with ``passed`` false) this cycle: all are counted, the
    #: first :data:`NOTED_REPEATS` are listed in ``events``.
    failed_attempts: int = 0


class ObligationUpdate(_Model):
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


class ReminderRequest(_Model):
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


class ReminderResult(_Model):
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


# ---------------------------------------------------------------------------------------------
# Rules pack contract: pinning, decisions as activities, migrations of running workflows.
# ---------------------------------------------------------------------------------------------


class PackMigration(StrEnum):
    """How running workflows take up a newly deployed pack (see store.packs.Migration)."""

    REBASE = "rebase"
    APPLY_NOW = "apply_now"


class PlanRequest(_Model):
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


class StagePlan(_Model):
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


class DecideRequest(_Model):
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


class AdoptPackSignal(_Model):
    """Signal: a new pack was deployed with ``rebase`` or ``apply_now``."""

    pack_hash: str
    mode: PackMigration
    deployed_by: str = Field(default="hr_admin", max_length=128)


class RolloutRequest(_Model):
    """Activity input: signal every running workflow pinned to another pack."""

    pack_hash: str
    mode: PackMigration
    deployed_by: str


class RolloutResult(_Model):
    """Activity output: how many workflows were signalled or had already finished."""

    signalled: int
    finished: int


class SweepRequest(_Model):
    """Activity input: re-decide every open obligation's status with its pinned pack."""

    #: The instant to decide as of; "today" is each person's local date at this instant.
    as_of: datetime


class SweepResult(_Model):
    """Activity output: how many obligations were re-decided and how many changed status."""

    evaluated: int
    changed: int
    #: "old -> new" status transitions and their counts.
    transitions: dict[str, int] = Field(default_factory=dict)
    #: Obligations skipped because their pack is not stored or lacks the requirement.
    skipped: int = 0
    #: Rows their workflow wrote after the sweep read them (compare-and-set lost): left as the
    #: workflow wrote them; the next sweep decides them again.
    conflicts: int = 0
    #: Open obligations signalled to re-plan because their person moved time zone.
    replanned: int = 0


class RedeliverSignal(_Model):
    """Signal: a sent message bounced or went undelivered; re-send the stage (next channel)."""

    notification_id: int
    stage: str
    reason: str = Field(default="", max_length=300)


class DigestItem(_Model):
    """Signal: one queued (non-final) reminder to fold into the person's digest of the day."""

    notification_id: int


class DigestInput(_Model):
    """Starts a :class:`~workflows.digest.DigestWorkflow` for one person, day and channel."""

    person: str
    channel: str
    day: BoundedDate
    #: How long the first reminder waits for others (settings.digest_window_seconds).
    window_seconds: int = Field(default=600, ge=0, le=86_400)


class DigestRequest(_Model):
    """Activity input: send the queued reminders of one person/day/channel (one, or a digest)."""

    person: str
    channel: str
    day: date
    notification_ids: list[int]


class DigestResult(_Model):
    """Activity output: how the queued reminders went out."""

    sent: int
    folded: int
    status: str


class StartSignal(_Model):
    """The learner began the training (LMS launch, xAPI ``launched``/``attempted``)."""

    started_at: BoundedInstant
    actor: str = Field(max_length=128)
    source: str = Field(default="api", max_length=64)


class ExtendDueDate(_Model):
    """Update: move the due date later (manager or HR), with a reason."""

    new_due_date: BoundedDate
    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field(max_length=128)


class ExemptSignal(_Model):
    """HR exempts the person; the exemption lapses on ``expires_on`` (None: until revoked)."""

    reason: str = Field(min_length=3, max_length=500)
    approver: str = Field(max_length=128)
    actor: str = Field(max_length=128)
    expires_on: BoundedDate | None = None


class ReplanSignal(_Model):
    """The person's time zone changed: re-plan the stages not yet sent in their new zone."""

    time_zone: str = Field(max_length=64)
    actor: str = Field(default="directory", max_length=128)


class ReplanRequest(_Model):
    """Activity input: signal every open obligation planned in a zone its person has left."""

    actor: str = Field(default="directory", max_length=128)


class ReplanResult(_Model):
    """Activity output: workflows signalled to re-plan, and those that had finished since."""

    signalled: int = 0
    finished: int = 0


class CancelSignal(_Model):
    """The obligation no longer applies (role change, left the company, assigned in error)."""

    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field(max_length=128)


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


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months, clamped to the month's end (Jan 31 + 1 → Feb 28)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def next_due_date(
    *,
    basis: str,
    months: int,
    completed_on: date,
    previous_due: date,
    anniversary: str | None = None,
) -> date:
    """The next cycle's due date.

    * ``from_completion``: the completion date plus the period (late or early, it counts);
    * ``from_previous_due``: the previous due date plus the period (a late completion does not
      shift the schedule, an early one does not pull it forward);
    * ``fixed_anniversary``: the first ``MM-DD`` more than half a period after the previous due
      date (so a first cycle due just before the anniversary is not followed by a second one
      two weeks later); Feb 29 falls on Feb 28 in other years.
    """
    if basis == "from_previous_due":
        return add_months(previous_due, months)
    if basis == "fixed_anniversary" and anniversary:
        month, day = (int(x) for x in anniversary.split("-"))
        threshold = add_months(previous_due, max(1, months // 2))
        year = threshold.year
        while True:
            candidate = date(year, month, min(day, calendar.monthrange(year, month)[1]))
            if candidate > threshold:
                return candidate
            year += 1
    return add_months(completed_on, months)


# ---------------------------------------------------------------------------------------------
# Certification workflow contract.
# ---------------------------------------------------------------------------------------------


def certification_workflow_id(person: str, certification: str) -> str:
    """The business key of a held certification: one workflow per person and certification.

    Every cycle (issue → renewal) runs under this id; each renewal continues as new.
    """
    return f"certification/{person}/{certification}"


def ce_credits_short(required: float, logged: float) -> int:
    """Whole continuing-education credits still missing (0 when enough are logged)."""
    return max(0, math.ceil(required - logged))


class CertificationStatus(StrEnum):
    """Statuses a certification workflow sets itself (the rest come from the pack's rules)."""

    SUSPENDED = "suspended"
    REVOKED = "revoked"
    SUPERSEDED = "superseded"


class CertificateRecord(_Model):
    """One issued certificate: a cycle of a certification."""

    cycle: Cycle
    certificate_number: str | None = Field(default=None, max_length=120)
    #: The public verification code (``GET /verify/{code}``).
    verification_code: str = Field(pattern=r"^[A-Z0-9-]{6,40}$")
    issued_on: BoundedDate
    expires_on: BoundedDate
    issuer: str | None = Field(default=None, max_length=200)
    evidence_ref: str | None = Field(default=None, max_length=500)


def renewal_date_problem(
    current: CertificateRecord, *, issued_on: date, expires_on: date
) -> str | None:
    """Why a renewed certificate's dates cannot follow ``current`` (None when they can).

    The one check: the API answers 422 with it before asking, and the workflow's ``renew``
    validator refuses with it (a caller that skipped the API).
    """
    if expires_on <= issued_on:
        return (
            f"expires_on ({expires_on.isoformat()}) must be after issued_on"
            f" ({issued_on.isoformat()})"
        )
    if expires_on <= current.expires_on:
        return (
            f"the renewed certificate must expire after the current one"
            f" ({current.expires_on.isoformat()}); got expires_on {expires_on.isoformat()}"
        )
    if issued_on < current.issued_on:
        return (
            f"issued_on ({issued_on.isoformat()}) is before the current certificate was issued"
            f" ({current.issued_on.isoformat()})"
        )
    return None


def ce_shortfall(required: float, logged: float, *, how: str = "log them") -> str | None:
    """Why a renewal must wait for CE credits, or None when enough are logged.

    Args:
        required: Credits the cycle requires.
        logged: Credits logged this cycle.
        how: How to log them (the API names its endpoint).
    """
    short = ce_credits_short(required, logged)
    if short <= 0:
        return None
    return (
        f"{short} CE credit{'s' if short != 1 else ''} short: {logged:g} of"
        f" {required:g} logged this cycle; {how} before renewing"
    )


#: The most CE credit entries one certification cycle keeps (``log_ce_credits`` refuses more,
#: and a refused update writes nothing to the workflow's history). Far above any real cycle
#: (dozens of courses), far below Temporal's 2,000 updates per run, so renewal always fits.
CE_CREDIT_ENTRIES_PER_CYCLE = 200
#: How many lines of one kind a message a client may repeat at will (a failed attempt, an
#: ignored completion) adds to a workflow's timeline; the rest are counted, not listed.
NOTED_REPEATS = 20


#: A ladder workflow's run continues as new (carrying its state) once its history reaches this
#: many events, or earlier when the server suggests it: Temporal ends a run at 51,200 events, and
#: every signal is an event whatever the workflow does with it. An ordinary run stays far below
#: (a few hundred). Read at each check, so tests may lower it.
HISTORY_LIMIT = 10_000


class CeCredit(_Model):
    """Continuing-education credits logged against the current cycle (an update's input)."""

    credits: float = Field(gt=0, le=1000, allow_inf_nan=False)
    activity: str = Field(min_length=2, max_length=300)
    earned_on: BoundedDate
    evidence_ref: str | None = Field(default=None, max_length=500)
    actor: str = Field(max_length=128)


class ClosedCycle(_Model):
    """The record of a finished cycle, kept in the next cycle's input (bounded: one per cycle)."""

    certificate: CertificateRecord
    #: renewed_early, renewed_in_window, renewed_in_grace, renewed_after_grace.
    outcome: str
    closed_on: BoundedDate
    ce_credits_logged: float = Field(default=0, ge=0, le=1_000_000, allow_inf_nan=False)
    #: The final status of the cycle before it closed (e.g. renewal_due, grace_period).
    last_status: str
    #: The run that carried the cycle (its history stays readable under the same workflow id).
    run_id: str


class CertificationInput(_Model):
    """Starts (or, after a renewal, continues) a ``CertificationWorkflow``."""

    person: ExternalId
    certification_id: ExternalId
    title: str = Field(min_length=1, max_length=200)
    certificate: CertificateRecord
    pack_hash: str = BUILTIN_PACK
    utc_offset_minutes: int = Field(default=0, ge=-14 * 60, le=14 * 60)
    registered_by: str = "system"
    #: Earlier cycles, oldest first (carried across continue-as-new).
    history: list[ClosedCycle] = Field(default_factory=list)
    #: CE credits already logged in this cycle: a restart (``services.restarts``) carries them into
    #: the fresh run; empty for a new cycle.
    ce_credits: list[CeCredit] = Field(default_factory=list, max_length=1000)

    @property
    def workflow_id(self) -> str:
        """The business-key workflow id."""
        return certification_workflow_id(self.person, self.certification_id)


class RenewCertification(_Model):
    """Update: a renewed certificate; the cycle closes and the next one begins."""

    certificate: CertificateRecord
    actor: str = Field(max_length=128)


class SuspendCertification(_Model):
    """Signal (HR): pause the certification (reminders stop) until it is reinstated."""

    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field(max_length=128)


class ReinstateCertification(_Model):
    """Signal (HR): lift a suspension; the ladder resumes from now."""

    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field(max_length=128)


class RevokeCertification(_Model):
    """Signal (HR): revoke the certification; terminal, reminders stop."""

    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field(max_length=128)


class CertificationEvent(LadderEvent):
    """One line of a certification's timeline (``issued``, ``renewed``, ``lapsed``, …)."""


class CertificationState(_Model):
    """What the certification workflow's ``state`` query answers."""

    workflow_id: str
    person: str
    certification_id: str
    title: str
    cycle: int
    status: str
    certificate: CertificateRecord
    renewal_opens_on: date | None
    grace_ends_on: date | None
    stage: str | None
    stages: list[LadderStage]
    stages_sent: list[str]
    ce_credits_required: float
    ce_credits_logged: float
    ce_credits: list[CeCredit]
    history: list[ClosedCycle]
    pack_hash: str
    events: list[CertificationEvent]

    @property
    def ce_credits_short(self) -> int:
        """Whole credits still missing for renewal (0 when enough are logged)."""
        return ce_credits_short(self.ce_credits_required, self.ce_credits_logged)


class CertificateUpdate(_Model):
    """Activity input: upsert one certificate's public verification record."""

    workflow_id: str
    person: str
    certification_id: str
    title: str
    certificate: CertificateRecord
    status: str
    as_of: datetime


# -- bulk assignment (workflows.bulk.BulkAssignWorkflow, activities.bulk) -----------------

#: People per ``start_bulk_assignments`` activity call (one progress update per window).
WINDOW = 500
#: First errors kept in :class:`BulkProgress` (the rest are only counted).
MAX_ERRORS = 20


def bulk_workflow_id(bulk_id: str) -> str:
    """The business-key workflow id of a bulk job."""
    return f"bulk/{bulk_id}"


class _Bulk(BaseModel):
    # Not frozen: the workflow adds each window's counts to its BulkProgress.
    model_config = ConfigDict(extra="forbid")


class BulkSelector(_Bulk):
    """Who a bulk job is for. Criteria are ANDed; the values inside one criterion are ORed.

    An empty selector matches every active employee. Only people whose employment status is
    ``active`` are ever selected.
    """

    roles: list[str] | None = Field(default=None, description="Has any of these roles.")
    departments: list[str] | None = Field(default=None, description="In one of these.")
    locations: list[str] | None = Field(default=None, description="At one of these.")
    manager: ExternalId | None = Field(
        default=None, description="Reports (transitively) to this person's external id."
    )
    people: list[ExternalId] | None = Field(default=None, description="One of these ids.")


class BulkAssignRequest(_Bulk):
    """Assign one requirement to everyone the selector matches."""

    bulk_id: ExternalId
    requirement_id: ExternalId
    requirement_title: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Needed only when the active pack does not define the requirement.",
    )
    due_date: BoundedDate | None = Field(
        default=None, description="Defaults to today + the pack requirement's due_in_days."
    )
    selector: BulkSelector = Field(default_factory=BulkSelector)
    assigned_by: str


class BulkProgress(_Bulk):
    """How far a bulk job is: ``started + skipped + failed`` people of ``total`` are done."""

    bulk_id: str
    total: int = 0
    started: int = 0
    skipped: int = Field(default=0, description="Already had the obligation.")
    failed: int = 0
    done: bool = False
    errors: list[str] = Field(default_factory=list, description=f"The first {MAX_ERRORS}.")


class BulkPlan(_Bulk):
    """Result of ``resolve_bulk_targets``: what the job will do, fixed for its lifetime."""

    people: list[str]
    requirement_id: str
    requirement_title: str
    due_date: date
    pack_hash: str | None = Field(description="The active pack at resolve time, if any.")


class BulkWindow(_Bulk):
    """Input of ``start_bulk_assignments``: one window of the plan."""

    bulk_id: str
    requirement_id: str
    requirement_title: str
    due_date: date
    pack_hash: str | None
    assigned_by: str
    people: list[str]


class BulkWindowResult(_Bulk):
    """What one ``start_bulk_assignments`` call did."""

    started: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = Field(default_factory=list)


class BulkAssignInput(_Bulk):
    """The workflow's input: the request, plus the carried-over state after continue-as-new."""

    request: BulkAssignRequest
    plan: BulkPlan | None = None
    offset: int = 0
    progress: BulkProgress | None = None
    window: int = Field(default=WINDOW, ge=1, le=5000, description="People per activity call.")


class AssignmentResume(_Model):
    """Where an assignment stood when its run continued as new (its history grew long)."""

    #: When the first run of this cycle started (evidence older than it counts for an earlier
    #: cycle).
    first_started_at: datetime
    due_date: date
    due_at: datetime
    in_zone: bool
    lapse_at: datetime | None
    pack_hash: str
    pending: AdoptPackSignal | None
    started: StartSignal | None
    acknowledgement: AcknowledgeSignal | None
    exemption: ExemptSignal | None
    max_extension_days: int
    days_before: list[int]
    recurrence: StagePlan | None
    upcoming: list[LadderStage]
    overdue_for: date | None
    stages: list[LadderStage]
    sent: list[str]
    stage: str | None
    last_sent_at: datetime | None
    events: list[AssignmentEvent]
    zone: str | None
    offset: int
    redeliver: list[RedeliverSignal]
    repeats: dict[str, int]
    continued: int = Field(default=1, ge=1)


AssignmentInput.model_rebuild()
