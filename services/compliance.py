"""Compliance dashboards: counts, rates, breakdowns, at-risk people, trends and as-of answers.

Every number is an aggregate query on the obligations read model (or, for trends and as-of
answers, on the recorded decisions), never a loop over rows in Python. Who the numbers may
cover is the caller's row-level scope, computed by the API's one policy
(``api.deps.visible_person_ids``) and passed in as ``visible``; :func:`audience` narrows it to a
team, a department or the whole organisation.

How statuses count (``domain.statuses``): ``completed``/``compliant``/``exempt`` are compliant;
``overdue``/``non_compliant``/``expired``/``lapsed``/``failed``/``revoked`` are overdue; cancelled
and superseded obligations are not counted; everything else is in progress. The compliance rate
is compliant ÷ counted (None when nothing is counted).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from domain.statuses import (
    CLOSED_STATUSES,
    COMPLIANT_STATUSES,
    EXPIRED_STATUSES,
    OVERDUE_STATUSES,
)
from services.errors import Invalid, NotFound
from store import decisions
from store.models import Obligation, Person
from store.people import reports_of

_S = TypeVar("_S", bound="Select[*tuple[Any, ...]]")
ScopeName = Literal["team", "department", "org"]
BreakdownBy = Literal["requirement", "category", "department", "location", "team", "report"]
SCOPES: tuple[str, ...] = ("team", "department", "org")
BREAKDOWNS: tuple[str, ...] = (
    "requirement",
    "category",
    "department",
    "location",
    "team",
    "report",
)
#: "Due soon" and "expiring soon" look this many days ahead.
WINDOW_DAYS = 30


@dataclass(frozen=True)
class Audience:
    """Whose obligations a dashboard counts.

    Attributes:
        scope: ``team``, ``department`` or ``org``.
        label: What to call it on a page ("Team of Dana Reyes", "Department ICU", …).
        person_ids: Only these people (None: everyone).
        depth: Team scope: each report's distance from the manager (1: a direct report).
    """

    scope: str
    label: str
    person_ids: frozenset[int] | None
    depth: dict[int, int] | None = None

    def where(self, stmt: _S) -> _S:
        """``stmt`` (on obligations) restricted to this audience's people."""
        if self.person_ids is not None:
            stmt = stmt.where(Obligation.person_id.in_(sorted(self.person_ids)))
        return stmt


