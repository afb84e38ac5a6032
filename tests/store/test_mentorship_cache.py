"""The cache of prepared mentor profiles: kept while nothing changes, prepared again after any
write that changes a candidate (by this process or another), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from activities import mentorship_profiles as profiles
from rules.matching import Prepared
from rules.mentorship_model import (
    Availability,
    CommunicationStyle,
    MenteeLevel,
    MenteeProfile,
    MentorProfile,
)
from store import mentorship as store
from store.db import Database
from store.models import Certificate, Mentorship, MentorshipFeedback, Person

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _mentor(db: Database, pid: str, *, max_mentees: int = 1, years: int = 9) -> None:
    with db.session() as session:
        who = store.person(session, pid)
        if who is None:
            who = Person(external_id=pid, name=pid)
            session.add(who)
            session.flush()
        profiles.save_mentor(
            session,
            who,
            MentorProfile(
                person_id=pid,
                years_experience=years,
                max_mentees=max_mentees,
                communication_preferences=[CommunicationStyle.VIDEO],
                availability=Availability(hours_per_month=4),
            ),
        )


def _prepared(db: Database) -> object:
    with db.session() as session:
        return profiles.prepared_mentors(session)


def _ids(db: Database) -> list[str]:
    with db.session() as session:
        return sorted(p.person_id for p in profiles.prepared_mentors(session).profiles)


def test_the_cache_is_kept_until_a_write_changes_the_mentors(db: Database) -> None:
    tag = uuid.uuid4().hex[:6]
    a, b, mentee = f"a-{tag}", f"b-{tag}", f"e-{tag}"
    _mentor(db, a)
    _mentor(db, b)
    with db.session() as session:
        session.add(Person(external_id=mentee, name=mentee))
    first = _prepared(db)
    assert _prepared(db) is first  # nothing changed: the very same prepared object
    assert {a, b} <= set(_ids(db))

    # A profile written: prepared again, with the new data.
    _mentor(db, a, years=20)
    second = _prepared(db)
    assert second is not first
    with db.session() as session:
        found = [p for p in profiles.prepared_mentors(session).profiles if p.person_id == a]
    assert found[0].years_experience == 20

    # A slot claimed leaves the mentor without a free slot: no longer a candidate.
    with db.session() as session:
        ids = {
            p.external_id: p.id
            for p in session.query(Person).filter(Person.external_id.in_([a, b, mentee]))
        }
        session.add(
            Mentorship(
                workflow_id=f"mentorship/{mentee}/{a}/1",
                mentee_id=ids[mentee],
                mentor_id=ids[a],
                status="pending",
                type="general",
                goals=[],
                milestones=[],
                duration_months=6,
                requested_at=NOW,
                as_of=NOW,
            )
        )
    with db.session() as session:
        assert store.claim_slot(session, workflow_id=f"mentorship/{mentee}/{a}/1", mentor=a) is None
    assert a not in _ids(db)
    third = _prepared(db)
    assert _prepared(db) is third
    # Given back: a candidate again.
    with db.session() as session:
        store.release_slot(session, workflow_id=f"mentorship/{mentee}/{a}/1")
    assert a in _ids(db)

    # A certificate issued to a mentor: their certifications change.
    fourth = _prepared(db)
    with db.session() as session:
        session.add(
            Certificate(
                verification_code=f"v-{tag}",
                workflow_id=f"certification/{b}/qei",
                person_id=ids[b],
                certification_id="qei",
                title="QEI",
                cycle=1,
                issued_on=date(2025, 1, 1),
                expires_on=date(2028, 1, 1),
                status="active",
                as_of=NOW,
            )
        )
    fifth = _prepared(db)
    assert fifth is not fourth
    with db.session() as session:
        held = [p for p in profiles.prepared_mentors(session).profiles if p.person_id == b]
    assert held[0].certifications == ["qei"]
    # Revoked: the status moves between counts, so the key changes even at the same as_of.
    with db.session() as session:
        row = session.query(Certificate).filter_by(verification_code=f"v-{tag}").one()
        row.status = "revoked"
    with db.session() as session:
        held = [p for p in profiles.prepared_mentors(session).profiles if p.person_id == b]
    assert held[0].certifications == []

    # A relationship ending and the mentee's feedback change the track record.
    sixth = _prepared(db)
    with db.session() as session:
        row = session.query(Mentorship).filter_by(workflow_id=f"mentorship/{mentee}/{a}/1").one()
        row.status = "completed"
        row.as_of = datetime(2026, 2, 1, tzinfo=UTC)
    seventh = _prepared(db)
    assert seventh is not sixth
    with db.session() as session:
        row = session.query(Mentorship).filter_by(workflow_id=f"mentorship/{mentee}/{a}/1").one()
        session.add(
            MentorshipFeedback(
                mentorship_id=row.id, author_id=ids[mentee], side="mentee", phase="end", rating=5
            )
        )
    with db.session() as session:
        record = [p for p in profiles.prepared_mentors(session).profiles if p.person_id == a]
    assert record[0].track_record.average_rating == 5


def test_a_write_by_another_process_is_seen(db_url: str) -> None:
    """Two engines on one database stand for two API processes: the key is read from it."""
    tag = uuid.uuid4().hex[:6]
    mine, theirs = Database(db_url), Database(db_url)
    try:
        _mentor(mine, f"a-{tag}")
        before = _prepared(mine)
        assert _prepared(mine) is before
        _mentor(theirs, f"b-{tag}")  # the other process writes a profile
        assert f"b-{tag}" in _ids(mine)
        assert _prepared(mine) is not before
    finally:
        mine.dispose()
        theirs.dispose()


def _mentee_profile(pid: str, years: int) -> MenteeProfile:
    return MenteeProfile(
        person_id=pid,
        level=MenteeLevel.APPRENTICE,
        years_experience=years,
        communication_preferences=[CommunicationStyle.VIDEO],
        availability=Availability(hours_per_month=4),
    )


def test_find_mentee_reads_prepared_mentees_kept_until_a_mentee_or_certificate_changes(
    db: Database,
) -> None:
    tag = uuid.uuid4().hex[:6]
    mentee = f"m-{tag}"
    with db.session() as session:
        who = Person(external_id=mentee, name=mentee)
        session.add(who)
        session.flush()
        profiles.save_mentee(session, who, _mentee_profile(mentee, 1))

    def prepared() -> Prepared[MenteeProfile]:
        with db.session() as session:
            return profiles.prepared_mentees(session)

    def years() -> int:
        [found] = [p for p in prepared().profiles if p.person_id == mentee]
        return found.years_experience

    first = prepared()
    assert prepared() is first and years() == 1
    with db.session() as session:
        who = store.person(session, mentee)
        assert who is not None
        profiles.save_mentee(session, who, _mentee_profile(mentee, 3))
    assert prepared() is not first and years() == 3
    second = prepared()
    with db.session() as session:
        who = store.person(session, mentee)
        assert who is not None
        session.add(
            Certificate(
                verification_code=f"w-{tag}",
                workflow_id=f"certification/{mentee}/cpr",
                person_id=who.id,
                certification_id="cpr",
                title="CPR",
                cycle=1,
                issued_on=date(2025, 1, 1),
                expires_on=date(2028, 1, 1),
                status="active",
                as_of=NOW,
            )
        )
    assert prepared() is not second
    assert prepared() is prepared()
