"""Tracks: progress from the obligations read model, project readiness, and its activity.

Progress per person per course is read from the obligations the track's courses created (an
assignment's ``started_at``, ``completed_at`` and ``failed`` status; a certification course is
done while the held certificate is valid) and computed by :mod:`rules.tracks` (pure). The same
functions serve the API (through ``services.tracks``) and the ``ProjectReadinessWorkflow``'s
``check_project_readiness`` activity, so the countdown and ``GET /projects/{id}/readiness``
always agree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.assigning import assignment_input
from activities.packs import active_pack, person_attributes
from domain.contracts.assignment import AssignmentInput
from domain.contracts.tracks import (
    TRACK_COMPLETED_WORKFLOW,
    NudgeRequest,
    ProjectMessages,
    ReadinessCheck,
    ReadinessRequest,
    ReadinessResult,
    TrackCompletedNotice,
    TrackNoticeSweep,
    project_workflow_id,
    track_completed_workflow_id,
)
from domain.kinds import ObligationKind
from rules.model import Pack
from rules.tracks import (
    CourseRecord,
    Readiness,
    TeamMember,
    TrackProgress,
    readiness,
    track_progress,
)
from rules.tracks_model import Track
from store import audit
from store.certificates import unused_code
from store.db import Database
from store.models import (
    Notification,
    Obligation,
    Person,
    Project,
    ProjectTrack,
    TrackEnrolment,
)

__all__ = [
    "BlockingTrack",
    "ProjectReadiness",
    "TrackActivities",
    "complete_enrolment",
    "complete_tracks",
    "completion_notices",
    "course_records",
    "enrolment_progress",
    "project_readiness",
    "start_completion_notices",
]

#: A certification course counts as done while the certificate has one of these statuses.
_HELD = {"valid", "compliant", "renewal_due", "grace_period", "active", "completed"}


def course_records(
    session: Session, person: Person, requirement_ids: Sequence[str]
) -> dict[str, CourseRecord]:
    """What the obligations record about ``person``'s courses, by requirement id.

    Per requirement the first completed cycle counts (a later recurrence does not undo a
    finished course); otherwise the latest cycle.
    """
    rows = session.scalars(
        select(Obligation)
        .where(Obligation.person_id == person.id, Obligation.requirement_id.in_(requirement_ids))
        .order_by(Obligation.cycle)
    ).all()
    found: dict[str, CourseRecord] = {}
    for row in rows:
        if row.kind == ObligationKind.CERTIFICATION.value:
            held = row.status in _HELD
            record = CourseRecord(row.requirement_id, completed_at=row.created_at if held else None)
        else:
            record = CourseRecord(
                row.requirement_id,
                started_at=row.started_at,
                completed_at=row.completed_at,
                failed_at=row.as_of if row.status == "failed" else None,
            )
        previous = found.get(row.requirement_id)
        if previous is None or previous.completed_at is None:
            found[row.requirement_id] = record
    return found


def enrolment_progress(
    session: Session, pack: Pack, enrolment: TrackEnrolment, as_of: datetime
) -> TrackProgress | None:
    """A person's progress through their track (None: the track is not in the pack)."""
    track = pack.tracks.track(enrolment.track_id)
    if track is None:
        return None
    ids = [c.requirement for c in track.courses]
    return track_progress(
        track,
        enrolled_on=enrolment.enrolled_on,
        records=course_records(session, enrolment.person, ids),
        as_of=as_of,
    )


