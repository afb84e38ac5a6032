"""Recorded status decisions: written once per decision, read for as-of answers and trends.

Nothing here decides anything: a status "in force at an instant" is the latest decision recorded
for the obligation's workflow at or before that instant, as it was made then (its rule, pack
hash and facts), never re-evaluated with today's rules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.models import DecisionRecord, Person
from store.types import check_finite


def request_key(
    *,
    workflow_id: str,
    decided_at: datetime,
    pack_hash: str,
    status: str,
    rule: str,
    facts: Mapping[str, Any],
) -> str:
    """SHA-256 of what a decision was made on: a retried activity produces the same key."""
    payload = json.dumps(
        {
            "workflow": workflow_id,
            "at": decided_at.isoformat(),
            "pack": pack_hash,
            "status": status,
            "rule": rule,
            "facts": dict(facts),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def record_decision(
    session: Session,
    *,
    workflow_id: str,
    person_id: int,
    kind: str,
    requirement_id: str,
    status: str,
    rule: str,
    pack_hash: str,
    facts: Mapping[str, Any],
    decided_at: datetime,
    source: str,
    severity: str | None = None,
    trigger: str | None = None,
) -> bool:
    """Record one decision once (a retry with the same inputs is a no-op).

    Args:
        session: An open session (the caller commits).
        workflow_id: The obligation's workflow.
        person_id: Its person (row id).
        kind: Its kind (training, certification, …).
        requirement_id: Its requirement.
        status: The decided status.
        rule: The rule that decided.
        pack_hash: The pack the rule came from (``builtin``: the built-in rules).
        facts: Every fact the rule saw.
        decided_at: Workflow time of the decision (when the status took effect).
        source: ``rules``, ``workflow`` or ``sweep``.
        severity: The rule's severity, if any.
        trigger: The workflow event that led to the decision, if known.

    Returns:
        Whether a new row was written.
    """
    check_finite(dict(facts), "facts")
    key = request_key(
        workflow_id=workflow_id,
        decided_at=decided_at,
        pack_hash=pack_hash,
        status=status,
        rule=rule,
        facts=facts,
    )
    if session.scalar(select(DecisionRecord.id).where(DecisionRecord.request_key == key)):
        return False
    row = DecisionRecord(
        request_key=key,
        workflow_id=workflow_id,
        person_id=person_id,
        kind=kind,
        requirement_id=requirement_id,
        status=status,
        severity=severity,
        rule=rule[:200],
        pack_hash=pack_hash,
        facts=json.loads(json.dumps(dict(facts), default=str)),
        trigger=trigger[:300] if trigger else None,
        source=source,
        decided_at=decided_at,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
            _link(session, row)
    except IntegrityError:
        return False  # a concurrent attempt of the same activity wrote it first
    return True


def _link(session: Session, row: DecisionRecord) -> None:
    """Keep ``superseded_at`` of ``row`` and of the decision it takes over from.

    Decisions are in force in ``(decided_at, id)`` order per workflow; a new row usually comes
    last (nothing supersedes it), but a late-recorded one is slotted in between.
    """
    decided, wid = DecisionRecord.decided_at, DecisionRecord.workflow_id
    later = or_(
        decided > row.decided_at, and_(decided == row.decided_at, DecisionRecord.id > row.id)
    )
    row.superseded_at = session.scalar(
        select(decided)
        .where(wid == row.workflow_id, later)
        .order_by(decided, DecisionRecord.id)
        .limit(1)
    )
    earlier = or_(
        decided < row.decided_at, and_(decided == row.decided_at, DecisionRecord.id < row.id)
    )
    previous = session.scalar(
        select(DecisionRecord)
        .where(wid == row.workflow_id, earlier)
        .order_by(decided.desc(), DecisionRecord.id.desc())
        .limit(1)
    )
    if previous is not None:
        previous.superseded_at = row.decided_at
    session.flush()


def latest_status(session: Session, *, workflow_id: str, at: datetime) -> str | None:
    """The status recorded for ``workflow_id`` in force at ``at`` (None: nothing recorded)."""
    return session.scalar(
        select(DecisionRecord.status)
        .where(DecisionRecord.workflow_id == workflow_id)
        .where(DecisionRecord.decided_at <= at)
        .order_by(DecisionRecord.decided_at.desc(), DecisionRecord.id.desc())
        .limit(1)
    )


def in_force(
    session: Session, *, person_id: int, requirement_id: str, at: datetime
) -> DecisionRecord | None:
    """The decision in force at ``at`` for a person's requirement (any cycle), if any.

    One index range read (``ix_decisions_person_requirement_decided``), newest first.
    """
    return session.scalar(
        select(DecisionRecord)
        .where(DecisionRecord.person_id == person_id)
        .where(DecisionRecord.requirement_id == requirement_id)
        .where(DecisionRecord.decided_at <= at)
        .order_by(DecisionRecord.decided_at.desc(), DecisionRecord.id.desc())
        .limit(1)
    )


def history(
    session: Session,
    *,
    person_ids: Collection[int] | None = None,
    workflow_ids: Collection[str] | None = None,
    requirement_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[DecisionRecord]:
    """Decisions matching every filter given, oldest first (evidence packs, timelines)."""
    stmt = select(DecisionRecord)
    if person_ids is not None:
        stmt = stmt.where(DecisionRecord.person_id.in_(list(person_ids)))
    if workflow_ids is not None:
        stmt = stmt.where(DecisionRecord.workflow_id.in_(list(workflow_ids)))
    if requirement_id is not None:
        stmt = stmt.where(DecisionRecord.requirement_id == requirement_id)
    if since is not None:
        stmt = stmt.where(DecisionRecord.decided_at >= since)
    if until is not None:
        stmt = stmt.where(DecisionRecord.decided_at <= until)
    return list(session.scalars(stmt.order_by(DecisionRecord.decided_at, DecisionRecord.id)))


def _scoped(stmt: Any, *, person_ids: Collection[int] | None, department: str | None) -> Any:
    if person_ids is not None:
        stmt = stmt.where(DecisionRecord.person_id.in_(sorted(person_ids)))
    if department is not None:
        stmt = stmt.join(Person, Person.id == DecisionRecord.person_id).where(
            Person.department == department
        )
    return stmt


def _in_force(at: datetime) -> ColumnElement[bool]:
    """The decision was in force at ``at``: decided by then and not yet superseded."""
    until = DecisionRecord.superseded_at
    return and_(DecisionRecord.decided_at <= at, or_(until.is_(None), until > at))


def status_counts_at(
    session: Session,
    *,
    instants: Sequence[datetime],
    person_ids: Collection[int] | None = None,
    department: str | None = None,
) -> dict[datetime, dict[str, int]]:
    """How many obligations were in each status at each instant, from the recorded decisions.

    A decision is in force from its ``decided_at`` until the workflow's next decision
    (``superseded_at``, kept on write). Obligations with no decision yet at an instant are
    not counted there.

    Args:
        session: An open session.
        instants: The instants to count at.
        person_ids: Only these people (None: everyone).
        department: Only people of this department.
    """
    if not instants:
        return {}
    # A decision counts at instant i iff decided_at <= T[i] < superseded_at: with the instants
    # sorted that is a run of consecutive points, [bucket(decided_at), bucket(superseded_at)).
    # So each row is read once (a range read of ix_decisions_interval) and only bucketed;
    # the per-point counts are prefix sums over a few hundred groups, not over rows.
    points = sorted(set(instants))
    first, last = points[0], points[-1]

    def bucket(column: Any) -> Any:
        return case(*((column <= at, index) for index, at in enumerate(points)), else_=len(points))

    decided, until = DecisionRecord.decided_at, DecisionRecord.superseded_at
    # Two range reads rather than one OR (which no index answers): still in force, and
    # superseded after the first instant.
    # Each read is a plain subquery (flattened by SQLite and PostgreSQL, no temporary copy of
    # the rows) grouped by its output columns, so PostgreSQL sees the same bucket expressions.
    current = select(
        DecisionRecord.status.label("status"),
        bucket(decided).label("start"),
        literal(len(points)).label("stop"),
    ).where(until.is_(None), decided <= last)
    ended = select(
        DecisionRecord.status.label("status"),
        bucket(decided).label("start"),
        bucket(until).label("stop"),
    ).where(until > first, decided <= last)
    per_point: list[dict[str, int]] = [{} for _ in points]
    for part in (current, ended):
        rows = _scoped(part, person_ids=person_ids, department=department).subquery("iv")
        grouped = select(rows.c.status, rows.c.start, rows.c.stop, func.count()).group_by(
            rows.c.status, rows.c.start, rows.c.stop
        )
        for name, begin, end, count in session.execute(grouped):
            for index in range(int(begin), int(end)):
                per_point[index][str(name)] = per_point[index].get(str(name), 0) + int(count)
    by_instant = dict(zip(points, per_point, strict=True))
    return {at: dict(by_instant[at]) for at in instants}


def requirement_counts_at(
    session: Session,
    *,
    at: datetime,
    person_ids: Collection[int] | None = None,
    department: str | None = None,
) -> dict[str, dict[str, int]]:
    """Per requirement, how many obligations were in each status at ``at`` (recorded)."""
    stmt = (
        select(DecisionRecord.requirement_id, DecisionRecord.status, func.count())
        .where(_in_force(at))
        .group_by(DecisionRecord.requirement_id, DecisionRecord.status)
    )
    rows = session.execute(_scoped(stmt, person_ids=person_ids, department=department))
    counts: dict[str, dict[str, int]] = {}
    for requirement, status, count in rows:
        counts.setdefault(str(requirement), {})[str(status)] = int(count)
    return counts
