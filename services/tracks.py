"""Tracks, learning paths and projects: enrol, read progress, count projects down to go-live.

Enrolment creates the track's obligations: one assignment (``AssignmentWorkflow``) per training
course, due at the course's milestone (enrolment + ``days_to_complete``; else the track's window;
else the requirement's ``due_in_days``). A certification course is not assigned: the held
certificate counts. Progress is read from those obligations (``activities.tracks``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.packs import active_pack, person_attributes
from activities.tracks import (
    NOTICE_WINDOW,
    ProjectReadiness,
    complete_enrolment,
    completion_notices,
    course_inputs,
    enrolment_progress,
    open_enrolment,
    project_readiness,
    start_completion_notices,
    withdraw_enrolment,
)
from domain.contracts.assignment import AssignmentInput, CancelSignal
from domain.contracts.tracks import GoLiveChange, ProjectReadinessInput, project_workflow_id
from domain.roles import Role
from domain.statuses import EmploymentStatus
from duly.settings import Settings
from rules.loader import PackInvalid, pack_from_files
from rules.model import Pack
from rules.tracks import TrackProgress, auto_enrolments
from rules.tracks_edit import TrackEditError, TrackNotFound, reorder_courses, set_active
from rules.tracks_model import Track
from services.assignments import start_assignment
from services.errors import Conflict, Forbidden, Invalid, NotFound
from store import audit
from store.db import committed
from store.models import Person, Project, ProjectTrack, TrackEnrolment
from store.packs import Migration, active_hash, deploy
from store.tokens import Principal
from workflows.assignment import AssignmentWorkflow
from workflows.project import ProjectReadinessWorkflow

__all__ = [
    "Enrolled",
    "ProjectReadiness",
    "active_hash",
    "assign_track",
    "auto_enrol",
    "create_project",
    "enrol",
    "move_go_live",
    "person_tracks",
    "project",
    "project_tracks",
    "projects",
    "readiness",
    "reorder",
    "set_track_active",
    "titles",
    "track",
    "track_progress",
    "tracks",
    "withdraw",
]


def _pack(session: Session) -> Pack:
    pack = active_pack(session)
    if pack is None:
        raise NotFound("no rules pack is deployed; tracks come from the pack (duly rules deploy)")
    return pack


def tracks(session: Session) -> list[Track]:
    """The active pack's tracks (inactive ones included, flagged), in pack order."""
    pack = active_pack(session)
    return list(pack.tracks.tracks) if pack is not None else []


def titles(session: Session) -> dict[str, str]:
    """Requirement id -> title in the active pack (for naming courses)."""
    pack = active_pack(session)
    return {r.id: r.title for r in pack.requirements} if pack is not None else {}


def track(session: Session, *, track_id: str) -> Track:
    """One track of the active pack.

    Raises:
        NotFound: No such track.
    """
    found = _pack(session).tracks.track(track_id)
    if found is None:
        raise NotFound(f"unknown track {track_id!r}; GET /tracks lists them")
    return found


def _edit_track(
    session: Session,
    *,
    track_id: str,
    edit: Callable[[dict[str, str]], dict[str, str]],
    action: str,
    detail: dict[str, object],
    principal: Principal,
    pack_hash: str | None,
) -> tuple[Track, bool]:
    """Apply ``edit`` to the active pack's files and deploy the result as a new version.

    Only the track's lines change (``rules.tracks_edit``); the loader checks the edited pack
    like any other. Deployed with ``grandfather``: running obligations keep their pinned
    version (their ladders and gates are untouched: only the tracks section differs). An edit
    that changes nothing deploys nothing.

    Returns:
        The track as the now-active pack has it, and whether a new version was deployed.
    """
    pack = _pack(session)
    if pack_hash is not None and not pack.content_hash.startswith(pack_hash):
        raise Conflict(
            f"the active pack is {pack.content_hash[:12]}, not {pack_hash[:12]}: it changed"
            " since you read it; read the track again and retry"
        )
    before = pack.tracks.track(track_id)
    if before is None:
        raise NotFound(f"unknown track {track_id!r}; GET /tracks lists them")
    try:
        files = edit(dict(pack.files))
        edited = pack_from_files(files)
    except TrackNotFound as missing:
        raise NotFound(str(missing)) from None
    except TrackEditError as refused:
        raise Invalid(str(refused)) from None
    except PackInvalid as invalid:
        problems = "; ".join(str(issue) for issue in invalid.issues) or str(invalid)
        raise Invalid(f"the edited pack would be invalid: {problems}") from None
    after = edited.tracks.track(track_id)
    assert after is not None
    if edited.content_hash == pack.content_hash:
        return after, False
    message = f"{action} {track_id}: " + ", ".join(f"{k}={v}" for k, v in detail.items())
    deploy(
        session,
        edited,
        author=principal.actor,
        message=message[:500],
        migration=Migration.GRANDFATHER,
        actor_role=principal.role.value,
    )
    audit.record(
        session,
        actor=principal.actor,
        actor_role=principal.role.value,
        action=action,
        target=f"track/{track_id}",
        before={
            "pack": pack.content_hash,
            "active": before.active,
            "courses": [c.requirement for c in before.ordered_courses],
        },
        after={
            "pack": edited.content_hash,
            "active": after.active,
            "courses": [c.requirement for c in after.ordered_courses],
            **detail,
        },
    )
    return after, True


