"""A pack's ``kind: mentorship`` requirements follow what happens to the relationship.

Called by the ``record_mentorship`` activity each time the :class:`MentorshipWorkflow` records
a transition, so every path is covered the same way: an acceptance through the API, a
cancellation by either side, HR or the directory's leaver automation, the end date, an expiry.

- **active**: each open mentorship obligation of the mentee whose pack conditions hold
  (``mentorship: {types, mentor_certifications}`` on the requirement, checked against the
  obligation's pinned pack) is completed with the relationship as evidence
  (``source: mentorship``) and remembered in ``mentorship_fulfilments``; one whose conditions
  do not hold stays open and the audit log says why (``mentorship.requirement_not_met``).
- **completed or cancelled before the planned end**: each requirement the relationship
  satisfied is assigned again as its next cycle (due ``due_in_days`` after the day it ended)
  and the fulfilment row records it (``mentorship.requirement_reopened``). Not for a mentee
  who left (the leaver automation closes their obligations; nothing is re-assigned to them).

Idempotent, as an activity must be: an obligation the relationship already completed is not
signalled again, a refusal is audited once, a re-opened requirement is not re-opened again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.assigning import AssignmentStarter, assignment_input
from activities.packs import active_pack, load_version
from domain import ObligationKind, add_months
from domain.contracts.assignment import AssignmentInput, CompleteSignal
from domain.contracts.mentorship import MentorshipRecord, MentorshipStatus
from domain.statuses import EmploymentStatus
from store import audit
from store import mentorship as store
from store.db import Database
from store.models import AuditEntry

log = logging.getLogger(__name__)

#: Who the audit trail names for what the workflow did on its own.
ACTOR_ROLE = "system"
NOT_MET = "mentorship.requirement_not_met"
REOPENED = "mentorship.requirement_reopened"


def ends_at(record: MentorshipRecord) -> datetime | None:
    """The planned end: the acceptance plus ``duration_months`` (as the workflow computes it)."""
    if record.started_at is None:
        return None
    started = record.started_at
    return datetime.combine(add_months(started.date(), record.duration_months), started.timetz())


def ended_early(record: MentorshipRecord) -> str | None:
    """Why a relationship that was active ended before its planned end (None: it did not)."""
    planned = ends_at(record)
    if planned is None or record.ended_at is None:
        return None
    if record.status not in (MentorshipStatus.CANCELLED, MentorshipStatus.COMPLETED):
        return None
    if record.ended_at >= planned:
        return None
    why = f": {record.reason}" if record.reason else ""
    return (
        f"mentorship {record.workflow_id} was {record.status.value} on"
        f" {record.ended_at.date().isoformat()}, before its planned end"
        f" {planned.date().isoformat()}{why}"
    )[:500]


class RequirementFollower:
    """Completes and re-opens a mentee's mentorship obligations as the relationship changes.

    Args:
        db: The read models, packs and audit trail.
        client: Signals the assignment workflows and starts re-opened ones.
        start_assignment: :func:`services.assignments.start_assignment` (the shell wires it
            in: this floor may not import the workflows).
    """

    def __init__(self, db: Database, client: Client, start_assignment: AssignmentStarter) -> None:
        self._db = db
        self._client = client
        self._start_assignment = start_assignment

    async def follow(self, record: MentorshipRecord, *, task_queue: str) -> None:
        """Act on the transition ``record`` describes (see the module docstring)."""
        if record.status is MentorshipStatus.ACTIVE:
            await self._fulfil(record)
        elif ended_early(record) is not None:
            await self._reopen(record, task_queue=task_queue)

    # -- active: complete the requirements it satisfies ---------------------------------------

    async def _fulfil(self, record: MentorshipRecord) -> None:
        planned = await asyncio.to_thread(self._plan_fulfilment, record)
        if planned is None:
            return
        row_id, satisfied = planned
        started = record.started_at or datetime.now(UTC)
        evidence = CompleteSignal(
            completed_at=started,
            source="mentorship",
            actor=f"mentorship workflow {record.workflow_id}"[:200],
            note=f"active mentorship {record.workflow_id} with {record.mentor}",
        )
        done: list[tuple[str, str]] = []
        for workflow_id, requirement_id in satisfied:
            try:
                await self._client.get_workflow_handle(workflow_id).signal("complete", evidence)
            except RPCError as error:
                if error.status is not RPCStatusCode.NOT_FOUND:
                    raise
                continue  # it closed meanwhile: nothing to complete
            done.append((workflow_id, requirement_id))
        await asyncio.to_thread(self._remember, row_id, done, started)

    def _plan_fulfilment(
        self, record: MentorshipRecord
    ) -> tuple[int, list[tuple[str, str]]] | None:
        with self._db.session() as session:
            row = store.relationship(session, record.workflow_id)
            if row is None:
                return None
            done = {f.obligation_workflow_id for f in store.fulfilments(session, row.id)}
            held = store.certifications(session, [row.mentor_id]).get(row.mentor_id, [])
            satisfied: list[tuple[str, str]] = []
            for obligation in store.open_obligation_rows(
                session, row.mentee_id, ObligationKind.MENTORSHIP
            ):
                if obligation.workflow_id in done:
                    continue
                refusal = _refusal(session, obligation, type=record.type.value, held=held)
                if refusal is None:
                    satisfied.append((obligation.workflow_id, obligation.requirement_id))
                else:
                    _audit_once(session, record.workflow_id, obligation.workflow_id, refusal)
            return row.id, satisfied

    def _remember(self, row_id: int, done: list[tuple[str, str]], at: datetime) -> None:
        with self._db.session() as session:
            for workflow_id, requirement_id in done:
                store.record_fulfilment(
                    session,
                    mentorship_id=row_id,
                    obligation=workflow_id,
                    requirement_id=requirement_id,
                    at=at,
                )

    # -- ended early: re-open what it satisfied ----------------------------------------------

    async def _reopen(self, record: MentorshipRecord, *, task_queue: str) -> None:
        why = ended_early(record)
        assert why is not None and record.ended_at is not None
        planned = await asyncio.to_thread(self._plan_reopening, record, record.ended_at.date())
        for fulfilment_id, inp in planned:
            await self._start_assignment(client=self._client, task_queue=task_queue, inp=inp)
            await asyncio.to_thread(self._mark, record, fulfilment_id, inp.workflow_id, why)

    def _plan_reopening(
        self, record: MentorshipRecord, ended: date
    ) -> list[tuple[int, AssignmentInput]]:
        with self._db.session() as session:
            row = store.relationship(session, record.workflow_id)
            if row is None:
                return []
            mentee = row.mentee
            if mentee.employment_status == EmploymentStatus.TERMINATED.value:
                return []  # a leaver: their obligations close, nothing is assigned again
            current = active_pack(session)
            planned: list[tuple[int, AssignmentInput]] = []
            for done in store.fulfilled_by(session, row.id):
                pack = current if current and current.requirement(done.requirement_id) else None
                pack = pack or load_version(session, done.pack_hash)
                requirement = pack.requirement(done.requirement_id) if pack else None
                days = requirement.due_in_days if requirement and requirement.due_in_days else 30
                title = requirement.title if requirement else done.requirement_id
                inp = assignment_input(
                    mentee,
                    title=title,
                    due_date=ended + timedelta(days=days),
                    requirement_id=done.requirement_id,
                    cycle=store.next_cycle(session, mentee.id, done.requirement_id),
                    assigned_by=f"reopened: {record.workflow_id} ended early"[:200],
                    pack=pack,
                )
                planned.append((done.id, inp))
            return planned

    def _mark(self, record: MentorshipRecord, fulfilment_id: int, new: str, why: str) -> None:
        with self._db.session() as session:
            store.mark_reopened(
                session, fulfilment_id, reopened_as=new, reason=why, at=datetime.now(UTC)
            )
            audit.record(
                session,
                actor=f"mentorship workflow {record.workflow_id}"[:200],
                actor_role=ACTOR_ROLE,
                action=REOPENED,
                target=new,
                after={"mentorship": record.workflow_id, "reason": why},
            )


def _refusal(
    session: Session, obligation: store.OpenObligation, *, type: str, held: list[str]
) -> str | None:
    """Why this relationship does not satisfy the obligation's pack conditions (None: it does).

    A requirement the pinned pack no longer defines, or one without conditions, is satisfied
    by any active mentorship.
    """
    pack = load_version(session, obligation.pack_hash)
    requirement = pack.requirement(obligation.requirement_id) if pack else None
    condition = requirement.mentorship if requirement is not None else None
    if condition is None or pack is None:
        return None
    titles = {r.id: r.title for r in pack.requirements if r.kind is ObligationKind.CERTIFICATION}
    return condition.refusal(type=type, mentor_certifications=held, titles=titles)


def _audit_once(session: Session, mentorship: str, obligation: str, reason: str) -> None:
    seen: Any = session.scalar(
        select(AuditEntry.id)
        .where(
            AuditEntry.action == NOT_MET,
            AuditEntry.target == obligation,
            AuditEntry.after["mentorship"].as_string() == mentorship,
        )
        .limit(1)
    )
    if seen is None:
        audit.record(
            session,
            actor=f"mentorship workflow {mentorship}"[:200],
            actor_role=ACTOR_ROLE,
            action=NOT_MET,
            target=obligation,
            after={"mentorship": mentorship, "reason": reason},
        )
