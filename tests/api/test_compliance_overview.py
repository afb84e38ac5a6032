"""The organisation page's one-pass numbers equal the per-dimension answers they replaced.

``services.compliance.overview`` reads the obligations once for the headline and the
department, location and team tables; ``summary`` and ``breakdown`` (what ``/compliance/*``
answers) read them once per table. On a seeded organisation with every kind of status (closed,
compliant, overdue, expired, a pack's own), people without a department, a location or a
manager, people with only closed obligations and people with none, both must say the same,
for everyone and for narrower audiences, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import insert

from services import compliance
from services.errors import Invalid
from store.db import Database
from store.models import Obligation, Person

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
#: Every bucket: compliant, overdue (and expired), closed, in progress, and a pack's own status.
STATUSES = [
    "completed",
    "compliant",
    "exempt",
    "assigned",
    "due_soon",
    "renewal_due",
    "overdue",
    "non_compliant",
    "expired",
    "lapsed",
    "failed",
    "revoked",
    "cancelled",
    "superseded",
    "awaiting_evidence",
]
DEPARTMENTS = ["ICU", "Radiology", "Pharmacy", None]
LOCATIONS = ["Boston", "Denver", None]


def _seed(db: Database, people: int = 120, seed: int = 22) -> None:
    rng = random.Random(seed)
    person_rows = []
    for pid in range(1, people + 1):
        # 1 is the top; 2..9 report to 1; everyone else to one of 2..9 (or nobody, now and then).
        if pid == 1:
            manager = None
        elif pid < 10:
            manager = 1
        else:
            manager = None if pid % 17 == 0 else rng.randint(2, 9)
        person_rows.append(
            {
                "id": pid,
                "external_id": f"o-{pid:04d}",
                "name": f"Person {pid:04d}",
                "roles": [],
                "department": rng.choice(DEPARTMENTS),
                "location": rng.choice(LOCATIONS),
                "time_zone": "UTC",
                "manager_id": manager,
                "employment_status": "active",
                "created_at": NOW,
                "updated_at": NOW,
            }
        )
    obligations = []
    for person in person_rows:
        pid = int(str(person["id"]))
        if pid % 11 == 0:
            continue  # nobody to count
        only_closed = pid % 13 == 0
        for r in range(rng.randint(1, 8)):
            kind = rng.choice(["training", "certification", "mentorship"])
            status = rng.choice(["cancelled", "superseded"] if only_closed else STATUSES)
            due = TODAY + timedelta(days=rng.randint(-60, 60))
            obligations.append(
                {
                    "workflow_id": f"{kind}/{person['external_id']}/r{r}/1",
                    "person_id": pid,
                    "kind": kind,
                    "requirement_id": f"r{r}",
                    "requirement_title": f"Requirement {r}",
                    "cycle": 1,
                    "due_date": due if rng.random() > 0.1 else None,
                    "expiry_date": due if kind == "certification" else None,
                    "status": status,
                    "pack_hash": "test",
                    "exempt": status == "exempt",
                    "ce_credits_short": 0,
                    "suspended": False,
                    "version": 1,
                    "as_of": NOW,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
            )
    with db.session() as session:
        session.execute(insert(Person.__table__), person_rows)
        session.execute(insert(Obligation.__table__), obligations)


def _audiences(db: Database) -> list[compliance.Audience]:
    with db.session() as session:
        return [
            compliance.audience(session, visible=None, scope="org", viewer_id=None),
            # An HR token limited to some people (row-level scope) sees only them.
            compliance.audience(
                session, visible=set(range(1, 120, 3)), scope="org", viewer_id=None
            ),
            compliance.audience(
                session, visible=None, scope="team", viewer_id=None, manager="o-0002"
            ),
            compliance.audience(
                session, visible=None, scope="department", viewer_id=None, department="ICU"
            ),
        ]


@pytest.mark.parametrize("today", [TODAY, date(2026, 5, 1)])
def test_one_pass_equals_summary_and_each_breakdown(db: Database, today: date) -> None:
    _seed(db)
    for audience in _audiences(db):
        with db.session() as session:
            one_pass = compliance.overview(session, audience=audience, today=today)
            assert one_pass.summary == compliance.summary(
                session, audience=audience, today=today
            ), audience.label
            for by in compliance.PERSON_BREAKDOWNS:
                separate = compliance.breakdown(session, audience=audience, by=by, today=today)
                assert one_pass.breakdowns[by] == separate, (audience.label, by)


def test_the_seeded_organisation_exercises_every_case(db: Database) -> None:
    """The comparison above is only as good as the data: every case is present in it."""
    _seed(db)
    with db.session() as session:
        everyone = compliance.audience(session, visible=None, scope="org", viewer_id=None)
        result = compliance.overview(session, audience=everyone, today=TODAY)
    headline = result.summary
    assert headline.completed and headline.overdue and headline.in_progress and headline.due_30
    assert headline.cert_expired and headline.cert_expiring_30
    # People with only closed obligations (every 13th) and with none (every 11th) are not
    # counted: fewer people than the 120 seeded.
    assert 0 < headline.people < 120 - 120 // 11 - 120 // 13 + 1
    departments = {row.key for row in result.breakdowns["department"]}
    assert departments == {"ICU", "Radiology", "Pharmacy", None}
    teams = {row.label for row in result.breakdowns["team"]}
    assert "(no manager)" in teams and "Person 0002" in teams
    locations = {row.label for row in result.breakdowns["location"]}
    assert "(none)" in locations
    # The tables add up to the headline.
    for by in compliance.PERSON_BREAKDOWNS:
        rows = result.breakdowns[by]
        assert sum(r.total for r in rows) == headline.total, by
        assert sum(r.completed for r in rows) == headline.completed, by
        assert sum(r.overdue for r in rows) == headline.overdue, by
        assert sum(r.due_30 for r in rows) == headline.due_30, by


def test_only_attributes_of_people(db: Database) -> None:
    with db.session() as session:
        everyone = compliance.audience(session, visible=None, scope="org", viewer_id=None)
        with pytest.raises(Invalid, match="requirement"):
            compliance.overview(session, audience=everyone, today=TODAY, by=("requirement",))
        result = compliance.overview(session, audience=everyone, today=TODAY, by=("location",))
    assert list(result.breakdowns) == ["location"]
    assert result.summary.total == 0 and result.summary.rate is None
