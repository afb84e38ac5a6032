"""Contracts of the apprenticeship family: workflow input, messages, query, activity requests.

One input model per workflow, signal, update and activity (they can grow without breaking
running workflows). The hours entry, the evaluation and the statuses live here too (floor 1):
the progress maths (:mod:`rules.apprenticeship`) and every contract build on them.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from domain.contracts.obligation import LadderEvent

__all__ = [
    "APPRENTICESHIP_KIND",
    "ApprenticeshipEvent",
    "ApprenticeshipInput",
    "ApprenticeshipState",
    "AwardRequest",
    "Carried",
    "ChangeEnrolment",
    "ComplianceStatus",
    "DecideApprenticeship",
    "EnrollmentStatus",
    "EnrolmentAction",
    "EntryRefused",
    "EntryStatus",
    "Evaluation",
    "HoursEntry",
    "HoursKind",
    "LogHours",
    "NoticeRequest",
    "ProgramRequest",
    "RecordApprenticeship",
    "RecordEntry",
    "RecordEvaluation",
    "ReviewHours",
    "SubmitEvaluation",
    "TransferSupervisor",
    "apprenticeship_workflow_id",
    "skill_key",
]

APPRENTICESHIP_KIND = "apprenticeship"
#: The error type a refused hours entry fails its update with (the API answers 422).
EntryRefused = "EntryRefused"


def apprenticeship_workflow_id(person: str, program: str) -> str:
    """The business key: one apprenticeship per (person, program)."""
    return f"apprenticeship/{person}/{program}"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_SPACES = re.compile(r"\s+")


def skill_key(skill: str) -> str:
    """How skills are compared: case-insensitive, spaces collapsed.

    A sign-off for ``"hoistway  safety"`` counts for ``"Hoistway safety"``.
    """
    return _SPACES.sub(" ", skill).strip().casefold()


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class HoursKind(StrEnum):
    """On-the-job (OJL) work or related classroom instruction (RTI)."""

    WORK = "work"
    CLASSROOM = "classroom"


class EntryStatus(StrEnum):
    """Where an hours entry is in its approval."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class EnrollmentStatus(StrEnum):
    """Where an apprenticeship is in its life."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"


class HoursEntry(_Frozen):
    """One hours entry, as logged (``hours`` is checked by :func:`check_entry`, not here).

    Attributes:
        id: The entry's id, chosen by whoever logs it (idempotent: the same id and content is
            the same entry).
        day: The day the hours were worked or taught (the apprentice's local date).
        kind: Work or classroom.
        hours: Hours that day.
        status: Pending until the supervisor approves or rejects it.
        skills: Skill tags: what the hours practised.
        description: In the apprentice's words.
    """

    id: str = Field(min_length=1, max_length=100)
    day: date
    kind: HoursKind
    hours: float
    status: EntryStatus = EntryStatus.PENDING
    skills: list[str] = Field(default_factory=list, max_length=50)
    description: str = Field(default="", max_length=2000)

    def same_content(self, other: HoursEntry) -> bool:
        """Whether ``other`` logs the same thing (status aside: approval does not change it)."""
        return (
            self.day == other.day
            and self.kind is other.kind
            and self.hours == other.hours
            and [skill_key(s) for s in self.skills] == [skill_key(s) for s in other.skills]
            and self.description == other.description
        )


class Evaluation(_Frozen):
    """A supervisor's evaluation.

    Attributes:
        day: When it was done.
        score: 0-100.
        skills_signed_off: Skills the supervisor signed off in it.
        final: The final evaluation graduation looks at.
    """

    day: date
    score: int = Field(ge=0, le=100)
    skills_signed_off: list[str] = Field(default_factory=list, max_length=200)
    final: bool = False


class ComplianceStatus(StrEnum):
    """How an active apprenticeship is doing against its program (the built-in answers).

    A pack with status rules for programs decides instead, with the statuses it declares (the
    field-technicians pack uses these same four).
    """

    ON_TRACK = "on_track"
    BEHIND = "behind"
    STALLED = "stalled"
    #: Not active: suspended, withdrawn or completed (the enrolment status says which).
    INACTIVE = "inactive"


class ApprenticeshipEvent(LadderEvent):
    """One line of an apprenticeship's readable timeline (the ladder runner keeps it)."""


class Carried(_Model):
    """What a run hands the next one at continue-as-new: a summary, not the history.

    Approved hours are folded into at most two entries per kind (before and after the latest
    evaluation, so period-end evaluations stay answered); pending entries are carried as they
    are; skills signed off keep their first day. The store keeps every entry and evaluation.
    """

    period: int
    status: EnrollmentStatus
    active_since: date | None = None
    suspended_on: date | None = None
    paused_days: int = 0
    supervisor: str
    entries: list[HoursEntry] = Field(default_factory=list)
    #: Ids of every entry ever recorded (idempotency across runs) and a content fingerprint.
    entry_ids: dict[str, str] = Field(default_factory=dict)
    last_evaluation: Evaluation | None = None
    evaluations_done: int = 0
    signed_off: dict[str, date] = Field(default_factory=dict)
    #: Ledger keys of notices already sent (advancements, escalations, stall steps).
    sent: list[str] = Field(default_factory=list)
    runs: int = 1
    events_before: int = 0


class ApprenticeshipInput(_Model):
    """Workflow input: one person's enrolment in one program of a pinned pack version.

    Attributes:
        person: The apprentice's external id.
        program_id: The program (``programs:`` of the pinned pack).
        pack_hash: The pack version the enrolment is pinned to.
        supervisor: The supervising journeyworker's external id.
        enrolled_on: The enrolment date (the apprentice's local date).
        utc_offset_minutes: The apprentice's UTC offset, for their local date.
        enrolled_by: Who enrolled them (audit).
        carried: The previous run's summary (None: the first run).
    """

    person: str = Field(min_length=1, max_length=64)
    program_id: str = Field(min_length=1, max_length=80)
    pack_hash: str
    supervisor: str = Field(min_length=1, max_length=64)
    enrolled_on: date
    utc_offset_minutes: int = 0
    enrolled_by: str = "system"
    carried: Carried | None = None

    @property
    def workflow_id(self) -> str:
        """``apprenticeship/{person}/{program}``."""
        return apprenticeship_workflow_id(self.person, self.program_id)


class LogHours(_Model):
    """Update: log one hours entry (pending until the supervisor reviews it).

    Attributes:
        entry: The entry (its id makes a retry idempotent).
        actor: Who logged it.
        source: api, csv or xapi.
        corrects: The id of an entry this one corrects (that one is rejected with ``reason``).
        reason: Why, for a correction.
    """

    entry: HoursEntry
    actor: str
    source: str = "api"
    corrects: str | None = None
    reason: str | None = Field(default=None, max_length=2000)


class ReviewHours(_Model):
    """Update: the supervisor approves or rejects a pending entry (rejection needs a reason).

    ``withdraw`` (a voided xAPI statement) also rejects an entry already approved, as long as
    it is still held one by one (not folded into a summary at a period's continue-as-new).
    """

    entry_id: str
    approve: bool
    actor: str
    reason: str | None = Field(default=None, max_length=2000)
    withdraw: bool = False


class SubmitEvaluation(_Model):
    """Update: the supervisor's evaluation (score, skills signed off, notes)."""

    evaluation_id: str = Field(min_length=1, max_length=100)
    evaluation: Evaluation
    notes: str = Field(default="", max_length=4000)
    actor: str


class EnrolmentAction(StrEnum):
    """What HR does to an enrolment."""

    SUSPEND = "suspend"
    REINSTATE = "reinstate"
    WITHDRAW = "withdraw"


class ChangeEnrolment(_Model):
    """Update: suspend, reinstate or withdraw (HR)."""

    action: EnrolmentAction
    actor: str
    reason: str = Field(default="", max_length=2000)


class TransferSupervisor(_Model):
    """Update: a new supervising journeyworker (HR)."""

    supervisor: str = Field(min_length=1, max_length=64)
    actor: str
    reason: str = Field(default="", max_length=2000)


class ApprenticeshipState(_Model):
    """What the workflow's ``state`` query (and every update) answers."""

    workflow_id: str
    person: str
    program_id: str
    pack_hash: str
    supervisor: str
    status: EnrollmentStatus
    #: A :class:`ComplianceStatus` value, or a status the pinned pack's rules declare.
    compliance_status: str
    #: The pack's status rule that decided it, or ``apprenticeship:*`` (built in).
    decided_by: str
    period: int
    wage_percentage: float
    enrolled_on: date
    expected_completion: date
    completed_on: date | None
    today: date
    work_approved: float
    classroom_approved: float
    work_pending: float
    classroom_pending: float
    work_expected: float
    classroom_expected: float
    days_since_approved_hours: int
    evaluation_due_on: date | None
    evaluation_overdue: bool
    skills_signed_off: list[str]
    skills_pending: list[str]
    unmet: list[str]
    entries: list[HoursEntry]
    evaluations_done: int
    runs: int
    events: list[ApprenticeshipEvent]


# -- activity requests ---------------------------------------------------------------------


class ProgramRequest(_Model):
    """Activity input: the program of a pinned pack version."""

    pack_hash: str
    program_id: str


class DecideApprenticeship(_Model):
    """Activity input: the compliance status under the pinned pack's status rules.

    Attributes:
        workflow_id: The apprenticeship.
        person: The apprentice (their directory attributes join the facts).
        pack_hash: The pinned pack version.
        facts: The program's facts (``rules.apprenticeship.apprenticeship_facts`` without the
            person's attributes).
    """

    workflow_id: str
    person: str
    pack_hash: str
    facts: dict[str, int | bool | str]


class NoticeRequest(_Model):
    """Activity input: tell ``notify`` about an apprenticeship event, exactly once (ledger).

    Attributes:
        workflow_id: The apprenticeship.
        person: The apprentice.
        supervisor: The supervisor at the time.
        pack_hash: The pinned pack (HR mailbox, sponsor contact).
        program_id: The program.
        key: The ledger stage (at most 16 characters): the same key is sent once.
        event: advanced, evaluation_overdue, stalled, graduated, suspended...
        notify: apprentice, supervisor, supervisors_manager, sponsor, hr.
        channels: email, sms, slack, in_app.
        subject: The message subject.
        text: The message body (no personal data beyond the apprentice's name).
        fired_at: When the workflow decided to send it.
    """

    workflow_id: str
    person: str
    supervisor: str
    pack_hash: str
    program_id: str
    key: str = Field(min_length=1, max_length=16)
    event: str
    notify: list[str]
    channels: list[str] = Field(default_factory=lambda: ["email"])
    subject: str
    text: str
    fired_at: datetime


class RecordApprenticeship(_Model):
    """Activity input: upsert the enrolment read model and the obligation row."""

    workflow_id: str
    state: ApprenticeshipState
    program_name: str
    as_of: datetime


class RecordEntry(_Model):
    """Activity input: insert or update one hours entry's row (by workflow and entry id)."""

    workflow_id: str
    entry: HoursEntry
    source: str = "api"
    logged_by: str
    corrects: str | None = None
    reason: str | None = None
    reviewed_by: str | None = None
    review_reason: str | None = None
    reviewed_at: datetime | None = None


class RecordEvaluation(_Model):
    """Activity input: insert one evaluation's row (idempotent by its id)."""

    workflow_id: str
    evaluation_id: str
    evaluation: Evaluation
    notes: str
    evaluator: str


class AwardRequest(_Model):
    """Activity input: register the certifications a graduation awards."""

    workflow_id: str
    person: str
    pack_hash: str
    certification_ids: list[str]
    issued_on: date
