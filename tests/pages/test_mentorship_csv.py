"""The mentorship page's tables as CSV (``/ui/mentorship/<table>.csv``), without a browser.

Each download holds the rows the caller's page shows and nothing else: a learner their own, a
manager their own and their reports', HR and the auditor everyone; a table the caller's page
does not have is 404; cells a spreadsheet would run as formulas arrive as text.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.routers.pages_mentorship import CSV_HEADER
from domain.roles import Role
from duly.demo import load_demo_people
from rules.mentorship_model import MentorshipPolicy
from store.db import Database
from store.models import Mentorship, Person
from tests.conftest import bearer
from tests.fakes.temporal import FakeTemporal
from tests.pages.conftest import page_client

#: The demo org: p-1010 manages p-1020 and p-1021; p-1025 reports to another manager.
MANAGER, LEARNER, REPORT, OTHER, DIRECTOR = "p-1010", "p-1020", "p-1021", "p-1025", "p-1001"
#: A request the manager has not answered, expiring tomorrow.
PENDING = f"mentorship/{LEARNER}/{MANAGER}/1"
#: The manager mentors their other report; its goal is a formula.
ACTIVE = f"mentorship/{REPORT}/{MANAGER}/1"
#: Someone neither the manager nor the learner may see.
HIDDEN = f"mentorship/{OTHER}/{DIRECTOR}/1"


@pytest.fixture
def tokens(sqlite_db: Database) -> dict[str, dict[str, str]]:
    now = datetime.now(UTC)
    expiry = MentorshipPolicy().request_expiry_days
    with sqlite_db.session() as session:
        assert load_demo_people(session).errors == []
    with sqlite_db.session() as session:
        people = {p.external_id: p for p in session.scalars(select(Person))}
        for workflow_id, status, requested, goals in (
            (PENDING, "pending", now - timedelta(days=expiry - 1), ["Pass the exam"]),
            (ACTIVE, "active", now - timedelta(days=40), ['=HYPERLINK("http://x")']),
            (HIDDEN, "active", now - timedelta(days=20), []),
        ):
            _, mentee, mentor, _ = workflow_id.split("/")
            session.add(
                Mentorship(
                    workflow_id=workflow_id,
                    mentee_id=people[mentee].id,
                    mentor_id=people[mentor].id,
                    status=status,
                    type="general",
                    goals=goals,
                    milestones=[],
                    duration_months=6,
                    requested_at=requested,
                    started_at=requested + timedelta(days=1) if status == "active" else None,
                    as_of=now,
                )
            )
    return {
        "hr": bearer(sqlite_db, Role.HR_ADMIN),
        "auditor": bearer(sqlite_db, Role.AUDITOR),
        "manager": bearer(sqlite_db, Role.MANAGER, MANAGER),
        "learner": bearer(sqlite_db, Role.LEARNER, LEARNER),
        "integration": bearer(sqlite_db, Role.INTEGRATION),
    }


@pytest.fixture
def client(sqlite_db: Database) -> Iterator[TestClient]:
    with page_client(sqlite_db, FakeTemporal()) as test_client:
        yield test_client


def _rows(client: TestClient, table: str, headers: dict[str, str]) -> list[dict[str, str]]:
    answer = client.get(f"/ui/mentorship/{table}.csv", headers=headers)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["content-type"].startswith("text/csv")
    assert f'filename="mentorship-{table}.csv"' in answer.headers["content-disposition"]
    reader = csv.DictReader(io.StringIO(answer.text))
    assert reader.fieldnames == CSV_HEADER
    return list(reader)


def _ids(rows: list[dict[str, str]]) -> list[str]:
    return [r["relationship"] for r in rows]


def test_each_table_holds_the_callers_rows(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    learner, manager = tokens["learner"], tokens["manager"]
    [mine] = _rows(client, "mine", learner)
    assert (mine["relationship"], mine["mentor_name"], mine["status"]) == (
        PENDING,
        "Nora Placeholder",
        "pending",
    )
    assert mine["goals"] == "Pass the exam" and mine["expires_at"] and not mine["started_at"]
    assert _rows(client, "requests", learner) == []
    assert _rows(client, "requests", manager)[0]["relationship"] == PENDING
    [mentee] = _rows(client, "mentees", manager)
    assert mentee["relationship"] == ACTIVE and mentee["expires_at"] == ""
    assert mentee["goals"] == '\'=HYPERLINK("http://x")'  # text, not a formula
    assert sorted(_ids(_rows(client, "relationships", manager))) == sorted([PENDING, ACTIVE])
    assert _ids(_rows(client, "expiring", manager)) == [PENDING]
    for reader in ("hr", "auditor"):
        assert sorted(_ids(_rows(client, "relationships", tokens[reader]))) == sorted(
            [PENDING, ACTIVE, HIDDEN]
        )


def test_the_csv_rows_are_the_pages_rows(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    for who in ("hr", "manager"):
        page = client.get("/ui/mentorship", headers=tokens[who]).text
        shown = re.findall(r'<tr data-id="([^"]+)">', page)
        assert shown and shown == _ids(_rows(client, "relationships", tokens[who]))
        assert 'href="/ui/mentorship/relationships.csv"' in page
    learner_page = client.get("/ui/mentorship", headers=tokens["learner"]).text
    assert 'href="/ui/mentorship/mine.csv"' in learner_page
    assert "relationships.csv" not in learner_page


def test_a_table_not_on_the_callers_page_is_not_found(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    for table, who in (
        ("relationships", "learner"),
        ("expiring", "learner"),
        ("mine", "hr"),
        ("mentees", "auditor"),
        ("nope", "hr"),
        ("every", "hr"),  # the page's context name is not a table's URL
    ):
        answer = client.get(f"/ui/mentorship/{table}.csv", headers=tokens[who])
        assert answer.status_code == 404, (table, who)
        assert "the tables are mine.csv" in answer.text
    assert client.get("/ui/mentorship/mine.csv").status_code == 401
    assert client.get("/ui/mentorship/mine.csv", headers=tokens["integration"]).status_code == 403
