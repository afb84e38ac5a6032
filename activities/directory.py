"""Activities of the joiner/mover/leaver automation and the nightly reconciliation.

Thin: the decisions are :func:`rules.directory.plan_person`'s; these read the directory, the
active pack, the obligation read model and the apprenticeship, mentorship and track-enrolment
rows, and carry a plan out through the normal paths (assignments start through the starter the
shell gives, as bulk jobs do; closings, pauses and resumes are each family's own message:
``cancel``/``pause``/``resume`` signals to assignments, ``cancel`` to certifications, the
``change_enrolment`` update to apprenticeships, the ``cancel`` update and ``leave`` signal to
mentorships; a track enrolment is withdrawn or enrolled in the database). Every step is
idempotent: a start of an existing business key is refused by Temporal, a closed workflow
ignores a second cancel (or refuses a second withdrawal: not counted), a paused one a second
pause.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.assigning import StartsAssignments, assignment_input
from activities.packs import active_pack, load_version
from activities.tracks import (
    course_inputs,
    enrolment_status,
    open_enrolment,
    withdraw_enrolment,
)
from domain.contracts.apprenticeship import (
    ApprenticeshipState,
    ChangeEnrolment,
    EnrolmentAction,
)
from domain.contracts.assignment import AssignmentInput, CancelSignal, PauseSignal, ResumeSignal
from domain.contracts.directory import (
    REASON_LEAVE,
    ApplyPlanRequest,
    ChangeKind,
    Closing,
    DirectoryChange,
    DirectoryOutcome,
    PersonPlan,
    PlanChangeRequest,
    ReconcileRequest,
    ReconcileResult,
    family_of,
    track_enrolment_key,
)
from domain.contracts.mentorship import CancelMentorship, LeaveSignal
from rules.directory import Engagement, Extensions, HeldObligation, PersonFacts, plan_person
from rules.model import Pack
from store import audit
from store.apprenticeships import Apprenticeship
from store.models import ApiToken, AuditEntry, Mentorship, Obligation, Person, TrackEnrolment

#: People read and planned per reconciliation page (one heartbeat each).
PAGE = 200
#: Fixes described in a reconciliation's result (the rest are counted).
MAX_FIXES = 100
#: Starts and signals in flight at once.
CHUNK = 50
_ROLE = "system"
#: Temporal errors worth retrying the whole activity for.
_TRANSIENT = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.CANCELLED,
    }
)


def person_facts(person: Person) -> PersonFacts:
    """A directory row as :func:`rules.directory.plan_person` takes it."""
    return PersonFacts(
        person_id=person.id,
        external_id=person.external_id,
        roles=list(person.roles or []),
        department=person.department,
        location=person.location,
        employer=person.employer,
        employment_status=person.employment_status,
        start_date=person.start_date,
    )


def held_obligations(
    session: Session, person_ids: Iterable[int]
) -> dict[int, list[HeldObligation]]:
    """Every obligation row of these people, by person id."""
    ids = list(person_ids)
    found: dict[int, list[HeldObligation]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(
                Obligation.person_id,
                Obligation.workflow_id,
                Obligation.requirement_id,
                Obligation.kind,
                Obligation.status,
                Obligation.cycle,
                Obligation.pack_hash,
                Obligation.completed_at,
            ).where(Obligation.person_id.in_(ids[start : start + 500]))
        )
        for pid, wid, req, kind, status, cycle, pack_hash, completed_at in rows:
            found[pid].append(
                HeldObligation(
                    workflow_id=wid,
                    requirement_id=req,
                    kind=kind,
                    status=status,
                    cycle=cycle,
                    pack_hash=pack_hash,
                    completed=completed_at is not None,
                )
            )
    return found


def engagements(session: Session, people: dict[int, str]) -> dict[int, list[Engagement]]:
    """Every apprenticeship, mentorship (either side) and track enrolment of these people.

    Args:
        session: The store.
        people: External ids by person id.
    """
    ids = list(people)
    found: dict[int, list[Engagement]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for pid, wid, program, status in session.execute(
            select(
                Apprenticeship.person_id,
                Apprenticeship.workflow_id,
                Apprenticeship.program_id,
                Apprenticeship.status,
            ).where(Apprenticeship.person_id.in_(chunk))
        ):
            found[pid].append(Engagement(workflow_id=wid, ref=program, status=status))
        for mentorship in session.scalars(
            select(Mentorship).where(
                or_(Mentorship.mentee_id.in_(chunk), Mentorship.mentor_id.in_(chunk))
            )
        ).unique():
            if mentorship.mentee_id in found:
                found[mentorship.mentee_id].append(
                    Engagement(
                        workflow_id=mentorship.workflow_id,
                        ref=mentorship.mentor.external_id,
                        status=mentorship.status,
                        role="mentee",
                    )
                )
            if mentorship.mentor_id in found:
                found[mentorship.mentor_id].append(
                    Engagement(
                        workflow_id=mentorship.workflow_id,
                        ref=mentorship.mentee.external_id,
                        status=mentorship.status,
                        role="mentor",
                    )
                )
        for enrolment in session.scalars(
            select(TrackEnrolment).where(TrackEnrolment.person_id.in_(chunk))
        ).unique():
            found[enrolment.person_id].append(
                Engagement(
                    workflow_id=track_enrolment_key(
                        enrolment.track_id, people[enrolment.person_id]
                    ),
                    ref=enrolment.track_id,
                    status=enrolment_status(enrolment),
                )
            )
    return found


def extensions(session: Session, obligations: Iterable[HeldObligation]) -> Extensions:
    """Each pinned pack's ``extend_due_on_leave`` per requirement (for a return from leave)."""
    by_pack: dict[str, dict[str, bool]] = {}
    for pack_hash in {o.pack_hash for o in obligations}:
        pack = load_version(session, pack_hash)
        if pack is not None:
            by_pack[pack_hash] = {r.id: r.extend_due_on_leave for r in pack.requirements}
    return Extensions(by_pack=by_pack)


