"""Request and response schemas shared by the routers."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain.bounds import BoundedDate, BoundedInstant, Cycle, Score
from domain.calendar import LadderStage
from domain.contracts.assignment import AssignmentEvent
from domain.ids import ExternalId
from services.restarts import Restarted
from store.models import Obligation


class AssignmentCreate(BaseModel):
    """Assign a training to one person."""

    model_config = ConfigDict(extra="forbid")

    person: ExternalId = Field(description="The person's external id (from the HRIS import).")
    requirement: str = Field(min_length=1, max_length=200, description="The training's title.")
    requirement_id: ExternalId | None = Field(
        default=None, description="Stable id; derived from the title when omitted."
    )
    due_date: BoundedDate = Field(
        description="Within today - 5 years ... today + 10 years (DULY_DUE_DATE_PAST_YEARS / "
        "DULY_DUE_DATE_FUTURE_YEARS)."
    )
    cycle: Cycle = 1


class CompleteRequest(BaseModel):
    """Completion evidence."""

    model_config = ConfigDict(extra="forbid")

    completed_at: BoundedInstant | None = Field(
        default=None,
        description="Defaults to now; never in the future (DULY_CLOCK_SKEW_SECONDS of skew) "
        "nor older than DULY_DUE_DATE_PAST_YEARS. No offset means UTC.",
    )
    source: str = Field(default="api", max_length=64, description="lms, xapi, manual, api…")
    note: str | None = Field(default=None, max_length=1000)
    score: Score | None = Field(
        default=None,
        description="As reported by the LMS. Under a requirement's passing_score it is read as a "
        "percentage (0..100) unless score_percent is given.",
    )
    score_percent: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="The score in percent, compared with the requirement's passing_score: "
        "below it is a failed attempt, not a completion.",
    )
    passed: bool | None = Field(
        default=None, description="false: a failed attempt, recorded without completing."
    )
    attempt_id: str | None = Field(default=None, max_length=200)
    certificate_id: str | None = Field(default=None, max_length=200)


class GrantAttemptsRequest(BaseModel):
    """HR grants extra assessment attempts."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=1, ge=1, le=10)
    reason: str = Field(min_length=3, max_length=500)


class StartRequest(BaseModel):
    """The learner began the training."""

    model_config = ConfigDict(extra="forbid")

    started_at: BoundedInstant | None = Field(
        default=None, description="Defaults to now; never in the future."
    )
    source: str = Field(default="api", max_length=64)


class ExtendRequest(BaseModel):
    """Move the due date later."""

    model_config = ConfigDict(extra="forbid")

    new_due_date: BoundedDate
    reason: str = Field(min_length=3, max_length=500)


class ExemptRequest(BaseModel):
    """Exempt the person from this obligation."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500)
    approver: str = Field(min_length=1, max_length=128, description="Who approved it.")
    expires_on: BoundedDate | None = Field(
        default=None, description="The exemption lapses then (within the due-date window)."
    )


class CancelRequest(BaseModel):
    """Close the obligation without completion."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500)


class AcknowledgeRequest(BaseModel):
    """An acknowledgement of the reminders."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(default="api", max_length=32)


class AssignmentRestart(BaseModel):
    """Replace an assignment's run (failed, stuck, or closed) with a fresh one (HR)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500, description="Why; kept in the audit log.")
    due_date: BoundedDate | None = Field(
        default=None,
        description="The corrected due date; defaults to the previous run's when it is within "
        "the window.",
    )
    requirement: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The training's title; defaults to the previous run's.",
    )


class PreviousRunRead(BaseModel):
    """The run a restart replaced."""

    run_id: str | None
    status: str = Field(description="Its Temporal status when replaced: running, failed, …")
    workflow_task_attempts: int = Field(
        description="Above 1: its workflow task kept failing (the run was stuck)."
    )
    terminated: bool = Field(description="True when the restart terminated it (it was running).")


class RestartRead(BaseModel):
    """A restart: the fresh run under the same business key and the run it replaced."""

    id: str = Field(description="The workflow id (business key), unchanged.")
    run_id: str | None = Field(description="The fresh run's id.")
    previous: PreviousRunRead
    reason: str
    status_url: str
    detail: str

    @classmethod
    def of(cls, done: Restarted, reason: str, status_url: str) -> RestartRead:
        """The API's answer to a restart."""
        previous = done.previous
        ended = "terminated" if done.terminated else f"was already {previous.status}"
        return cls(
            id=done.workflow_id,
            run_id=done.run_id,
            previous=PreviousRunRead(
                run_id=previous.run_id,
                status=previous.status,
                workflow_task_attempts=previous.workflow_task_attempts,
                terminated=done.terminated,
            ),
            reason=reason,
            status_url=status_url,
            detail=f"previous run {previous.run_id} {ended}; a fresh run started under the same"
            " id. GET shows it once a worker has recorded it",
        )