def complete_enrolment(
    session: Session, enrolment: TrackEnrolment, progress: TrackProgress, *, actor: str
) -> bool:
    """Complete the track when every required course is done: record when, issue the certificate.

    Idempotent: an enrolment already completed keeps its date and certificate (a later change
    of the track, or a course's next cycle, never takes a certificate back). The certificate
    carries a verification code (``GET /verify/{code}``), the track's name as it is now and the
    day the last required course was completed. Audited as ``track.complete``.

    Returns:
        True when this call completed the enrolment.
    """
    if (
        enrolment.completed_at is not None
        or progress.completed_at is None
        or enrolment.withdrawn_at is not None
    ):
        return False
    enrolment.completed_at = progress.completed_at
    enrolment.certificate_code = unused_code(session)
    enrolment.certificate_title = progress.name
    enrolment.certificate_issued_on = progress.completed_at.date()
    session.flush()
    audit.record(
        session,
        actor=actor,
        actor_role="system",
        action="track.complete",
        target=f"track/{enrolment.track_id}/{enrolment.person.external_id}",
        after={
            "completed_at": progress.completed_at.isoformat(),
            "certificate_code": enrolment.certificate_code,
            "required_done": progress.required_done,
        },
    )
    return True


def complete_tracks(session: Session, pack: Pack, person: Person, as_of: datetime) -> list[str]:
    """Complete every track of ``person`` whose required courses are all done by ``as_of``.

    Returns:
        The ids of the tracks this call completed.
    """
    rows = session.scalars(
        select(TrackEnrolment).where(
            TrackEnrolment.person_id == person.id,
            TrackEnrolment.completed_at.is_(None),
            TrackEnrolment.withdrawn_at.is_(None),
        )
    ).all()
    done = []
    for row in rows:
        progress = enrolment_progress(session, pack, row, as_of)
        if progress is not None and complete_enrolment(
            session, row, progress, actor="system:tracks"
        ):
            done.append(row.track_id)
    return done


#: A course due date when neither the course, the track nor the requirement says.
DEFAULT_DUE_DAYS = 30


def course_due(pack: Pack, track: Track, requirement_id: str, days: int | None, on: date) -> date:
    """A course's due date: its milestone, else the track's window, else ``due_in_days``."""
    if days is not None:
        return on + timedelta(days=days)
    if track.days_to_complete is not None:
        return on + timedelta(days=track.days_to_complete)
    requirement = pack.requirement(requirement_id)
    due_in = getattr(requirement, "due_in_days", None) if requirement else None
    return on + timedelta(days=due_in or DEFAULT_DUE_DAYS)


#: Read-model statuses of a course obligation that is over without completion.
CLOSED_COURSE = frozenset({"cancelled", "not_applicable", "revoked", "superseded"})


def enrolment_status(enrolment: TrackEnrolment) -> str:
    """``withdrawn``, ``completed`` or ``enrolled``."""
    if enrolment.withdrawn_at is not None:
        return "withdrawn"
    if enrolment.completed_at is not None:
        return "completed"
    return "enrolled"


def course_inputs(
    session: Session,
    pack: Pack,
    track: Track,
    *,
    person: Person,
    enrolled_on: date,
    assigned_by: str,
    skip: Collection[str] = (),
) -> list[AssignmentInput]:
    """The course assignments an enrolment still has to start.

    A course with an open or completed obligation counts as it is (the existing assignment
    counts for the track); one whose obligations all closed without completion (a leaver's,
    cancelled) starts again as the next cycle. Certification courses are never assigned: the
    held certificate counts. ``skip``: requirement ids being started by someone else now.
    """
    inputs: list[AssignmentInput] = []
    for course in track.ordered_courses:
        requirement = pack.requirement(course.requirement)
        if requirement is None or requirement.kind is ObligationKind.CERTIFICATION:
            continue
        if course.requirement in skip:
            continue
        rows = session.execute(
            select(Obligation.status, Obligation.cycle, Obligation.completed_at).where(
                Obligation.person_id == person.id,
                Obligation.requirement_id == course.requirement,
                Obligation.workflow_id.like("assignment/%"),
            )
        ).all()
        if any(status not in CLOSED_COURSE or done is not None for status, _, done in rows):
            continue  # already obligated (or done): the existing assignment counts
        cycle = max((c for _, c, _ in rows), default=0) + 1
        inputs.append(
            assignment_input(
                person,
                title=requirement.title,
                due_date=course_due(
                    pack, track, course.requirement, course.days_to_complete, enrolled_on
                ),
                requirement_id=course.requirement,
                cycle=cycle,
                assigned_by=assigned_by,
                pack=pack,
                track_id=track.id,
            )
        )
    return inputs


