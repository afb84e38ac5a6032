"""Queries on the obligations read model shared by the API and the activities."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Obligation, Person

#: Statuses of obligations whose workflow has stopped acting (nothing left to re-plan).
_FINISHED = ("cancelled", "not_applicable", "revoked", "superseded")


@dataclass(frozen=True)
class ReplanTarget:
    """An open obligation planned in another zone than its person's current one."""

    workflow_id: str
    planned_in: str
    time_zone: str


def moved_zone_targets(
    session: Session, *, person_ids: Collection[int] | None = None
) -> list[ReplanTarget]:
    """Open obligations whose stages were planned in a zone the person has since left.

    The read model records the zone each workflow planned in (``Obligation.time_zone``); a
    directory change of ``Person.time_zone`` makes them differ until the workflow re-plans and
    records the new zone, so asking again after a missed signal finds the same rows.
    Obligations planned with a fixed offset (started before zone-aware planning) have no zone
    and are not listed.

    Args:
        session: An open session.
        person_ids: Only these people (None: everyone).
    """
    query = (
        select(Obligation.workflow_id, Obligation.time_zone, Person.time_zone)
        .join(Person, Person.id == Obligation.person_id)
        .where(Obligation.completed_at.is_(None))
        .where(Obligation.status.notin_(_FINISHED))
        .where(Obligation.time_zone.is_not(None))
        .where(Obligation.time_zone != Person.time_zone)
        .order_by(Obligation.workflow_id)
    )
    if person_ids is not None:
        query = query.where(Obligation.person_id.in_(list(person_ids)))
    return [
        ReplanTarget(workflow_id=wid, planned_in=planned or "", time_zone=zone)
        for wid, planned, zone in session.execute(query)
    ]


def acknowledgement_recorded(session: Session, workflow_id: str) -> bool:
    """The obligation's workflow already recorded an acknowledgement (or a completion).

    A workflow keeps only the first acknowledgement, but every ``acknowledge`` signal is an
    event in its history whatever the handler does, and Temporal ends a workflow whose history
    passes 51,200 events: senders ask this first and signal only an obligation that still
    needs it. The read model follows the current cycle (a certification's new cycle starts
    unacknowledged).

    Args:
        session: An open session.
        workflow_id: The obligation's workflow id.
    """
    row = session.execute(
        select(Obligation.acknowledged_at, Obligation.completed_at).where(
            Obligation.workflow_id == workflow_id
        )
    ).first()
    return row is not None and (row.acknowledged_at is not None or row.completed_at is not None)


def start_recorded(session: Session, workflow_id: str) -> bool:
    """The obligation's workflow already recorded that the learner began (or it completed).

    The workflow keeps only the first start; like :func:`acknowledgement_recorded` this lets
    senders skip a signal that would only grow the workflow's history.

    Args:
        session: An open session.
        workflow_id: The obligation's workflow id.
    """
    row = session.execute(
        select(Obligation.started_at, Obligation.completed_at).where(
            Obligation.workflow_id == workflow_id
        )
    ).first()
    return row is not None and (row.started_at is not None or row.completed_at is not None)
