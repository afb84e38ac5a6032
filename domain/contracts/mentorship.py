"""Mentorship contracts: the ``MentorshipWorkflow``'s input, updates, query and activity requests.

One workflow per relationship under the business key ``mentorship/{mentee}/{mentor}/{n}``.
Plain pydantic models importing nothing of Duly's but the domain. The pack's ``mentorship:``
section is frozen into the input as :class:`MentorshipTerms` when the request is made, so a
later pack never changes a running relationship's expiry, cadence or nudges.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import Field

from domain.base import Contract
from domain.contracts.obligation import LadderEvent
from domain.ids import slugify

__all__ = [
    "FINAL",
    "MENTOR_LEFT",
    "MESSAGE_EVENTS",
    "AcceptRequest",
    "ActionItem",
    "CancelMentorship",
    "ClaimRequest",
    "ClaimResult",
    "CompleteMentorship",
    "DeclineRequest",
    "FeedbackPhase",
    "FeedbackRequest",
    "LeaveSignal",
    "MentorLeft",
    "MentorshipEvent",
    "MentorshipInput",
    "MentorshipRecord",
    "MentorshipState",
    "MentorshipStatus",
    "MentorshipTerms",
    "MentorshipType",
    "NextMatchesRequest",
    "NudgeTerm",
    "SessionFormat",
    "SessionLog",
    "mentorship_workflow_id",
    "message_event",
]


class MentorshipStatus(StrEnum):
    """Where a relationship is."""

    PENDING = "pending"
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    DECLINED = "declined"
    EXPIRED = "expired"
    #: The mentor left the organisation while the relationship was active (reason
    #: :data:`MENTOR_LEFT`); a pending request to them expires instead.
    ENDED = "ended"


#: Statuses a relationship never leaves.
FINAL = frozenset(
    {
        MentorshipStatus.COMPLETED,
        MentorshipStatus.CANCELLED,
        MentorshipStatus.DECLINED,
        MentorshipStatus.EXPIRED,
        MentorshipStatus.ENDED,
    }
)

#: The reason of a relationship ended (or a request expired) because the mentor left.
MENTOR_LEFT = "mentor_left"


#: The message a mentorship sends at each of its stages (``ReminderRequest.event``): the wording
#: of ``notifications/templates/mentorship/_wording.j2`` and the name of a pack's per-stage
#: template override (``mentorship/{event}.{channel}.{part}.j2``). Ledger stages carry a period
#: or an index (``s2:mentor``, ``action-3``); these names do not, so one override serves all.
MESSAGE_EVENTS: dict[str, str] = {
    "request": "request",
    "request-2": "request-reminder",
    "accepted": "accepted",
    "declined": "declined",
    "expired": "expired",
    "race-lost": "race-lost",
    "nudge:mentee": "nudge-mentee",
    "nudge:mentor": "nudge-mentor",
    "nudge:coordinator": "nudge-coordinator",
    "fb-midpoint": "feedback-midpoint",
    "fb-end": "feedback-end",
    "action": "action-item",
    "completed": "completed",
    "cancelled": "cancelled",
    "mentor-left": "mentor-left",
}


def message_event(stage: str) -> str | None:
    """The message event of a mentorship ledger stage (``s3:mentor`` → ``nudge-mentor``).

    None for a stage this family does not send (the generic mentorship wording is used).
    """
    if stage.startswith("s") and ":" in stage:
        return MESSAGE_EVENTS.get("nudge:" + stage.split(":", 1)[1])
    if stage.startswith("action-"):
        return MESSAGE_EVENTS["action"]
    return MESSAGE_EVENTS.get(stage)


class MentorshipType(StrEnum):
    """What the relationship is for."""

    GENERAL = "general"
    CERTIFICATION_PREP = "certification_prep"
    CAREER_TRANSITION = "career_transition"
    SKILL_SPECIFIC = "skill_specific"


class SessionFormat(StrEnum):
    """How a session was held."""

    IN_PERSON = "in_person"
    VIDEO = "video"
    PHONE = "phone"
    TEXT = "text"


class FeedbackPhase(StrEnum):
    """When feedback is given."""

    MIDPOINT = "midpoint"
    END = "end"


class NudgeTerm(Contract):
    """One rung of the missed-session ladder: days after the session was due, who, how."""

    after_days: int = Field(ge=0, le=365)
    #: ``mentee``, ``mentor`` or ``coordinator`` (the pack's HR mailbox).
    notify: str = Field(pattern="^(mentee|mentor|coordinator)$")
    channels: list[str] = Field(min_length=1, max_length=4)


def _default_nudges() -> list[NudgeTerm]:
    return [
        NudgeTerm(after_days=0, notify="mentee", channels=["email", "in_app"]),
        NudgeTerm(after_days=3, notify="mentor", channels=["email", "in_app"]),
        NudgeTerm(after_days=7, notify="coordinator", channels=["email"]),
    ]


class MentorshipTerms(Contract):
    """The pack's timing for one relationship, frozen when it is requested.

    The ``mentorship:`` section without the matching weights (``services.mentorships.terms_of``).
    """

    request_expiry_days: int = Field(default=7, ge=1, le=90)
    session_cadence_days: int = Field(default=14, ge=1, le=180)
    nudges: list[NudgeTerm] = Field(default_factory=_default_nudges, min_length=1, max_length=10)
    feedback_midpoint: bool = True
    feedback_end: bool = True
    feedback_due_within_days: int = Field(default=7, ge=1, le=90)


def mentorship_workflow_id(mentee: str, mentor: str, n: int) -> str:
    """The business key of the ``n``-th relationship between a mentee and a mentor."""
    return f"mentorship/{slugify(mentee)}/{slugify(mentor)}/{n}"


class MentorshipInput(Contract):
    """Workflow input: one requested relationship.

    Attributes:
        workflow_id: The business key (``mentorship/{mentee}/{mentor}/{n}``).
        mentee: The mentee's person id.
        mentor: The mentor's person id.
        pack_hash: The rules pack the policy came from.
        terms: The pack's ``mentorship:`` timing, frozen at request time.
        type: What the relationship is for.
        goals: The mentee's goals for it.
        duration_months: How long it runs once accepted.
        milestones: Milestones the pair agree on.
        message: The mentee's note to the mentor.
    """

    workflow_id: str
    mentee: str
    mentor: str
    pack_hash: str
    terms: MentorshipTerms = Field(default_factory=MentorshipTerms)
    type: MentorshipType = MentorshipType.GENERAL
    goals: list[str] = Field(default_factory=list, max_length=20)
    duration_months: int = Field(default=6, ge=1, le=36)
    milestones: list[str] = Field(default_factory=list, max_length=20)
    message: str | None = Field(default=None, max_length=1000)


class AcceptRequest(Contract):
    """Update: the mentor accepts (a slot is claimed atomically; no free slot refuses it)."""

    by: str


class DeclineRequest(Contract):
    """Update: the mentor declines (the reason is shown to the mentee)."""

    by: str
    reason: str | None = Field(default=None, max_length=500)


class CancelMentorship(Contract):
    """Update: either side or HR ends the relationship early."""

    by: str
    reason: str = Field(min_length=1, max_length=500)


class MentorLeft(Contract):
    """Update (the directory automation): the mentor left the organisation.

    An active relationship ends (``ended``), a pending request expires at once; either way the
    reason is :data:`MENTOR_LEFT` and the mentee is told once and shown the next best matches.
    """

    by: str = Field(max_length=128)


class LeaveSignal(Contract):
    """Signal (the directory automation): one side went on leave, or came back from it.

    While either side is on leave the session nudges and action-item reminders wait; when
    both are back the session cadence counts from the return (nothing that fell in the leave
    is sent late). The request's expiry and the end date do not move.
    """

    person: str = Field(min_length=1, max_length=64)
    on_leave: bool
    actor: str = Field(max_length=128)


class CompleteMentorship(Contract):
    """Update: the relationship is completed."""

    by: str
    note: str | None = Field(default=None, max_length=500)


class ActionItem(Contract):
    """Something one side agreed to do by a date (reminded on that date)."""

    description: str = Field(min_length=1, max_length=300)
    assignee: str = Field(description="mentee or mentor, or a person id of either")
    due_on: date


class SessionLog(Contract):
    """Update: one session held (logged by either side)."""

    by: str
    held_on: date
    duration_minutes: int = Field(ge=5, le=24 * 60)
    format: SessionFormat = SessionFormat.IN_PERSON
    location: str | None = Field(default=None, max_length=200)
    topics: list[str] = Field(default_factory=list, max_length=20)
    skills_practiced: list[str] = Field(default_factory=list, max_length=20)
    resources: list[str] = Field(default_factory=list, max_length=20)
    notes: str | None = Field(default=None, max_length=4000)
    action_items: list[ActionItem] = Field(default_factory=list, max_length=20)
    rating: int | None = Field(default=None, ge=1, le=5)


class FeedbackRequest(Contract):
    """Update: one side's feedback at the midpoint or the end."""

    by: str
    phase: FeedbackPhase
    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)