def reopen(
    enrolment: TrackEnrolment, *, pack: Pack, now: datetime, source: str, actor: str
) -> None:
    """Enrol again after a withdrawal (a rehire, HR): milestones count from ``now``."""
    enrolment.withdrawn_at = None
    enrolment.withdrawn_reason = None
    enrolment.pack_hash = pack.content_hash
    enrolment.enrolled_on = now.date()
    enrolment.enrolled_at = now
    enrolment.source = source
    enrolment.enrolled_by = actor[:128]


def open_enrolment(
    session: Session,
    enrolment: TrackEnrolment | None,
    *,
    person_id: int,
    track_id: str,
    pack: Pack,
    now: datetime,
    source: str,
    actor: str,
) -> TrackEnrolment:
    """The person's enrolment in the track: ``enrolment`` as it is, reopened, or a new one.

    Args:
        session: An open session (flushed, so a new row has its id).
        enrolment: The person's existing enrolment in the track, if any.
        person_id: The person's row id.
        track_id: The track.
        pack: The active pack (its hash is pinned on a new or reopened enrolment).
        now: When; milestones count from its date.
        source: Who enrols (``hr``, ``manager``, ``auto``...).
        actor: Recorded as ``enrolled_by``.
    """
    if enrolment is None:
        enrolment = TrackEnrolment(
            person_id=person_id,
            track_id=track_id,
            pack_hash=pack.content_hash,
            enrolled_on=now.date(),
            enrolled_at=now,
            source=source,
            enrolled_by=actor[:128],
        )
        session.add(enrolment)
    elif enrolment.withdrawn_at is not None:
        reopen(enrolment, pack=pack, now=now, source=source, actor=actor)
    session.flush()
    return enrolment


def withdraw_enrolment(
    session: Session,
    pack: Pack | None,
    enrolment: TrackEnrolment,
    *,
    reason: str,
    actor: str,
    actor_role: str,
    at: datetime,
) -> list[str]:
    """Withdraw an enrolment (kept, with when and why); audited as ``track.withdraw``.

    Idempotent: a withdrawn or completed enrolment is left as it is.

    Returns:
        The workflow ids of the open course obligations only this track obliges the person to
        (the pack's ``applies_to`` does not cover them and no other live enrolment of theirs
        has the course): the caller closes them (``cancel``, with ``reason``). Empty when
        nothing changed.
    """
    if enrolment.withdrawn_at is not None or enrolment.completed_at is not None:
        return []
    enrolment.withdrawn_at = at
    enrolment.withdrawn_reason = reason[:500]
    person = enrolment.person
    track = pack.tracks.track(enrolment.track_id) if pack is not None else None
    courses = {c.requirement for c in track.courses} if track is not None else set()
    others = session.scalars(
        select(TrackEnrolment).where(
            TrackEnrolment.person_id == person.id,
            TrackEnrolment.id != enrolment.id,
            TrackEnrolment.withdrawn_at.is_(None),
        )
    ).all()
    for other in others:
        other_track = pack.tracks.track(other.track_id) if pack is not None else None
        if other_track is not None:
            courses -= {c.requirement for c in other_track.courses}
    attrs = person_attributes(person)
    owed_anyway = {
        r.id
        for r in (pack.requirements if pack is not None else [])
        if r.applies_to.applies(list(attrs.roles), attrs.department, attrs.location, attrs.employer)
    }
    close = list(
        session.scalars(
            select(Obligation.workflow_id).where(
                Obligation.person_id == person.id,
                Obligation.requirement_id.in_(sorted(courses - owed_anyway)),
                Obligation.workflow_id.like("assignment/%"),
                Obligation.completed_at.is_(None),
                Obligation.status.not_in(sorted(CLOSED_COURSE | {"completed"})),
            )
        )
    )
    session.flush()
    audit.record(
        session,
        actor=actor,
        actor_role=actor_role,
        action="track.withdraw",
        target=f"track/{enrolment.track_id}/{person.external_id}",
        after={"reason": reason[:500], "closing": close},
    )
    return close


