"""Mentor and mentee profiles as the rules layer takes them, from the store's plain rows.

The adapter between the floors (like :mod:`activities.packs`): the store keeps JSON and counts,
the rules layer owns the profile models and the track-record maths. Shared by the activities,
the services and the demo.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from rules.matching import (
    PastRelationship,
    Prepared,
    prepare_mentees,
    prepare_mentors,
    track_record,
)
from rules.mentorship_model import MenteeProfile, MentorProfile, TrackRecord
from store import mentorship as store
from store.models import Person

P = TypeVar("P", MentorProfile, MenteeProfile)


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


@dataclass(frozen=True)
class _Cached(Generic[P]):
    key: tuple[Any, ...]
    prepared: Prepared[P]


_CACHE: dict[str, _Cached[MentorProfile]] = {}
_MENTEE_CACHE: dict[str, _Cached[MenteeProfile]] = {}
_CACHE_LOCK = threading.Lock()


def prepared_mentors(session: Session) -> Prepared[MentorProfile]:
    """The candidate mentors (accepting, a free slot), read and prepared once per change.

    Reading and preparing every mentor profile costs most of a ranking at 10,000 mentors, so the
    result is kept per database, keyed by :func:`store.mentorship.mentor_fingerprint` (read on
    every call: a profile written, a slot claimed or released, a certificate or a relationship
    recorded, feedback given, by this process or another, changes the key and the next call
    prepares again). The prepared object is read-only, so threads share it.
    """
    database = session.get_bind().engine.url.render_as_string(hide_password=True)
    key = store.mentor_fingerprint(session)
    with _CACHE_LOCK:
        cached = _CACHE.get(database)
    if cached is not None and cached.key == key:
        return cached.prepared
    prepared = prepare_mentors(mentor_profiles(session, with_capacity=True))
    with _CACHE_LOCK:
        _CACHE[database] = _Cached(key, prepared)
    return prepared


def prepared_mentees(session: Session) -> Prepared[MenteeProfile]:
    """Every mentee profile, read and prepared once per change (``find-mentee``).

    Kept per database like :func:`prepared_mentors`, keyed by
    :func:`store.mentorship.mentee_fingerprint` (a mentee profile written or a certificate
    recorded, by any process, prepares them again on the next call).
    """
    database = session.get_bind().engine.url.render_as_string(hide_password=True)
    key = store.mentee_fingerprint(session)
    with _CACHE_LOCK:
        cached = _MENTEE_CACHE.get(database)
    if cached is not None and cached.key == key:
        return cached.prepared
    prepared = prepare_mentees(mentee_profiles(session))
    with _CACHE_LOCK:
        _MENTEE_CACHE[database] = _Cached(key, prepared)
    return prepared


def clear_cache() -> None:
    """Forget every prepared list (benchmarks and tests that measure a cold start)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _MENTEE_CACHE.clear()


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
