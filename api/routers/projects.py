"""Client projects and go-live readiness: create, give tracks, read readiness, move go-live."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from api.deps import ClockDep, SessionDep, SettingsDep, TemporalDep, require_roles
from domain.contracts.tracks import project_workflow_id
from domain.roles import Role
from services import tracks
from services.errors import Invalid
from store.db import committed
from store.models import Person, Project
from store.tokens import Principal

router = APIRouter(prefix="/projects", tags=["projects"])

HrOnly = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN))]
Planner = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER))]
Reader = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER, Role.AUDITOR))]


class ProjectCreate(BaseModel):
    """A client project."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    client: str = Field(min_length=1, max_length=200, description="The client organisation.")
    go_live: date
    project_manager: str = Field(
        min_length=1, max_length=64, description="The project manager's external id."
    )


class ProjectTrackCreate(BaseModel):
    """A track the project's go-live needs."""

    model_config = ConfigDict(extra="forbid")

    track_id: str = Field(min_length=1, max_length=80)
    target_role: str | None = Field(
        default=None, max_length=100, description="Only people with this role count."
    )
    people_needed: int = Field(ge=1, le=10_000)
    due_date: date


class GoLiveMove(BaseModel):
    """A new go-live date."""

    model_config = ConfigDict(extra="forbid")

    go_live: date


class ManagerChange(BaseModel):
    """A new project manager."""

    model_config = ConfigDict(extra="forbid")

    project_manager: str = Field(
        min_length=1, max_length=64, description="The new project manager's external id."
    )


class ProjectTrackRead(BaseModel):
    """A track the project needs."""

    track_id: str
    target_role: str | None
    people_needed: int
    due_date: date


class ProjectRead(BaseModel):
    """A project."""

    id: int
    name: str
    client: str
    go_live: date
    project_manager: str
    #: The project manager has left the organisation: HR reassigns the project
    #: (``POST /projects/{id}/manager``).
    project_manager_left: bool = False
    workflow_id: str
    tracks: list[ProjectTrackRead] = []


class BlockingRead(BaseModel):
    """A go-live track not complete enough yet."""

    track: str
    name: str
    required: int
    completed: int
    in_progress: int
    failed: int
    people_not_done: list[str]


class ReadinessRead(BaseModel):
    """Whether the project can go live, and what blocks."""

    project: int
    as_of: datetime
    ready: bool
    percent: int
    blocking: list[BlockingRead]
    summary: str


def _read(row: Project, session: SessionDep) -> ProjectRead:
    needs = tracks.project_tracks(session, project_row=row)
    return ProjectRead(
        id=row.id,
        name=row.name,
        client=row.client,
        go_live=row.go_live,
        project_manager=row.manager.external_id,
        project_manager_left=row.manager.employment_status == "terminated",
        workflow_id=project_workflow_id(row.id),
        tracks=[
            ProjectTrackRead(
                track_id=n.track_id,
                target_role=n.target_role,
                people_needed=n.people_needed,
                due_date=n.due_date,
            )
            for n in needs
        ],
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectRead)
async def create_project(
    body: ProjectCreate,
    session: SessionDep,
    principal: HrOnly,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> ProjectRead:
    """Create a project (HR); its go-live countdown starts (``ProjectReadinessWorkflow``)."""

    def find() -> Person:
        manager = session.scalar(select(Person).where(Person.external_id == body.project_manager))
        if manager is None:
            raise Invalid(f"project_manager {body.project_manager!r} is not in the directory")
        return manager

    manager = await committed(session, find)
    row = await tracks.create_project(
        session,
        await temporal(),
        task_queue=settings.temporal_task_queue,
        name=body.name,
        client_name=body.client,
        go_live=body.go_live,
        manager=manager,
        principal=principal,
    )
    return await committed(session, lambda: _read(row, session))


@router.get("", response_model=list[ProjectRead])
def list_projects(session: SessionDep, principal: Reader) -> list[ProjectRead]:
    """The projects the caller may see (a manager: the ones they manage)."""
    return [_read(row, session) for row in tracks.projects(session, principal=principal)]


@router.post("/{project_id}/tracks", response_model=ProjectRead)
def assign_track(
    project_id: str, body: ProjectTrackCreate, session: SessionDep, principal: Planner
) -> ProjectRead:
    """Give the project a go-live track (HR, or its project manager)."""
    row = tracks.project(session, project_id=project_id, principal=principal)
    tracks.assign_track(
        session,
        project_row=row,
        track_id=body.track_id,
        target_role=body.target_role,
        people_needed=body.people_needed,
        due_date=body.due_date,
        principal=principal,
    )
    return _read(row, session)


@router.get("/{project_id}/readiness", response_model=ReadinessRead)
async def readiness(
    project_id: str,
    session: SessionDep,
    principal: Reader,
    clock: ClockDep,
    as_of: Annotated[
        date | None,
        Query(description="Readiness from the progress recorded by the end of this day (UTC)."),
    ] = None,
) -> ReadinessRead:
    """``{ready, blocking: [...]}``: each blocking track with who has not completed it."""
    now = await clock()
    instant = (
        now
        if as_of is None or as_of >= now.date()
        else datetime.combine(as_of, time.max, tzinfo=UTC)
    )

    def read() -> tuple[Project, tracks.ProjectReadiness]:
        row = tracks.project(session, project_id=project_id, principal=principal)
        return row, tracks.readiness(session, project_row=row, as_of=instant)

    row, answer = await committed(session, read)
    return ReadinessRead(
        project=row.id,
        as_of=instant,
        ready=answer.ready,
        percent=answer.percent,
        blocking=[
            BlockingRead(
                track=b.track,
                name=b.name,
                required=b.required,
                completed=b.completed,
                in_progress=b.in_progress,
                failed=b.failed,
                people_not_done=list(b.not_done),
            )
            for b in answer.blocking
        ],
        summary=answer.summary,
    )


@router.post("/{project_id}/go-live", response_model=ProjectRead)
async def move_go_live(
    project_id: str,
    body: GoLiveMove,
    session: SessionDep,
    principal: Planner,
    temporal: TemporalDep,
) -> ProjectRead:
    """Move the go-live date (HR, or the project manager); the countdown re-plans."""
    row = await committed(
        session, lambda: tracks.project(session, project_id=project_id, principal=principal)
    )
    await tracks.move_go_live(
        session, await temporal(), project_row=row, go_live=body.go_live, principal=principal
    )
    return await committed(session, lambda: _read(row, session))


@router.post("/{project_id}/manager", response_model=ProjectRead)
async def reassign_project(
    project_id: str,
    body: ManagerChange,
    session: SessionDep,
    principal: HrOnly,
    temporal: TemporalDep,
) -> ProjectRead:
    """Give the project a new project manager (HR): after one left, or any time."""

    def find() -> tuple[Project, Person]:
        row = tracks.project(session, project_id=project_id, principal=principal)
        manager = session.scalar(select(Person).where(Person.external_id == body.project_manager))
        if manager is None:
            raise Invalid(f"project_manager {body.project_manager!r} is not in the directory")
        return row, manager

    row, manager = await committed(session, find)
    await tracks.reassign_project(
        session, await temporal(), project_row=row, manager=manager, principal=principal
    )
    return await committed(session, lambda: _read(row, session))
