"""Compliance dashboards through the API: numbers, scoping, breakdowns, CSV, trend, as-of."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from domain.roles import Role
from duly.demo import load_demo_people
from duly.settings import Settings
from store.db import Database
from store.decisions import record_decision
from store.models import Obligation, Person
from tests.conftest import bearer
from tests.fakes.temporal import FakeTemporal

#: The API's clock in these tests: every count is relative to this instant, not the wall clock.
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
HOSTILE_NAME = '=HYPERLINK("http://x.invalid","click")'

#: (person, requirement, kind, status, due or expiry date offset from TODAY in days)
ROWS = [
    ("p-1020", "hipaa", "training", "completed", -10),
    ("p-1020", "bls", "certification", "compliant", 16),  # expiring within 30 days
    ("p-1021", "hipaa", "training", "overdue", -14),
    ("p-1022", "hipaa", "training", "assigned", 25),  # due within 30 days
    ("p-1022", "fire", "training", "due_soon", 5),  # due within 30 days
    ("p-1025", "hipaa", "training", "cancelled", 10),  # not counted
    ("p-1025", "bls", "certification", "non_compliant", -45),  # expired
    ("p-1030", "hipaa", "training", "exempt", 40),
]


async def fixed_clock() -> datetime:
    return NOW


def _seed(db: Database) -> None:
    with db.session() as session:
        assert load_demo_people(session).errors == []
    with db.session() as session:
        ids = {p.external_id: p.id for p in session.scalars(select(Person))}
        for person, requirement, kind, status, days in ROWS:
            day = TODAY + timedelta(days=days)
            session.add(
                Obligation(
                    workflow_id=f"{kind}/{person}/{requirement}/1",
                    person_id=ids[person],
                    kind=kind,
                    requirement_id=requirement,
                    requirement_title=requirement.upper(),
                    due_date=day,
                    expiry_date=day if kind == "certification" else None,
                    status=status,
                    pack_hash="builtin",
                    as_of=NOW,
                )
            )
        hostile = session.get(Person, ids["p-1021"])
        assert hostile is not None
        hostile.name = HOSTILE_NAME
        # p-1021's HIPAA as it was decided over time (what the as-of answers read).
        for at, status, rule in (
            (datetime(2026, 3, 1, 9, tzinfo=UTC), "assigned", "assigned"),
            (datetime(2026, 5, 20, 9, tzinfo=UTC), "due_soon", "due_within_30_days"),
            (datetime(2026, 6, 2, 4, tzinfo=UTC), "overdue", "past_due_not_completed"),
        ):
            record_decision(
                session,
                workflow_id="training/p-1021/hipaa/1",
                person_id=ids["p-1021"],
                kind="training",
                requirement_id="hipaa",
                status=status,
                rule=rule,
                pack_hash="pack-v1",
                facts={"days_to_due": (date(2026, 6, 1) - at.date()).days},
                decided_at=at,
                source="rules",
                trigger="stage: -7d",
            )
        # p-1020's HIPAA: completed in April.
        for at, status in (
            (datetime(2026, 2, 1, tzinfo=UTC), "assigned"),
            (datetime(2026, 4, 10, tzinfo=UTC), "completed"),
        ):
            record_decision(
                session,
                workflow_id="training/p-1020/hipaa/1",
                person_id=ids["p-1020"],
                kind="training",
                requirement_id="hipaa",
                status=status,
                rule=status,
                pack_hash="builtin",
                facts={"completed": status == "completed"},
                decided_at=at,
                source="workflow",
            )


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    _seed(db)
    settings = Settings(env="test", temporal_address="127.0.0.1:1", rate_limit_per_token="off")
    app = create_app(
        settings,
        database=db,
        temporal_client=FakeTemporal(),  # type: ignore[arg-type]
        clock=fixed_clock,
    )
    with TestClient(app) as test_client:
        yield test_client


def _get(client: TestClient, db: Database, role: Role, url: str, person: str | None = None) -> Any:
    answer = client.get(url, headers=bearer(db, role, person))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _numbers(body: dict[str, Any]) -> tuple[int, ...]:
    return tuple(body[k] for k in ("total", "completed", "in_progress", "overdue", "due_30"))


def test_org_summary_counts_every_bucket(client: TestClient, db: Database) -> None:
    body = _get(client, db, Role.HR_ADMIN, "/compliance/summary?scope=org")
    assert _numbers(body) == (7, 3, 2, 2, 2)
    assert body["rate"] == round(3 / 7, 4)
    assert body["cert_expiring_30"] == 1
    assert body["cert_expired"] == 1
    assert body["people"] == 5
    assert body["today"] == TODAY.isoformat()


def test_scopes_follow_the_callers_rows(client: TestClient, db: Database) -> None:
    team = _get(client, db, Role.MANAGER, "/compliance/summary?scope=team", "p-1010")
    assert _numbers(team) == (5, 2, 2, 1, 2)
    assert team["label"].startswith("Team of ")
    # HR asks for the same team by name and gets the same numbers.
    hr_team = _get(client, db, Role.HR_ADMIN, "/compliance/summary?scope=team&manager=p-1010")
    assert _numbers(hr_team) == _numbers(team)
    # A manager's "org" is still only what they may see (their team and themself).
    assert _numbers(_get(client, db, Role.MANAGER, "/compliance/summary", "p-1010")) == _numbers(
        team
    )
    learner = _get(client, db, Role.LEARNER, "/compliance/summary", "p-1020")
    assert _numbers(learner) == (2, 2, 0, 0, 0)
    nursing = _get(
        client, db, Role.HR_ADMIN, "/compliance/summary?scope=department&department=Nursing"
    )
    assert nursing["total"] == 6
    # Another manager's team is not found for a manager, and not probed.
    refused = client.get(
        "/compliance/summary?scope=team&manager=p-1011",
        headers=bearer(db, Role.MANAGER, "p-1010"),
    )
    assert refused.status_code == 404
    no_person = client.get("/compliance/summary?scope=team", headers=bearer(db, Role.AUDITOR))
    assert no_person.status_code == 422


def test_breakdowns(client: TestClient, db: Database) -> None:
    by_department = _get(client, db, Role.HR_ADMIN, "/compliance/breakdown?by=department")
    assert {r["key"]: r["total"] for r in by_department} == {"Nursing": 6, "Radiology": 1}
    by_team = _get(client, db, Role.HR_ADMIN, "/compliance/breakdown?by=team")
    assert {r["key"]: r["total"] for r in by_team} == {"p-1010": 5, "p-1011": 1, "p-1012": 1}
    by_requirement = _get(client, db, Role.HR_ADMIN, "/compliance/breakdown")
    hipaa = next(r for r in by_requirement if r["key"] == "hipaa")
    assert (hipaa["total"], hipaa["completed"], hipaa["overdue"]) == (4, 2, 1)
    assert hipaa["label"] == "HIPAA"
    by_category = _get(client, db, Role.HR_ADMIN, "/compliance/breakdown?by=category")
    assert {r["key"]: r["total"] for r in by_category} == {"training": 5, "certification": 2}
    by_location = _get(client, db, Role.HR_ADMIN, "/compliance/breakdown?by=location")
    assert {r["key"]: r["total"] for r in by_location} == {"Boston": 5, "Chicago": 1, "Denver": 1}
    # Direct and indirect reports: p-1002 manages p-1010, who manages p-1020..p-1024.
    reports = _get(
        client,
        db,
        Role.HR_ADMIN,
        "/compliance/breakdown?by=report&scope=team&manager=p-1002",
    )
    assert {r["key"]: (r["depth"], r["total"]) for r in reports} == {
        "p-1020": (2, 2),
        "p-1021": (2, 1),
        "p-1022": (2, 2),
        "p-1025": (2, 1),
    }
    mine = _get(client, db, Role.MANAGER, "/compliance/breakdown?by=report&scope=team", "p-1010")
    assert {r["key"]: r["depth"] for r in mine} == {"p-1020": 1, "p-1021": 1, "p-1022": 1}


def test_at_risk_people(client: TestClient, db: Database) -> None:
    everyone = _get(client, db, Role.HR_ADMIN, "/compliance/at-risk")
    assert [(p["person"], p["overdue"], p["cert_expired"]) for p in everyone] == [
        ("p-1025", 1, 1),
        ("p-1021", 1, 0),
    ]
    team = _get(client, db, Role.MANAGER, "/compliance/at-risk?scope=team", "p-1010")
    assert [p["person"] for p in team] == ["p-1021"]
    assert team[0]["manager"] == "p-1010"


def test_csv_exports_escape_formulas(client: TestClient, db: Database) -> None:
    answer = client.get("/compliance/at-risk?format=csv", headers=bearer(db, Role.HR_ADMIN))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["person"] for r in rows] == ["p-1025", "p-1021"]
    assert rows[1]["name"] == "'" + HOSTILE_NAME
    summary = client.get("/compliance/summary?format=csv", headers=bearer(db, Role.HR_ADMIN))
    (row,) = list(csv.DictReader(io.StringIO(summary.text)))
    assert (row["total"], row["overdue"], row["rate"]) == ("7", "2", str(round(3 / 7, 4)))


def test_as_of_answers_the_recorded_decision(client: TestClient, db: Database) -> None:
    url = "/compliance/as-of?person=p-1021&requirement=hipaa&at="
    then = _get(client, db, Role.AUDITOR, url + "2026-05-25T00:00:00Z")
    assert then["found"] is True
    assert (then["status"], then["rule"], then["pack_hash"]) == (
        "due_soon",
        "due_within_30_days",
        "pack-v1",
    )
    assert then["facts"] == {"days_to_due": 12}
    assert then["trigger"] == "stage: -7d"
    assert then["decided_at"].startswith("2026-05-20T09:00:00")
    # The instant a decision was made is when it starts to be in force.
    exact = _get(client, db, Role.AUDITOR, url + "2026-06-02T04:00:00Z")
    assert exact["status"] == "overdue"
    before = _get(client, db, Role.AUDITOR, url + "2026-06-02T03:59:59Z")
    assert before["status"] == "due_soon"
    never = _get(client, db, Role.AUDITOR, url + "2026-01-01T00:00:00Z")
    assert never["found"] is False
    # A learner may not ask about someone else.
    other = client.get(url + "2026-05-25T00:00:00Z", headers=bearer(db, Role.LEARNER, "p-1020"))
    assert other.status_code == 404
    counts = _get(client, db, Role.HR_ADMIN, "/compliance/as-of?at=2026-05-25T00:00:00Z")
    assert counts["statuses"] == {"completed": 1, "due_soon": 1}
    assert (counts["total"], counts["completed"], counts["rate"]) == (2, 1, 0.5)
    half = client.get("/compliance/as-of?person=p-1021", headers=bearer(db, Role.HR_ADMIN))
    assert half.status_code == 422


def test_trend_reads_recorded_decisions(client: TestClient, db: Database) -> None:
    points = _get(client, db, Role.HR_ADMIN, "/compliance/trend")
    months = [p["month"] for p in points]
    assert (len(months), months[0], months[-1]) == (12, "2025-07", "2026-06")
    by_month = {p["month"]: (p["total"], p["completed"], p["overdue"]) for p in points}
    assert by_month["2026-01"] == (0, 0, 0)
    assert by_month["2026-02"] == (1, 0, 0)
    assert by_month["2026-03"] == (2, 0, 0)
    assert by_month["2026-04"] == (2, 1, 0)
    assert by_month["2026-05"] == (2, 1, 0)
    assert by_month["2026-06"] == (2, 1, 1)
    assert points[-1]["at"].startswith(NOW.isoformat()[:19])
    team = _get(client, db, Role.LEARNER, "/compliance/trend?months=3", "p-1020")
    assert [(p["month"], p["completed"]) for p in team] == [
        ("2026-04", 1),
        ("2026-05", 1),
        ("2026-06", 1),
    ]
