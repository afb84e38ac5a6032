"""Tracks and learning paths: list, enrol, progress per person per course, my tracks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from api.deps import (
    ClockDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    ensure_visible,
    require_roles,
    visible_person_ids,
)
from domain.roles import Role
from rules.tracks import TrackProgress
from rules.tracks_model import Track
from services import tracks
from services.errors import NotFound
from store.db import committed
from store.models import Person, TrackEnrolment
from store.tokens import Principal

router = APIRouter(tags=["tracks"])

Enroller = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER))]
Reader = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER, Role.AUDITOR))]
Member = Annotated[
    Principal,
    Depends(require_roles(Role.HR_ADMIN, Role.MANAGER, Role.LEARNER, Role.AUDITOR)),
]
Self = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER, Role.LEARNER))]
Admin = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN))]


class CourseRead(BaseModel):
    """One course of a track."""

    requirement_id: str
    title: str
    order: int
    required: bool
    exam: bool
    passing_score: float | None
    days_to_complete: int | None


class TrackRead(BaseModel):
    """A track (or learning path) of the active rules pack."""

    id: str
    name: str
    description: str | None
    type: str
    active: bool
    required_for_go_live: bool
    estimated_hours: float | None
    learning_path: bool
    courses: list[CourseRead]


class EnrolRequest(BaseModel):
    """Enrol one person."""

    model_config = ConfigDict(extra="forbid")

    person: str = Field(min_length=1, max_length=64, description="The person's external id.")


class EnrolRead(BaseModel):
    """The enrolment and the course assignments it started."""

    track_id: str
    person: str
    enrolled_on: date
    created: bool
    started: list[str]


class WithdrawRequest(BaseModel):
    """Withdraw one person from a track."""

    model_config = ConfigDict(extra="forbid")

    person: str = Field(min_length=1, max_length=64, description="The person's external id.")
    reason: str = Field(min_length=3, max_length=500, description="Why (kept with the row).")


class WithdrawRead(BaseModel):
    """The withdrawal and the course assignments it closed."""

    track_id: str
    person: str
    withdrawn: bool = Field(description="False: already withdrawn or completed (no change).")
    withdrawn_at: datetime | None
    closed: list[str]


class CourseProgressRead(BaseModel):
    """A person's course: status, exam score, attempts, started/completed, milestone."""

    requirement_id: str
    order: int
    required: bool
    status: str
    score: float | None
    attempts: int
    started_at: datetime | None
    completed_at: datetime | None
    due_on: date | None
    overdue: bool


class ProgressRead(BaseModel):
    """A person's progress through a track."""

    track_id: str
    name: str
    person: str
    person_name: str
    enrolled_on: date
    status: str
    percent: int
    required_done: int
    required_total: int
    completed_at: datetime | None
    next_course: str | None
    overdue: bool
    courses: list[CourseProgressRead]
    certificate_code: str | None = Field(
        default=None,
        description="The completion certificate's verification code (None until completed);"
        " anyone can check it at GET /verify/{code}.",
    )
    certificate_issued_on: date | None = None


def _track(pack_track: Track, titles: dict[str, str]) -> TrackRead:
    return TrackRead(
        id=pack_track.id,
        name=pack_track.name,
        description=pack_track.description,
        type=pack_track.type,
        active=pack_track.active,
        required_for_go_live=pack_track.required_for_go_live,
        estimated_hours=pack_track.estimated_hours,
        learning_path=pack_track.is_learning_path,
        courses=[
            CourseRead(
                requirement_id=c.requirement,
                title=titles.get(c.requirement, c.requirement),
                order=c.order,
                required=c.required,
                exam=c.exam,
                passing_score=c.passing_score,
                days_to_complete=c.days_to_complete,
            )
            for c in pack_track.ordered_courses
        ],
    )


def _progress(person: Person, enrolment: TrackEnrolment, progress: TrackProgress) -> ProgressRead:
    return ProgressRead(
        certificate_code=enrolment.certificate_code,
        certificate_issued_on=enrolment.certificate_issued_on,
        track_id=progress.track_id,
        name=progress.name,
        person=person.external_id,
        person_name=person.name,
        enrolled_on=progress.enrolled_on,
        # A withdrawn enrolment (a leaver, or HR) says so; its progress stays readable.
        status="withdrawn" if enrolment.withdrawn_at is not None else progress.status.value,
        percent=progress.percent,
        required_done=progress.required_done,
        required_total=progress.required_total,
        completed_at=progress.completed_at,
        next_course=progress.next_course,
        overdue=progress.overdue,
        courses=[
            CourseProgressRead(
                requirement_id=c.requirement_id,
                order=c.order,
                required=c.required,
                status=c.status.value,
                score=c.score,
                attempts=c.attempts,
                started_at=c.started_at,
                completed_at=c.completed_at,
                due_on=c.due_on,
                overdue=c.overdue,
            )
            for c in progress.courses
        ],
    )


