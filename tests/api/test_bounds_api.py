"""Poison input answers 422 naming the field, the value and the allowed range; nothing starts.

Before bounds, ``POST /assignments`` with ``due_date: 0001-01-01`` answered 201 and the workflow
failed its first task forever (date arithmetic overflowed), squatting the business key. The API
runs on a fixed clock here (2026-11-30 12:00 UTC), so every window below is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from domain.roles import Role
from duly.demo import load_demo_people
from duly.settings import Settings
from rules.loader import load_pack
from store.db import Database
from store.models import AuditEntry, DeadLetter, Obligation, Person
from store.packs import Migration, deploy
from tests.conftest import bearer
from tests.fakes.clock import fixed_clock
from tests.fakes.temporal import FakeTemporal

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
#: The due-date window on NOW with the default settings (5 years back, 10 ahead).
WINDOW = ("2021-11-30", "2036-11-30")
ABSOLUTE = ("1970-01-01", "2200-12-31")
PERSON = "p-1002"
EMAIL = "marcus.testwell@demo.duly.example"
WORKFLOW = f"assignment/{PERSON}/hipaa-privacy-security/1"
CERTIFICATION = f"certification/{PERSON}/bls-certification"


@pytest.fixture
def client(sqlite_db: Database, temporal: FakeTemporal) -> Iterator[TestClient]:
    with sqlite_db.session() as session:
        load_demo_people(session)
        version = deploy(
            session,
            load_pack("rules/packs/medical-practice"),
            author="test",
            message=None,
            migration=Migration.GRANDFATHER,
        )
        person = session.scalar(select(Person).where(Person.external_id == PERSON))
        assert person is not None
        session.add(
            Obligation(
                workflow_id=WORKFLOW,
                person_id=person.id,
                kind="training",
                requirement_id="hipaa-privacy-security",
                requirement_title="HIPAA Privacy & Security",
                cycle=1,
                due_date=datetime(2027, 3, 14).date(),
                stage=None,
                status="assigned",
                pack_hash=version.content_hash,
                as_of=NOW,
            )
        )
    app = create_app(
        Settings(env="test"),
        database=sqlite_db,
        temporal_client=temporal,  # type: ignore[arg-type]
        clock=fixed_clock(NOW),
    )
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def hr(sqlite_db: Database) -> dict[str, str]:
    return bearer(sqlite_db, Role.HR_ADMIN)


@pytest.fixture
def integration(sqlite_db: Database) -> dict[str, str]:
    return bearer(sqlite_db, Role.INTEGRATION)


def out_of_range(
    response: Any, loc: list[str], value: object, low: str, high: str, raw: object = None
) -> str:
    """Assert a 422 in FastAPI's shape naming ``loc``, ``value`` and ``low``..``high``.

    ``raw``: the value as sent, when the schema reports the input before parsing it.
    """
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == loc, error
    assert error["type"] == "out_of_range", error
    assert str(error["input"]) in {str(value), str(raw)}, error
    assert f"allowed {low} to {high}" in error["msg"], error
    assert str(value) in error["msg"], error
    return str(error["msg"])


def assign(client: TestClient, headers: dict[str, str], **fields: Any) -> Any:
    body = {"person": PERSON, "requirement": "Fire Safety", "due_date": "2027-01-15", **fields}
    return client.post("/assignments", json=body, headers=headers)


@pytest.mark.parametrize("value", ["0001-01-01", "9999-12-31", "1969-12-31", "2201-01-01"])
def test_assignment_due_date_beyond_the_absolute_bounds(
    client: TestClient, temporal: FakeTemporal, hr: dict[str, str], value: str
) -> None:
    out_of_range(assign(client, hr, due_date=value), ["body", "due_date"], value, *ABSOLUTE)
    assert temporal.started == []  # no workflow took the business key


@pytest.mark.parametrize("value", ["2021-11-29", "2036-12-01", "2099-01-01", "1990-06-01"])
def test_assignment_due_date_outside_the_window(
    client: TestClient, temporal: FakeTemporal, hr: dict[str, str], value: str
) -> None:
    message = out_of_range(assign(client, hr, due_date=value), ["body", "due_date"], value, *WINDOW)
    assert "DULY_DUE_DATE_PAST_YEARS" in message
    assert temporal.started == []


def test_assignment_due_date_on_the_window_edges_is_accepted(
    client: TestClient, temporal: FakeTemporal, hr: dict[str, str]
) -> None:
    for value in WINDOW:
        response = assign(client, hr, due_date=value, requirement=f"Edge {value}")
        assert response.status_code == 201, response.text
    assert [arg.due_date.isoformat() for arg, _ in temporal.started] == list(WINDOW)


@pytest.mark.parametrize("value", [3_000_000_000, 1001, 0])
def test_assignment_cycle_out_of_range(
    client: TestClient, temporal: FakeTemporal, hr: dict[str, str], value: int
) -> None:
    out_of_range(assign(client, hr, cycle=value), ["body", "cycle"], value, "1", "1000")
    assert temporal.started == []


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("2099-01-01T00:00:00Z", "2021-11-30T12:00:00+00:00", "2026-11-30T12:05:00+00:00"),
        ("2026-11-30T12:05:01Z", "2021-11-30T12:00:00+00:00", "2026-11-30T12:05:00+00:00"),
        ("2020-01-01T00:00:00Z", "2021-11-30T12:00:00+00:00", "2026-11-30T12:05:00+00:00"),
        ("9999-12-31T00:00:00Z", "1970-01-01T00:00:00+00:00", "2200-12-31T23:59:59+00:00"),
    ],
)
def test_completion_in_the_future_or_out_of_range(
    client: TestClient,
    temporal: FakeTemporal,
    hr: dict[str, str],
    value: str,
    low: str,
    high: str,
) -> None:
    response = client.post(
        f"/assignments/{WORKFLOW}/complete", json={"completed_at": value}, headers=hr
    )
    shown = datetime.fromisoformat(value).isoformat()
    out_of_range(response, ["body", "completed_at"], shown, low, high, raw=value)
    started = client.post(f"/assignments/{WORKFLOW}/start", json={"started_at": value}, headers=hr)
    out_of_range(started, ["body", "started_at"], shown, low, high, raw=value)
    assert temporal.signals == []


def test_completion_within_the_skew_is_accepted(
    client: TestClient, temporal: FakeTemporal, hr: dict[str, str]
) -> None:
    response = client.post(
        f"/assignments/{WORKFLOW}/complete",
        json={"completed_at": "2026-11-30T12:04:59Z"},
        headers=hr,
    )
    assert response.status_code == 202, response.text
    [(_, name, signal)] = temporal.signals
    assert name == "complete" and signal.completed_at == datetime(
        2026, 11, 30, 12, 4, 59, tzinfo=UTC
    )


def test_completion_defaults_to_the_api_clock(
    client: TestClient, temporal: FakeTemporal, hr: dict[str, str]
) -> None:
    assert client.post(f"/assignments/{WORKFLOW}/complete", json={}, headers=hr).status_code == 202
    [(_, _, signal)] = temporal.signals
    assert signal.completed_at == NOW


@pytest.mark.parametrize("value", [1e9, -1e9])
def test_a_score_out_of_range(
    client: TestClient, temporal: FakeTemporal, hr: dict[str, str], value: float
) -> None:
    response = client.post(f"/assignments/{WORKFLOW}/complete", json={"score": value}, headers=hr)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "score"]
    assert temporal.signals == []


@pytest.mark.parametrize("value", ["9999-12-31", "2040-01-01"])
def test_extension_and_exemption_dates_out_of_range(
    client: TestClient, temporal: FakeTemporal, hr: dict[str, str], value: str
) -> None:
    low, high = ABSOLUTE if value.startswith("9999") else WINDOW
    extended = client.post(
        f"/assignments/{WORKFLOW}/extend",
        json={"new_due_date": value, "reason": "clinic move"},
        headers=hr,
    )
    out_of_range(extended, ["body", "new_due_date"], value, low, high)
    exempted = client.post(
        f"/assignments/{WORKFLOW}/exempt",
        json={"reason": "on leave", "approver": "hr", "expires_on": value},
        headers=hr,
    )
    out_of_range(exempted, ["body", "expires_on"], value, low, high)
    assert temporal.signals == []


@pytest.mark.parametrize("value", ["9999-12-31", "2099-01-01"])
def test_bulk_due_date_out_of_range(
    client: TestClient, temporal: FakeTemporal, hr: dict[str, str], value: str
) -> None:
    low, high = ABSOLUTE if value.startswith("9999") else WINDOW
    response = client.post(
        "/assignments/bulk",
        json={"requirement_id": "hipaa-privacy-security", "due_date": value},
        headers=hr,
    )
    out_of_range(response, ["body", "due_date"], value, low, high)
    assert temporal.started == []


@pytest.mark.parametrize(
    ("field", "value", "low", "high"),
    [
        ("issued_on", "0001-01-01", *ABSOLUTE),
        ("issued_on", "2027-01-01", "1970-01-01", "2026-12-01"),  # not in the future
        ("expires_on", "9999-12-31", *ABSOLUTE),
        ("expires_on", "2099-01-01", *WINDOW),
    ],
)
def test_certification_dates_out_of_range(
    client: TestClient,
    temporal: FakeTemporal,
    hr: dict[str, str],
    field: str,
    value: str,
    low: str,
    high: str,
) -> None:
    body = {"person": PERSON, "certification_id": "bls-certification", "issued_on": "2026-01-10"}
    registered = client.post("/certifications", json={**body, field: value}, headers=hr)
    out_of_range(registered, ["body", field], value, low, high)
    renewed = client.post(f"/certifications/{CERTIFICATION}/renew", json={field: value}, headers=hr)
    out_of_range(renewed, ["body", field], value, low, high)
    assert temporal.started == [] and temporal.signals == []


@pytest.mark.parametrize("value", ["2099-01-01", "0001-01-01"])
def test_ce_credits_earned_in_the_future_or_out_of_range(
    client: TestClient, hr: dict[str, str], value: str
) -> None:
    low, high = ("1970-01-01", "2026-12-01") if value.startswith("2099") else ABSOLUTE
    response = client.post(
        f"/certifications/{CERTIFICATION}/ce-credits",
        json={"credits": 2, "activity": "CPR refresher", "earned_on": value},
        headers=hr,
    )
    out_of_range(response, ["body", "earned_on"], value, low, high)


def test_plain_completion_in_the_future(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str]
) -> None:
    response = client.post(
        "/completions",
        json={
            "person": PERSON,
            "requirement_id": "hipaa-privacy-security",
            "completed_at": "2099-01-01T00:00:00Z",
            "source": "lms",
        },
        headers=integration,
    )
    out_of_range(
        response,
        ["body", "completed_at"],
        "2099-01-01T00:00:00+00:00",
        "2021-11-30T12:00:00+00:00",
        "2026-11-30T12:05:00+00:00",
    )
    assert temporal.signals == []


def test_xapi_statement_from_the_future_is_dead_lettered_not_recorded(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str], sqlite_db: Database
) -> None:
    statement = {
        "id": "6f3c1d2e-0000-4000-8000-000000000001",
        "actor": {"mbox": f"mailto:{EMAIL}"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
        "object": {"id": "https://lms.demo.duly.example/xapi/activities/hipaa-privacy-security"},
        "timestamp": "2099-01-01T00:00:00Z",
    }
    response = client.post("/xapi/statements", json=statement, headers=integration)
    assert response.status_code == 422, response.text
    [item] = response.json()["results"]
    assert item["outcome"] == "dead_letter"
    assert item["detail"].startswith(
        "timestamp 2099-01-01T00:00:00+00:00 is out of range: allowed 2021-11-30T12:00:00+00:00"
        " to 2026-11-30T12:05:00+00:00"
    )
    assert temporal.signals == []
    with sqlite_db.session() as session:  # kept for HR, not lost
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 1


def test_xapi_raw_score_out_of_range_is_malformed(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str]
) -> None:
    statement = {
        "actor": {"mbox": f"mailto:{EMAIL}"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/passed"},
        "object": {"id": "https://lms.demo.duly.example/xapi/activities/hipaa-privacy-security"},
        "result": {"score": {"raw": 1e12}},
    }
    response = client.post("/xapi/statements", json=statement, headers=integration)
    assert response.status_code == 400, response.text
    assert "result.score.raw" in response.json()["detail"]
    assert temporal.signals == []


# --- restart: validation before Temporal is touched ------------------------------------------


def test_restart_refuses_an_out_of_range_due_date(
    client: TestClient, temporal: FakeTemporal, hr: dict[str, str]
) -> None:
    response = client.post(
        f"/assignments/{WORKFLOW}/restart",
        json={"reason": "typo in the due date", "due_date": "2099-01-01"},
        headers=hr,
    )
    out_of_range(response, ["body", "due_date"], "2099-01-01", *WINDOW)
    assert temporal.started == []


def test_restart_of_a_key_whose_cycle_can_never_run(
    client: TestClient, temporal: FakeTemporal, hr: dict[str, str]
) -> None:
    response = client.post(
        f"/assignments/assignment/{PERSON}/hipaa-privacy-security/3000000000/restart",
        json={"reason": "cycle overflowed", "due_date": "2027-01-15"},
        headers=hr,
    )
    message = out_of_range(response, ["path", "cycle"], 3_000_000_000, "1", "1000")
    assert "temporal workflow terminate" in message
    assert temporal.started == []


@pytest.mark.parametrize("role", [Role.MANAGER, Role.INTEGRATION, Role.AUDITOR])
def test_only_hr_may_restart(
    client: TestClient, temporal: FakeTemporal, sqlite_db: Database, role: Role
) -> None:
    person = "p-1001" if role is Role.MANAGER else None
    headers = bearer(sqlite_db, role, person)
    body = {"reason": "stuck", "due_date": "2027-01-15"}
    for path in (f"/assignments/{WORKFLOW}/restart", f"/certifications/{CERTIFICATION}/restart"):
        assert (
            client.post(
                path, json=body if "assign" in path else {"reason": "stuck"}, headers=headers
            ).status_code
            == 403
        )
    assert temporal.started == []
    with sqlite_db.session() as session:
        actions = set(session.scalars(select(AuditEntry.action)))
    assert not {a for a in actions if a.endswith(".restart")}


def test_restart_is_documented_in_the_openapi(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/assignments/{assignment_id}/restart",
        "/certifications/{certification_id}/restart",
    ):
        assert "post" in paths[path]
