"""Requests that cannot succeed fail at the request, not later in a worker (issue 13, item 3).

* A bulk job naming a manager who is not an active person answered 202 and then failed in its
  activity; it is 422 naming the manager, and nothing starts.
* A manager could assign training to themself (``POST /assignments``, or a bulk job listing
  themself), although the README says "own reports"; both are 403.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from domain.roles import Role
from duly.demo import load_demo_people
from duly.settings import Settings
from rules.loader import load_pack
from store.db import Database
from store.models import AuditEntry, Person
from store.packs import Migration, deploy
from tests.conftest import bearer
from tests.fakes.clock import fixed_clock
from tests.fakes.temporal import FakeTemporal

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MANAGER = "p-1010"
REQUIREMENT = "hipaa-privacy-security"


@pytest.fixture
def client(sqlite_db: Database, temporal: FakeTemporal) -> Iterator[TestClient]:
    with sqlite_db.session() as session:
        load_demo_people(session)
        deploy(
            session,
            load_pack("rules/packs/medical-practice"),
            author="test",
            message=None,
            migration=Migration.GRANDFATHER,
        )
        assert session.scalar(select(Person).where(Person.manager_id.is_not(None)))
    app = create_app(
        Settings(env="test"),
        database=sqlite_db,
        temporal_client=temporal,  # type: ignore[arg-type]
        clock=fixed_clock(NOW),
    )
    with TestClient(app) as test_client:
        yield test_client


def _report_of(db: Database, manager: str) -> str:
    with db.session() as session:
        boss = session.scalar(select(Person.id).where(Person.external_id == manager))
        report = session.scalar(select(Person.external_id).where(Person.manager_id == boss))
    assert report is not None, f"the demo directory gives {manager} no reports"
    return report


def _audited(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(AuditEntry.action)))


def test_a_bulk_job_naming_an_unknown_manager_is_422_and_starts_nothing(
    client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    hr = bearer(sqlite_db, Role.HR_ADMIN)
    body = {"requirement_id": REQUIREMENT, "selector": {"manager": "p-nobody"}}
    response = client.post("/assignments/bulk", json=body, headers=hr)
    assert response.status_code == 422, response.text
    assert "p-nobody" in response.text and "selector.manager" in response.text
    assert temporal.started == []
    assert "assignment.bulk" not in _audited(sqlite_db)


def test_a_bulk_job_naming_a_terminated_manager_is_422(
    client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    with sqlite_db.session() as session:
        boss = session.scalar(select(Person).where(Person.external_id == MANAGER))
        assert boss is not None
        boss.employment_status = "terminated"
    hr = bearer(sqlite_db, Role.HR_ADMIN)
    body = {"requirement_id": REQUIREMENT, "selector": {"manager": MANAGER}}
    response = client.post("/assignments/bulk", json=body, headers=hr)
    assert response.status_code == 422, response.text
    assert MANAGER in response.text
    assert temporal.started == []


def test_a_bulk_job_naming_an_active_manager_still_starts(
    client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    hr = bearer(sqlite_db, Role.HR_ADMIN)
    body = {"requirement_id": REQUIREMENT, "selector": {"manager": MANAGER}}
    response = client.post("/assignments/bulk", json=body, headers=hr)
    assert response.status_code == 202, response.text
    assert len(temporal.started) == 1


def test_a_manager_may_not_assign_to_themself(
    client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    manager = bearer(sqlite_db, Role.MANAGER, person=MANAGER)
    body = {
        "person": MANAGER,
        "requirement": "HIPAA",
        "requirement_id": REQUIREMENT,
        "due_date": "2027-03-01",
    }
    response = client.post("/assignments", json=body, headers=manager)
    assert response.status_code == 403, response.text
    assert "themselves" in response.text
    assert temporal.started == []
    # Their report: still fine.
    body["person"] = _report_of(sqlite_db, MANAGER)
    response = client.post("/assignments", json=body, headers=manager)
    assert response.status_code == 201, response.text
    assert len(temporal.started) == 1


def test_a_manager_may_not_bulk_assign_to_themself(
    client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    manager = bearer(sqlite_db, Role.MANAGER, person=MANAGER)
    report = _report_of(sqlite_db, MANAGER)
    body = {"requirement_id": REQUIREMENT, "selector": {"people": [MANAGER, report]}}
    response = client.post("/assignments/bulk", json=body, headers=manager)
    assert response.status_code == 403, response.text
    assert MANAGER in response.text
    assert temporal.started == []
    body["selector"] = {"people": [report]}
    response = client.post("/assignments/bulk", json=body, headers=manager)
    assert response.status_code == 202, response.text
