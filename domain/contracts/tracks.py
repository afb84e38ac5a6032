"""Contracts of the tracks family: go-live readiness workflow input, messages and activities.

Track enrolment itself starts ordinary assignments (``AssignmentInput``); what is new is the
``ProjectReadinessWorkflow``: one per project (business key ``project/{id}/readiness``), counting
down to go-live.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field
from temporalio import workflow

from domain.base import Contract
from domain.contracts.obligation import LadderEvent

__all__ = [
    "TRACK_COMPLETED_WORKFLOW",
    "GoLiveChange",
    "NudgeRequest",
    "ProjectEvent",
    "ProjectMessages",
    "ProjectReadinessInput",
    "ProjectReadinessState",
    "ReadinessCheck",
    "ReadinessRequest",
    "ReadinessResult",
    "TrackCompletedNotice",
    "TrackNoticeSweep",
    "project_workflow_id",
    "track_completed_workflow_id",
]

#: Days before go-live the project manager (and their manager) hear what blocks.
COUNTDOWN_DAYS: tuple[int, ...] = (30, 14, 7, 1)


def project_workflow_id(project_id: int) -> str:
    """The business key of a project's readiness workflow."""
    return f"project/{project_id}/readiness"


#: The workflow type of the completion notice (started by name from activities).
TRACK_COMPLETED_WORKFLOW = "TrackCompletedWorkflow"


def track_completed_workflow_id(track_id: str, person: str) -> str:
    """The business key of the notice telling ``person`` their track is complete.

    One per enrolment: a track completes once (its certificate is never taken back), so a
    second start of this key is refused and the ledger row it writes is never sent twice.
    """
    return f"track/{track_id}/{person}/completed"


class TrackCompletedNotice(Contract):
    """Workflow input: tell the learner their track is complete, with the certificate."""

    person: str = Field(max_length=64)
    track_id: str = Field(max_length=80)
    track_name: str = Field(max_length=200)
    certificate_code: str = Field(max_length=40)
    issued_on: date
    #: Where anyone checks the certificate (``{base}/verify/{code}``).
    verify_url: str = Field(max_length=300)


class TrackNoticeSweep(Contract):
    """Activity input: start the completion notices of recent completions still untold."""

    as_of: datetime


class ProjectReadinessInput(Contract):
    """Workflow input: the project and its go-live date."""

    project_id: int
    name: str = Field(max_length=200)
    go_live: date
    #: The project manager's external id: the countdown's recipient (their manager is copied).
    manager: str = Field(max_length=64)
    #: How often readiness is looked at in the countdown's last 30 days (daily before).
    check_every_hours: int = Field(default=6, ge=1, le=24)


class ReadinessCheck(Contract):
    """Signal: a completion landed that may make the project ready; look now."""

    reason: str = Field(default="completion", max_length=200)


class GoLiveChange(Contract):
    """Signal: the go-live date moved; the countdown re-plans."""

    go_live: date
    actor: str = Field(max_length=128)


class ReadinessRequest(Contract):
    """Activity input: the project's readiness as of an instant."""

    project_id: int
    as_of: datetime


class ReadinessResult(Contract):
    """Activity output: ready or not, the blocking tracks (names) and one summary line."""

    ready: bool
    blocking_tracks: list[str] = Field(default_factory=list)
    summary: str


class ProjectEvent(LadderEvent):
    """One line of a project's readiness timeline (``countdown_sent``, ``ready``, …)."""


class ProjectReadinessState(Contract):
    """What the workflow's ``state`` query answers."""

    project_id: int
    go_live: date
    ready: bool
    blocking_tracks: list[str]
    stages_sent: list[str]
    events: list[ProjectEvent]


class NudgeRequest(Contract):
    """Activity input: a person's course completed; projects needing their tracks look now."""

    person: str = Field(max_length=64)
    requirement_id: str = Field(max_length=64)
    #: The workflow's instant when the course completed: tracks complete as of it (requests
    #: recorded before it was carried: the activity's clock).
    at: datetime | None = None


class ProjectMessages:
    """The readiness workflow's signals, for senders below the workflows floor to reference.

    ``ProjectReadinessWorkflow`` overrides each with the same decorator (as with
    ``domain.contracts.obligation.ObligationMessages``): no string names.
    """

    @workflow.signal
    def check(self, signal: ReadinessCheck) -> None:
        """A completion landed: look at readiness now."""
        raise NotImplementedError
