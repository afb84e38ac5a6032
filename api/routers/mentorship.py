"""Mentorship: profiles, matching, requests and the relationships that follow.

Each relationship is one ``MentorshipWorkflow`` under the business key
``mentorship/{mentee}/{mentor}/{n}``; its URL is that key: ``/mentorship/{mentee}/{mentor}/{n}``.
Profiles and matching are store-only (sync handlers); the rest start, update or query the
workflow (async handlers that hold no database transaction across a call to Temporal).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import DatabaseDep, SessionDep, SettingsDep, TemporalDep, require_roles
from domain import Role
from domain.contracts.mentorship import MentorshipState, MentorshipType
from rules.matching import Match
from rules.mentorship_model import MenteeProfile, MentorProfile
from services import mentorships
from services.errors import NotFound
from store.db import Database
from store.tokens import Principal

router = APIRouter(tags=["mentorship"])

People = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER, Role.LEARNER))]
Readers = Annotated[
    Principal,
    Depends(require_roles(Role.HR_ADMIN, Role.MANAGER, Role.LEARNER, Role.AUDITOR)),
]
HrOnly = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN))]
PersonQuery = Annotated[
    str | None,
    Query(
        max_length=64, description="Whose (default: the caller; managers: a report; HR: anyone)."
    ),
]
LimitQuery = Annotated[int, Query(ge=1, le=50)]


# --- schemas ----------------------------------------------------------------------------------


class MentorProfileAnswer(BaseModel):
    """A mentor profile (null until created)."""

    person: str
    profile: MentorProfile | None


class MenteeProfileAnswer(BaseModel):
    """A mentee profile (null until created)."""

    person: str
    profile: MenteeProfile | None


class FactorRead(BaseModel):
    """One factor's contribution."""

    factor: str
    points: float
    weight: int
    explanation: str


class MatchRead(BaseModel):
    """A ranked candidate with each factor's plain-language explanation."""

    person: str
    score: float
    remote: bool
    factors: list[FactorRead]


class MatchesRead(BaseModel):
    """A ranked list; ``hint`` says what to do when it is empty because no profile exists."""

    person: str
    pack_hash: str
    matches: list[MatchRead]
    hint: str | None = None


class RowProblemRead(BaseModel):
    """Why one CSV row was not imported (the header is row 1)."""

    model_config = ConfigDict(from_attributes=True)

    row: int
    column: str | None
    message: str


class ImportRead(BaseModel):
    """What a profile import wrote and refused (every good row is written)."""

    model_config = ConfigDict(from_attributes=True)

    written: int
    errors: list[RowProblemRead]


class MentorshipRequestBody(BaseModel):
    """Ask a mentor."""

    model_config = ConfigDict(extra="forbid")

    mentor: str = Field(max_length=64, description="The mentor's person id.")
    mentee: str | None = Field(
        default=None, max_length=64, description="HR only: on whose behalf (default: the caller)."
    )
    type: MentorshipType = MentorshipType.GENERAL
    goals: list[Annotated[str, Field(max_length=300)]] = Field(default_factory=list, max_length=20)
    duration_months: int = Field(default=6, ge=1, le=36)
    milestones: list[Annotated[str, Field(max_length=300)]] = Field(
        default_factory=list, max_length=20
    )
    message: str | None = Field(default=None, max_length=1000)


class Requested(BaseModel):
    """A request made: the relationship's id (its URL is ``/mentorship/{id}`` minus the prefix)."""

    id: str
    mentee: str
    mentor: str
    status: str
    expires_in_days: int


class DeclineBody(BaseModel):
    """Decline, optionally telling the mentee why."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)


class CompleteBody(BaseModel):
    """Complete, optionally with a closing note."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=500)