#: How far back a completion is still announced when it was not yet (a retried course
#: completion, the nightly reconciliation). Older completions were announced when they happened,
#: or happened before Duly sent these notices: nobody is told weeks late.
NOTICE_WINDOW = timedelta(days=7)


def verify_url(base_url: str, code: str) -> str:
    """The public page where anyone checks a certificate (``GET /verify/{code}``)."""
    return f"{base_url.rstrip('/')}/verify/{code}"


def completion_notices(
    session: Session, *, base_url: str, since: datetime, person_id: int | None = None
) -> list[TrackCompletedNotice]:
    """The completion notices still owed: tracks completed since ``since``, nobody told yet.

    "Told" is the ledger's: a notice row under the completion's business key (sent, failed,
    skipped for a leaver...) means its workflow ran; one still waiting for quiet hours to end
    has no row yet, and starting its workflow again is refused (the key is taken).
    """
    query = select(TrackEnrolment).where(
        TrackEnrolment.completed_at >= since,
        TrackEnrolment.withdrawn_at.is_(None),
        TrackEnrolment.certificate_code.is_not(None),
    )
    if person_id is not None:
        query = query.where(TrackEnrolment.person_id == person_id)
    rows = list(session.scalars(query.order_by(TrackEnrolment.id)).unique())
    keys = {
        row.id: track_completed_workflow_id(row.track_id, row.person.external_id) for row in rows
    }
    told = set(
        session.scalars(
            select(Notification.workflow_id).where(Notification.workflow_id.in_(keys.values()))
        )
    )
    return [
        TrackCompletedNotice(
            person=row.person.external_id,
            track_id=row.track_id,
            track_name=(row.certificate_title or row.track_id)[:200],
            certificate_code=row.certificate_code or "",
            issued_on=row.certificate_issued_on or row.completed_at.date(),  # type: ignore[union-attr]
            verify_url=verify_url(base_url, row.certificate_code or "")[:300],
        )
        for row in rows
        if keys[row.id] not in told
    ]


