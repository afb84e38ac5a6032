"""Mentorship store: profiles, the mentor's slot counter, relationships, sessions, feedback.

Profiles are stored as plain JSON of the fields the API accepted; what is computed is never
stored in them: certifications come from the certificates table, the track record from ended
relationships and the mentees' ratings, the active count from the slot counter (the profile
models and the track-record maths are the rules layer's: ``activities.mentorship_profiles``
puts them together). A slot is claimed with one
conditional ``UPDATE ... WHERE active_mentees < max_mentees`` so two acceptances racing for a
mentor's last slot cannot both win, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from domain.contracts.mentorship import MentorshipInput
from store.models import (
    Certificate,
    MenteeProfileRow,
    MentorProfileRow,
    Mentorship,
    MentorshipFeedback,
    MentorshipFulfilment,
    Obligation,
    Person,
)
from store.types import utcnow

#: Certificate statuses that no longer count as holding the certification.
LAPSED = frozenset({"expired", "lapsed", "revoked", "suspended", "superseded"})
#: Profile fields the store computes (never taken from a request).
COMPUTED = frozenset({"person_id", "certifications", "active_mentees", "track_record"})


def person(session: Session, external_id: str) -> Person | None:
    """The directory entry of ``external_id``."""
    return session.scalar(select(Person).where(Person.external_id == external_id))


def certifications(session: Session, person_ids: Iterable[int]) -> dict[int, list[str]]:
    """Held certifications' titles per person id, from Duly's certificate records."""
    ids = list(person_ids)
    held: dict[int, list[str]] = defaultdict(list)
    if not ids:
        return held
    rows = session.execute(
        select(Certificate.person_id, Certificate.title, Certificate.status).where(
            Certificate.person_id.in_(ids)
        )
    )
    for person_id, title, status in rows:
        if status not in LAPSED and title.lower() not in held[person_id]:
            held[person_id].append(title.lower())
    return held


def past_relationships(
    session: Session, mentor_ids: Iterable[int]
) -> dict[int, list[tuple[str, float | None]]]:
    """Each mentor's relationships as (status, the mentee's average rating or None)."""
    ids = list(mentor_ids)
    if not ids:
        return {}
    ratings: dict[int, list[int]] = defaultdict(list)
    for mentorship_id, rating in session.execute(
        select(MentorshipFeedback.mentorship_id, MentorshipFeedback.rating)
        .join(Mentorship, Mentorship.id == MentorshipFeedback.mentorship_id)
        .where(Mentorship.mentor_id.in_(ids), MentorshipFeedback.side == "mentee")
    ):
        ratings[mentorship_id].append(rating)
    past: dict[int, list[tuple[str, float | None]]] = {mentor_id: [] for mentor_id in ids}
    for mentorship_id, mentor_id, status in session.execute(
        select(Mentorship.id, Mentorship.mentor_id, Mentorship.status).where(
            Mentorship.mentor_id.in_(ids)
        )
    ):
        given = ratings.get(mentorship_id)
        past[mentor_id].append((status, sum(given) / len(given) if given else None))
    return past


class StoredProfile(NamedTuple):
    """A profile as stored: plain columns, no ORM object (ranking reads thousands at once).

    Attributes:
        person_id: The person's row id.
        external_id: The person's id in the directory.
        profile: The profile's fields as JSON.
        accepting_mentees: Mentors only (mentees: True).
        max_mentees: Mentors only (mentees: 0).
        active_mentees: Mentors only (mentees: 0).
    """

    person_id: int
    external_id: str
    profile: dict[str, Any]
    accepting_mentees: bool = True
    max_mentees: int = 0
    active_mentees: int = 0


def mentor_rows(
    session: Session, *, only: str | None = None, with_capacity: bool = False
) -> list[StoredProfile]:
    """Mentor profiles as stored, in creation order.

    Args:
        session: The session.
        only: One person's.
        with_capacity: Only mentors accepting mentees with a free slot (the only candidates
            matching considers), filtered in SQL so the others are never read.
    """
    query = (
        select(
            MentorProfileRow.person_id,
            Person.external_id,
            MentorProfileRow.profile,
            MentorProfileRow.accepting_mentees,
            MentorProfileRow.max_mentees,
            MentorProfileRow.active_mentees,
        )
        .join(Person, Person.id == MentorProfileRow.person_id)
        .order_by(MentorProfileRow.id)
    )
    if only is not None:
        query = query.where(Person.external_id == only)
    if with_capacity:
        query = query.where(
            MentorProfileRow.accepting_mentees.is_(True),
            MentorProfileRow.active_mentees < MentorProfileRow.max_mentees,
        )
    return [StoredProfile(*row) for row in session.execute(query)]


def mentor_fingerprint(session: Session) -> tuple[Any, ...]:
    """What the prepared mentor profiles are computed from, in a few cheap aggregates.

    Changes whenever a mentor's profile is written or a slot is claimed or given back (the
    sum of ``mentor_profiles.version``: every such write adds one), a certificate is added or
    changes status (count per status, latest ``as_of``), a relationship is recorded or changes
    status (count per status, latest ``as_of``) or feedback is given (count, latest id). Read
    from the database, so a write by any process changes it; no clock is compared.
    """
    profiles = session.execute(
        select(
            func.count(MentorProfileRow.id),
            func.coalesce(func.sum(MentorProfileRow.version), 0),
            func.max(MentorProfileRow.id),
        )
    ).one()
    certificates = session.execute(
        select(Certificate.status, func.count(Certificate.id), func.max(Certificate.as_of))
        .group_by(Certificate.status)
        .order_by(Certificate.status)
    ).all()
    relationships = session.execute(
        select(Mentorship.status, func.count(Mentorship.id), func.max(Mentorship.as_of))
        .group_by(Mentorship.status)
        .order_by(Mentorship.status)
    ).all()
    feedback = session.execute(
        select(func.count(MentorshipFeedback.id), func.max(MentorshipFeedback.id))
    ).one()
    return (
        tuple(profiles),
        tuple(tuple(row) for row in certificates),
        tuple(tuple(row) for row in relationships),
        tuple(feedback),
    )


def mentee_rows(session: Session, *, only: str | None = None) -> list[StoredProfile]:
    """Mentee profiles as stored, in creation order (``only``: one person's)."""
    query = (
        select(MenteeProfileRow.person_id, Person.external_id, MenteeProfileRow.profile)
        .join(Person, Person.id == MenteeProfileRow.person_id)
        .order_by(MenteeProfileRow.id)
    )
    if only is not None:
        query = query.where(Person.external_id == only)
    return [StoredProfile(*row) for row in session.execute(query)]


def save_mentor(
    session: Session, who: Person, data: dict[str, Any], *, accepting: bool, max_mentees: int
) -> None:
    """Create or replace a mentor's profile (JSON of its fields; the slot counter is kept)."""
    row = session.scalar(select(MentorProfileRow).where(MentorProfileRow.person_id == who.id))
    if row is None:
        row = MentorProfileRow(person_id=who.id, active_mentees=0)
        session.add(row)
    row.profile = {k: v for k, v in data.items() if k not in COMPUTED}
    row.accepting_mentees = accepting
    row.max_mentees = max_mentees
    row.updated_at = utcnow()
    row.version = (row.version or 0) + 1


def save_mentee(session: Session, who: Person, data: dict[str, Any]) -> None:
    """Create or replace a mentee's profile (JSON of its fields)."""
    row = session.scalar(select(MenteeProfileRow).where(MenteeProfileRow.person_id == who.id))
    if row is None:
        row = MenteeProfileRow(person_id=who.id)
        session.add(row)
    row.profile = {k: v for k, v in data.items() if k not in COMPUTED}
    row.updated_at = utcnow()
    row.version = (row.version or 0) + 1


def mentee_fingerprint(session: Session) -> tuple[Any, ...]:
    """What the prepared mentee profiles are computed from, in a few cheap aggregates.

    Changes whenever a mentee's profile is written (the sum of ``mentee_profiles.version``,
    one more at every write, with the count and the latest id) or a certificate is added or
    changes status (a mentee's certifications are read from them). Read from the database,
    so a write by any process changes it; no clock is compared.
    """
    profiles = session.execute(
        select(
            func.count(MenteeProfileRow.id),
            func.coalesce(func.sum(MenteeProfileRow.version), 0),
            func.max(MenteeProfileRow.id),
        )
    ).one()
    certificates = session.execute(
        select(Certificate.status, func.count(Certificate.id), func.max(Certificate.as_of))
        .group_by(Certificate.status)
        .order_by(Certificate.status)
    ).all()
    return (tuple(profiles), tuple(tuple(row) for row in certificates))


def claim_slot(session: Session, *, workflow_id: str, mentor: str) -> str | None:
    """Take one of the mentor's slots for a relationship, atomically and idempotently.

    Returns:
        None when the relationship holds a slot (now or already), else why not.

    Raises:
        LookupError: The relationship's row is not written yet (retry).
    """
    relationship = session.scalar(select(Mentorship).where(Mentorship.workflow_id == workflow_id))
    if relationship is None:
        # The slot is recorded on the relationship's row, so it must exist first.
        raise LookupError(f"mentorship {workflow_id!r} is not recorded yet; retry")
    if relationship.holds_slot:
        return None  # a retried activity: the slot is already ours
    who = person(session, mentor)
    if who is None:
        return f"mentor {mentor!r} is not in the directory"
    result = session.execute(
        update(MentorProfileRow)
        .where(
            MentorProfileRow.person_id == who.id,
            MentorProfileRow.accepting_mentees.is_(True),
            MentorProfileRow.active_mentees < MentorProfileRow.max_mentees,
        )
        .values(
            active_mentees=MentorProfileRow.active_mentees + 1,
            version=MentorProfileRow.version + 1,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        row = session.scalar(select(MentorProfileRow).where(MentorProfileRow.person_id == who.id))
        if row is None:
            return "the mentor has no mentor profile"
        if not row.accepting_mentees:
            return "the mentor is not accepting mentees now"
        return f"the mentor has no free slot ({row.active_mentees} of {row.max_mentees} taken)"
    relationship.holds_slot = True
    return None


def release_slot(session: Session, *, workflow_id: str) -> None:
    """Give the relationship's slot back (idempotent: only a held slot is released)."""
    relationship = session.scalar(select(Mentorship).where(Mentorship.workflow_id == workflow_id))
    if relationship is None or not relationship.holds_slot:
        return
    relationship.holds_slot = False
    session.execute(
        update(MentorProfileRow)
        .where(
            MentorProfileRow.person_id == relationship.mentor_id,
            MentorProfileRow.active_mentees > 0,
        )
        .values(
            active_mentees=MentorProfileRow.active_mentees - 1,
            version=MentorProfileRow.version + 1,
        )
        .execution_options(synchronize_session=False)
    )


def relationship(session: Session, workflow_id: str) -> Mentorship | None:
    """A relationship's read model by its workflow id."""
    return session.scalar(select(Mentorship).where(Mentorship.workflow_id == workflow_id))


def count_between(session: Session, mentee_id: int, mentor_id: int) -> int:
    """How many relationships (any status) a mentee and a mentor have had."""
    return len(
        list(
            session.scalars(
                select(Mentorship.id).where(
                    Mentorship.mentee_id == mentee_id, Mentorship.mentor_id == mentor_id
                )
            )
        )
    )


#: The ``as_of`` of a placeholder row: older than any write of the workflow.
PLACEHOLDER_AS_OF = datetime(2000, 1, 1, tzinfo=UTC)
#: Statuses of a relationship that is still open.
OPEN = ("pending", "active")


def open_between(session: Session, mentee_id: int, mentor_id: int) -> Mentorship | None:
    """A pending or active relationship between the two, if any."""
    return session.scalar(
        select(Mentorship).where(
            Mentorship.mentee_id == mentee_id,
            Mentorship.mentor_id == mentor_id,
            Mentorship.status.in_(OPEN),
        )
    )


def placeholder(
    session: Session, workflow_id: str, *, mentee: str, mentor: str, inp: MentorshipInput
) -> None:
    """Write a pending row for a request whose workflow is about to start.

    Its ``as_of`` is older than any write of the workflow, so the workflow's first write wins.
    """
    mentee_row, mentor_row = person(session, mentee), person(session, mentor)
    assert mentee_row is not None and mentor_row is not None
    now = utcnow()
    session.add(
        Mentorship(
            workflow_id=workflow_id,
            mentee_id=mentee_row.id,
            mentor_id=mentor_row.id,
            status="pending",
            type=inp.type.value,
            goals=list(inp.goals),
            milestones=list(inp.milestones),
            duration_months=inp.duration_months,
            requested_at=now,
            as_of=PLACEHOLDER_AS_OF,
        )
    )


def drop_placeholder(session: Session, workflow_id: str) -> None:
    """Remove a placeholder whose workflow did not start (a workflow's row is kept)."""
    row = relationship(session, workflow_id)
    if row is not None and row.as_of == PLACEHOLDER_AS_OF:
        session.delete(row)


def open_obligations(session: Session, person_id: int, kind: str) -> list[str]:
    """Workflow ids of a person's obligations of ``kind`` that are not completed or cancelled."""
    return list(
        session.scalars(
            select(Obligation.workflow_id).where(
                Obligation.person_id == person_id,
                Obligation.kind == kind,
                Obligation.status.not_in(("completed", "cancelled", "not_applicable")),
            )
        )
    )


def newer(row: Mentorship, as_of: datetime) -> bool:
    """Whether the row already reflects a later update than ``as_of`` (keep it)."""
    return row.as_of > as_of


class OpenObligation(NamedTuple):
    """An open ``kind: mentorship`` obligation: what fulfilling or re-opening it needs."""

    workflow_id: str
    requirement_id: str
    requirement_title: str
    pack_hash: str
    cycle: int


def open_obligation_rows(session: Session, person_id: int, kind: str) -> list[OpenObligation]:
    """A person's obligations of ``kind`` not completed (no completion recorded) or cancelled."""
    return [
        OpenObligation(*row)
        for row in session.execute(
            select(
                Obligation.workflow_id,
                Obligation.requirement_id,
                Obligation.requirement_title,
                Obligation.pack_hash,
                Obligation.cycle,
            ).where(
                Obligation.person_id == person_id,
                Obligation.kind == kind,
                # Under a pack a completed obligation's status is the pack's (``compliant``).
                Obligation.completed_at.is_(None),
                Obligation.status.not_in(("completed", "cancelled")),
            )
        )
    ]


def record_fulfilment(
    session: Session, *, mentorship_id: int, obligation: str, requirement_id: str, at: datetime
) -> None:
    """Remember that a relationship completed an obligation (idempotent)."""
    exists = session.scalar(
        select(MentorshipFulfilment.id).where(
            MentorshipFulfilment.mentorship_id == mentorship_id,
            MentorshipFulfilment.obligation_workflow_id == obligation,
        )
    )
    if exists is None:
        session.add(
            MentorshipFulfilment(
                mentorship_id=mentorship_id,
                obligation_workflow_id=obligation,
                requirement_id=requirement_id,
                fulfilled_at=at,
            )
        )


class Fulfilled(NamedTuple):
    """An obligation a relationship completed and that is not re-opened yet."""

    id: int
    obligation_workflow_id: str
    requirement_id: str
    cycle: int
    pack_hash: str
    due_date: Any


def fulfilled_by(session: Session, mentorship_id: int) -> list[Fulfilled]:
    """The obligations a relationship completed that were not re-opened."""
    rows = session.execute(
        select(
            MentorshipFulfilment.id,
            MentorshipFulfilment.obligation_workflow_id,
            MentorshipFulfilment.requirement_id,
            Obligation.cycle,
            Obligation.pack_hash,
            Obligation.due_date,
        )
        .join(Obligation, Obligation.workflow_id == MentorshipFulfilment.obligation_workflow_id)
        .where(
            MentorshipFulfilment.mentorship_id == mentorship_id,
            MentorshipFulfilment.reopened_as.is_(None),
        )
        .order_by(MentorshipFulfilment.id)
    )
    return [Fulfilled(*row) for row in rows]


def mark_reopened(
    session: Session, fulfilment_id: int, *, reopened_as: str, reason: str, at: datetime
) -> None:
    """Write which obligation re-opened a requirement, when and why."""
    row = session.get(MentorshipFulfilment, fulfilment_id)
    if row is not None and row.reopened_as is None:
        row.reopened_as = reopened_as
        row.reopened_reason = reason[:500]
        row.reopened_at = at


def fulfilments(session: Session, mentorship_id: int) -> list[MentorshipFulfilment]:
    """Every requirement a relationship completed (and re-opened), oldest first."""
    return list(
        session.scalars(
            select(MentorshipFulfilment)
            .where(MentorshipFulfilment.mentorship_id == mentorship_id)
            .order_by(MentorshipFulfilment.id)
        )
    )


def next_cycle(session: Session, person_id: int, requirement_id: str) -> int:
    """The cycle after the person's latest obligation of a requirement."""
    latest = session.scalar(
        select(func.max(Obligation.cycle)).where(
            Obligation.person_id == person_id, Obligation.requirement_id == requirement_id
        )
    )
    return int(latest or 0) + 1
