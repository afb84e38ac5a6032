"""The pages of tracks and projects (``/ui/tracks``, ``/ui/projects``) and their CSV exports.

HR, auditors and managers see each track's summary (enrolled, completed, in progress, not
started, failed, average completion) and a track's people; a project's page shows its go-live
readiness per track: how many people it needs against how many completed, who blocks and why,
and the days left to go-live. The numbers are the API's (``GET /tracks/{id}/summary``,
``GET /tracks/{id}/progress``, ``GET /projects/{id}/readiness``): the same services, the same
row-level scope (a manager counts their team and sees the projects they manage).

Declared in :mod:`api.policy` like every route; read-only, so no forms and no CSRF token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from api.deps import SessionDep, visible_person_ids
from api.web import PagePrincipal, render
from rules.tracks_model import Track
from services import tracks
from services.errors import NotFound
from services.exports import csv_text
from store.models import Person, Project, TrackEnrolment
from store.tokens import Principal

router = APIRouter(prefix="/ui", tags=["pages"], include_in_schema=False)


@dataclass(frozen=True)
class Summary:
    """A track across the people the caller may see (``GET /tracks/{id}/summary``)."""

    track: Track
    enrolled: int
    completed: int
    in_progress: int
    not_started: int
    failed: int
    average_completion: float


@dataclass(frozen=True)
class Learner:
    """One person's progress through a track, as the track's page lists it."""

    person: Person
    enrolled_on: date
    #: What the page shows: the progress status, or ``withdrawn``.
    status: str
    #: The progress status (the summary counts it, as ``GET /tracks/{id}/summary`` does).
    progress_status: str
    percent: int
    required_done: int
    required_total: int
    next_course: str | None
    overdue: bool
    completed_at: datetime | None
    certificate_code: str | None


def _people(session: Session, principal: Principal, track_id: str, now: datetime) -> list[Learner]:
    titles = tracks.titles(session)
    rows = tracks.track_progress(
        session, track_id=track_id, as_of=now, visible=visible_person_ids(session, principal)
    )
    return [_learner(person, row, progress, titles) for person, row, progress in rows]


def _learner(person: Person, row: TrackEnrolment, progress: Any, titles: dict[str, str]) -> Learner:
    return Learner(
        person=person,
        enrolled_on=progress.enrolled_on,
        # A withdrawn enrolment says so, as the API does; its progress stays readable.
        status="withdrawn" if row.withdrawn_at is not None else progress.status.value,
        progress_status=progress.status.value,
        percent=progress.percent,
        required_done=progress.required_done,
        required_total=progress.required_total,
        next_course=titles.get(progress.next_course, progress.next_course)
        if progress.next_course
        else None,
        overdue=progress.overdue,
        completed_at=progress.completed_at,
        certificate_code=row.certificate_code,
    )


def _summary(track: Track, people: list[Learner]) -> Summary:
    """The same counts as ``GET /tracks/{id}/summary`` (computed from the same progress)."""
    statuses = [p.progress_status for p in people]
    percents = [p.percent for p in people]
    return Summary(
        track=track,
        enrolled=len(people),
        completed=statuses.count("completed"),
        in_progress=statuses.count("in_progress"),
        not_started=statuses.count("not_started"),
        failed=statuses.count("failed"),
        average_completion=round(sum(percents) / len(percents), 1) if percents else 0.0,
    )


def _summaries(session: Session, principal: Principal, now: datetime) -> list[Summary]:
    return [
        _summary(track, _people(session, principal, track.id, now))
        for track in tracks.tracks(session)
    ]


def _csv(name: str, header: list[str], rows: list[list[Any]]) -> Response:
    return Response(
        csv_text(header, rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}.csv"',
            "Cache-Control": "no-store",
        },
    )


SUMMARY_HEADER = [
    "track",
    "name",
    "type",
    "active",
    "learning_path",
    "required_for_go_live",
    "enrolled",
    "completed",
    "in_progress",
    "not_started",
    "failed",
    "average_completion",
]


@router.get("/tracks", response_class=HTMLResponse)
def tracks_page(request: Request, session: SessionDep, principal: PagePrincipal) -> Response:
    """Every track and learning path with its summary (a manager: their team's people)."""
    now = datetime.now(UTC)
    return render(
        request,
        "tracks.html",
        {"summaries": _summaries(session, principal, now), "today": now.date()},
    )


@router.get("/tracks.csv")
def tracks_csv(session: SessionDep, principal: PagePrincipal) -> Response:
    """The tracks' summary table as CSV (cells made safe against spreadsheet formulas)."""
    rows = [
        [
            s.track.id,
            s.track.name,
            s.track.type,
            s.track.active,
            s.track.is_learning_path,
            s.track.required_for_go_live,
            s.enrolled,
            s.completed,
            s.in_progress,
            s.not_started,
            s.failed,
            s.average_completion,
        ]
        for s in _summaries(session, principal, datetime.now(UTC))
    ]
    return _csv("tracks", SUMMARY_HEADER, rows)


PEOPLE_HEADER = [
    "person",
    "name",
    "enrolled_on",
    "status",
    "percent",
    "required_done",
    "required_total",
    "next_course",
    "overdue",
    "completed_at",
    "certificate_code",
]


@router.get("/tracks/{track_id}/people.csv")
def track_people_csv(track_id: str, session: SessionDep, principal: PagePrincipal) -> Response:
    """A track's people and their progress as CSV."""
    tracks.track(session, track_id=track_id)
    rows = [
        [
            p.person.external_id,
            p.person.name,
            p.enrolled_on,
            p.status,
            p.percent,
            p.required_done,
            p.required_total,
            p.next_course or "",
            p.overdue,
            p.completed_at.isoformat() if p.completed_at else "",
            p.certificate_code or "",
        ]
        for p in _people(session, principal, track_id, datetime.now(UTC))
    ]
    return _csv(f"track-{track_id}", PEOPLE_HEADER, rows)


@router.get("/tracks/{track_id}", response_class=HTMLResponse)
def track_page(
    request: Request, track_id: str, session: SessionDep, principal: PagePrincipal
) -> Response:
    """One track: its courses in order, its summary and everyone enrolled (that one may see)."""
    now = datetime.now(UTC)
    track = tracks.track(session, track_id=track_id)
    people = _people(session, principal, track_id, now)
    return render(
        request,
        "track.html",
        {
            "track": track,
            "titles": tracks.titles(session),
            "summary": _summary(track, people),
            "people": people,
            "today": now.date(),
        },
    )


@dataclass(frozen=True)
class ProjectRow:
    """A project with its readiness now."""

    project: Project
    days_to_go_live: int
    readiness: tracks.ProjectReadiness | None


def _readiness(session: Session, row: Project, now: datetime) -> tracks.ProjectReadiness | None:
    try:
        return tracks.readiness(session, project_row=row, as_of=now)
    except NotFound:
        return None  # no pack deployed: nothing to be ready for


@router.get("/projects", response_class=HTMLResponse)
def projects_page(request: Request, session: SessionDep, principal: PagePrincipal) -> Response:
    """The projects one may see (a manager: the ones they manage), each with its readiness."""
    now = datetime.now(UTC)
    rows = [
        ProjectRow(row, (row.go_live - now.date()).days, _readiness(session, row, now))
        for row in tracks.projects(session, principal=principal)
    ]
    return render(request, "projects.html", {"projects": rows, "today": now.date()})


READINESS_HEADER = [
    "track",
    "name",
    "people_needed",
    "completed",
    "in_progress",
    "failed",
    "ready",
    "who_blocks_and_why",
]


@router.get("/projects/{project_id}/readiness.csv")
def project_readiness_csv(
    project_id: str, session: SessionDep, principal: PagePrincipal
) -> Response:
    """A project's readiness per track as CSV."""
    now = datetime.now(UTC)
    row = tracks.project(session, project_id=project_id, principal=principal)
    answer = _readiness(session, row, now)
    lines = [
        [
            t.track,
            t.name,
            t.required,
            t.completed,
            t.in_progress,
            t.failed,
            t.ready,
            "; ".join(t.not_done),
        ]
        for t in (answer.tracks if answer else ())
    ]
    return _csv(f"project-{row.id}-readiness", READINESS_HEADER, lines)


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_page(
    request: Request, project_id: str, session: SessionDep, principal: PagePrincipal
) -> Response:
    """A project's go-live readiness: per track, people needed vs completed, who blocks, why."""
    now = datetime.now(UTC)
    row = tracks.project(session, project_id=project_id, principal=principal)
    needs = {n.track_id: n for n in tracks.project_tracks(session, project_row=row)}
    return render(
        request,
        "project.html",
        {
            "project": row,
            "needs": needs,
            "readiness": _readiness(session, row, now),
            "days_to_go_live": (row.go_live - now.date()).days,
            "today": now.date(),
        },
    )