class CancelBody(BaseModel):
    """Cancel, saying why."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


class MentorshipRead(BaseModel):
    """A relationship as its read model and (when reachable) its workflow see it."""

    id: str
    mentee: str
    mentor: str
    status: str
    type: str
    goals: list[str]
    milestones: list[str]
    duration_months: int
    requested_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    reason: str | None
    expires_at: datetime | None = None
    ends_at: datetime | None = None
    next_session_due: datetime | None = None
    feedback: list[str] = Field(default_factory=list)
    next_matches: list[str] = Field(default_factory=list)
    sessions: list[dict[str, Any]] = Field(default_factory=list)
    #: The ``kind: mentorship`` obligations it completed: ``obligation``, ``requirement``,
    #: ``fulfilled_at``, and when it ended early ``reopened_as``, ``reopened_at``, ``reason``.
    requirements: list[dict[str, Any]] = Field(default_factory=list)
    timeline: list[dict[str, Any]] = Field(default_factory=list)


def _matches(person: str, ranked: mentorships.Ranked) -> MatchesRead:
    return MatchesRead(
        person=person,
        pack_hash=ranked.pack_hash,
        matches=[_match(m) for m in ranked.matches],
    )


def _match(match: Match) -> MatchRead:
    return MatchRead(
        person=match.person_id,
        score=match.score,
        remote=match.remote,
        factors=[
            FactorRead(
                factor=f.factor.value, points=f.points, weight=f.weight, explanation=f.explanation
            )
            for f in match.factors
        ],
    )


async def _relationship(mentee: str, mentor: str, n: str) -> str:
    """The workflow id a relationship's URL names: ``/mentorship/{mentee}/{mentor}/{n}``.

    A dependency, so each action route takes one ``workflow_id`` (the path parameters are
    still declared, and documented, here); no I/O, hence ``async`` (no worker thread).
    """
    return f"mentorship/{mentee}/{mentor}/{n}"


#: The relationship a route's path names (its ``mentee``, ``mentor`` and ``n``).
Relationship = Annotated[str, Depends(_relationship)]


# --- profiles ---------------------------------------------------------------------------------


def _profile(
    session: SessionDep, principal: Principal, side: mentorships.Side, person: str | None
) -> tuple[str, Any]:
    who = mentorships.subject(session, principal, person, read=True)
    try:
        found = mentorships.get_profile(
            session, principal=principal, side=side, person=who.external_id
        )
    except NotFound:
        return who.external_id, None
    return who.external_id, found


@router.get("/mentorship/profile/mentor")
def get_mentor_profile(
    session: SessionDep, principal: People, person: PersonQuery = None
) -> MentorProfileAnswer:
    """A mentor profile: certifications from Duly's records, track record from past mentorships."""
    who, profile = _profile(session, principal, "mentor", person)
    return MentorProfileAnswer(person=who, profile=profile)


@router.put("/mentorship/profile/mentor")
def put_mentor_profile(
    session: SessionDep,
    principal: People,
    body: Annotated[dict[str, Any], Body(description="A mentor profile; `person` (HR only).")],
) -> MentorProfileAnswer:
    """Create or replace a mentor profile (yours; HR: anyone's, naming ``person``)."""
    person = body.pop("person", None)
    profile = mentorships.put_profile(
        session, principal=principal, side="mentor", person=person, data=body
    )
    assert isinstance(profile, MentorProfile)
    return MentorProfileAnswer(person=profile.person_id, profile=profile)


@router.get("/mentorship/profile/mentee")
def get_mentee_profile(
    session: SessionDep, principal: People, person: PersonQuery = None
) -> MenteeProfileAnswer:
    """A mentee profile (certifications from Duly's records)."""
    who, profile = _profile(session, principal, "mentee", person)
    return MenteeProfileAnswer(person=who, profile=profile)


@router.put("/mentorship/profile/mentee")
def put_mentee_profile(
    session: SessionDep,
    principal: People,
    body: Annotated[dict[str, Any], Body(description="A mentee profile; `person` (HR only).")],
) -> MenteeProfileAnswer:
    """Create or replace a mentee profile (yours; HR: anyone's, naming ``person``)."""
    person = body.pop("person", None)
    profile = mentorships.put_profile(
        session, principal=principal, side="mentee", person=person, data=body
    )
    assert isinstance(profile, MenteeProfile)
    return MenteeProfileAnswer(person=profile.person_id, profile=profile)