def reorder(
    session: Session,
    *,
    track_id: str,
    courses: list[str],
    principal: Principal,
    pack_hash: str | None = None,
) -> tuple[Track, bool]:
    """Put a track's courses in a new order (a new pack version; the caller commits).

    People mid-track keep everything: progress is kept per course (requirement), not per
    place, so completed courses stay completed, assignments keep their due dates (a milestone
    belongs to its course), and a certificate already issued stays. What changes is the order
    shown and each person's next course. The new order must keep the milestones reachable.

    Args:
        session: A session (the caller commits).
        track_id: The track.
        courses: Every course's requirement id, once each, in the new order.
        principal: Who asks (HR).
        pack_hash: The active pack's hash (or a prefix) the caller read; refused when the
            pack changed since (None: no check).

    Returns:
        The reordered track and whether a new pack version was deployed (False: same order).

    Raises:
        NotFound: No pack, or no such track.
        Invalid: Not exactly the track's courses, or the new order breaks a milestone.
        Conflict: The active pack is not ``pack_hash``.
    """
    return _edit_track(
        session,
        track_id=track_id,
        edit=lambda files: reorder_courses(files, track_id, courses),
        action="track.reorder",
        detail={"order": list(courses)},
        principal=principal,
        pack_hash=pack_hash,
    )


def set_track_active(
    session: Session,
    *,
    track_id: str,
    active: bool,
    reason: str,
    principal: Principal,
    pack_hash: str | None = None,
) -> tuple[Track, bool]:
    """Deactivate (soft) or reactivate a track (a new pack version; the caller commits).

    A deactivated track enrols nobody new (HR, managers and learning paths alike: 409), stays
    listed with ``active: false``, and everyone already enrolled goes on as before: their
    course assignments keep running (reminders, gates), they can finish, the track completes
    and issues its certificate, and projects needing it count them for readiness.

    Returns:
        The track and whether a new pack version was deployed (False: already so).

    Raises:
        NotFound: No pack, or no such track.
        Conflict: The active pack is not ``pack_hash``.
    """
    return _edit_track(
        session,
        track_id=track_id,
        edit=lambda files: set_active(files, track_id, active),
        action="track.activate" if active else "track.deactivate",
        detail={"reason": reason},
        principal=principal,
        pack_hash=pack_hash,
    )


@dataclass(frozen=True)
class Enrolled:
    """What :func:`enrol` did."""

    enrolment: TrackEnrolment
    created: bool
    #: Workflow ids of the course assignments this enrolment started.
    started: list[str]


