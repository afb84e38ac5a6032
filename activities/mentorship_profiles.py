"""Mentor and mentee profiles as the rules layer takes them, from the store's plain rows.

The adapter between the floors (like :mod:`activities.packs`): the store keeps JSON and counts,
the rules layer owns the profile models and the track-record maths. Shared by the activities,
the services and the demo.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from rules.matching import PastRelationship, track_record
from rules.mentorship_model import MenteeProfile, MentorProfile, TrackRecord
from store import mentorship as store
from store.models import Person


def _mentor(row: store.StoredProfile, held: list[str], record: TrackRecord) -> MentorProfile:
    data: dict[str, Any] = {k: v for k, v in row.profile.items() if k not in store.COMPUTED}
    data.update(
        person_id=row.external_id,
        certifications=held,
        accepting_mentees=row.accepting_mentees,
        max_mentees=row.max_mentees,
        active_mentees=row.active_mentees,
        track_record=record,
    )
    return MentorProfile.model_validate(data)


def _mentee(row: store.StoredProfile, held: list[str]) -> MenteeProfile:
    data: dict[str, Any] = {k: v for k, v in row.profile.items() if k not in store.COMPUTED}
    data.update(person_id=row.external_id, certifications=held)
    return MenteeProfile.model_validate(data)


def mentor_profiles(
    session: Session, *, only: str | None = None, with_capacity: bool = False
) -> list[MentorProfile]:
    """Mentor profiles with certifications and track records filled in.

    Args:
        session: The session.
        only: One person's.
        with_capacity: Only those matching can suggest (accepting, a free slot).
    """
    rows = store.mentor_rows(session, only=only, with_capacity=with_capacity)
    ids = [row.person_id for row in rows]
    held = store.certifications(session, ids)
    past = store.past_relationships(session, ids)
    return [
        _mentor(
            row,
            held.get(row.person_id, []),
            track_record(PastRelationship(s, r) for s, r in past.get(row.person_id, [])),
        )
        for row in rows
    ]


def mentee_profiles(session: Session, *, only: str | None = None) -> list[MenteeProfile]:
    """Mentee profiles with certifications filled in (``only``: one person)."""
    rows = store.mentee_rows(session, only=only)
    held = store.certifications(session, [row.person_id for row in rows])
    return [_mentee(row, held.get(row.person_id, [])) for row in rows]


def save_mentor(session: Session, who: Person, profile: MentorProfile) -> None:
    """Create or replace a mentor's profile (computed fields are not stored)."""
    store.save_mentor(
        session,
        who,
        profile.model_dump(mode="json"),
        accepting=profile.accepting_mentees,
        max_mentees=profile.max_mentees,
    )


def save_mentee(session: Session, who: Person, profile: MenteeProfile) -> None:
    """Create or replace a mentee's profile (computed fields are not stored)."""
    store.save_mentee(session, who, profile.model_dump(mode="json"))
