"""Assignment workflow contract (``workflows.assignment.AssignmentWorkflow``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field
from temporalio import workflow

from domain.base import Contract
from domain.bounds import BoundedDate, BoundedInstant, Cycle, Score
from domain.calendar import LadderStage
from domain.contracts.obligation import (
    AcknowledgeSignal,
    GateSpec,
    LadderEvent,
    RedeliverSignal,
    StagePlan,
)
from domain.contracts.packs import AdoptPackSignal
from domain.ids import BUILTIN_PACK, ExternalId, assignment_workflow_id
from domain.kinds import ObligationKind


class AssignmentInput(Contract):
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
    #: The track whose enrolment assigned this course (None: assigned on its own). Its course's
    #: own ``passing_score`` then overrides the requirement's in the assessment gate.
    track_id: ExternalId | None = None
    #: Set when a run continued as new because its history grew long: where it stood.
    resume: AssignmentResume | None = None

    @property
    def workflow_id(self) -> str:
        """The business-key workflow id for this assignment."""
        return assignment_workflow_id(self.person, self.requirement_id, self.cycle)


class CompleteSignal(Contract):
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
    #: The score as a percentage (0..100), what a requirement's ``passing_score`` compares
    #: (xAPI: from ``result.score`` via ``rules.assessment.score_percent``).
    score_percent: float | None = Field(default=None, ge=0, le=100)


class AssignmentMessages:
    """The assignment workflow's own signals, for senders below the workflows floor.

    ``AssignmentWorkflow`` overrides each with the same decorator (as with
    ``domain.contracts.obligation.ObligationMessages``): no string names.
    """

    @workflow.signal
    def complete(self, signal: CompleteSignal) -> None:
        """Completion evidence arrived (LMS, HR, a mentorship that became active)."""
        raise NotImplementedError


class GateAttempt(Contract):
    """A failed attempt counted against a requirement's assessment gate."""

    at: datetime
    score: float | None = None


class GrantAttempts(Contract):
    """Update: HR grants extra attempts at an assessment gate (audited)."""

    attempts: int = Field(default=1, ge=1, le=10)
    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field(max_length=128)


class AssignmentEvent(LadderEvent):
    """One line of an assignment's timeline (``assigned``, ``reminder_sent``, …)."""


class AssignmentState(Contract):
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
    #: first :data:`~domain.contracts.obligation.NOTED_REPEATS` are listed in ``events``.
    failed_attempts: int = 0
    #: The assessment gate (None: the LMS's passed flag decides), attempts allowed (None:
    #: unlimited; HR grants included) and when the next attempt counts (None: now).
    gate: GateSpec | None = None
    attempts_allowed: int | None = None
    retake_opens_at: datetime | None = None


class StartSignal(Contract):
    """The learner began the training (LMS launch, xAPI ``launched``/``attempted``)."""

    started_at: BoundedInstant
    actor: str = Field(max_length=128)
    source: str = Field(default="api", max_length=64)


class ExtendDueDate(Contract):
    """Update: move the due date later (manager or HR), with a reason."""

    new_due_date: BoundedDate
    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field(max_length=128)


class ExemptSignal(Contract):
    """HR exempts the person; the exemption lapses on ``expires_on`` (None: until revoked)."""

    reason: str = Field(min_length=3, max_length=500)
    approver: str = Field(max_length=128)
    actor: str = Field(max_length=128)
    expires_on: BoundedDate | None = None


class CancelSignal(Contract):
    """The obligation no longer applies (role change, left the company, assigned in error).

    ``status`` is the closed status shown: ``cancelled`` (the default, and what every history
    recorded before it existed replays with) or ``not_applicable`` (a mover the requirement no
    longer covers).
    """

    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field(max_length=128)
    status: Literal["cancelled", "not_applicable"] = "cancelled"


class PauseSignal(Contract):
    """The person went on leave: reminders and escalations pause until :class:`ResumeSignal`."""

    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field(max_length=128)


class ResumeSignal(Contract):
    """Back from leave: the ladder resumes from now.

    ``extend_due_date``: move the due date later by the whole days the pause lasted (the
    requirement's ``extend_due_on_leave`` pack setting), beyond ``max_extension_days``.
    """

    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field(max_length=128)
    extend_due_date: bool = True


class AssignmentResume(Contract):
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
    gate: GateSpec | None = None
    #: On leave since (the pause's start): reminders wait for :class:`ResumeSignal`.
    paused: PauseSignal | None = None
    paused_at: datetime | None = None
    gate_attempts: list[GateAttempt] = Field(default_factory=list)
    extra_attempts: int = 0
    failed: bool = False


AssignmentInput.model_rebuild()