async def enrol(
    session: Session,
    client: Client,
    *,
    task_queue: str,
    track_id: str,
    person: Person,
    principal: Principal,
    source: str,
    now: datetime,
    base_url: str | None = None,
) -> Enrolled:
    """Enrol ``person`` in a track and assign its training courses (idempotent).

    ``base_url``: where people reach Duly (the certificate's verification link in the notice
    sent when the enrolment completes the track at once; default: the settings').

    The enrolment is committed first (in a worker thread: no transaction is held while
    Temporal is called); then each course without an obligation yet is started. Enrolling
    again starts any course a failed earlier call left out, and changes nothing else.

    Raises:
        NotFound: No such track.
        Conflict: The track is inactive, or the person has left.
        Forbidden: A manager enrolling themself.
    """
    if principal.role is Role.MANAGER and principal.person_id == person.id:
        raise Forbidden("managers cannot enrol themselves; ask HR")
    enrolment, created, inputs = await committed(
        session,
        lambda: _enrolment(
            session, track_id=track_id, person=person, principal=principal, source=source, now=now
        ),
    )
    started: list[str] = []
    for inp in inputs:
        if await start_assignment(client=client, task_queue=task_queue, inp=inp):
            started.append(inp.workflow_id)
    if enrolment.completed_at is not None:
        # Every course was done already: the track completed at once; tell the learner (once).
        base = base_url or Settings().api_base_url
        notices = await committed(
            session,
            lambda: completion_notices(
                session, base_url=base, since=now - NOTICE_WINDOW, person_id=person.id
            ),
        )
        await start_completion_notices(client, task_queue, notices)
    if created or started:
        await committed(
            session,
            lambda: audit.record(
                session,
                actor=principal.actor,
                actor_role=principal.role.value,
                action="track.enrol",
                target=f"track/{track_id}/{person.external_id}",
                after={"source": source, "created": created, "started": started},
            ),
        )
    return Enrolled(enrolment, created=created, started=started)


def _enrolment(
    session: Session,
    *,
    track_id: str,
    person: Person,
    principal: Principal,
    source: str,
    now: datetime,
) -> tuple[TrackEnrolment, bool, list[AssignmentInput]]:
    """The enrolment (created when new) and the course assignments still to start."""
    pack = _pack(session)
    chosen = pack.tracks.track(track_id)
    if chosen is None:
        raise NotFound(f"unknown track {track_id!r}; GET /tracks lists them")
    enrolment = session.scalar(
        select(TrackEnrolment).where(
            TrackEnrolment.person_id == person.id, TrackEnrolment.track_id == track_id
        )
    )
    created = enrolment is None or enrolment.withdrawn_at is not None
    if created:
        if not chosen.active:
            raise Conflict(
                f"track {track_id!r} is inactive: nobody new is enrolled (people already"
                " enrolled keep their progress)"
            )
        if person.employment_status == EmploymentStatus.TERMINATED:
            raise Conflict(f"person {person.external_id!r} has left (employment_status=terminated)")
    # Enrolled again after a withdrawal (a rehire, HR): milestones count from today.
    enrolment = open_enrolment(
        session,
        enrolment,
        person_id=person.id,
        track_id=track_id,
        pack=pack,
        now=now,
        source=source,
        actor=principal.actor,
    )
    inputs = course_inputs(
        session,
        pack,
        chosen,
        person=person,
        enrolled_on=enrolment.enrolled_on,
        assigned_by=f"track {track_id} ({principal.actor})",
    )
    # Every required course was done before enrolment (or is a held certificate): complete
    # now (an optional course may still be assigned; it does not hold the track back).
    progress = enrolment_progress(session, pack, enrolment, now)
    if progress is not None:
        complete_enrolment(session, enrolment, progress, actor=principal.actor)
    return enrolment, created, inputs


async def auto_enrol(
    session: Session, client: Client, *, task_queue: str, principal: Principal, now: datetime
) -> list[Enrolled]:
    """Enrol everyone active in the learning paths that select them.

    By role (and department, location, employer), as the pack's ``auto_enrol`` says; people
    already enrolled are left as they are.
    """
    pack = _pack(session)
    done: list[Enrolled] = []
    people = session.scalars(
        select(Person).where(Person.employment_status != EmploymentStatus.TERMINATED.value)
    ).all()
    for person in people:
        attrs = person_attributes(person)
        for path in auto_enrolments(
            pack.tracks,
            roles=list(attrs.roles),
            department=attrs.department,
            location=attrs.location,
            employer=attrs.employer,
        ):
            result = await enrol(
                session,
                client,
                task_queue=task_queue,
                track_id=path.id,
                person=person,
                principal=principal,
                source="auto",
                now=now,
            )
            if result.created:
                done.append(result)
    return done


