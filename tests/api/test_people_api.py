"""The people API: import (CSV, JSON, upload), listing and row-level visibility."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from domain.roles import Role
from duly.demo import DEMO_PEOPLE_CSV, load_demo_people
from duly.settings import Settings
from store.db import Database
from store.models import AuditEntry
from tests.conftest import bearer

# p-1001 CEO -> p-1002 (Nursing director) -> p-1010 (Boston nursing manager) -> p-1020..p-1024;
# p-1011 (Chicago nursing manager) is p-1010's peer.
NURSING_DIRECTOR = "p-1002"
BOSTON_MANAGER = "p-1010"
BOSTON_NURSES = {"p-1020", "p-1021", "p-1022", "p-1023", "p-1024"}
PEER_MANAGER = "p-1011"
LEARNER = "p-1020"


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    app = create_app(Settings(env="test"), database=db)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def demo(db: Database) -> None:
    with db.session() as session:
        assert load_demo_people(session).errors == []


def listed(client: TestClient, headers: dict[str, str], **params: str) -> set[str]:
    response = client.get("/people", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return {p["external_id"] for p in response.json()}


def test_import_without_a_token_is_401(client: TestClient) -> None:
    response = client.post(
        "/people/import",
        content="external_id,name\np-1,Ann\n",
        headers={"content-type": "text/csv"},
    )
    assert response.status_code == 401
    assert "bearer token" in response.json()["detail"]
    assert client.get("/people").status_code == 401


def test_a_learner_may_not_import(client: TestClient, db: Database, demo: None) -> None:
    response = client.post(
        "/people/import",
        content="external_id,name\np-1,Ann\n",
        headers={**bearer(db, Role.LEARNER, LEARNER), "content-type": "text/csv"},
    )
    assert response.status_code == 403
    assert "hr_admin" in response.json()["detail"]


def test_hr_admin_imports_csv_and_gets_a_report_with_row_errors(
    client: TestClient, db: Database
) -> None:
    hr = bearer(db, Role.HR_ADMIN)
    body = (
        "external_id,name,email,phone,roles,manager\n"
        "p-1,Ann Boss,ann@demo.duly.example,+15550100001,manager,\n"
        "p-2,Bo Report,bo@demo.duly.example,,nurse;technician,p-1\n"
        "p-3,Cy Broken,cy-at-nowhere,+15550100003,nurse,p-1\n"
    )

    response = client.post(
        "/people/import", content=body, headers={**hr, "content-type": "text/csv; charset=utf-8"}
    )

    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["updated"], report["unchanged"], report["rejected"]) == (
        2,
        0,
        0,
        1,
    )
    assert report["errors"] == [
        {
            "row": 4,
            "column": "email",
            "value": "<redacted>",
            "message": "email must look like name@example.org",
            "file_level": False,
        }
    ]
    assert "cy-at-nowhere" not in response.text

    bo = client.get("/people/p-2", headers=hr).json()
    assert bo["manager"] == "p-1"
    assert bo["roles"] == ["nurse", "technician"]
    assert bo["time_zone"] == "UTC"
    assert bo["employment_status"] == "active"

    with db.session() as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert entry is not None
    assert (entry.action, entry.target, entry.actor_role) == ("people.import", "people", "hr_admin")
    assert entry.after == {
        "format": "csv",
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "rejected": 1,
        "errors": 1,
    }
    assert "demo.duly.example" not in json.dumps(entry.after)


def test_multipart_upload_of_the_demo_csv(client: TestClient, db: Database) -> None:
    hr = bearer(db, Role.HR_ADMIN)
    content = DEMO_PEOPLE_CSV.read_bytes()

    response = client.post(
        "/people/import",
        headers=hr,
        files={"file": ("directory.csv", content, "application/octet-stream")},
    )

    assert response.status_code == 200, response.text
    assert response.json()["created"] == 36
    assert response.json()["errors"] == []
    again = client.post("/people/import", headers=hr, files={"file": ("d.csv", content)})
    assert again.json()["unchanged"] == 36


def test_multipart_upload_of_json_and_a_missing_file_field(
    client: TestClient, db: Database
) -> None:
    integration = bearer(db, Role.INTEGRATION)
    people = [{"external_id": "u-1", "name": "Up Loaded"}]

    response = client.post(
        "/people/import",
        headers=integration,
        files={"file": ("people.json", json.dumps(people).encode(), "application/json")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 1

    missing = client.post("/people/import", headers=integration, files={"other": ("x.csv", b"")})
    assert missing.status_code == 422
    assert "`file` field" in missing.json()["detail"]


def test_integration_imports_json(client: TestClient, db: Database) -> None:
    integration = bearer(db, Role.INTEGRATION)
    payload = {
        "people": [
            {
                "external_id": "j-1",
                "name": "Jay",
                "roles": ["pharmacist"],
                "time_zone": "Europe/London",
            },
            {"external_id": "j-2", "name": "Jo", "manager": "j-1", "phone": "+447700900123"},
            {"external_id": "j-3", "name": "Ju", "manager": "j-3"},
        ]
    }

    response = client.post("/people/import", json=payload, headers=integration)

    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["rejected"]) == (2, 1)
    [error] = report["errors"]
    assert (error["row"], error["column"]) == (3, "manager")
    assert error["message"].startswith("manager cycle: j-3 -> j-3")
    assert client.get("/people/j-2", headers=integration).json()["manager"] == "j-1"

    # The SCIM userName through the people API: set, read back (here and through SCIM), and
    # a taken one refused with a clear error.
    named = {"people": [{"external_id": "j-1", "name": "Jay", "user_name": "jay@example.org"}]}
    assert client.post("/people/import", json=named, headers=integration).json()["updated"] == 1
    hr = bearer(db, Role.HR_ADMIN)
    assert client.get("/people/j-1", headers=hr).json()["user_name"] == "jay@example.org"
    scim = client.get("/scim/v2/Users/j-1", headers=hr).json()
    assert scim["userName"] == "jay@example.org"
    taken = {"people": [{"external_id": "j-2", "name": "Jo", "user_name": "JAY@example.org"}]}
    report = client.post("/people/import", json=taken, headers=integration).json()
    [error] = report["errors"]
    assert (report["rejected"], error["column"], error["value"]) == (1, "user_name", "<redacted>")
    assert "user_name is taken" in error["message"]
    assert client.get("/people/j-2", headers=hr).json()["user_name"] is None


@pytest.mark.parametrize(
    ("content_type", "body", "needle"),
    [
        ("application/json", b'{"people": [', "not valid JSON"),
        ("text/csv", b"id,full_name\n1,Ann\n", "missing required column(s): external_id, name"),
        ("text/csv", "external_id,name\np-1,Zoë\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_an_unusable_file_is_422_saying_what_to_fix(
    client: TestClient, db: Database, content_type: str, body: bytes, needle: str
) -> None:
    response = client.post(
        "/people/import",
        content=body,
        headers={**bearer(db, Role.HR_ADMIN), "content-type": content_type},
    )
    assert response.status_code == 422
    assert needle in response.json()["detail"]


def test_an_unsupported_content_type_is_415(client: TestClient, db: Database) -> None:
    response = client.post(
        "/people/import",
        content=b"<people/>",
        headers={**bearer(db, Role.HR_ADMIN), "content-type": "application/xml"},
    )
    assert response.status_code == 415
    assert "text/csv" in response.json()["detail"]


def test_a_learner_sees_only_themself(client: TestClient, db: Database, demo: None) -> None:
    learner = bearer(db, Role.LEARNER, LEARNER)

    assert listed(client, learner) == {LEARNER}
    me = client.get(f"/people/{LEARNER}", headers=learner)
    assert me.status_code == 200
    assert me.json()["manager"] == BOSTON_MANAGER
    assert client.get(f"/people/{BOSTON_MANAGER}", headers=learner).status_code == 404


def test_a_manager_sees_transitive_reports_but_not_peers(
    client: TestClient, db: Database, demo: None
) -> None:
    director = bearer(db, Role.MANAGER, NURSING_DIRECTOR)
    chicago_nurses = {f"p-{n}" for n in range(1025, 1030)}
    assert listed(client, director) == (
        {NURSING_DIRECTOR, BOSTON_MANAGER, PEER_MANAGER} | BOSTON_NURSES | chicago_nurses
    )  # not their own boss p-1001, not the peer directors p-1003/p-1004 or their chains

    manager = bearer(db, Role.MANAGER, BOSTON_MANAGER)
    assert listed(client, manager) == {BOSTON_MANAGER} | BOSTON_NURSES
    assert client.get(f"/people/{PEER_MANAGER}", headers=manager).status_code == 404
    assert client.get("/people/p-1025", headers=manager).status_code == 404  # a peer's report
    assert client.get("/people/p-1020", headers=manager).status_code == 200


def test_unknown_and_invisible_people_are_both_404(
    client: TestClient, db: Database, demo: None
) -> None:
    hr = bearer(db, Role.HR_ADMIN)
    learner = bearer(db, Role.LEARNER, LEARNER)

    unknown = client.get("/people/p-9999", headers=hr)
    invisible = client.get("/people/p-1001", headers=learner)
    assert unknown.status_code == invisible.status_code == 404
    assert unknown.json() == invisible.json() == {"detail": "not found"}


def test_listing_filters_by_department_role_and_manager(
    client: TestClient, db: Database, demo: None
) -> None:
    auditor = bearer(db, Role.AUDITOR)

    assert len(listed(client, auditor)) == 36
    pharmacy = listed(client, auditor, department="Pharmacy")
    assert pharmacy == {"p-1013", "p-1035", "p-1036", "p-1037", "p-1038"}
    pharmacists = listed(client, auditor, role="pharmacist")
    assert pharmacists == {"p-1013", "p-1035", "p-1036", "p-1037"}
    front_desk = listed(client, auditor, role="front_desk")
    assert "p-1014" in front_desk  # manager;front_desk
    assert all(p["roles"] for p in client.get("/people", headers=auditor).json())
    assert listed(client, auditor, manager=BOSTON_MANAGER) == BOSTON_NURSES
    assert listed(client, auditor, manager="nobody") == set()

    person = client.get("/people/p-1024", headers=auditor).json()
    assert person == {
        "external_id": "p-1024",
        "name": person["name"],
        "email": person["email"],
        "phone": person["phone"],
        "slack_user_id": "U0D1024",
        "roles": ["nurse"],
        "department": "Nursing",
        "location": "Boston",
        "time_zone": "America/New_York",
        "employer": "Acme Staffing",
        "manager": BOSTON_MANAGER,
        "employment_status": "active",
        "user_name": None,
    }
    assert person["email"].endswith("@demo.duly.example")
    assert person["phone"].startswith("+1555")

    # The manager filter is still scoped: a learner asking for their manager's reports sees self.
    learner = bearer(db, Role.LEARNER, LEARNER)
    assert listed(client, learner, manager=BOSTON_MANAGER) == {LEARNER}


def test_notification_preferences_self_or_hr(client: TestClient, db: Database, demo: None) -> None:
    me = bearer(db, Role.LEARNER, LEARNER)
    assert client.get(f"/people/{LEARNER}/preferences", headers=me).json() == {
        "channels": None,
        "sms_opt_out": False,
        "quiet_start": None,
        "quiet_end": None,
    }
    body = {
        "channels": ["email", "slack"],
        "sms_opt_out": True,
        "quiet_start": "21:00",
        "quiet_end": "07:30",
    }
    assert client.put(f"/people/{LEARNER}/preferences", json=body, headers=me).status_code == 200
    assert (
        client.get(f"/people/{LEARNER}/preferences", headers=bearer(db, Role.HR_ADMIN)).json()
        == body
    )
    # A manager sees their report but may not change how the report is reached.
    manager = bearer(db, Role.MANAGER, BOSTON_MANAGER)
    assert (
        client.put(f"/people/{LEARNER}/preferences", json=body, headers=manager).status_code == 403
    )
    half = {"quiet_start": "21:00"}
    response = client.put(f"/people/{LEARNER}/preferences", json=half, headers=me)
    assert response.status_code == 422 and "quiet_end" in response.text
    bad = {"quiet_start": "25:00", "quiet_end": "07:00"}
    assert client.put(f"/people/{LEARNER}/preferences", json=bad, headers=me).status_code == 422
    other = bearer(db, Role.LEARNER, "p-1021")
    assert client.get(f"/people/{LEARNER}/preferences", headers=other).status_code == 404


def test_person_obligations_and_department_filter(
    client: TestClient, db: Database, demo: None
) -> None:
    from datetime import UTC, date, datetime

    from store.models import Obligation, Person

    with db.session() as session:
        for external_id in (LEARNER, "p-1030"):  # a Boston nurse and a Denver technician
            person = session.scalar(select(Person).where(Person.external_id == external_id))
            assert person is not None
            session.add(
                Obligation(
                    workflow_id=f"assignment/{external_id}/fire-safety/1",
                    person_id=person.id,
                    kind="training",
                    requirement_id="fire-safety",
                    requirement_title="Fire Safety",
                    due_date=date(2027, 1, 15),
                    status="overdue",
                    pack_hash="builtin",
                    as_of=datetime.now(UTC),
                )
            )
    hr = bearer(db, Role.HR_ADMIN)
    mine = client.get(f"/people/{LEARNER}/obligations", headers=bearer(db, Role.LEARNER, LEARNER))
    assert [o["workflow_id"] for o in mine.json()] == [f"assignment/{LEARNER}/fire-safety/1"]
    other = client.get("/people/p-1030/obligations", headers=bearer(db, Role.LEARNER, LEARNER))
    assert other.status_code == 404
    nursing = client.get(
        "/obligations", params={"status": "overdue", "department": "Nursing"}, headers=hr
    ).json()
    assert [o["person"] for o in nursing] == [LEARNER]
    # GET /assignments is the same read model, training assignments only.
    listed = client.get(
        "/assignments", params={"status": "overdue", "department": "Nursing"}, headers=hr
    ).json()
    assert [o["workflow_id"] for o in listed] == [f"assignment/{LEARNER}/fire-safety/1"]
    certs = client.get("/assignments", params={"kind": "certification"}, headers=hr).json()
    assert certs == []
    scoped = client.get("/assignments", headers=bearer(db, Role.LEARNER, "p-1030")).json()
    assert [o["person"] for o in scoped] == ["p-1030"]


def test_a_time_zone_change_replans_the_persons_open_obligations(db: Database) -> None:
    """Open obligations planned in the old zone get a ``replan`` signal; others do not."""
    from datetime import UTC, date, datetime

    from temporalio.service import RPCError, RPCStatusCode

    from domain.contracts.obligation import ReplanSignal
    from store.models import Obligation, Person
    from tests.fakes.temporal import FakeTemporal

    temporal = FakeTemporal()
    app = create_app(Settings(env="test"), database=db, temporal_client=temporal)
    now = datetime(2027, 1, 4, tzinfo=UTC)
    with db.session() as session:
        person = Person(external_id="p-9", name="Ann", time_zone="America/New_York")
        session.add(person)
        session.flush()
        for requirement, planned_in, completed in (
            ("open", "America/New_York", None),
            ("done", "America/New_York", now),
            ("legacy", None, None),  # planned with a fixed offset: cannot re-plan
        ):
            session.add(
                Obligation(
                    workflow_id=f"assignment/p-9/{requirement}/1",
                    person_id=person.id,
                    kind="training",
                    requirement_id=requirement,
                    requirement_title=requirement,
                    due_date=date(2027, 3, 1),
                    status="assigned",
                    pack_hash="builtin",
                    time_zone=planned_in,
                    completed_at=completed,
                    as_of=now,
                )
            )
    hr = bearer(db, Role.HR_ADMIN)
    with TestClient(app) as client:
        moved = [{"external_id": "p-9", "name": "Ann", "time_zone": "Asia/Tokyo"}]
        response = client.post("/people/import", json=moved, headers=hr)
        assert response.status_code == 200, response.text
        assert (response.json()["updated"], response.json()["replanned"]) == (1, 1)
        assert temporal.signals == [
            (
                "assignment/p-9/open/1",
                "replan",
                ReplanSignal(time_zone="Asia/Tokyo", actor="people import"),
            )
        ]

        # Temporal down: the import is saved and says who re-plans them (the nightly sweep).
        temporal.error = RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")
        moved[0]["time_zone"] = "Europe/Paris"
        response = client.post("/people/import", json=moved, headers=hr)
        assert response.status_code == 200, response.text
        assert response.json()["replanned"] == 0
        assert "nightly sweep" in response.json()["replan_note"]
        listed_zone = client.get("/people/p-9", headers=hr).json()["time_zone"]
        assert listed_zone == "Europe/Paris"
