"""The mentorship store on SQLite and PostgreSQL: profiles, computed fields, the slot counter."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from activities import mentorship_profiles as profiles
from rules.mentorship_model import (
    Availability,
    CommunicationStyle,
    MenteeLevel,
    MenteeProfile,
    MentorProfile,
)
from store import mentorship as store
from store.db import Database
from store.models import Certificate, MentorProfileRow, Mentorship, MentorshipFeedback, Person

VIDEO = [CommunicationStyle.VIDEO]
HOURS = Availability(hours_per_month=4)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _people(db: Database, *ids: str) -> dict[str, int]:
    with db.session() as session:
        rows = [Person(external_id=pid, name=pid) for pid in ids]
        session.add_all(rows)
        session.flush()
        return {row.external_id: row.id for row in rows}


def _mentor(db: Database, pid: str, max_mentees: int) -> None:
    with db.session() as session:
        who = store.person(session, pid)
        assert who is not None
        profiles.save_mentor(
            session,
            who,
            MentorProfile(
                person_id=pid,
                years_experience=9,
                max_mentees=max_mentees,
                # Typed in, but never stored: these come from records.
                certifications=["forged"],
                active_mentees=7,
                communication_preferences=VIDEO,
                availability=HOURS,
            ),
        )


def _relationship(db: Database, ids: dict[str, int], wid: str, mentee: str, mentor: str) -> None:
    with db.session() as session:
        session.add(
            Mentorship(
                workflow_id=wid,
                mentee_id=ids[mentee],
                mentor_id=ids[mentor],
                status="pending",
                type="general",
                goals=[],
                milestones=[],
                duration_months=6,
                requested_at=NOW,
                as_of=NOW,
            )
        )


def _active(db: Database, mentor_id: int) -> int:
    with db.session() as session:
        row = session.scalar(
            select(MentorProfileRow).where(MentorProfileRow.person_id == mentor_id)
        )
        assert row is not None
        return row.active_mentees


def test_profiles_take_certifications_and_track_record_from_records(db: Database) -> None:
    ids = _people(db, "m", "a")
    _mentor(db, "m", 2)
    with db.session() as session:
        who = store.person(session, "a")
        assert who is not None
        profiles.save_mentee(
            session,
            who,
            MenteeProfile(
                person_id="a",
                level=MenteeLevel.APPRENTICE,
                communication_preferences=VIDEO,
                availability=HOURS,
            ),
        )
        for title, status in (("QEI Inspector", "compliant"), ("Old Card", "revoked")):
            session.add(
                Certificate(
                    verification_code=f"C-{title[:3]}",
                    workflow_id=f"certification/m/{title[:3]}",
                    person_id=ids["m"],
                    certification_id=title[:3],
                    title=title,
                    cycle=1,
                    issued_on=date(2025, 1, 1),
                    expires_on=date(2030, 1, 1),
                    status=status,
                    as_of=NOW,
                )
            )
    for n, status in enumerate(("completed", "cancelled", "active")):
        _relationship(db, ids, f"w{n}", "a", "m")
        with db.session() as session:
            row = store.relationship(session, f"w{n}")
            assert row is not None
            row.status = status
            session.add(
                MentorshipFeedback(
                    mentorship_id=row.id,
                    author_id=ids["a"],
                    side="mentee",
                    phase="end",
                    rating=2 + n,
                )
            )
    with db.session() as session:
        (mentor,) = profiles.mentor_profiles(session, only="m")
        (mentee,) = profiles.mentee_profiles(session, only="a")
    assert mentor.certifications == ["qei inspector"]
    assert mentor.active_mentees == 0
    # The active relationship is not yet a record; the two ended ones rated 2 and 3.
    assert (mentor.track_record.mentees, mentor.track_record.completions) == (2, 1)
    assert mentor.track_record.average_rating == 2.5
    assert mentee.certifications == []


def test_a_slot_is_claimed_once_per_relationship_and_given_back_once(db: Database) -> None:
    ids = _people(db, "m", "a", "b")
    _mentor(db, "m", 1)
    _relationship(db, ids, "wa", "a", "m")
    _relationship(db, ids, "wb", "b", "m")
    with db.session() as session:
        assert store.claim_slot(session, workflow_id="wa", mentor="m") is None
    with db.session() as session:  # a retried activity
        assert store.claim_slot(session, workflow_id="wa", mentor="m") is None
    assert _active(db, ids["m"]) == 1
    with db.session() as session:
        reason = store.claim_slot(session, workflow_id="wb", mentor="m")
    assert reason == "the mentor has no free slot (1 of 1 taken)"
    for _ in range(2):
        with db.session() as session:
            store.release_slot(session, workflow_id="wa")
    assert _active(db, ids["m"]) == 0
    with db.session() as session:
        assert store.claim_slot(session, workflow_id="wb", mentor="m") is None
    with pytest.raises(LookupError, match="not recorded yet"), db.session() as session:
        store.claim_slot(session, workflow_id="nope", mentor="m")


def test_concurrent_claims_for_the_last_slot_give_exactly_one(db: Database) -> None:
    """Eight relationships race for one slot, each in its own thread and transaction."""
    mentees = [f"a{i}" for i in range(8)]
    ids = _people(db, "m", *mentees)
    _mentor(db, "m", 1)
    for pid in mentees:
        _relationship(db, ids, f"w-{pid}", pid, "m")
    barrier = threading.Barrier(len(mentees))
    outcomes: list[str | None] = []
    lock = threading.Lock()

    def claim(pid: str) -> None:
        barrier.wait()
        for _ in range(200):  # SQLite answers "database is locked" to a writer that waited
            try:
                with db.session() as session:
                    reason = store.claim_slot(session, workflow_id=f"w-{pid}", mentor="m")
            except Exception as exc:  # only SQLite's lock error is retried
                if "locked" not in str(exc):
                    raise
                time.sleep(0.02)
                continue
            with lock:
                outcomes.append(reason)
            return
        raise AssertionError(f"{pid}: the database stayed locked")

    threads = [threading.Thread(target=claim, args=(pid,)) for pid in mentees]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(None) == 1, outcomes
    assert _active(db, ids["m"]) == 1
    with db.session() as session:
        holding = session.scalars(select(Mentorship.workflow_id).where(Mentorship.holds_slot))
        assert len(list(holding)) == 1
