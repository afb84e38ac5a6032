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
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
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
        person_ids: Only these people (None: everyone, within ``department`` if set).
        department: Only people of this department.
        depth: Team scope: each report's distance from the manager (1: a direct report).
    """

    scope: str
    label: str
    person_ids: frozenset[int] | None
    department: str | None = None
    depth: dict[int, int] | None = None

    def where(self, stmt: Select[Any], *, joined: bool = False) -> Select[Any]:
        """``stmt`` (on obligations) restricted to this audience.

        Args:
            stmt: A select whose FROM has ``obligations``.
            joined: Whether ``stmt`` already joins ``people``.
        """
        if self.person_ids is not None:
            stmt = stmt.where(Obligation.person_id.in_(sorted(self.person_ids)))
        if self.department is not None:
            if not joined:
                stmt = stmt.join(Person, Person.id == Obligation.person_id)
            stmt = stmt.where(Person.department == self.department)
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
        return Audience(
            scope="department",
            label=f"Department {department}",
            person_ids=allowed,
            department=department,
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


def _status_sums(today: date) -> list[ColumnElement[Any]]:
    status = Obligation.status
    soon = today + timedelta(days=WINDOW_DAYS)
    open_ = and_(status.notin_(COMPLIANT_STATUSES), status.notin_(OVERDUE_STATUSES))
    return [
        func.count().label("total"),
        func.sum(case((status.in_(COMPLIANT_STATUSES), 1), else_=0)).label("completed"),
        func.sum(case((status.in_(OVERDUE_STATUSES), 1), else_=0)).label("overdue"),
        func.sum(
            case(
                (and_(open_, Obligation.due_date >= today, Obligation.due_date <= soon), 1),
                else_=0,
            )
        ).label("due_30"),
    ]


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


def summary(session: Session, *, audience: Audience, today: date) -> Summary:
    """The headline numbers of a dashboard: one aggregate query.

    Args:
        session: An open session.
        audience: Whose obligations (:func:`audience`).
        today: The day "due within 30 days" and "expired" are counted from.
    """
    soon = today + timedelta(days=WINDOW_DAYS)
    cert = Obligation.kind == "certification"
    stmt = select(
        *_status_sums(today),
        func.count(func.distinct(Obligation.person_id)).label("people"),
        func.sum(
            case(
                (
                    and_(
                        cert,
                        Obligation.expiry_date >= today,
                        Obligation.expiry_date <= soon,
                        Obligation.status.notin_(EXPIRED_STATUSES),
                    ),
                    1,
                ),
                else_=0,
            )
        ).label("expiring"),
        func.sum(
            case(
                (
                    and_(
                        cert,
                        or_(
                            Obligation.expiry_date < today,
                            Obligation.status.in_(EXPIRED_STATUSES),
                        ),
                    ),
                    1,
                ),
                else_=0,
            )
        ).label("expired"),
    ).where(Obligation.status.notin_(CLOSED_STATUSES))
    row = session.execute(audience.where(stmt)).one()
    return Summary(
        scope=audience.scope,
        label=audience.label,
        today=today,
        people=int(row.people or 0),
        cert_expiring_30=int(row.expiring or 0),
        cert_expired=int(row.expired or 0),
        **_counts(row.total, row.completed, row.overdue, row.due_30),
    )


def breakdown(session: Session, *, audience: Audience, by: str, today: date) -> list[BreakdownRow]:
    """The dashboard's numbers per group, one GROUP BY query (plus names for teams).

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
    keys: list[Any]
    if by == "requirement":
        keys = [Obligation.requirement_id, func.max(Obligation.requirement_title)]
        group: list[Any] = [Obligation.requirement_id]
    elif by == "category":
        keys = [Obligation.kind, Obligation.kind]
        group = [Obligation.kind]
    elif by == "department":
        keys = [Person.department, Person.department]
        group = [Person.department]
    elif by == "location":
        keys = [Person.location, Person.location]
        group = [Person.location]
    elif by == "team":
        keys = [Person.manager_id, Person.manager_id]
        group = [Person.manager_id]
    else:
        keys = [Person.id, func.max(Person.name), func.max(Person.external_id)]
        group = [Person.id]
    stmt = (
        select(*keys, *_status_sums(today))
        .join(Person, Person.id == Obligation.person_id)
        .where(Obligation.status.notin_(CLOSED_STATUSES))
        .group_by(*group)
    )
    rows = session.execute(audience.where(stmt, joined=True)).all()
    names: dict[int, tuple[str, str]] = {}
    if by == "team":
        ids = [r[0] for r in rows if r[0] is not None]
        names = {
            pid: (ext, name)
            for pid, ext, name in session.execute(
                select(Person.id, Person.external_id, Person.name).where(Person.id.in_(ids))
            )
        }
    result: list[BreakdownRow] = []
    for row in rows:
        *head, total, completed, overdue, due_30 = row
        counts = _counts(total, completed, overdue, due_30)
        depth = None
        if by == "team":
            ext_name = names.get(head[0]) if head[0] is not None else None
            key, label = (ext_name[0], ext_name[1]) if ext_name else (None, "(no manager)")
        elif by == "report":
            key, label = head[2], head[1]
            depth = audience.depth.get(head[0]) if audience.depth else None
        else:
            key = None if head[0] is None else str(head[0])
            label = str(head[1]) if head[1] is not None else "(none)"
        result.append(BreakdownRow(key=key, label=label, depth=depth, **counts))
    result.sort(key=lambda r: (r.depth or 0, r.label, r.key or ""))
    return result


