"""Mentorship store: profiles, the mentor's slot counter, relationships, sessions, feedback.

Profiles are stored as the API accepted them; what is computed is never stored in them:
certifications come from the certificates table, the track record from ended relationships
and the mentees' ratings, the active count from the slot counter. A slot is claimed with one
conditional ``UPDATE ... WHERE active_mentees < max_mentees`` so two acceptances racing for a
mentor's last slot cannot both win, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from domain.contracts.mentorship import MentorshipInput
from rules.matching import PastRelationship, track_record
from rules.mentorship_model import MenteeProfile, MentorProfile, TrackRecord
from store.models import (
    Certificate,
    MenteeProfileRow,
    MentorProfileRow,
    Mentorship,
    MentorshipFeedback,
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


def track_records(session: Session, mentor_ids: Iterable[int]) -> dict[int, TrackRecord]:
    """Each mentor's track record: ended relationships and the mentees' average rating."""
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
    past: dict[int, list[PastRelationship]] = defaultdict(list)
    for mentorship_id, mentor_id, status in session.execute(
        select(Mentorship.id, Mentorship.mentor_id, Mentorship.status).where(
            Mentorship.mentor_id.in_(ids)
        )
    ):
        given = ratings.get(mentorship_id)
        past[mentor_id].append(PastRelationship(status, sum(given) / len(given) if given else None))
    return {mentor_id: track_record(past[mentor_id]) for mentor_id in ids}


def _mentor(
    row: MentorProfileRow, held: Sequence[str], record: TrackRecord | None
) -> MentorProfile:
    data: dict[str, Any] = {k: v for k, v in row.profile.items() if k not in COMPUTED}
    data.update(
        person_id=row.person.external_id,
        certifications=list(held),
        accepting_mentees=row.accepting_mentees,
        max_mentees=row.max_mentees,
        active_mentees=row.active_mentees,
        track_record=record or TrackRecord(),
    )
    return MentorProfile.model_validate(data)


def _mentee(row: MenteeProfileRow, held: Sequence[str]) -> MenteeProfile:
    data: dict[str, Any] = {k: v for k, v in row.profile.items() if k not in COMPUTED}
    data.update(person_id=row.person.external_id, certifications=list(held))
    return MenteeProfile.model_validate(data)


def mentor_profiles(session: Session, *, only: str | None = None) -> list[MentorProfile]:
    """Mentor profiles with certifications and track records filled in (``only``: one person)."""
    query = select(MentorProfileRow).order_by(MentorProfileRow.id)
    if only is not None:
        query = query.join(Person, Person.id == MentorProfileRow.person_id).where(
            Person.external_id == only
        )
    rows = list(session.scalars(query))
    ids = [row.person_id for row in rows]
    held, records = certifications(session, ids), track_records(session, ids)
    return [_mentor(row, held.get(row.person_id, []), records.get(row.person_id)) for row in rows]


def mentee_profiles(session: Session, *, only: str | None = None) -> list[MenteeProfile]:
    """Mentee profiles with certifications filled in (``only``: one person)."""
    query = select(MenteeProfileRow).order_by(MenteeProfileRow.id)
    if only is not None:
        query = query.join(Person, Person.id == MenteeProfileRow.person_id).where(
            Person.external_id == only
        )
    rows = list(session.scalars(query))
    held = certifications(session, [row.person_id for row in rows])
    return [_mentee(row, held.get(row.person_id, [])) for row in rows]


def save_mentor(session: Session, who: Person, profile: MentorProfile) -> None:
    """Create or replace a mentor's profile (the slot counter is kept)."""
    row = session.scalar(select(MentorProfileRow).where(MentorProfileRow.person_id == who.id))
    data = profile.model_dump(mode="json", exclude=set(COMPUTED))
    if row is None:
        row = MentorProfileRow(person_id=who.id, active_mentees=0)
        session.add(row)
    row.profile = data
    row.accepting_mentees = profile.accepting_mentees
    row.max_mentees = profile.max_mentees
    row.updated_at = utcnow()


def save_mentee(session: Session, who: Person, profile: MenteeProfile) -> None:
    """Create or replace a mentee's profile."""
    row = session.scalar(select(MenteeProfileRow).where(MenteeProfileRow.person_id == who.id))
    if row is None:
        row = MenteeProfileRow(person_id=who.id)
        session.add(row)
    row.profile = profile.model_dump(mode="json", exclude=set(COMPUTED))
    row.updated_at = utcnow()


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
        .values(active_mentees=MentorProfileRow.active_mentees + 1)
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
        .values(active_mentees=MentorProfileRow.active_mentees - 1)
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


def newer(row: Mentorship, as_of: datetime) -> bool:
    """Whether the row already reflects a later update than ``as_of`` (keep it)."""
    return row.as_of > as_of