def _visible(session: SessionDep, principal: Principal, external_id: str) -> Person:
    """The person by external id, if the principal may see them (404 otherwise)."""
    person = session.scalar(select(Person).where(Person.external_id == external_id))
    if person is None:
        raise NotFound(f"unknown person {external_id!r}")
    ensure_visible(session, principal, person.id)
    return person


def _as_of(as_of: date | None, now: datetime) -> datetime:
    """The end of ``as_of`` (UTC), or now."""
    if as_of is None or as_of >= now.date():
        return now
    return datetime.combine(as_of, time.max, tzinfo=UTC)


@router.get("/tracks", response_model=list[TrackRead])
def list_tracks(session: SessionDep, principal: Member) -> list[TrackRead]:
    """The active pack's tracks and learning paths, with their courses in order."""
    titles = tracks.titles(session)
    return [_track(t, titles) for t in tracks.tracks(session)]


@router.get("/tracks/{track_id}", response_model=TrackRead)
def get_track(track_id: str, session: SessionDep, principal: Member) -> TrackRead:
    """One track with its courses."""
    return _track(tracks.track(session, track_id=track_id), tracks.titles(session))


class ReorderRequest(BaseModel):
    """A track's courses in their new order."""

    model_config = ConfigDict(extra="forbid")

    courses: list[Annotated[str, Field(min_length=1, max_length=80)]] = Field(
        min_length=1,
        max_length=200,
        description="Every course's requirement id, once each, in the new order.",
    )
    pack_hash: str | None = Field(
        default=None,
        min_length=8,
        max_length=64,
        description="The active pack's hash (or a prefix) you read; 409 when it changed since.",
    )


