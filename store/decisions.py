"""Recorded status decisions: written once per decision, read for as-of answers and trends.

Nothing here decides anything: a status "in force at an instant" is the latest decision recorded
for the obligation's workflow at or before that instant, as it was made then (its rule, pack
hash and facts), never re-evaluated with today's rules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, func, insert, literal, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.models import DecisionRecord, DecisionSnapshot, Person
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
            # The decision changes the counts at every instant from decided_at on (its own
            # interval, and the previous decision's, now cut short at decided_at): the month
            # snapshots ending at or after it are stale.
            session.execute(
                delete(DecisionSnapshot).where(DecisionSnapshot.month >= month_of(decided_at))
            )
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


def month_of(at: datetime) -> str:
    """The UTC month of an instant, as ``YYYY-MM``."""
    at = at.astimezone(UTC)
    return f"{at.year:04d}-{at.month:02d}"


def month_end(month: str) -> datetime:
    """The last microsecond (UTC) of a ``YYYY-MM`` month: the instant its snapshot counts at."""
    year, number = int(month[:4]), int(month[5:7])
    start_next = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=UTC)
    return start_next - timedelta(microseconds=1)


def _snapshot_month(at: datetime) -> str:
    """The latest month whose end is at or before ``at``."""
    month = month_of(at)
    if at.astimezone(UTC) >= month_end(month):
        return month
    first = datetime(int(month[:4]), int(month[5:7]), 1, tzinfo=UTC)
    return month_of(first - timedelta(microseconds=1))


_Key = tuple[str, str]  # (requirement_id, status)


def _bucketed(
    session: Session,
    points: Sequence[datetime],
    *,
    person_ids: Collection[int] | None,
    department: str | None,
    by_requirement: bool,
) -> list[dict[_Key, int]]:
    """Per sorted instant, the decisions in force by (requirement or "", status): one pass.

    A decision counts at instant i iff decided_at <= T[i] < superseded_at: with the instants
    sorted that is a run of consecutive points, [bucket(decided_at), bucket(superseded_at)).
    So each row is read once (a range read of ix_decisions_interval) and only bucketed; the
    per-point counts are prefix sums over a few hundred groups, not over rows.
    """
    first, last = points[0], points[-1]

    def bucket(column: Any) -> Any:
        return case(*((column <= at, index) for index, at in enumerate(points)), else_=len(points))

    decided, until = DecisionRecord.decided_at, DecisionRecord.superseded_at
    requirement = DecisionRecord.requirement_id if by_requirement else literal("")
    # Two range reads rather than one OR (which no index answers): still in force, and
    # superseded after the first instant.
    # Each read is a plain subquery (flattened by SQLite and PostgreSQL, no temporary copy of
    # the rows) grouped by its output columns, so PostgreSQL sees the same bucket expressions.
    current = select(
        requirement.label("requirement"),
        DecisionRecord.status.label("status"),
        bucket(decided).label("start"),
        literal(len(points)).label("stop"),
    ).where(until.is_(None), decided <= last)
    ended = select(
        requirement.label("requirement"),
        DecisionRecord.status.label("status"),
        bucket(decided).label("start"),
        bucket(until).label("stop"),
    ).where(until > first, decided <= last)
    parts = [current, ended]
    if person_ids is not None or department is not None:
        # A group's decisions: one read through the person index (the split above would read
        # the whole organisation's in-force rows and filter them). bucket(NULL) is the last
        # bucket, so one expression covers both the ended and the in-force rows.
        parts = [
            select(
                requirement.label("requirement"),
                DecisionRecord.status.label("status"),
                bucket(decided).label("start"),
                bucket(until).label("stop"),
            ).where(decided <= last, or_(until.is_(None), until > first))
        ]
    per_point: list[dict[_Key, int]] = [{} for _ in points]
    for part in parts:
        rows = _scoped(part, person_ids=person_ids, department=department).subquery("iv")
        grouped = select(
            rows.c.requirement, rows.c.status, rows.c.start, rows.c.stop, func.count()
        ).group_by(rows.c.requirement, rows.c.status, rows.c.start, rows.c.stop)
        for req, name, begin, end, count in session.execute(grouped):
            key = (str(req), str(name))
            for index in range(int(begin), int(end)):
                per_point[index][key] = per_point[index].get(key, 0) + int(count)
    return per_point


def _store_snapshots(session: Session, built: dict[str, dict[_Key, int]]) -> None:
    """Store counted months (with each month's marker row, so an empty month is "built")."""
    rows = [
        {"month": month, "requirement_id": req, "status": status, "obligations": n}
        for month, counts in built.items()
        for (req, status), n in counts.items()
    ]
    rows += [
        {"month": month, "requirement_id": "", "status": "", "obligations": sum(counts.values())}
        for month, counts in built.items()
    ]
    try:
        with session.begin_nested():
            session.execute(insert(DecisionSnapshot), rows)
    except IntegrityError:
        pass  # a concurrent reader stored the same months first: same counts


def _build_snapshots(session: Session, months: Collection[str]) -> dict[str, dict[_Key, int]]:
    """Count the organisation at the end of ``months`` (one pass) and store the snapshots."""
    ordered = sorted(set(months))
    counted = _bucketed(
        session,
        [month_end(m) for m in ordered],
        person_ids=None,
        department=None,
        by_requirement=True,
    )
    built = dict(zip(ordered, counted, strict=True))
    _store_snapshots(session, built)
    return built


def _stored(session: Session, months: Collection[str]) -> dict[str, dict[_Key, int]]:
    """The stored snapshots of ``months`` (those built; the others are absent)."""
    found: dict[str, dict[_Key, int]] = {}
    for month, req, status, n in session.execute(
        select(
            DecisionSnapshot.month,
            DecisionSnapshot.requirement_id,
            DecisionSnapshot.status,
            DecisionSnapshot.obligations,
        ).where(DecisionSnapshot.month.in_(sorted(set(months))))
    ):
        counts = found.setdefault(str(month), {})
        if status:  # the marker row ("", "") only says the month was built
            counts[(str(req), str(status))] = int(n)
    return found


def _extend_snapshots(session: Session, missing: Collection[str]) -> dict[str, dict[_Key, int]]:
    """Build ``missing`` months from the latest stored snapshot before them, if there is one.

    The usual miss is the month that just ended (no sweep since): the month before it is
    stored, so its counts plus what changed during the month (:func:`_since`, two range reads
    of one month's decisions) are the new month's, instead of a recount of every decision in
    force (:func:`_build_snapshots`, the fallback when nothing earlier is stored). A stored
    snapshot is never stale: a late decision deletes the snapshots from its month on
    (:func:`record_decision`).
    """
    ordered = sorted(set(missing))
    earlier = session.scalar(
        select(func.max(DecisionSnapshot.month)).where(DecisionSnapshot.month < ordered[0])
    )
    if earlier is None:
        return _build_snapshots(session, ordered)
    base_month = str(earlier)
    base = _stored(session, [base_month]).get(base_month, {})
    built: dict[str, dict[_Key, int]] = {}
    for month in ordered:
        counts = dict(base)
        for key, change in _since(session, month_end(base_month), month_end(month)).items():
            counts[key] = counts.get(key, 0) + change
        built[month] = {key: n for key, n in counts.items() if n}
        base_month, base = month, built[month]
    _store_snapshots(session, built)
    return built


def _snapshots(session: Session, months: Collection[str]) -> dict[str, dict[_Key, int]]:
    """The stored snapshots of ``months``, building (and storing) the missing ones."""
    found = _stored(session, months)
    missing = set(months) - set(found)
    if missing:
        found.update(_extend_snapshots(session, missing))
    return found


def _since(session: Session, since: datetime, at: datetime) -> dict[_Key, int]:
    """How the organisation's counts changed from ``since`` to ``at`` (since <= at).

    In force at ``at`` but not at ``since``: decided in (since, at] and not superseded by
    ``at``. In force at ``since`` but not at ``at``: decided by ``since``, superseded in
    (since, at]. Two range reads of the decisions of that period only (covering indexes).
    """
    change: dict[_Key, int] = {}
    if at <= since:
        return change
    decided, until = DecisionRecord.decided_at, DecisionRecord.superseded_at
    req, status = DecisionRecord.requirement_id, DecisionRecord.status
    added = (
        select(req, status, func.count())
        .where(decided > since, decided <= at, or_(until.is_(None), until > at))
        .group_by(req, status)
    )
    removed = (
        select(req, status, func.count())
        .where(until > since, until <= at, decided <= since)
        .group_by(req, status)
    )
    for stmt, sign in ((added, 1), (removed, -1)):
        for requirement, name, count in session.execute(stmt):
            key = (str(requirement), str(name))
            change[key] = change.get(key, 0) + sign * int(count)
    return change


def _org_counts_at(
    session: Session, instants: Sequence[datetime]
) -> dict[datetime, dict[_Key, int]]:
    """Organisation counts by (requirement, status) at each instant: snapshot + what changed."""
    base = {at: _snapshot_month(at) for at in instants}
    snapshots = _snapshots(session, set(base.values()))
    answers: dict[datetime, dict[_Key, int]] = {}
    for at, month in base.items():
        counts = dict(snapshots[month])
        for key, change in _since(session, month_end(month), at).items():
            counts[key] = counts.get(key, 0) + change
        answers[at] = {key: n for key, n in counts.items() if n}
    return answers


def refresh_snapshots(session: Session, *, now: datetime, months: int = 13) -> list[str]:
    """Rebuild the snapshots of the last ``months`` months ended by ``now`` (the daily sweep).

    Readers build missing months themselves; this keeps the first dashboard of a month fast
    and repairs a snapshot a concurrent late decision might have left stale.

    Returns:
        The months rebuilt, oldest first.
    """
    ended = [_snapshot_month(now)]
    while len(ended) < months:
        first = datetime(int(ended[-1][:4]), int(ended[-1][5:7]), 1, tzinfo=UTC)
        ended.append(month_of(first - timedelta(microseconds=1)))
    session.execute(delete(DecisionSnapshot).where(DecisionSnapshot.month.in_(ended)))
    _build_snapshots(session, ended)
    return sorted(ended)


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
    not counted there. For the whole organisation the answer is the last month-end snapshot
    (:class:`~store.models.DecisionSnapshot`) plus what changed since; for a group of people
    it is counted from their decisions.

    Args:
        session: An open session.
        instants: The instants to count at.
        person_ids: Only these people (None: everyone).
        department: Only people of this department.
    """
    if not instants:
        return {}
    if person_ids is None and department is None:
        keyed = _org_counts_at(session, instants)
    else:
        points = sorted(set(instants))
        counted = _bucketed(
            session, points, person_ids=person_ids, department=department, by_requirement=False
        )
        keyed = dict(zip(points, counted, strict=True))
    answers: dict[datetime, dict[str, int]] = {}
    for at in instants:
        totals: dict[str, int] = {}
        for (_, status), n in keyed[at].items():
            totals[status] = totals.get(status, 0) + n
        answers[at] = totals
    return answers


def requirement_counts_at(
    session: Session,
    *,
    at: datetime,
    person_ids: Collection[int] | None = None,
    department: str | None = None,
) -> dict[str, dict[str, int]]:
    """Per requirement, how many obligations were in each status at ``at`` (recorded)."""
    if person_ids is None and department is None:
        keyed = _org_counts_at(session, [at])[at]
    else:
        stmt = (
            select(DecisionRecord.requirement_id, DecisionRecord.status, func.count())
            .where(_in_force(at))
            .group_by(DecisionRecord.requirement_id, DecisionRecord.status)
        )
        rows = session.execute(_scoped(stmt, person_ids=person_ids, department=department))
        keyed = {(str(req), str(status)): int(n) for req, status, n in rows}
    counts: dict[str, dict[str, int]] = {}
    for (requirement, status), n in sorted(keyed.items()):
        counts.setdefault(requirement, {})[status] = n
    return counts