def manager_change(change: DirectoryChange) -> str | None:
    """``old -> new`` (external ids, ``-`` for none) when the change moved the manager."""
    if "manager" not in change.changed:
        return None
    before = (change.before or {}).get("manager") or "-"
    after = change.after.get("manager") or "-"
    return f"{before} -> {after}"


def plan_for(
    session: Session,
    person: Person,
    *,
    pack: Pack | None,
    today: date,
    kind: ChangeKind | str,
    obligations: Sequence[HeldObligation] | None = None,
    manager: str | None = None,
    engaged: Sequence[Engagement] | None = None,
) -> PersonPlan:
    """Plan one person from the store (the dry run calls this too)."""
    held = (
        obligations
        if obligations is not None
        else held_obligations(session, [person.id])[person.id]
    )
    if engaged is None:
        engaged = engagements(session, {person.id: person.external_id})[person.id]
    return plan_person(
        engagements=engaged,
        pack=pack,
        person=person_facts(person),
        obligations=held,
        today=today,
        kind=kind,
        manager_change=manager,
        extensions=extensions(session, held) if kind == ChangeKind.RETURN else None,
    )


def _tracks(closings: Sequence[Closing]) -> list[Closing]:
    return [c for c in closings if c.family == "track"]


async def _done() -> bool:
    """A closing carried out in the database already (a track enrolment)."""
    return True


def _enrolment(session: Session, person_id: int, track_id: str) -> TrackEnrolment | None:
    return session.scalar(
        select(TrackEnrolment).where(
            TrackEnrolment.person_id == person_id, TrackEnrolment.track_id == track_id
        )
    )


