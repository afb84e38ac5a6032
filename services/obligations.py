"""The obligation read model: the rows workflows record, filtered and scoped for a caller.

Visibility is decided by the caller (the API computes the person ids a principal may see);
these functions only apply it.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Obligation, Person


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
    stmt = select(Obligation).join(Person, Obligation.person_id == Person.id)
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
    stmt = stmt.order_by(Obligation.due_date, Obligation.id).limit(limit).offset(offset)
    return list(session.scalars(stmt).unique())


def obligations_of(session: Session, *, person_id: int) -> list[Obligation]:
    """Every obligation of one person, by due date."""
    return list(
        session.scalars(
            select(Obligation)
            .where(Obligation.person_id == person_id)
            .order_by(Obligation.due_date, Obligation.id)
        )
    )


def obligation(session: Session, *, workflow_id: str) -> Obligation | None:
    """The read-model row of one workflow, if it has recorded one."""
    return session.scalar(select(Obligation).where(Obligation.workflow_id == workflow_id))