@dataclass(frozen=True)
class Withdrawn:
    """What :func:`withdraw` did."""

    enrolment: TrackEnrolment
    #: False: it was withdrawn or completed already (nothing changed).
    withdrawn: bool
    #: Course assignments closed (``cancelled``, with the reason).
    closed: list[str]


async def withdraw(
    session: Session,
    client: Client,
    *,
    track_id: str,
    person: Person,
    principal: Principal,
    reason: str,
    now: datetime,
) -> Withdrawn:
    """Withdraw a person from a track: the enrolment is kept (when, why), its courses close.

    The open course assignments only this track obliges them to close as ``cancelled`` with
    the reason (a course the pack's ``applies_to`` or another of their tracks still requires
    stays open). Idempotent: withdrawing again (or a completed track) changes nothing.

    Raises:
        NotFound: Not enrolled in that track.
        Forbidden: A manager withdrawing themself.
    """
    if principal.role is Role.MANAGER and principal.person_id == person.id:
        raise Forbidden("managers cannot withdraw themselves; ask HR")

    def mark() -> tuple[TrackEnrolment, list[str], bool]:
        enrolment = session.scalar(
            select(TrackEnrolment).where(
                TrackEnrolment.person_id == person.id, TrackEnrolment.track_id == track_id
            )
        )
        if enrolment is None:
            raise NotFound(f"{person.external_id!r} is not enrolled in track {track_id!r}")
        before = enrolment.withdrawn_at is None and enrolment.completed_at is None
        close = withdraw_enrolment(
            session,
            active_pack(session),
            enrolment,
            reason=reason,
            actor=principal.actor,
            actor_role=principal.role.value,
            at=now,
        )
        return enrolment, close, before

    enrolment, close, changed = await committed(session, mark)
    closed: list[str] = []
    for workflow_id in close:
        try:
            await client.get_workflow_handle(workflow_id).signal(
                AssignmentWorkflow.cancel,
                CancelSignal(
                    reason=f"withdrawn from track {track_id}: {reason}"[:500],
                    actor=principal.actor[:128],
                ),
            )
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
            continue
        closed.append(workflow_id)
    return Withdrawn(enrolment, withdrawn=changed, closed=closed)


def track_progress(
    session: Session, *, track_id: str, as_of: datetime, visible: set[int] | None
) -> list[tuple[Person, TrackEnrolment, TrackProgress]]:
    """Everyone enrolled in a track (that the caller may see) and their progress as of."""
    pack = _pack(session)
    if pack.tracks.track(track_id) is None:
        raise NotFound(f"unknown track {track_id!r}; GET /tracks lists them")
    rows = session.scalars(
        select(TrackEnrolment)
        .where(TrackEnrolment.track_id == track_id, TrackEnrolment.enrolled_at <= as_of)
        .order_by(TrackEnrolment.id)
    ).all()
    out = []
    for row in rows:
        if visible is not None and row.person_id not in visible:
            continue
        progress = enrolment_progress(session, pack, row, as_of)
        if progress is not None:
            complete_enrolment(session, row, progress, actor="system:tracks")
            out.append((row.person, row, progress))
    return out


def person_tracks(
    session: Session, *, person_id: int, as_of: datetime
) -> list[tuple[TrackEnrolment, TrackProgress]]:
    """A person's tracks and their progress as of an instant (none without a pack)."""
    pack = active_pack(session)
    if pack is None:
        return []
    rows = session.scalars(
        select(TrackEnrolment)
        .where(TrackEnrolment.person_id == person_id, TrackEnrolment.enrolled_at <= as_of)
        .order_by(TrackEnrolment.id)
    ).all()
    out = []
    for row in rows:
        progress = enrolment_progress(session, pack, row, as_of)
        if progress is not None:
            complete_enrolment(session, row, progress, actor="system:tracks")
            out.append((row, progress))
    return out


# -- projects -------------------------------------------------------------------------------


def project(session: Session, *, project_id: str, principal: Principal) -> Project:
    """A project the caller may see (HR and auditors: all; a manager: the ones they manage).

    Raises:
        NotFound: No such project, or not the caller's.
    """
    found = session.get(Project, int(project_id)) if project_id.isdigit() else None
    if found is None or (
        principal.role is Role.MANAGER and found.manager_id != principal.person_id
    ):
        raise NotFound(f"unknown project {project_id!r}")
    return found


