"""The obligation read model: the rows workflows record, filtered and scoped for a caller.

Visibility is decided by the caller (the API computes the person ids a principal may see);
these functions only apply it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, TypeVar

from sqlalchemy import Row, Select, select
from sqlalchemy.orm import Session

from store.models import Obligation, Person

_S = TypeVar("_S", bound="Select[*tuple[Any, ...]]")

#: What a read-model answer shows: the row's columns and its person's external id (``person``).
#: The hot list routes select just these (Core rows, no ORM objects to build).
READ_COLUMNS = (
    Obligation.workflow_id,
    Person.external_id.label("person"),
    Obligation.kind,
    Obligation.requirement_id,
    Obligation.requirement_title,
    Obligation.cycle,
    Obligation.due_date,
    Obligation.stage,
    Obligation.status,
    Obligation.pack_hash,
    Obligation.acknowledged_at,
    Obligation.completed_at,
    Obligation.updated_at,
)


def list_obligations(
    session: Session,
    *,
    scope: Collection[int] | None,
    status: str | None = None,
    person: str | None = None,
    requirement: str | None = None,
    department: str | None = None,
    location: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Obligation]:
    """Obligations matching every filter given, by due date.

    Args:
        session: The store.
        scope: The person ids the caller may see; ``None`` for everyone.
        status: ``assigned``, ``due_soon``, ``overdue``, ...
        person: A person's external id.
        requirement: A requirement id.
        department: The person's department.
        location: The person's location.
        kind: ``training``, ``certification``, ...
        limit: At most this many rows.
        offset: Skip this many rows first.
    """
    stmt = _filtered(
        select(Obligation).join(Person, Obligation.person_id == Person.id),
        scope=scope,
        status=status,
        person=person,
        requirement=requirement,
        department=department,
        location=location,
        kind=kind,
        limit=limit,
        offset=offset,
    )
    return list(session.scalars(stmt).unique())


def list_obligation_rows(
    session: Session,
    *,
    scope: Collection[int] | None,
    status: str | None = None,
    person: str | None = None,
    requirement: str | None = None,
    department: str | None = None,
    location: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[Row[*tuple[Any, ...]]]:
    """:func:`list_obligations` as rows of :data:`READ_COLUMNS`, in one ``SELECT``."""
    stmt = _filtered(
        select(*READ_COLUMNS)
        .select_from(Obligation)
        .join(Person, Obligation.person_id == Person.id),
        scope=scope,
        status=status,
        person=person,
        requirement=requirement,
        department=department,
        location=location,
        kind=kind,
        limit=limit,
        offset=offset,
    )
    return session.execute(stmt).all()


def _filtered(
    stmt: _S,
    *,
    scope: Collection[int] | None,
    status: str | None,
    person: str | None,
    requirement: str | None,
    department: str | None,
    location: str | None,
    kind: str | None,
    limit: int,
    offset: int,
) -> _S:
    if department:
        stmt = stmt.where(Person.department == department)
    if location:
        stmt = stmt.where(Person.location == location)
    if kind:
        stmt = stmt.where(Obligation.kind == kind)
    if scope is not None:
        stmt = stmt.where(Obligation.person_id.in_(scope))
    if status:
        stmt = stmt.where(Obligation.status == status)
    if person:
        stmt = stmt.where(Person.external_id == person)
    if requirement:
        stmt = stmt.where(Obligation.requirement_id == requirement)
    return stmt.order_by(Obligation.due_date, Obligation.id).limit(limit).offset(offset)


def obligations_of(session: Session, *, person_id: int) -> list[Obligation]:
    """Every obligation of one person, by due date."""
    return list(
        session.scalars(
            select(Obligation)
            .where(Obligation.person_id == person_id)
            .order_by(Obligation.due_date, Obligation.id)
        )
    )


def person_rows(
    session: Session, *, external_id: str
) -> tuple[int, list[Row[*tuple[Any, ...]]]] | None:
    """A person's id and every obligation of theirs as :data:`READ_COLUMNS` rows, by due date.

    One ``SELECT`` (the person outer-joined to their rows): ``None`` when no such person, an
    empty list when they have no obligation.
    """
    found = session.execute(
        select(Person.id.label("person_id"), *READ_COLUMNS)
        .select_from(Person)
        .outerjoin(Obligation, Obligation.person_id == Person.id)
        .where(Person.external_id == external_id)
        .order_by(Obligation.due_date, Obligation.id)
    ).all()
    if not found:
        return None
    return found[0].person_id, [row for row in found if row.workflow_id is not None]


def obligation(session: Session, *, workflow_id: str) -> Obligation | None:
    """The read-model row of one workflow, if it has recorded one."""
    return session.scalar(select(Obligation).where(Obligation.workflow_id == workflow_id))