class ActiveRequest(BaseModel):
    """Why a track is deactivated or reactivated (audited)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500)
    pack_hash: str | None = Field(default=None, min_length=8, max_length=64)


class TrackChange(TrackRead):
    """The track after the change, and the pack version that carries it."""

    pack_hash: str
    deployed: bool = Field(description="False: nothing changed (already so), nothing deployed.")


async def _changed(session: SessionDep, change: Callable[[], tuple[Track, bool]]) -> TrackChange:
    def run() -> TrackChange:
        track, deployed = change()
        active = tracks.active_hash(session)
        assert active is not None
        return TrackChange(
            **_track(track, tracks.titles(session)).model_dump(),
            pack_hash=active,
            deployed=deployed,
        )

    return await committed(session, run)


@router.post("/tracks/{track_id}/reorder", response_model=TrackChange)
async def reorder_track(
    track_id: str, body: ReorderRequest, session: SessionDep, principal: Admin
) -> TrackChange:
    """Put the track's courses in a new order (HR; deploys a new pack version).

    People mid-track keep their progress (it is per course): completed courses stay
    completed, assignments keep their due dates, and only the order and next course change.
    **422** when the list is not exactly the track's courses or the new order puts a milestone
    before an earlier course's; **409** when ``pack_hash`` is no longer the active pack.
    """
    return await _changed(
        session,
        lambda: tracks.reorder(
            session,
            track_id=track_id,
            courses=body.courses,
            principal=principal,
            pack_hash=body.pack_hash,
        ),
    )


@router.post("/tracks/{track_id}/deactivate", response_model=TrackChange)
async def deactivate_track(
    track_id: str, body: ActiveRequest, session: SessionDep, principal: Admin
) -> TrackChange:
    """Deactivate a track (soft; HR; deploys a new pack version).

    Nobody new is enrolled (409 for HR, managers and learning paths); everyone already enrolled
    continues: their courses keep running, they can finish and get the certificate, and they
    count for project readiness. ``POST /tracks/{id}/activate`` undoes it.
    """
    return await _changed(
        session,
        lambda: tracks.set_track_active(
            session,
            track_id=track_id,
            active=False,
            reason=body.reason,
            principal=principal,
            pack_hash=body.pack_hash,
        ),
    )


@router.post("/tracks/{track_id}/activate", response_model=TrackChange)
async def activate_track(
    track_id: str, body: ActiveRequest, session: SessionDep, principal: Admin
) -> TrackChange:
    """Reactivate a deactivated track (HR; deploys a new pack version): enrolment reopens."""
    return await _changed(
        session,
        lambda: tracks.set_track_active(
            session,
            track_id=track_id,
            active=True,
            reason=body.reason,
            principal=principal,
            pack_hash=body.pack_hash,
        ),
    )


@router.post(
    "/tracks/{track_id}/enroll", status_code=status.HTTP_201_CREATED, response_model=EnrolRead
)
async def enroll(
    track_id: str,
    body: EnrolRequest,
    session: SessionDep,
    principal: Enroller,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> EnrolRead:
    """Enrol a person (HR anyone; a manager their reports) and assign the track's courses.

    Each course is due at its milestone. Enrolling again changes nothing (``created`` false).
    **409** when the track is inactive or the person has left; **403** for a manager enrolling
    themself.
    """
    person = await committed(session, lambda: _visible(session, principal, body.person))
    result = await tracks.enrol(
        session,
        await temporal(),
        task_queue=settings.temporal_task_queue,
        track_id=track_id,
        person=person,
        principal=principal,
        source="hr" if principal.role is Role.HR_ADMIN else "manager",
        now=await clock(),
        base_url=settings.api_base_url,
    )
    return EnrolRead(
        track_id=track_id,
        person=person.external_id,
        enrolled_on=result.enrolment.enrolled_on,
        created=result.created,
        started=result.started,
    )


@router.post("/tracks/{track_id}/withdraw", response_model=WithdrawRead)
async def withdraw(
    track_id: str,
    body: WithdrawRequest,
    session: SessionDep,
    principal: Enroller,
    temporal: TemporalDep,
    clock: ClockDep,
) -> WithdrawRead:
    """Withdraw a person from a track (HR anyone; a manager their reports).

    The enrolment is kept with when and why (its progress stays readable, ``status``
    ``withdrawn``); the open course assignments only this track requires close as
    ``cancelled`` with the reason. Withdrawing again changes nothing. Enrolling again reopens
    it. **404** when the person is not enrolled in that track.
    """
    person = await committed(session, lambda: _visible(session, principal, body.person))
    result = await tracks.withdraw(
        session,
        await temporal(),
        track_id=track_id,
        person=person,
        principal=principal,
        reason=body.reason,
        now=await clock(),
    )
    return WithdrawRead(
        track_id=track_id,
        person=person.external_id,
        withdrawn=result.withdrawn,
        withdrawn_at=result.enrolment.withdrawn_at,
        closed=result.closed,
    )


@router.get("/tracks/{track_id}/progress", response_model=list[ProgressRead])
async def track_progress(
    track_id: str,
    session: SessionDep,
    principal: Reader,
    clock: ClockDep,
    as_of: Annotated[
        date | None, Query(description="Progress as recorded at the end of this day (UTC).")
    ] = None,
) -> list[ProgressRead]:
    """Everyone enrolled (a manager: their team) and their progress per course."""
    instant = _as_of(as_of, await clock())

    def read() -> list[ProgressRead]:
        rows = tracks.track_progress(
            session,
            track_id=track_id,
            as_of=instant,
            visible=visible_person_ids(session, principal),
        )
        return [_progress(person, row, progress) for person, row, progress in rows]

    return await committed(session, read)


class SummaryRead(BaseModel):
    """A track across everyone enrolled (that the caller may see)."""

    track_id: str
    enrolled: int
    completed: int
    in_progress: int
    not_started: int
    failed: int
    average_completion: float = Field(description="Mean percentage of required courses done.")


@router.get("/tracks/{track_id}/summary", response_model=SummaryRead)
async def track_summary(
    track_id: str, session: SessionDep, principal: Reader, clock: ClockDep
) -> SummaryRead:
    """Enrolled, completed, in progress, not started, failed and the average completion."""
    now = await clock()
    rows = await committed(
        session,
        lambda: tracks.track_progress(
            session, track_id=track_id, as_of=now, visible=visible_person_ids(session, principal)
        ),
    )
    statuses = [progress.status.value for _, _, progress in rows]
    percents = [progress.percent for _, _, progress in rows]
    return SummaryRead(
        track_id=track_id,
        enrolled=len(rows),
        completed=statuses.count("completed"),
        in_progress=statuses.count("in_progress"),
        not_started=statuses.count("not_started"),
        failed=statuses.count("failed"),
        average_completion=round(sum(percents) / len(percents), 1) if percents else 0.0,
    )


@router.get("/people/{external_id}/tracks", response_model=list[ProgressRead])
async def person_tracks(
    external_id: str, session: SessionDep, principal: Member, clock: ClockDep
) -> list[ProgressRead]:
    """A person's tracks and progress (a learner their own, a manager their team)."""
    now = await clock()

    def read() -> list[ProgressRead]:
        person = _visible(session, principal, external_id)
        rows = tracks.person_tracks(session, person_id=person.id, as_of=now)
        return [_progress(person, row, progress) for row, progress in rows]

    return await committed(session, read)


@router.get("/me/tracks", response_model=list[ProgressRead])
async def my_tracks(session: SessionDep, principal: Self, clock: ClockDep) -> list[ProgressRead]:
    """The caller's own tracks and progress (empty for a token without a person)."""
    if principal.person_id is None:
        return []
    now = await clock()
    person_id = principal.person_id

    def read() -> list[ProgressRead]:
        person = session.get(Person, person_id)
        assert person is not None
        rows = tracks.person_tracks(session, person_id=person.id, as_of=now)
        return [_progress(person, row, progress) for row, progress in rows]

    return await committed(session, read)