def revoke_tokens(session: Session, person_id: int) -> int:
    """Revoke a leaver's API tokens (a rehire needs new ones); returns how many."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.person_id == person_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return int(getattr(result, "rowcount", 0) or 0)


class DirectoryActivities(StartsAssignments):
    """The automation's activities, bound to the database and a Temporal client.

    Args:
        db: The directory, packs and read model.
        client: Starts assignments and signals obligations.
        task_queue: Where assignment workflows run; by default the activity's own queue.
        start_assignment: :func:`services.assignments.start_assignment` (given by the shell:
            this floor may not import workflows).
    """

    @activity.defn(name="plan_directory_change")
    def plan_directory_change(self, request: PlanChangeRequest) -> PersonPlan:
        """Plan one change from the directory as it is now (a later change may have landed)."""
        change = request.change
        with self._db.session() as session:
            person = session.get(Person, change.person_id)
            if person is None:  # pragma: no cover - nobody is ever deleted
                return PersonPlan(
                    person_id=change.person_id, external_id=change.external_id, kind="gone"
                )
            return plan_for(
                session,
                person,
                pack=active_pack(session),
                today=request.today,
                kind=change.kind,
                manager=manager_change(change),
            )

    @activity.defn(name="apply_directory_plan")
    async def apply_directory_plan(self, request: ApplyPlanRequest) -> DirectoryOutcome:
        """Carry a plan out and audit it once per change (a retry finds it audited)."""
        task_queue = self._task_queue or activity.info().task_queue
        outcome = await self.apply(request.plan, actor=request.actor, task_queue=task_queue)
        outcome = outcome.model_copy(update={"change_id": request.change_id})
        await asyncio.to_thread(self._audit, request, outcome)
        return outcome

    def _audit(self, request: ApplyPlanRequest, outcome: DirectoryOutcome) -> None:
        target = f"person/{request.plan.external_id}"
        with self._db.session() as session:
            recent = session.scalars(
                select(AuditEntry.after)
                .where(AuditEntry.action == "directory.automation", AuditEntry.target == target)
                .order_by(AuditEntry.id.desc())
                .limit(20)
            )
            if any((a or {}).get("change_id") == request.change_id for a in recent):
                return
            audit.record(
                session,
                actor=request.actor,
                actor_role=_ROLE,
                action="directory.automation",
                target=target,
                after={
                    "change_id": request.change_id,
                    **request.plan.summary(),
                    "started": len(outcome.started),
                    "existing": len(outcome.existing),
                    "errors": outcome.errors[:5],
                },
            )
            session.commit()

    async def apply(self, plan: PersonPlan, *, actor: str, task_queue: str) -> DirectoryOutcome:
        """Start, close, pause, resume, enrol and revoke what ``plan`` says (idempotent)."""
        started: list[str] = []
        existing: list[str] = []
        errors: list[str] = []
        enrolled: list[str] = []
        revoked = 0
        extra_closes: list[str] = []
        if plan.assign or plan.revoke_tokens or plan.enrol or _tracks(plan.close):
            read = await asyncio.to_thread(self._read_and_write, plan, actor)
            person, pack, revoked, enrolled, course_starts, extra_closes = read
            starts = []
            for opening in plan.assign:
                try:
                    inp = assignment_input(
                        person,
                        title=opening.title,
                        due_date=opening.due_date,
                        requirement_id=opening.requirement_id,
                        cycle=opening.cycle,
                        assigned_by=actor,
                        pack=pack,
                        obtain=opening.kind == "certification",
                    )
                except ValueError as error:
                    errors.append(f"{opening.requirement_id}: {error}"[:300])
                    continue
                starts.append(
                    (
                        inp.workflow_id,
                        self._start_assignment(client=self._client, task_queue=task_queue, inp=inp),
                    )
                )
            starts += [
                (
                    inp.workflow_id,
                    self._start_assignment(client=self._client, task_queue=task_queue, inp=inp),
                )
                for inp in course_starts
            ]
            for first in range(0, len(starts), CHUNK):
                chunk = starts[first : first + CHUNK]
                results = await asyncio.gather(*(c for _, c in chunk), return_exceptions=True)
                for (workflow_id, _), result in zip(chunk, results, strict=True):
                    if (
                        isinstance(result, RPCError)
                        and result.status is not RPCStatusCode.NOT_FOUND
                    ):
                        raise result  # transient: the activity is retried, starts are idempotent
                    if isinstance(result, BaseException):
                        errors.append(f"{workflow_id}: {type(result).__name__}: {result}"[:300])
                    elif result:
                        started.append(workflow_id)
                    else:
                        existing.append(workflow_id)
        sends: list[tuple[str, Callable[[], Awaitable[bool]]]] = []
        actor = actor[:128]
        closing_ids = {c.workflow_id for c in plan.close}
        for c in plan.close:
            sends += self._closing(c, actor)
        for workflow_id in extra_closes:
            if workflow_id not in closing_ids:  # a withdrawn track's course (already closing)
                sends += self._closing(
                    Closing(
                        workflow_id=workflow_id,
                        requirement_id=workflow_id.split("/")[2],
                        status="cancelled",
                        reason=plan.close[0].reason if plan.close else "track withdrawn",
                    ),
                    actor,
                )
        for workflow_id in plan.pause:
            sends.append((workflow_id, self._pausing(workflow_id, plan.external_id, actor)))
        for r in plan.resume:
            sends.append((r.workflow_id, self._resuming(r, plan.external_id, actor)))
        reached = await self._send(sends)
        return DirectoryOutcome(
            change_id="",
            external_id=plan.external_id,
            kind=plan.kind,
            started=started,
            existing=existing,
            closed=[c for c in plan.close if c.workflow_id in reached],
            kept=list(plan.keep),
            certificates_needed=list(plan.certificates_needed),
            paused=sum(1 for wid in plan.pause if wid in reached),
            resumed=sum(1 for r in plan.resume if r.workflow_id in reached),
            enrolled=enrolled,
            tokens_revoked=revoked,
            manager_change=plan.manager_change,
            errors=errors,
        )

    def _closing(
        self, closing: Closing, actor: str
    ) -> list[tuple[str, Callable[[], Awaitable[bool]]]]:
        """How one closing is sent: by the family's own message (a track's is a row)."""
        family = closing.family
        wid = closing.workflow_id
        reason = closing.reason[:500]
        if family == "track":
            return [(wid, _done)]  # withdrawn in _read_and_write, in the same transaction
        if family == "apprenticeship":
            change = ChangeEnrolment(action=EnrolmentAction.WITHDRAW, actor=actor, reason=reason)
            return [(wid, lambda: self._update(wid, "change_enrolment", change))]
        if family == "mentorship":
            cancel = CancelMentorship(by=actor, reason=reason)
            return [(wid, lambda: self._update(wid, "cancel", cancel))]
        # Assignments and certifications answer the same ``cancel`` signal.
        signal = CancelSignal(reason=reason, actor=actor, status=closing.status)
        return [(wid, lambda: self._signal_one(wid, "cancel", signal))]

    def _pausing(self, wid: str, person: str, actor: str) -> Callable[[], Awaitable[bool]]:
        family = family_of(wid)
        if family == "apprenticeship":
            change = ChangeEnrolment(
                action=EnrolmentAction.SUSPEND, actor=actor, reason=REASON_LEAVE
            )
            return lambda: self._update(wid, "change_enrolment", change)
        if family == "mentorship":
            leave = LeaveSignal(person=person, on_leave=True, actor=actor)
            return lambda: self._signal_one(wid, "leave", leave)
        pause = PauseSignal(reason=REASON_LEAVE, actor=actor)
        return lambda: self._signal_one(wid, "pause", pause)

    def _resuming(self, r: Any, person: str, actor: str) -> Callable[[], Awaitable[bool]]:
        wid = r.workflow_id
        family = family_of(wid)
        if family == "apprenticeship":
            return lambda: self._reinstate_after_leave(wid, actor)
        if family == "mentorship":
            back = LeaveSignal(person=person, on_leave=False, actor=actor)
            return lambda: self._signal_one(wid, "leave", back)
        resume = ResumeSignal(
            reason="back from leave", actor=actor, extend_due_date=r.extend_due_date
        )
        return lambda: self._signal_one(wid, "resume", resume)

    async def _reinstate_after_leave(self, wid: str, actor: str) -> bool:
        """Reinstate an apprenticeship only if the leave suspended it (not HR)."""
        try:
            state = await self._client.get_workflow_handle(wid).query(
                "state", result_type=ApprenticeshipState
            )
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
            return False
        last = next(
            (e for e in reversed(state.events) if e.kind in ("suspended", "reinstated")), None
        )
        if last is None or last.kind != "suspended" or not last.detail.endswith(REASON_LEAVE):
            return False  # HR suspended it (or nothing to do): HR reinstates it
        change = ChangeEnrolment(
            action=EnrolmentAction.REINSTATE, actor=actor, reason="back from leave"
        )
        return await self._update(wid, "change_enrolment", change)

    async def _signal_one(self, wid: str, name: str, arg: Any) -> bool:
        try:
            await self._client.get_workflow_handle(wid).signal(name, arg)
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
            return False
        return True

    async def _update(self, wid: str, name: str, arg: Any) -> bool:
        """An update; False when the workflow refused it (already so) or has finished."""
        try:
            await self._client.get_workflow_handle(wid).execute_update(name, arg)
        except WorkflowUpdateFailedError:
            return False  # the validator refused: withdrawn, cancelled, suspended already
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
            return False
        return True

    def _read_and_write(
        self, plan: PersonPlan, actor: str
    ) -> tuple[Person, Pack | None, int, list[str], list[AssignmentInput], list[str]]:
        """The person and pack; revoke tokens, withdraw and enrol tracks (one transaction).

        Returns:
            The person, the plan's pack, tokens revoked, learning paths enrolled in, the
            course assignments those enrolments start, and the open courses of withdrawn
            tracks to close.
        """
        with self._db.session() as session:
            person = session.get(Person, plan.person_id)
            if person is None:  # pragma: no cover - nobody is ever deleted
                raise LookupError(f"person {plan.external_id!r} is gone")
            pack = load_version(session, plan.pack_hash) if plan.pack_hash else None
            revoked = revoke_tokens(session, person.id) if plan.revoke_tokens else 0
            now = datetime.now(UTC)
            if plan.today is not None and plan.today != now.date():
                now = datetime.combine(plan.today, time(9), tzinfo=UTC)
            close: list[str] = []
            for c in _tracks(plan.close):
                track_id = c.workflow_id.split("/")[1]
                enrolment = _enrolment(session, person.id, track_id)
                if enrolment is not None:
                    close += withdraw_enrolment(
                        session,
                        pack or active_pack(session),
                        enrolment,
                        reason=c.reason,
                        actor=actor,
                        actor_role=_ROLE,
                        at=now,
                    )
            enrolled: list[str] = []
            courses: list[AssignmentInput] = []
            assigned = {o.requirement_id for o in plan.assign}
            for track_id in plan.enrol if pack is not None else []:
                track = pack.tracks.track(track_id) if pack is not None else None
                if track is None or pack is None:
                    continue
                enrolment = _enrolment(session, person.id, track_id)
                if enrolment is not None and enrolment.withdrawn_at is None:
                    continue  # enrolled already
                enrolment = open_enrolment(
                    session,
                    enrolment,
                    person_id=person.id,
                    track_id=track_id,
                    pack=pack,
                    now=now,
                    source="auto",
                    actor=actor,
                )
                inputs = course_inputs(
                    session,
                    pack,
                    track,
                    person=person,
                    enrolled_on=enrolment.enrolled_on,
                    assigned_by=f"track {track_id} ({actor})",
                    skip=assigned,
                )
                courses += inputs
                enrolled.append(track_id)
                audit.record(
                    session,
                    actor=actor,
                    actor_role=_ROLE,
                    action="track.enrol",
                    target=f"track/{track_id}/{person.external_id}",
                    after={"source": "auto", "started": [i.workflow_id for i in inputs]},
                )
            session.commit()
            session.expunge(person)
            return person, pack, revoked, enrolled, courses, close

    async def _send(self, sends: Sequence[tuple[str, Callable[[], Awaitable[bool]]]]) -> set[str]:
        """Run each send; the workflow ids reached (a finished workflow is not an error)."""
        reached: set[str] = set()

        async def one(workflow_id: str, send: Callable[[], Awaitable[bool]]) -> None:
            if await send():
                reached.add(workflow_id)

        for first in range(0, len(sends), CHUNK):
            await asyncio.gather(*(one(*s) for s in sends[first : first + CHUNK]))
        return reached

    @activity.defn(name="reconcile_directory")
    async def reconcile_directory(self, request: ReconcileRequest) -> ReconcileResult:
        """Compare everyone's obligations with the directory and the pack; repair the drift.

        Pages through the directory by id, heartbeating the last id and the counts, so a
        retried attempt resumes there. Safe to run twice: a second run finds nothing to do
        (starts of existing business keys are counted as nothing, not as fixes).
        """
        details = activity.info().heartbeat_details
        after_id = int(details[0]) if details else 0
        result = ReconcileResult.model_validate(details[1]) if len(details) > 1 else None
        result = result or ReconcileResult()
        today = request.today or datetime.now(UTC).date()
        task_queue = self._task_queue or activity.info().task_queue
        while True:
            plans, last = await asyncio.to_thread(self._page, after_id, today)
            if last is None:
                break
            for plan in plans:
                result = await self._reconcile_one(plan, request, task_queue, result)
            after_id = last
            activity.heartbeat(after_id, result.model_dump(mode="json"))
        if not request.dry_run and (
            result.started or result.closed or result.tokens_revoked or result.enrolled
        ):
            await asyncio.to_thread(self._audit_reconcile, request, result)
        return result

    def _page(self, after_id: int, today: date) -> tuple[list[PersonPlan], int | None]:
        with self._db.session() as session:
            people = list(
                session.scalars(
                    select(Person).where(Person.id > after_id).order_by(Person.id).limit(PAGE)
                ).unique()
            )
            if not people:
                return [], None
            pack = active_pack(session)
            held = held_obligations(session, [p.id for p in people])
            engaged = engagements(session, {p.id: p.external_id for p in people})
            tokens = set(
                session.scalars(
                    select(ApiToken.person_id).where(
                        ApiToken.person_id.in_([p.id for p in people]),
                        ApiToken.revoked_at.is_(None),
                    )
                )
            )
            plans = []
            for person in people:
                plan = plan_for(
                    session,
                    person,
                    pack=pack,
                    today=today,
                    kind="reconcile",
                    obligations=held[person.id],
                    engaged=engaged[person.id],
                )
                if plan.revoke_tokens and person.id not in tokens:
                    plan = plan.model_copy(update={"revoke_tokens": False})
                plans.append(plan)
            return plans, people[-1].id

    async def _reconcile_one(
        self,
        plan: PersonPlan,
        request: ReconcileRequest,
        task_queue: str,
        result: ReconcileResult,
    ) -> ReconcileResult:
        fixes = list(result.fixes)
        counts = {
            "people": result.people + 1,
            "started": result.started,
            "closed": result.closed,
            "tokens_revoked": result.tokens_revoked,
        }
        errors = list(result.errors)

        def note(text: str) -> None:
            if len(fixes) < MAX_FIXES:
                fixes.append(text[:300])

        if plan.is_empty():
            return result.model_copy(update={"people": counts["people"]})
        if request.dry_run:
            for o in plan.assign:
                note(f"{plan.external_id}: would assign {o.requirement_id}")
            for c in plan.close:
                note(f"{plan.external_id}: would close {c.requirement_id} ({c.status}: {c.reason})")
            for track_id in plan.enrol:
                note(f"{plan.external_id}: would enrol in learning path {track_id}")
            counts["started"] += len(plan.assign)
            counts["closed"] += len(plan.close)
            counts["enrolled"] = result.enrolled + len(plan.enrol)
            return result.model_copy(update={**counts, "fixes": fixes})
        outcome = await self.apply(plan, actor=request.actor, task_queue=task_queue)
        for wid in outcome.started:
            note(f"{plan.external_id}: assigned {wid} (missing)")
        for c in outcome.closed:
            note(f"{plan.external_id}: closed {c.workflow_id} ({c.status}: {c.reason})")
        if outcome.tokens_revoked:
            note(f"{plan.external_id}: revoked {outcome.tokens_revoked} token(s) of a leaver")
        for track_id in outcome.enrolled:
            note(f"{plan.external_id}: enrolled in learning path {track_id} (missing)")
        counts["enrolled"] = result.enrolled + len(outcome.enrolled)
        counts["started"] += len(outcome.started)
        counts["closed"] += len(outcome.closed)
        counts["tokens_revoked"] += outcome.tokens_revoked
        errors += [f"{plan.external_id}: {e}" for e in outcome.errors][: 20 - len(errors)]
        return result.model_copy(update={**counts, "fixes": fixes, "errors": errors})

    def _audit_reconcile(self, request: ReconcileRequest, result: ReconcileResult) -> None:
        with self._db.session() as session:
            audit.record(
                session,
                actor=request.actor,
                actor_role=_ROLE,
                action="directory.reconcile",
                target="people",
                after={
                    "people": result.people,
                    "started": result.started,
                    "closed": result.closed,
                    "tokens_revoked": result.tokens_revoked,
                    "enrolled": result.enrolled,
                    "fixes": result.fixes[:20],
                },
            )
            session.commit()

    def all(self) -> list[Callable[..., Any]]:
        """Every activity callable, for the worker."""
        return [self.plan_directory_change, self.apply_directory_plan, self.reconcile_directory]