def projects(session: Session, *, principal: Principal) -> list[Project]:
    """The projects the caller may see."""
    query = select(Project).order_by(Project.go_live, Project.id)
    if principal.role is Role.MANAGER:
        query = query.where(Project.manager_id == principal.person_id)
    return list(session.scalars(query).all())


async def create_project(
    session: Session,
    client: Client,
    *,
    task_queue: str,
    name: str,
    client_name: str,
    go_live: date,
    manager: Person,
    principal: Principal,
) -> Project:
    """Create a project and start its ``ProjectReadinessWorkflow``.

    Raises:
        Conflict: A project of that name exists.
    """

    def insert() -> Project:
        if session.scalar(select(Project.id).where(Project.name == name)):
            raise Conflict(f"a project named {name!r} exists")
        row = Project(name=name, client=client_name, go_live=go_live, manager_id=manager.id)
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor=principal.actor,
            actor_role=principal.role.value,
            action="project.create",
            target=f"project/{row.id}",
            after={"name": name, "client": client_name, "go_live": go_live.isoformat()},
        )
        return row

    # Committed (in a worker thread) before the workflow's first readiness check reads it.
    row = await committed(session, insert)
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            ProjectReadinessWorkflow.run,
            ProjectReadinessInput(
                project_id=row.id, name=name, go_live=go_live, manager=manager.external_id
            ),
            id=project_workflow_id(row.id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    return row


def assign_track(
    session: Session,
    *,
    project_row: Project,
    track_id: str,
    target_role: str | None,
    people_needed: int,
    due_date: date,
    principal: Principal,
) -> ProjectTrack:
    """Give a project a track its go-live needs (or change the numbers of one it has).

    Raises:
        NotFound: No such track.
        Invalid: The track is not required for go-live.
    """
    chosen = track(session, track_id=track_id)
    if not chosen.required_for_go_live:
        raise Invalid(
            f"track {track_id!r} is not required_for_go_live in the pack; readiness ignores it"
        )
    row = session.scalar(
        select(ProjectTrack).where(
            ProjectTrack.project_id == project_row.id, ProjectTrack.track_id == track_id
        )
    )
    if row is None:
        row = ProjectTrack(project_id=project_row.id, track_id=track_id)
        session.add(row)
    row.target_role = target_role
    row.people_needed = people_needed
    row.due_date = due_date
    session.flush()
    audit.record(
        session,
        actor=principal.actor,
        actor_role=principal.role.value,
        action="project.assign_track",
        target=f"project/{project_row.id}",
        after={
            "track_id": track_id,
            "target_role": target_role,
            "people_needed": people_needed,
            "due_date": due_date.isoformat(),
        },
    )
    return row


def project_tracks(session: Session, *, project_row: Project) -> list[ProjectTrack]:
    """The tracks a project needs, in the order they were given."""
    return list(
        session.scalars(
            select(ProjectTrack)
            .where(ProjectTrack.project_id == project_row.id)
            .order_by(ProjectTrack.id)
        ).all()
    )


def readiness(session: Session, *, project_row: Project, as_of: datetime) -> ProjectReadiness:
    """The project's go-live readiness as of an instant (see ``activities.tracks``)."""
    return project_readiness(session, project_row, as_of, _pack(session))


async def move_go_live(
    session: Session, client: Client, *, project_row: Project, go_live: date, principal: Principal
) -> Project:
    """Move the go-live date; the countdown re-plans (a signal to its workflow)."""
    old = project_row.go_live

    def update() -> None:
        project_row.go_live = go_live
        audit.record(
            session,
            actor=principal.actor,
            actor_role=principal.role.value,
            action="project.move_go_live",
            target=f"project/{project_row.id}",
            after={"from": old.isoformat(), "to": go_live.isoformat()},
        )

    await committed(session, update)
    handle = client.get_workflow_handle(project_workflow_id(project_row.id))
    try:
        await handle.signal(
            ProjectReadinessWorkflow.move_go_live,
            GoLiveChange(go_live=go_live, actor=principal.actor),
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    return project_row
