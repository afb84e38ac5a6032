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

from sqlalchemy import ColumnElement, and_, func, literal, or_, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.models import DecisionRecord, Person
from store.types import UTCDateTime, check_finite


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
    except IntegrityError:
        return False  # a concurrent attempt of the same activity wrote it first
    return True


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


def _intervals(
    *, last: datetime, person_ids: Collection[int] | None, department: str | None
) -> Any:
    """Each decision up to ``last`` with the instant it stopped being in force (``until``).

    A decision is in force from its ``decided_at`` until the next decision of the same
    workflow (``LEAD``); the last one has no end.
    """
    decided = DecisionRecord.decided_at
    intervals = select(
        DecisionRecord.person_id.label("person_id"),
        DecisionRecord.requirement_id.label("requirement_id"),
        DecisionRecord.status.label("status"),
        decided.label("since"),
        func.lead(decided)
        .over(
            partition_by=DecisionRecord.workflow_id,
            order_by=(decided, DecisionRecord.id),
        )
        .label("until"),
    ).where(decided <= last)
    if person_ids is not None:
        intervals = intervals.where(DecisionRecord.person_id.in_(sorted(person_ids)))
    if department is not None:
        intervals = intervals.join(Person, Person.id == DecisionRecord.person_id).where(
            Person.department == department
        )
    return intervals.subquery("iv")


def status_counts_at(
    session: Session,
    *,
    instants: Sequence[datetime],
    person_ids: Collection[int] | None = None,
    department: str | None = None,
) -> dict[datetime, dict[str, int]]:
    """How many obligations were in each status at each instant, from the recorded decisions.

    One pass over the decisions (see :func:`_intervals`): a decision counts at every instant
    inside the interval it was in force. Obligations with no decision yet at an instant are
    not counted there.

    Args:
        session: An open session.
        instants: The instants to count at.
        person_ids: Only these people (None: everyone).
        department: Only people of this department.
    """
    if not instants:
        return {}
    iv = _intervals(last=max(instants), person_ids=person_ids, department=department)
    points = union_all(
        *(
            select(literal(index).label("point"), literal(at, UTCDateTime()).label("at"))
            for index, at in enumerate(instants)
        )
    ).subquery("points")
    covers: ColumnElement[bool] = and_(
        iv.c.since <= points.c.at, or_(iv.c.until.is_(None), iv.c.until > points.c.at)
    )
    rows = session.execute(
        select(points.c.point, iv.c.status, func.count())
        .select_from(points)
        .join(iv, covers)
        .group_by(points.c.point, iv.c.status)
    )
    counts: dict[datetime, dict[str, int]] = {at: {} for at in instants}
    for point, status, count in rows:
        counts[instants[int(point)]][str(status)] = int(count)
    return counts


def requirement_counts_at(
    session: Session,
    *,
    at: datetime,
    person_ids: Collection[int] | None = None,
    department: str | None = None,
) -> dict[str, dict[str, int]]:
    """Per requirement, how many obligations were in each status at ``at`` (recorded)."""
    iv = _intervals(last=at, person_ids=person_ids, department=department)
    rows = session.execute(
        select(iv.c.requirement_id, iv.c.status, func.count())
        .where(or_(iv.c.until.is_(None), iv.c.until > at))
        .group_by(iv.c.requirement_id, iv.c.status)
    )
    counts: dict[str, dict[str, int]] = {}
    for requirement, status, count in rows:
        counts.setdefault(str(requirement), {})[str(status)] = int(count)
    return counts