def at_risk(
    session: Session, *, audience: Audience, today: date, limit: int = 50
) -> list[AtRiskPerson]:
    """People with something overdue or an expired certification, most overdue first.

    Args:
        session: An open session.
        audience: Whose obligations.
        today: The day counted from.
        limit: At most this many people.
    """
    cert_expired = func.sum(
        case(
            (
                and_(
                    Obligation.kind == "certification",
                    or_(Obligation.expiry_date < today, Obligation.status.in_(EXPIRED_STATUSES)),
                ),
                1,
            ),
            else_=0,
        )
    )
    sums = _status_sums(today)
    overdue, due_30 = sums[2], sums[3]
    stmt = (
        select(Obligation.person_id, sums[0], overdue, due_30, cert_expired.label("expired"))
        .where(Obligation.status.notin_(CLOSED_STATUSES))
        .group_by(Obligation.person_id)
        .having(or_(overdue > 0, cert_expired > 0))
        .order_by(overdue.desc(), cert_expired.desc(), due_30.desc(), Obligation.person_id)
        .limit(limit)
    )
    rows = session.execute(audience.where(stmt)).all()
    people = {
        p.id: p for p in session.scalars(select(Person).where(Person.id.in_([r[0] for r in rows])))
    }
    out = []
    for pid, total, over, soon, expired in rows:
        person = people[pid]
        out.append(
            AtRiskPerson(
                person=person.external_id,
                name=person.name,
                department=person.department,
                location=person.location,
                manager=person.manager.external_id if person.manager else None,
                overdue=int(over or 0),
                due_30=int(soon or 0),
                cert_expired=int(expired or 0),
                total=int(total or 0),
            )
        )
    return out


def _from_statuses(statuses: dict[str, int]) -> dict[str, Any]:
    counted = {s: n for s, n in statuses.items() if s not in CLOSED_STATUSES}
    total = sum(counted.values())
    completed = sum(n for s, n in counted.items() if s in COMPLIANT_STATUSES)
    overdue = sum(n for s, n in counted.items() if s in OVERDUE_STATUSES)
    # Due dates at a past instant are not recorded with the decision's status: "due within
    # 30 days" there is the statuses that say so.
    due_30 = sum(n for s, n in counted.items() if s in ("due_soon", "renewal_due"))
    return _counts(total, completed, overdue, due_30)


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
        department=audience.department,
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
    statuses = decisions.status_counts_at(
        session, instants=[at], person_ids=audience.person_ids, department=audience.department
    )[at]
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