class ObligationRead(BaseModel):
    """The read model of an obligation."""

    model_config = ConfigDict(from_attributes=True)

    workflow_id: str
    person: str
    kind: str
    requirement_id: str
    requirement_title: str
    cycle: int
    due_date: date | None
    stage: str | None
    status: str
    pack_hash: str
    acknowledged_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime


class AssignmentRead(BaseModel):
    """An assignment: the live workflow state plus the read model."""

    id: str = Field(description="The workflow id (business key).")
    created: bool | None = Field(
        default=None, description="On POST: true when this call started it, false when it existed."
    )
    person: str
    requirement_id: str
    requirement_title: str
    cycle: int
    due_date: date
    status: str
    stage: str | None
    live: bool = Field(description="True when answered by the running workflow (query).")
    stages: list[LadderStage] = []
    stages_sent: list[str] = []
    next_stage: LadderStage | None = Field(
        default=None, description="The next reminder still to go out (live state only)."
    )
    acknowledged_at: datetime | None = None
    completed_at: datetime | None = None
    pack_hash: str
    events: list[AssignmentEvent] = []
    failed_attempts: int = Field(default=0, description="Failed assessment attempts (live).")
    attempts_allowed: int | None = Field(
        default=None, description="max_attempts plus HR grants; null: unlimited or no gate."
    )
    retake_opens_at: datetime | None = Field(
        default=None, description="When the next attempt counts (retake cool-down)."
    )
    read_model: ObligationRead | None = None
    detail: str | None = Field(
        default=None,
        description="On POST with created false: what the existing run is doing when it did "
        "not answer (e.g. stuck), and how to replace it.",
    )


class Accepted(BaseModel):
    """A signal was delivered to the workflow; the change shows up in GET shortly."""

    id: str
    accepted: bool = True
    detail: str


class NotificationRead(BaseModel):
    """One ledger row."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    workflow_id: str
    person: str | None
    channel: str
    provider: str
    kind: str
    stage: str
    pack_hash: str
    subject: str
    body: str
    status: str
    provider_message_id: str | None
    error_code: str | None
    #: Who the message was for: learner, manager, managers_manager, hr, employer_contact, …
    recipient_role: str | None = None
    #: PII-free reason of the last failure (shown to HR with ``?status=failed``).
    error_reason: str | None = None
    attempts: int = 1
    delivered_at: datetime | None = None
    acknowledged_at: datetime | None = None
    #: The failed ledger row this message replaced on another channel.
    fallback_of: int | None = None
    fired_at: datetime
    created_at: datetime


class AuditRead(BaseModel):
    """One audit log entry."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    actor_role: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    prev_hash: str
    hash: str


def obligation_read(row: Obligation) -> ObligationRead:
    """Map a read-model row to its schema."""
    return ObligationRead(
        workflow_id=row.workflow_id,
        person=row.person.external_id,
        kind=row.kind,
        requirement_id=row.requirement_id,
        requirement_title=row.requirement_title,
        cycle=row.cycle,
        due_date=row.due_date,
        stage=row.stage,
        status=row.status,
        pack_hash=row.pack_hash,
        acknowledged_at=row.acknowledged_at,
        completed_at=row.completed_at,
        updated_at=row.updated_at,
    )


class EnrollBody(BaseModel):
    """Enrol a person in a program of the active pack (the API's body and the page's form)."""

    model_config = ConfigDict(extra="forbid")

    person: str = Field(min_length=1, max_length=64)
    program_id: str = Field(min_length=1, max_length=80)
    supervisor: str = Field(min_length=1, max_length=64, description="the journeyworker")
    enrolled_on: date | None = Field(default=None, description="default: today")


class TransferBody(BaseModel):
    """A new supervising journeyworker (the API's body and the page's form)."""

    model_config = ConfigDict(extra="forbid")

    supervisor: str = Field(min_length=1, max_length=64)
    reason: str = Field(default="", max_length=2000)


class ChangeBody(BaseModel):
    """Why HR suspends, reinstates or withdraws (the API's body and the page's form)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)