async def start_completion_notices(
    client: Client, task_queue: str, notices: Sequence[TrackCompletedNotice]
) -> list[str]:
    """Start each notice's ``TrackCompletedWorkflow``; the ids started (taken keys are skipped).

    Its business key is refused a second time, and the ledger key of its message too, so
    calling this again (a retried activity, the nightly sweep) never tells anyone twice.
    """
    started: list[str] = []
    for notice in notices:
        workflow_id = track_completed_workflow_id(notice.track_id, notice.person)
        try:
            await client.start_workflow(
                TRACK_COMPLETED_WORKFLOW,
                notice,
                id=workflow_id,
                task_queue=task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            continue
        started.append(workflow_id)
    return started


@dataclass(frozen=True)
class BlockingTrack:
    """A go-live track that is not complete enough yet."""

    track: str
    name: str
    required: int
    completed: int
    in_progress: int
    failed: int
    not_done: tuple[str, ...]
    #: The track has enough people done (only in :attr:`ProjectReadiness.tracks`).
    ready: bool = False


@dataclass(frozen=True)
class ProjectReadiness:
    """A project's readiness as of an instant."""

    project: Project
    as_of: datetime
    ready: bool
    percent: int
    blocking: tuple[BlockingTrack, ...]
    summary: str
    #: Every go-live track the project needs, ready or not, in the project's order.
    tracks: tuple[BlockingTrack, ...] = ()


def _pack_for(session: Session) -> Pack:
    pack = active_pack(session)
    if pack is None:
        raise LookupError("no rules pack is deployed: tracks come from the pack")
    return pack


def project_readiness(
    session: Session, project: Project, as_of: datetime, pack: Pack | None = None
) -> ProjectReadiness:
    """Whether ``project`` can go live as of ``as_of`` (see ``rules.tracks.readiness``).

    The team of a project track is everyone enrolled in the track by ``as_of`` who has the
    track's target role (anyone when it names none); ``people_needed`` of them must complete
    it. A track nobody is enrolled in blocks with 0 completed.
    """
    pack = pack or _pack_for(session)
    needs = session.scalars(
        select(ProjectTrack).where(ProjectTrack.project_id == project.id).order_by(ProjectTrack.id)
    ).all()
    members: dict[int, tuple[Person, list[str], dict[str, TrackProgress]]] = {}
    catalogue: list[Track] = []
    for need in needs:
        track = pack.tracks.track(need.track_id)
        if track is None or not track.required_for_go_live:
            continue
        catalogue.append(track)
        enrolments = session.scalars(
            select(TrackEnrolment).where(
                TrackEnrolment.track_id == need.track_id, TrackEnrolment.enrolled_at <= as_of
            )
        ).all()
        for enrolment in enrolments:
            person = enrolment.person
            if need.target_role and need.target_role not in (person.roles or []):
                continue
            progress = enrolment_progress(session, pack, enrolment, as_of)
            entry = members.setdefault(person.id, (person, [], {}))
            entry[1].append(need.track_id)
            if progress is not None:
                entry[2][need.track_id] = progress
    team = [
        TeamMember(person_id=p.external_id, name=p.name, tracks=tracks, progress=progress)
        for p, tracks, progress in members.values()
    ]
    titles = {r.id: r.title for r in pack.requirements}
    needed = {n.track_id: n.people_needed for n in needs}
    answer: Readiness = readiness(team, catalogue, as_of=as_of, needed=needed, titles=titles)
    blocking = [
        BlockingTrack(
            track=t.track_id,
            name=t.name,
            required=t.required,
            completed=t.completed,
            in_progress=t.in_progress,
            failed=t.failed,
            not_done=tuple(gap.explanation for gap in t.waiting_for),
        )
        for t in answer.tracks
        if not t.ready
    ]
    every = {
        t.track_id: BlockingTrack(
            track=t.track_id,
            name=t.name,
            required=t.required,
            completed=t.completed,
            in_progress=t.in_progress,
            failed=t.failed,
            not_done=tuple(gap.explanation for gap in t.waiting_for),
            ready=t.ready,
        )
        for t in answer.tracks
    }
    seen = {t.track_id for t in answer.tracks}
    for track in catalogue:
        if track.id not in seen and needed.get(track.id, 0) > 0:
            nobody = BlockingTrack(
                track=track.id,
                name=track.name,
                required=needed[track.id],
                completed=0,
                in_progress=0,
                failed=0,
                not_done=(f"nobody is enrolled in {track.name} yet",),
            )
            blocking.append(nobody)
            every[track.id] = nobody
    ready = not blocking
    if ready:
        summary = answer.summary
    else:
        names = ", ".join(f"{b.name} ({b.completed} of {b.required})" for b in blocking)
        summary = f"not ready as of {as_of.date().isoformat()}: blocked by {names}"
    return ProjectReadiness(
        project=project,
        as_of=as_of,
        ready=ready,
        percent=100 if ready else min(answer.percent, 99),
        blocking=tuple(blocking),
        summary=summary,
        tracks=tuple(every[t.id] for t in catalogue if t.id in every),
    )


class TrackActivities:
    """Activities of the tracks family (sync: the worker runs them on a thread pool)."""

    def __init__(
        self, db: Database, client: Client | None = None, *, base_url: str | None = None
    ) -> None:
        """Bind the store, the Temporal client and the public base URL (verification links)."""
        self._db = db
        self._client = client
        self._base_url = base_url or "http://localhost:8000"

    @activity.defn(name="check_project_readiness")
    def check_project_readiness(self, request: ReadinessRequest) -> ReadinessResult:
        """The project's readiness at the workflow's instant: ready, blocking tracks, summary."""
        with self._db.session() as session:
            project = session.get(Project, request.project_id)
            if project is None:
                raise ApplicationError(
                    f"project {request.project_id} does not exist", non_retryable=True
                )
            pack = active_pack(session)
            if pack is None:
                raise ApplicationError("no rules pack is deployed", non_retryable=True)
            answer = project_readiness(session, project, request.as_of, pack)
            return ReadinessResult(
                ready=answer.ready,
                blocking_tracks=[b.name for b in answer.blocking],
                summary=answer.summary,
            )

    @activity.defn(name="nudge_projects")
    async def nudge_projects(self, request: NudgeRequest) -> int:
        """A course completed: the person's tracks complete, their projects look at readiness.

        First every track of the person whose required courses are now all done completes and
        issues its certificate (:func:`complete_tracks`; idempotent, so a retry issues
        nothing twice). Then ``check`` is signalled to each project needing the person's
        tracks, so readiness is announced at once rather than at the next periodic look.

        Returns:
            How many project workflows were signalled (finished ones are skipped).
        """
        if self._client is None:
            raise ApplicationError("nudge_projects needs a Temporal client", non_retryable=True)
        notices: list[TrackCompletedNotice] = []
        with self._db.session() as session:
            person = session.scalar(select(Person).where(Person.external_id == request.person))
            if person is None:
                return 0
            pack = active_pack(session)
            if pack is not None:
                as_of = request.at or datetime.now(UTC)
                completed = complete_tracks(session, pack, person, as_of)
                if completed:
                    activity.logger.info("tracks completed: %s", ", ".join(completed))
                session.flush()
                # Not only the ones this attempt completed: a retry after the commit finds them
                # completed already, and must still tell the learner (once: see below).
                notices = completion_notices(
                    session,
                    base_url=self._base_url,
                    since=as_of - NOTICE_WINDOW,
                    person_id=person.id,
                )
            project_ids = list(
                session.scalars(
                    select(ProjectTrack.project_id)
                    .join(TrackEnrolment, TrackEnrolment.track_id == ProjectTrack.track_id)
                    .where(TrackEnrolment.person_id == person.id)
                    .distinct()
                )
            )
        if notices:
            await start_completion_notices(self._client, activity.info().task_queue, notices)
        signalled = 0
        for project_id in sorted(project_ids):
            handle = self._client.get_workflow_handle(project_workflow_id(project_id))
            try:
                await handle.signal(
                    ProjectMessages.check, ReadinessCheck(reason=f"{request.requirement_id} done")
                )
                signalled += 1
            except RPCError as error:
                if error.status is not RPCStatusCode.NOT_FOUND:
                    raise
        return signalled

    @activity.defn(name="send_track_completion_notices")
    async def send_track_completion_notices(self, request: TrackNoticeSweep) -> list[str]:
        """Start the notices of tracks completed in the last week that nobody told yet.

        Tracks also complete outside a course's workflow (an enrolment whose courses were all
        done, a certification course noticed when progress is read): the nightly
        reconciliation tells those learners here. Idempotent (the ledger and business keys).

        Returns:
            The notice workflows started.
        """
        if self._client is None:
            raise ApplicationError("notices need a Temporal client", non_retryable=True)

        def read() -> list[TrackCompletedNotice]:
            with self._db.session() as session:
                return completion_notices(
                    session, base_url=self._base_url, since=request.as_of - NOTICE_WINDOW
                )

        notices = await asyncio.to_thread(read)
        return await start_completion_notices(self._client, activity.info().task_queue, notices)

    def all(self) -> list[Callable[..., Any]]:
        """Every activity callable, for the worker."""
        return [
            self.check_project_readiness,
            self.nudge_projects,
            self.send_track_completion_notices,
        ]
