"""``GET /mentorship/find-mentor`` over N stored mentor profiles: the store's part of matching.

Used by ``python -m bench.matching`` (its second table). Writes N synthetic mentors (the
generator of :mod:`bench.matching`), certificates for half of them and a few hundred past
relationships with ratings into a fresh, migrated SQLite database, then times in the same run:

* ``baseline (no cache)``: what every request did before the cache: read every mentor with a
  free slot (profiles, certificates, track records), then prepare and rank them;
* ``service, cold`` / ``service, warm``: :func:`services.mentorships.find_mentor`, the cache of
  prepared profiles empty (the first request after a change) or filled (every request until
  the next profile, slot, certificate, relationship or feedback write);
* ``endpoint, cold`` / ``endpoint, warm``: the same through the HTTP API (FastAPI in process,
  httpx transport, a bearer token, JSON of the top ``limit`` with explanations).

Every ranking must equal the baseline's (``FAIL`` otherwise).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from activities import mentorship_profiles as profiles
from domain import Role
from rules.matching import Match, find_mentors
from rules.mentorship_model import MenteeProfile, MentorProfile
from services import mentorships
from store import mentorship as store
from store.db import Database
from store.migrate import upgrade
from store.models import (
    Certificate,
    MenteeProfileRow,
    MentorProfileRow,
    Mentorship,
    MentorshipFeedback,
    Person,
)
from store.tokens import Principal, create_token

MENTEE = "mentee-0"
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def populate(
    db: Database, pool: list[MentorProfile], seeker: MenteeProfile, rng: random.Random
) -> None:
    """Write the mentors, one mentee, certificates and past relationships."""
    with db.session() as session:
        people = [
            Person(external_id=m.person_id, name=f"Mentor {i}", time_zone="UTC")
            for i, m in enumerate(pool)
        ]
        mentee = Person(external_id=MENTEE, name="The Mentee", time_zone="UTC")
        others = [
            Person(external_id=f"past-{i}", name=f"Past {i}", time_zone="UTC") for i in range(300)
        ]
        session.add_all([*people, mentee, *others])
        session.flush()
        for person, profile in zip(people, pool, strict=True):
            data = profile.model_dump(mode="json")
            session.add(
                MentorProfileRow(
                    person_id=person.id,
                    profile={k: v for k, v in data.items() if k not in store.COMPUTED},
                    accepting_mentees=profile.accepting_mentees,
                    max_mentees=profile.max_mentees,
                    active_mentees=profile.active_mentees,
                    updated_at=NOW,
                )
            )
            if rng.random() < 0.5:
                session.add(
                    Certificate(
                        verification_code=f"v-{person.external_id}",
                        workflow_id=f"certification/{person.external_id}/qei",
                        person_id=person.id,
                        certification_id="qei",
                        title="QEI",
                        cycle=1,
                        issued_on=date(2025, 1, 1),
                        expires_on=date(2028, 1, 1),
                        status="active",
                        as_of=NOW,
                    )
                )
        data = seeker.model_dump(mode="json")
        session.add(
            MenteeProfileRow(
                person_id=mentee.id,
                profile={k: v for k, v in data.items() if k not in store.COMPUTED},
                updated_at=NOW,
            )
        )
        session.flush()
        for i, past in enumerate(others):
            mentor = rng.choice(people)
            row = Mentorship(
                workflow_id=f"mentorship/{past.external_id}/{mentor.external_id}/1",
                mentee_id=past.id,
                mentor_id=mentor.id,
                status=rng.choice(["completed", "completed", "cancelled"]),
                type="general",
                goals=[],
                milestones=[],
                duration_months=6,
                requested_at=NOW - timedelta(days=400 + i),
                as_of=NOW - timedelta(days=200),
            )
            session.add(row)
            session.flush()
            session.add(
                MentorshipFeedback(
                    mentorship_id=row.id,
                    author_id=past.id,
                    side="mentee",
                    phase="end",
                    rating=rng.randint(2, 5),
                )
            )


def baseline(db: Database, principal: Principal, limit: int) -> list[Match]:
    """Before the cache: read and prepare every candidate mentor on every request."""
    with db.session() as session:
        mentee = mentorships.get_profile(session, principal=principal, side="mentee", person=None)
        assert isinstance(mentee, MenteeProfile)
        policy, _ = mentorships._policy(session)
        mentors = profiles.mentor_profiles(session, with_capacity=True)
        return find_mentors(
            mentee, mentors, policy.weights, limit, ideal_gap=policy.ideal_experience_gap
        )


def service(db: Database, principal: Principal, limit: int) -> list[Match]:
    """Today's service call (the cache of prepared profiles)."""
    with db.session() as session:
        return mentorships.find_mentor(
            session, principal=principal, person=None, limit=limit
        ).matches


def timed(run: Callable[[], Any], repeat: int, *, cold: bool) -> tuple[float, Any]:
    """Median milliseconds of ``repeat`` runs (cold: the cache emptied before each)."""
    result = None
    times = []
    for _ in range(repeat):
        if cold:
            profiles.clear_cache()
        start = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def run(pool: list[MentorProfile], seeker: MenteeProfile, *, repeat: int, limit: int) -> int:
    """Print the store-side table; 0 when every ranking agrees and warm is under 200 ms."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from duly.settings import Settings

    rng = random.Random(1515)
    seeker = seeker.model_copy(update={"person_id": MENTEE})
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        db = Database(url)
        try:
            populate(db, pool, seeker, rng)
            with db.session() as session:
                token = create_token(
                    session, role=Role.LEARNER, person_external_id=MENTEE, label="bench"
                )
            with db.session() as session:
                from store.tokens import check_token

                principal = check_token(session, token)
            app = create_app(Settings(env="test"), database=db)
            rows: list[tuple[str, float]] = []
            base_ms, expected = timed(lambda: baseline(db, principal, limit), repeat, cold=True)
            rows.append(("baseline (no cache: read + prepare every request)", base_ms))
            for name, cold in (("service, cold (cache empty)", True), ("service, warm", False)):
                profiles.clear_cache()
                service(db, principal, limit)  # warm it (a cold run empties it again)
                ms, got = timed(lambda: service(db, principal, limit), repeat, cold=cold)
                if got != expected:
                    print(f"FAIL {name} ranked differently from the baseline")
                    return 1
                rows.append((name, ms))
            with TestClient(app) as client:
                headers = {"Authorization": f"Bearer {token}"}

                def call() -> list[str]:
                    response = client.get(
                        "/mentorship/find-mentor", params={"limit": limit}, headers=headers
                    )
                    assert response.status_code == 200, response.text
                    return [m["person"] for m in response.json()["matches"]]

                for name, cold in (("endpoint, cold", True), ("endpoint, warm", False)):
                    call()
                    ms, people = timed(call, repeat, cold=cold)
                    if people != [m.person_id for m in expected]:
                        print(f"FAIL {name} ranked differently from the baseline")
                        return 1
                    rows.append((name, ms))
        finally:
            db.dispose()
    width = max(len(name) for name, _ in rows)
    print()
    print(
        f"find-mentor over {len(pool):,} stored mentors (SQLite), limit {limit},"
        f" median of {repeat}:"
    )
    for name, ms in rows:
        print(f"{name.ljust(width)} | {ms:8.1f} ms | {base_ms / ms:5.1f}x baseline")
    warm = max(ms for name, ms in rows if name.endswith("warm"))
    verdict = "PASS" if warm < 200 else "MISS"
    print(
        f"{verdict}: slowest warm {warm:.1f} ms vs target 200 ms; every ranking equals the baseline"
    )
    return 0 if verdict == "PASS" else 2