def audience(
    session: Session,
    *,
    visible: Collection[int] | None,
    scope: str,
    viewer_id: int | None,
    manager: str | None = None,
    department: str | None = None,
) -> Audience:
    """Resolve a dashboard's scope for a caller.

    Args:
        session: An open session.
        visible: The person ids the caller may see (``api.deps.visible_person_ids``; None: all).
        scope: ``team`` (a manager's reports, direct and indirect, not the manager),
            ``department`` or ``org`` (everyone the caller may see).
        viewer_id: The caller's person id (None for a token without a person).
        manager: Team scope: the manager's external id (default: the caller).
        department: Department scope: its name (default: the caller's department).

    Raises:
        Invalid: An unknown scope, or a default the caller has nothing for.
        NotFound: The manager does not exist or the caller may not see them.
    """
    allowed = None if visible is None else frozenset(visible)
    if scope == "org":
        return Audience(scope="org", label="Organisation", person_ids=allowed)
    if scope == "department":
        if department is None and viewer_id is not None:
            department = session.scalar(select(Person.department).where(Person.id == viewer_id))
        if not department:
            raise Invalid("scope=department needs ?department= (the caller has none)")
        # The department's people as ids: every dashboard query then filters on
        # ``person_id`` alone, which the obligations indexes lead with.
        members = frozenset(
            session.scalars(select(Person.id).where(Person.department == department))
        )
        return Audience(
            scope="department",
            label=f"Department {department}",
            person_ids=members if allowed is None else members & allowed,
        )
    if scope != "team":
        raise Invalid(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
    if manager is not None:
        lead = session.scalar(select(Person).where(Person.external_id == manager))
        if lead is None or (allowed is not None and lead.id not in allowed):
            raise NotFound(f"no manager {manager!r}")
    elif viewer_id is not None:
        lead = session.get(Person, viewer_id)
    else:
        lead = None
    if lead is None:
        raise Invalid("scope=team needs ?manager= (the caller is not a person)")
    depth = reports_of(session, lead.id)
    ids = frozenset(depth) if allowed is None else frozenset(depth) & allowed
    return Audience(
        scope="team",
        label=f"Team of {lead.name}",
        person_ids=ids,
        depth={k: v for k, v in depth.items() if k in ids},
    )


class Counts(BaseModel):
    """Obligation counts of one group."""

    total: int = Field(description="Obligations counted (cancelled and superseded are not).")
    completed: int = Field(description="Compliant: completed, compliant or exempt.")
    in_progress: int = Field(description="Neither compliant nor overdue.")
    overdue: int = Field(description="Overdue, non-compliant, expired, lapsed, failed, revoked.")
    due_30: int = Field(description="In progress and due within 30 days (today included).")
    rate: float | None = Field(description="completed ÷ total (None when total is 0).")


class Summary(Counts):
    """A dashboard's headline numbers."""

    scope: str
    label: str
    today: date
    people: int = Field(description="People with at least one counted obligation.")
    cert_expiring_30: int = Field(description="Certifications expiring within 30 days.")
    cert_expired: int = Field(description="Certifications past expiry (or expired/lapsed).")


class BreakdownRow(Counts):
    """One group of a breakdown."""

    key: str | None = Field(description="The group's key (requirement id, department, …).")
    label: str = Field(description="What to show for the group.")
    depth: int | None = Field(
        default=None, description="by=report: 1 for a direct report, 2+ for an indirect one."
    )


class AtRiskPerson(BaseModel):
    """A person with something overdue or expired."""

    person: str
    name: str
    department: str | None
    location: str | None
    manager: str | None
    overdue: int
    due_30: int
    cert_expired: int
    total: int


class TrendPoint(Counts):
    """The compliance at one instant, from the decisions recorded up to then."""

    month: str = Field(description="YYYY-MM")
    at: datetime = Field(description="The instant counted: the end of the month, or now.")


class AsOfDecision(BaseModel):
    """The status in force for a person's requirement at an instant, and why."""

    person: str
    requirement: str
    at: datetime
    found: bool
    status: str | None = None
    workflow_id: str | None = None
    kind: str | None = None
    rule: str | None = None
    severity: str | None = None
    pack_hash: str | None = None
    facts: dict[str, Any] | None = None
    trigger: str | None = None
    source: str | None = None
    decided_at: datetime | None = None


class AsOfCounts(Counts):
    """Counts and rate of a scope at an instant, from the recorded decisions."""

    scope: str
    label: str
    at: datetime
    statuses: dict[str, int]


def _open(status: Any) -> ColumnElement[bool]:
    """In progress: neither compliant, overdue nor closed."""
    return status.notin_(COMPLIANT_STATUSES | OVERDUE_STATUSES | CLOSED_STATUSES)  # type: ignore[no-any-return]


def _counts(total: Any, completed: Any, overdue: Any, due_30: Any) -> dict[str, Any]:
    total, completed, overdue = int(total or 0), int(completed or 0), int(overdue or 0)
    return {
        "total": total,
        "completed": completed,
        "overdue": overdue,
        "in_progress": total - completed - overdue,
        "due_30": int(due_30 or 0),
        "rate": round(completed / total, 4) if total else None,
    }


def _tally(statuses: dict[str, int], due_30: int) -> dict[str, Any]:
    """Counts from ``status → obligations`` (closed statuses are dropped here)."""
    counted = {s: n for s, n in statuses.items() if s not in CLOSED_STATUSES}
    return _counts(
        sum(counted.values()),
        sum(n for st, n in counted.items() if st in COMPLIANT_STATUSES),
        sum(n for st, n in counted.items() if st in OVERDUE_STATUSES),
        due_30,
    )


def summary(session: Session, *, audience: Audience, today: date) -> Summary:
    """The headline numbers of a dashboard.

    Four narrow aggregates instead of one wide one, each answered from an index: statuses
    (``GROUP BY status``), the due window and the certification expiry window (range reads),
    and the people with an obligation (``EXISTS`` per person).

    Args:
        session: An open session.
        audience: Whose obligations (:func:`audience`).
        today: The day "due within 30 days" and "expired" are counted from.
    """
    soon = today + timedelta(days=WINDOW_DAYS)
    statuses = {
        str(status): int(count)
        for status, count in session.execute(
            audience.where(select(Obligation.status, func.count()).group_by(Obligation.status))
        )
    }
    due_30 = session.scalar(
        audience.where(
            select(func.count())
            .select_from(Obligation)
            .where(Obligation.due_date >= today, Obligation.due_date <= soon)
            .where(_open(Obligation.status))
        )
    )
    expiring, expired = _certifications(session, audience, today)
    # Distinct people from the (person_id, status, …) index alone, not a probe per person.
    with_one = audience.where(
        select(Obligation.person_id).where(Obligation.status.notin_(CLOSED_STATUSES)).distinct()
    ).subquery()
    people = select(func.count()).select_from(with_one)
    return Summary(
        scope=audience.scope,
        label=audience.label,
        today=today,
        people=int(session.scalar(people) or 0),
        cert_expiring_30=expiring,
        cert_expired=expired,
        **_tally(statuses, int(due_30 or 0)),
    )


def _certifications(session: Session, audience: Audience, today: date) -> tuple[int, int]:
    """(Certifications expiring within the window, certifications expired) of ``audience``."""
    soon = today + timedelta(days=WINDOW_DAYS)
    expiring = expired = 0
    # Two range reads instead of one OR (which no index answers): certifications expiring by
    # the end of the window, and those whose status already says expired (any date).
    # Grouped by the subquery's output column: PostgreSQL does not match ``expiry_date < $1``
    # in the select list with ``expiry_date < $2`` in GROUP BY (two bind parameters).
    in_window = audience.where(
        select(Obligation.status.label("status"), (Obligation.expiry_date < today).label("past"))
        .where(Obligation.kind == "certification")
        .where(Obligation.expiry_date <= soon)
        .where(Obligation.status.notin_(CLOSED_STATUSES))
    ).subquery("window")
    window = select(in_window.c.status, in_window.c.past, func.count()).group_by(
        in_window.c.status, in_window.c.past
    )
    for status, past, count in session.execute(window):
        if past or status in EXPIRED_STATUSES:
            expired += int(count)
        else:
            expiring += int(count)
    expired += int(
        session.scalar(
            audience.where(
                select(func.count())
                .select_from(Obligation)
                .where(Obligation.kind == "certification")
                .where(Obligation.status.in_(EXPIRED_STATUSES))
                .where(or_(Obligation.expiry_date.is_(None), Obligation.expiry_date > soon))
            )
        )
        or 0
    )
    return expiring, expired


def breakdown(session: Session, *, audience: Audience, by: str, today: date) -> list[BreakdownRow]:
    """The dashboard's numbers per group: a ``GROUP BY group, status`` and the due window.

    Args:
        session: An open session.
        audience: Whose obligations.
        by: ``requirement``, ``category`` (the obligation's kind), ``department``,
            ``location``, ``team`` (each person's manager) or ``report`` (each person; in a
            team scope with their depth below the manager).
        today: The day "due within 30 days" is counted from.

    Raises:
        Invalid: An unknown ``by``.
    """
    if by not in BREAKDOWNS:
        raise Invalid(f"unknown breakdown {by!r}; use one of {', '.join(BREAKDOWNS)}")
    key: Any = {
        "requirement": Obligation.requirement_id,
        "category": Obligation.kind,
        "department": Person.department,
        "location": Person.location,
        "team": Person.manager_id,
        "report": Obligation.person_id,
    }[by]
    joins = by in ("department", "location", "team")

    def grouped(stmt: Select[Any]) -> Select[Any]:
        if joins:
            stmt = stmt.join(Person, Person.id == Obligation.person_id)
        return audience.where(stmt.group_by(key))

    if joins:
        # Count per (person, status) from the index first, then join the (far fewer) groups
        # to people: a join of every obligation row costs several times more.
        per_person = audience.where(
            select(
                Obligation.person_id.label("pid"),
                Obligation.status.label("status"),
                func.count().label("n"),
            ).group_by(Obligation.person_id, Obligation.status)
        ).subquery()
        attribute = {
            "department": Person.department,
            "location": Person.location,
            "team": Person.manager_id,
        }[by]
        by_status = (
            select(attribute, per_person.c.status, func.sum(per_person.c.n))
            .join(Person, Person.id == per_person.c.pid)
            .group_by(attribute, per_person.c.status)
        )
    else:
        by_status = audience.where(
            select(key, Obligation.status, func.count()).group_by(key, Obligation.status)
        )
    statuses: dict[Any, dict[str, int]] = {}
    for group, status, count in session.execute(by_status):
        statuses.setdefault(group, {})[str(status)] = int(count)
    soon = today + timedelta(days=WINDOW_DAYS)
    due: dict[Any, int] = {
        group: int(count)
        for group, count in session.execute(
            grouped(
                select(key, func.count())
                .select_from(Obligation)
                .where(Obligation.due_date >= today, Obligation.due_date <= soon)
                .where(_open(Obligation.status))
            )
        )
    }
    labels: dict[Any, tuple[str | None, str]] = {}
    if by == "requirement":
        # One title per requirement: an index seek each (there are tens, not thousands).
        for rid in statuses:
            title = session.scalar(
                select(Obligation.requirement_title)
                .where(Obligation.requirement_id == rid)
                .limit(1)
            )
            labels[rid] = (rid, title or str(rid))
    elif by in ("team", "report"):
        ids = [g for g in statuses if g is not None]
        labels = {
            pid: (ext, name)
            for pid, ext, name in session.execute(
                select(Person.id, Person.external_id, Person.name).where(Person.id.in_(ids))
            )
        }
    result: list[BreakdownRow] = []
    for group, counts in statuses.items():
        tally = _tally(counts, int(due.get(group, 0)))
        if not tally["total"]:
            continue
        depth = None
        if group is None:
            row_key, label = None, "(no manager)" if by == "team" else "(none)"
        elif by in ("team", "report", "requirement"):
            row_key, label = labels.get(group, (str(group), str(group)))
            if by == "report" and audience.depth:
                depth = audience.depth.get(group)
        else:
            row_key, label = str(group), str(group)
        result.append(BreakdownRow(key=row_key, label=label, depth=depth, **tally))
    result.sort(key=lambda r: (r.depth or 0, r.label, r.key or ""))
    return result


#: One field of :func:`overview`'s packed per-person counts.
_FIELD = 2**20

#: The breakdowns by an attribute of the person (not of the obligation), which
#: :func:`overview` answers together from one grouped pass.
PERSON_BREAKDOWNS: tuple[str, ...] = ("department", "location", "team")


@dataclass(frozen=True)
class Overview:
    """A dashboard's headline and its breakdowns by person attributes, from one pass.

    Attributes:
        summary: The same numbers as :func:`summary`.
        breakdowns: ``by`` → the same rows as :func:`breakdown` for that ``by``.
    """

    summary: Summary
    breakdowns: dict[str, list[BreakdownRow]]


def overview(
    session: Session, *, audience: Audience, today: date, by: Sequence[str] = PERSON_BREAKDOWNS
) -> Overview:
    """The headline numbers and the breakdowns by department, location and team at once.

    :func:`summary` and one :func:`breakdown` per dimension each read every obligation (a
    status ``GROUP BY``, the due window, the people): an organisation page asking for all four
    read the obligations a dozen times. Here the obligations are read once, through the
    ``(person_id, status, due_date)`` index, into one row per person (counted, compliant,
    overdue, due in the window); those rows are joined to people and grouped by every
    requested attribute together (at most one row per department × location × manager), and
    the few thousand groups are rolled up per dimension here. Only the certification windows
    (two narrow range reads, as in :func:`summary`) are separate.

    Args:
        session: An open session.
        audience: Whose obligations.
        today: The day "due within 30 days" and "expired" are counted from.
        by: Which of ``department``, ``location``, ``team`` to break down by.

    Raises:
        Invalid: A ``by`` that is not an attribute of the person.
    """
    unknown = [b for b in by if b not in PERSON_BREAKDOWNS]
    if unknown:
        raise Invalid(f"overview by {unknown[0]!r}: use {', '.join(PERSON_BREAKDOWNS)}")
    soon = today + timedelta(days=WINDOW_DAYS)
    status = Obligation.status
    # One row per person: how many obligations, and which of them are closed, compliant or
    # overdue, as one CASE packed into one sum (a field per 2**20: nobody has a million
    # obligations). On SQLite each CASE costs about as much as reading the row, and three
    # separate conditional sums took twice as long; the fields are unpacked per person below,
    # before any group sums them, so a group of any size cannot overflow a field.
    closed = sorted(CLOSED_STATUSES)
    compliant = sorted(COMPLIANT_STATUSES - CLOSED_STATUSES)
    late = sorted(OVERDUE_STATUSES - CLOSED_STATUSES - COMPLIANT_STATUSES)
    packed = case(
        (status.in_(compliant), literal(1, BigInteger)),
        (status.in_(late), literal(_FIELD, BigInteger)),
        (status.in_(closed), literal(_FIELD * _FIELD, BigInteger)),
        else_=literal(0, BigInteger),
    )
    per_person = audience.where(
        select(
            Obligation.person_id.label("pid"),
            func.count().label("n"),
            cast(func.sum(packed), BigInteger).label("v"),
        ).group_by(Obligation.person_id)
    ).subquery("per_person")
    v = per_person.c.v
    counted = per_person.c.n - v // (_FIELD * _FIELD)
    attribute = {
        "department": Person.department,
        "location": Person.location,
        "team": Person.manager_id,
    }
    keys = [attribute[b] for b in by]
    grouped = (
        select(
            *keys,
            func.sum(counted),
            func.sum(v % _FIELD),
            func.sum((v // _FIELD) % _FIELD),
            func.sum(case((counted > 0, 1), else_=0)),
        )
        .join(Person, Person.id == per_person.c.pid)
        .group_by(*keys)
    )
    # The due window is a narrow range of the due-date index: a read of its own, as in
    # summary(), is cheaper than a date test on every row of the pass above.
    due_rows = audience.where(
        select(*keys, func.count())
        .select_from(Obligation)
        .join(Person, Person.id == Obligation.person_id)
        .where(Obligation.due_date >= today, Obligation.due_date <= soon)
        .where(_open(status))
        .group_by(*keys)
    )
    width = len(keys)
    # dimension → group → [total, completed, overdue, due_30]
    sums: dict[str, dict[Any, list[int]]] = {b: {} for b in by}
    headline = [0, 0, 0, 0]
    people = 0

    def add(groups: Sequence[Any], numbers: list[int]) -> None:
        for i, n in enumerate(numbers):
            headline[i] += n
        for b, group in zip(by, groups, strict=True):
            into = sums[b].setdefault(group, [0, 0, 0, 0])
            for i, n in enumerate(numbers):
                into[i] += n

    for row in session.execute(grouped):
        add(row[:width], [int(n or 0) for n in row[width : width + 3]] + [0])
        people += int(row[width + 3] or 0)
    for row in session.execute(due_rows):
        add(row[:width], [0, 0, 0, int(row[width] or 0)])
    managers = [g for g in sums.get("team", {}) if g is not None]
    labels = (
        {
            pid: (ext, name)
            for pid, ext, name in session.execute(
                select(Person.id, Person.external_id, Person.name).where(Person.id.in_(managers))
            )
        }
        if managers
        else {}
    )
    result: dict[str, list[BreakdownRow]] = {}
    for b in by:
        rows: list[BreakdownRow] = []
        for group, (total, done, overdue, due) in sums[b].items():
            if not total:
                continue
            if group is None:
                row_key, label = None, "(no manager)" if b == "team" else "(none)"
            elif b == "team":
                row_key, label = labels.get(group, (str(group), str(group)))
            else:
                row_key, label = str(group), str(group)
            rows.append(
                BreakdownRow(key=row_key, label=label, **_counts(total, done, overdue, due))
            )
        rows.sort(key=lambda r: (r.depth or 0, r.label, r.key or ""))
        result[b] = rows
    expiring, expired = _certifications(session, audience, today)
    headline_summary = Summary(
        scope=audience.scope,
        label=audience.label,
        today=today,
        people=people,
        cert_expiring_30=expiring,
        cert_expired=expired,
        **_counts(*headline),
    )
    return Overview(summary=headline_summary, breakdowns=result)


def at_risk(
    session: Session, *, audience: Audience, today: date, limit: int = 50
) -> list[AtRiskPerson]:
    """People with something overdue or an expired certification, most overdue first.

    Reads only the overdue and expired rows (a status or an expiry range), then the totals
    of the ``limit`` people found.

    Args:
        session: An open session.
        audience: Whose obligations.
        today: The day counted from.
        limit: At most this many people.
    """
    status = Obligation.status
    cert_expired = and_(
        Obligation.kind == "certification",
        or_(Obligation.expiry_date < today, status.in_(EXPIRED_STATUSES)),
    )
    # Two disjoint range reads instead of one OR over every row: the overdue rows (an expired
    # status is an overdue one), and certifications past expiry whose status says neither.
    # EXPIRED_STATUSES is a subset of OVERDUE_STATUSES, so together they are exactly
    # "not closed and (overdue or expired)".
    flagged = union_all(
        audience.where(
            select(
                Obligation.person_id.label("pid"),
                literal(1).label("overdue"),
                case((cert_expired, 1), else_=0).label("expired"),
            ).where(status.in_(OVERDUE_STATUSES))
        ),
        audience.where(
            select(Obligation.person_id, literal(0), literal(1))
            .where(Obligation.kind == "certification", Obligation.expiry_date < today)
            .where(status.notin_(OVERDUE_STATUSES | CLOSED_STATUSES))
        ),
    ).subquery("flagged")
    overdue = func.sum(flagged.c.overdue)
    expired = func.sum(flagged.c.expired)
    found = session.execute(
        select(flagged.c.pid, overdue, expired)
        .group_by(flagged.c.pid)
        .order_by(overdue.desc(), expired.desc(), flagged.c.pid)
        .limit(limit)
    ).all()
    ids = [row[0] for row in found]
    soon = today + timedelta(days=WINDOW_DAYS)
    totals = {
        pid: (int(total), int(due or 0))
        for pid, total, due in session.execute(
            select(
                Obligation.person_id,
                func.count(),
                func.sum(
                    case(
                        (
                            and_(
                                _open(status),
                                Obligation.due_date >= today,
                                Obligation.due_date <= soon,
                            ),
                            1,
                        ),
                        else_=0,
                    )
                ),
            )
            .where(Obligation.person_id.in_(ids))
            .where(status.notin_(CLOSED_STATUSES))
            .group_by(Obligation.person_id)
        )
    }
    people = {p.id: p for p in session.scalars(select(Person).where(Person.id.in_(ids)))}
    out = []
    for pid, over, gone in found:
        person = people[pid]
        total, due_30 = totals.get(pid, (0, 0))
        out.append(
            AtRiskPerson(
                person=person.external_id,
                name=person.name,
                department=person.department,
                location=person.location,
                manager=person.manager.external_id if person.manager else None,
                overdue=int(over or 0),
                due_30=due_30,
                cert_expired=int(gone or 0),
                total=total,
            )
        )
    return out


def _from_statuses(statuses: dict[str, int]) -> dict[str, Any]:
    # Due dates at a past instant are not recorded with the decision's status: "due within
    # 30 days" there is the statuses that say so.
    return _tally(
        statuses, sum(n for st, n in statuses.items() if st in ("due_soon", "renewal_due"))
    )


def month_ends(now: datetime, months: int = 12) -> list[tuple[str, datetime]]:
    """The last ``months`` months up to ``now``: (YYYY-MM, the month's end or ``now``)."""
    now = now.astimezone(UTC)
    points: list[tuple[str, datetime]] = []
    year, month = now.year, now.month
    for _ in range(months):
        start_next = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
        at = min(start_next - timedelta(microseconds=1), now)
        points.append((f"{year:04d}-{month:02d}", at))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return list(reversed(points))


def trend(
    session: Session, *, audience: Audience, now: datetime, months: int = 12
) -> list[TrendPoint]:
    """Compliance at the end of each of the last ``months`` months, from recorded decisions.

    Args:
        session: An open session.
        audience: Whose obligations.
        now: The current instant (the last point).
        months: How many months (1 to 36).
    """
    if not 1 <= months <= 36:
        raise Invalid("months must be between 1 and 36")
    points = month_ends(now, months)
    counts = decisions.status_counts_at(
        session,
        instants=[at for _, at in points],
        person_ids=audience.person_ids,
    )
    return [TrendPoint(month=label, at=at, **_from_statuses(counts[at])) for label, at in points]


def as_of_obligation(
    session: Session,
    *,
    visible: Collection[int] | None,
    person: str,
    requirement: str,
    at: datetime,
) -> AsOfDecision:
    """The status in force for ``person``'s ``requirement`` at ``at``, as it was recorded.

    Raises:
        NotFound: The person does not exist or the caller may not see them.
    """
    row = session.scalar(select(Person).where(Person.external_id == person))
    if row is None or (visible is not None and row.id not in visible):
        raise NotFound(f"no person {person!r}")
    found = decisions.in_force(session, person_id=row.id, requirement_id=requirement, at=at)
    if found is None:
        return AsOfDecision(person=person, requirement=requirement, at=at, found=False)
    return AsOfDecision(
        person=person,
        requirement=requirement,
        at=at,
        found=True,
        status=found.status,
        workflow_id=found.workflow_id,
        kind=found.kind,
        rule=found.rule,
        severity=found.severity,
        pack_hash=found.pack_hash,
        facts=found.facts,
        trigger=found.trigger,
        source=found.source,
        decided_at=found.decided_at,
    )


def as_of_counts(session: Session, *, audience: Audience, at: datetime) -> AsOfCounts:
    """Counts and rate of ``audience`` at ``at``, from the decisions recorded up to then."""
    statuses = decisions.status_counts_at(session, instants=[at], person_ids=audience.person_ids)[
        at
    ]
    return AsOfCounts(
        scope=audience.scope,
        label=audience.label,
        at=at,
        statuses=dict(sorted(statuses.items())),
        **_from_statuses(statuses),
    )


def rows_for_csv(items: Sequence[BaseModel]) -> tuple[list[str], list[list[Any]]]:
    """A header and rows of plain cells from result models (nested values as JSON text)."""
    if not items:
        return [], []
    header = list(type(items[0]).model_fields)
    return header, [[item.model_dump(mode="json")[name] for name in header] for item in items]


def requirements_at(session: Session, *, audience: Audience, at: datetime) -> list[BreakdownRow]:
    """Per requirement, the counts and rate at ``at`` from the recorded decisions."""
    counts = decisions.requirement_counts_at(session, at=at, person_ids=audience.person_ids)
    rows = [
        BreakdownRow(key=requirement, label=requirement, **_from_statuses(statuses))
        for requirement, statuses in counts.items()
    ]
    return sorted((r for r in rows if r.total), key=lambda r: r.label)
