"""The notification ledger, read: what Duly sent or queued, scoped for a caller."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Notification, Person


def list_notifications(
    session: Session,
    *,
    scope: Collection[int] | None,
    status: str | None = None,
    workflow_id: str | None = None,
    person: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[tuple[Notification, str | None]]:
    """Ledger rows newest first, each with its person's external id (None for none).

    Args:
        session: The store.
        scope: The person ids the caller may see; ``None`` for everyone.
        status: ``pending``, ``sent``, ``delivered``, ...
        workflow_id: One obligation's messages.
        person: A person's external id.
        limit: At most this many rows.
        offset: Skip this many rows first.
    """
    stmt = select(Notification, Person.external_id).outerjoin(
        Person, Notification.person_id == Person.id
    )
    if scope is not None:
        stmt = stmt.where(Notification.person_id.in_(scope))
    if status:
        stmt = stmt.where(Notification.status == status)
    if workflow_id:
        stmt = stmt.where(Notification.workflow_id == workflow_id)
    if person:
        stmt = stmt.where(Person.external_id == person)
    stmt = stmt.order_by(Notification.id.desc()).limit(limit).offset(offset)
    return [(n, external_id) for n, external_id in session.execute(stmt)]