class MentorshipEvent(LadderEvent):
    """One line of a relationship's timeline (``requested``, ``nudge_sent``, ``accepted``…)."""


class MentorshipState(Contract):
    """Query answer: the relationship now."""

    workflow_id: str
    mentee: str
    mentor: str
    status: MentorshipStatus
    type: MentorshipType
    goals: list[str]
    duration_months: int
    requested_at: datetime
    expires_at: datetime
    started_at: datetime | None = None
    ends_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str | None = None
    sessions: int = 0
    last_session_on: date | None = None
    next_session_due: datetime | None = None
    feedback: list[str] = Field(default_factory=list, description="e.g. 'midpoint mentee 4'")
    #: After an expiry or a decline: the mentee's next best mentors (person ids).
    next_matches: list[str] = Field(default_factory=list)
    events: list[MentorshipEvent] = Field(default_factory=list)


class ClaimRequest(Contract):
    """Activity input: take (or give back) one of the mentor's slots, atomically."""

    workflow_id: str
    mentor: str


class ClaimResult(Contract):
    """Activity output: whether the slot was taken, and why not."""

    claimed: bool
    reason: str | None = None


class MentorshipRecord(Contract):
    """Activity input: write a relationship's read model (status, dates, reason)."""

    workflow_id: str
    mentee: str
    mentor: str
    status: MentorshipStatus
    type: MentorshipType
    duration_months: int
    requested_at: datetime
    as_of: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str | None = None
    goals: list[str] = Field(default_factory=list)
    milestones: list[str] = Field(default_factory=list)


class NextMatchesRequest(Contract):
    """Activity input: the mentee's next best mentors, leaving out one already tried."""

    mentee: str
    exclude: list[str] = Field(default_factory=list)
    pack_hash: str
    limit: int = Field(default=3, ge=1, le=10)