def _import(db: Database, principal: Principal, side: mentorships.Side, text: str) -> Any:
    with db.session() as session:
        return mentorships.import_profiles(session, principal=principal, side=side, text=text)


CSV_BODY = {
    "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
}


async def _csv(request: Request) -> str:
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in ("text/csv", "text/plain", "application/csv"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"send the profiles as text/csv, not {media or '(no Content-Type)'!r}",
        )
    try:
        return (await request.body()).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY, detail="the CSV is not UTF-8; save it as UTF-8"
        ) from exc


@router.post("/mentorship/profiles/import/mentor", openapi_extra=CSV_BODY)
async def import_mentors(request: Request, db: DatabaseDep, principal: HrOnly) -> ImportRead:
    """HR: create or replace mentor profiles from CSV (one row per person; see the README)."""
    text = await _csv(request)
    report = await run_in_threadpool(_import, db, principal, "mentor", text)
    return ImportRead.model_validate(report, from_attributes=True)


@router.post("/mentorship/profiles/import/mentee", openapi_extra=CSV_BODY)
async def import_mentees(request: Request, db: DatabaseDep, principal: HrOnly) -> ImportRead:
    """HR: create or replace mentee profiles from CSV (one row per person; see the README)."""
    text = await _csv(request)
    report = await run_in_threadpool(_import, db, principal, "mentee", text)
    return ImportRead.model_validate(report, from_attributes=True)


# --- matching ---------------------------------------------------------------------------------


@router.get("/mentorship/find-mentor")
def find_mentor(
    session: SessionDep, principal: People, person: PersonQuery = None, limit: LimitQuery = 10
) -> MatchesRead:
    """The best mentors for a mentee, 0–100 with each factor explained (the pack's weights)."""
    who, profile = _profile(session, principal, "mentee", person)
    if profile is None:
        return MatchesRead(
            person=who,
            pack_hash="",
            matches=[],
            hint="create the mentee profile first: PUT /mentorship/profile/mentee",
        )
    ranked = mentorships.find_mentor(session, principal=principal, person=who, limit=limit)
    return _matches(who, ranked)


@router.get("/mentorship/find-mentee")
def find_mentee(
    session: SessionDep, principal: People, person: PersonQuery = None, limit: LimitQuery = 10
) -> MatchesRead:
    """The mentees a mentor would suit best (the same factors, seen from the mentor)."""
    who, profile = _profile(session, principal, "mentor", person)
    if profile is None:
        return MatchesRead(
            person=who,
            pack_hash="",
            matches=[],
            hint="create the mentor profile first: PUT /mentorship/profile/mentor",
        )
    ranked = mentorships.find_mentee(session, principal=principal, person=who, limit=limit)
    return _matches(who, ranked)


# --- requests and relationships ---------------------------------------------------------------


@router.post("/mentorship/request", status_code=status.HTTP_201_CREATED)
async def request_mentorship(
    db: DatabaseDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    principal: People,
    body: MentorshipRequestBody,
) -> Requested:
    """Ask a mentor: the request is ``pending`` until accepted, declined or expired."""
    inp = await mentorships.request(
        db,
        temporal,
        principal=principal,
        mentor=body.mentor,
        mentee=body.mentee,
        type=body.type,
        goals=body.goals,
        duration_months=body.duration_months,
        milestones=body.milestones,
        message=body.message,
        task_queue=settings.temporal_task_queue,
    )
    return Requested(
        id=inp.workflow_id,
        mentee=inp.mentee,
        mentor=inp.mentor,
        status="pending",
        expires_in_days=inp.terms.request_expiry_days,
    )


@router.put("/mentorship/request/{mentee}/{mentor}/{n}/accept")
async def accept_request(
    workflow_id: Relationship, db: DatabaseDep, temporal: TemporalDep, principal: People
) -> MentorshipState:
    """The mentor accepts: a slot is claimed; no free slot answers 409 with the reason."""
    return await mentorships.accept(db, temporal, principal=principal, workflow_id=workflow_id)


