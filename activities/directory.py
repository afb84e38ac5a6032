"""Activities of the joiner/mover/leaver automation and the nightly reconciliation.

Thin: the decisions are :func:`rules.directory.plan_person`'s; these read the directory, the
active pack and the obligation read model, and carry a plan out through the normal paths
(assignments start through the starter the shell gives, as bulk jobs do; closings, pauses
and resumes are signals to the obligations' own workflows). Every step is idempotent: a
start of an existing business key is refused by Temporal, a closed workflow ignores a second
cancel, a paused one a second pause.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.service import RPCError, RPCStatusCode

from activities.assigning import StartsAssignments, assignment_input
from activities.packs import active_pack, load_version
from domain.contracts.assignment import CancelSignal, PauseSignal, ResumeSignal
from domain.contracts.directory import (
    ApplyPlanRequest,
    ChangeKind,
    DirectoryChange,
    DirectoryOutcome,
    PersonPlan,
    PlanChangeRequest,
    ReconcileRequest,
    ReconcileResult,
)
from rules.directory import Extensions, HeldObligation, PersonFacts, plan_person
from rules.model import Pack
from store import audit
from store.models import ApiToken, AuditEntry, Obligation, Person

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
) -> PersonPlan:
    """Plan one person from the store (the dry run calls this too)."""
    held = (
        obligations
        if obligations is not None
        else held_obligations(session, [person.id])[person.id]
    )
    return plan_person(
        pack=pack,
        person=person_facts(person),
        obligations=held,
        today=today,
        kind=kind,
        manager_change=manager,
        extensions=extensions(session, held) if kind == ChangeKind.RETURN else None,
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
        """Start, close, pause, resume and revoke what ``plan`` says (idempotent)."""
        started: list[str] = []
        existing: list[str] = []
        errors: list[str] = []
        revoked = 0
        if plan.assign or plan.revoke_tokens:
            person, pack, revoked = await asyncio.to_thread(self._read_and_revoke, plan)
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
        signals: list[tuple[str, str, Any]] = [
            (
                c.workflow_id,
                "cancel",
                CancelSignal(reason=c.reason[:500], actor=actor[:128], status=c.status),
            )
            for c in plan.close
        ]
        signals += [
            (wid, "pause", PauseSignal(reason="leave of absence", actor=actor[:128]))
            for wid in plan.pause
        ]
        signals += [
            (
                r.workflow_id,
                "resume",
                ResumeSignal(
                    reason="back from leave",
                    actor=actor[:128],
                    extend_due_date=r.extend_due_date,
                ),
            )
            for r in plan.resume
        ]
        reached = await self._signal(signals)
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
            tokens_revoked=revoked,
            manager_change=plan.manager_change,
            errors=errors,
        )

    def _read_and_revoke(self, plan: PersonPlan) -> tuple[Person, Pack | None, int]:
        with self._db.session() as session:
            person = session.get(Person, plan.person_id)
            if person is None:  # pragma: no cover - nobody is ever deleted
                raise LookupError(f"person {plan.external_id!r} is gone")
            pack = load_version(session, plan.pack_hash) if plan.pack_hash else None
            revoked = revoke_tokens(session, person.id) if plan.revoke_tokens else 0
            session.commit()
            session.expunge(person)
            return person, pack, revoked

    async def _signal(self, signals: Sequence[tuple[str, str, Any]]) -> set[str]:
        """Send each signal; the workflow ids reached (a finished workflow is not an error)."""
        reached: set[str] = set()

        async def send(workflow_id: str, name: str, arg: Any) -> None:
            try:
                await self._client.get_workflow_handle(workflow_id).signal(name, arg)
            except RPCError as error:
                if error.status is not RPCStatusCode.NOT_FOUND:
                    raise
                return
            reached.add(workflow_id)

        for first in range(0, len(signals), CHUNK):
            await asyncio.gather(*(send(*s) for s in signals[first : first + CHUNK]))
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
        if not request.dry_run and (result.started or result.closed or result.tokens_revoked):
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
            counts["started"] += len(plan.assign)
            counts["closed"] += len(plan.close)
            return result.model_copy(update={**counts, "fixes": fixes})
        outcome = await self.apply(plan, actor=request.actor, task_queue=task_queue)
        for wid in outcome.started:
            note(f"{plan.external_id}: assigned {wid} (missing)")
        for c in outcome.closed:
            note(f"{plan.external_id}: closed {c.workflow_id} ({c.status}: {c.reason})")
        if outcome.tokens_revoked:
            note(f"{plan.external_id}: revoked {outcome.tokens_revoked} token(s) of a leaver")
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
                    "fixes": result.fixes[:20],
                },
            )
            session.commit()

    def all(self) -> list[Callable[..., Any]]:
        """Every activity callable, for the worker."""
        return [self.plan_directory_change, self.apply_directory_plan, self.reconcile_directory]