@router.put("/mentorship/request/{mentee}/{mentor}/{n}/decline")
async def decline_request(
    workflow_id: Relationship,
    db: DatabaseDep,
    temporal: TemporalDep,
    principal: People,
    body: DeclineBody | None = None,
) -> MentorshipState:
    """The mentor declines (the reason is shown to the mentee with their next best matches)."""
    return await mentorships.decline(
        db,
        temporal,
        principal=principal,
        workflow_id=workflow_id,
        reason=body.reason if body else None,
    )


@router.post("/mentorship/{mentee}/{mentor}/{n}/log-session")
async def log_session(
    workflow_id: Relationship,
    db: DatabaseDep,
    temporal: TemporalDep,
    principal: People,
    body: Annotated[dict[str, Any], Body(description="A session (see SessionLog).")],
) -> MentorshipState:
    """Log a session; notes are visible to their author and HR only.

    Fields: date, duration, format, location, topics, skills, resources, notes, action items
    (assignee, due date), rating 1–5.
    """
    return await mentorships.log_session(
        db, temporal, principal=principal, workflow_id=workflow_id, log=body
    )


@router.post("/mentorship/{mentee}/{mentor}/{n}/feedback")
async def give_feedback(
    workflow_id: Relationship,
    db: DatabaseDep,
    temporal: TemporalDep,
    principal: People,
    body: Annotated[dict[str, Any], Body(description="phase (midpoint/end), rating, comment.")],
) -> MentorshipState:
    """Midpoint or end feedback from the mentee or the mentor.

    The mentee's rating counts in the mentor's track record (past success in matching).
    """
    return await mentorships.feedback(
        db, temporal, principal=principal, workflow_id=workflow_id, body=body
    )


@router.post("/mentorship/{mentee}/{mentor}/{n}/complete")
async def complete(
    workflow_id: Relationship,
    db: DatabaseDep,
    temporal: TemporalDep,
    principal: People,
    body: CompleteBody | None = None,
) -> MentorshipState:
    """Complete the mentorship (either side or HR); the mentor's slot is freed.

    Before its planned end, the pack requirements it satisfied re-open.
    """
    return await mentorships.complete(
        db,
        temporal,
        principal=principal,
        workflow_id=workflow_id,
        note=body.note if body else None,
    )


@router.post("/mentorship/{mentee}/{mentor}/{n}/cancel")
async def cancel(
    workflow_id: Relationship,
    db: DatabaseDep,
    temporal: TemporalDep,
    principal: People,
    body: CancelBody,
) -> MentorshipState:
    """Cancel a pending or active mentorship with a reason (either side or HR).

    An active one's satisfied pack requirements re-open (``source: mentorship``).
    """
    return await mentorships.cancel(
        db,
        temporal,
        principal=principal,
        workflow_id=workflow_id,
        reason=body.reason,
    )


@router.get("/mentorship/{mentee}/{mentor}/{n}")
async def read_mentorship(
    workflow_id: Relationship, db: DatabaseDep, temporal: TemporalDep, principal: Readers
) -> MentorshipRead:
    """One mentorship with its sessions and timeline (managers: their reports'; auditor: all)."""
    body = await mentorships.read(db, temporal, principal=principal, workflow_id=workflow_id)
    return MentorshipRead.model_validate(body)


@router.get("/mentorship")
def list_mentorships(session: SessionDep, principal: Readers) -> list[MentorshipRead]:
    """Mentorships the caller sees: their own, their reports' (managers), all (HR, auditor)."""
    rows = mentorships.list_visible(session, principal=principal, mine=False)
    return [MentorshipRead.model_validate(row) for row in rows]


@router.get("/me/mentorship")
def my_mentorships(session: SessionDep, principal: Readers) -> list[MentorshipRead]:
    """The caller's own mentorships, as mentee or mentor."""
    rows = mentorships.list_visible(session, principal=principal, mine=True)
    return [MentorshipRead.model_validate(row) for row in rows]
