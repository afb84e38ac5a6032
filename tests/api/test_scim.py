"""SCIM 2.0 provisioning: each operation, errors in SCIM's schema, and the shared directory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from domain.contracts.directory import ChangeKind
from domain.roles import Role
from duly.settings import Settings
from notifications.recipients import stage_skip
from services import directory
from store.db import Database
from store.models import AuditEntry, Person
from store.tokens import Principal
from tests.conftest import bearer

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BASE = "/scim/v2"


@pytest.fixture
def client(sqlite_db: Database) -> Iterator[TestClient]:
    app = create_app(Settings(env="test"), database=sqlite_db)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def hr(sqlite_db: Database) -> dict[str, str]:
    return bearer(sqlite_db, Role.HR_ADMIN)


def user(user_name: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemas": [USER, ENTERPRISE],
        "userName": user_name,
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "emails": [{"value": f"{user_name}@example.org", "type": "work", "primary": True}],
        "title": "nurse",
        "timezone": "Europe/London",
        "addresses": [{"type": "work", "locality": "Boston"}],
        "active": True,
        ENTERPRISE: {"department": "Nursing", "employeeNumber": user_name},
    }
    body.update(extra)
    return body


def create(client: TestClient, hr: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{BASE}/Users", json=body, headers=hr)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def patch(client: TestClient, hr: dict[str, str], user_id: str, *ops: dict[str, Any]) -> Any:
    return client.patch(
        f"{BASE}/Users/{user_id}", json={"schemas": [PATCH], "Operations": list(ops)}, headers=hr
    )


def stored(db: Database, external_id: str) -> Person:
    with db.session() as session:
        person = session.scalar(select(Person).where(Person.external_id == external_id))
        assert person is not None
        session.expunge(person)
        return person


def assert_scim_error(response: Any, status: int, scim_type: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    body = response.json()
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type
    assert body["detail"]


def test_create_returns_201_location_etag_and_maps_attributes(
    client: TestClient, hr: dict[str, str], sqlite_db: Database
) -> None:
    boss = create(client, hr, user("p-1", title="director"))
    response = client.post(
        f"{BASE}/Users",
        json=user("p-2", **{ENTERPRISE: {"department": "Nursing", "manager": {"value": "p-1"}}}),
        headers=hr,
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    body = response.json()
    assert response.headers["location"] == "http://testserver/scim/v2/Users/p-2"
    assert response.headers["etag"] == body["meta"]["version"]
    assert body["id"] == body["userName"] == "p-2"
    assert body["meta"]["resourceType"] == "User"
    assert body[ENTERPRISE]["manager"]["value"] == "p-1"
    assert boss["active"] is True
    person = stored(sqlite_db, "p-2")
    assert person.name == "Ann Lee"
    assert person.email == "p-2@example.org"
    assert person.roles == ["nurse"]
    assert person.department == "Nursing"
    assert person.location == "Boston"
    assert person.time_zone == "Europe/London"
    assert person.employment_status == "active"
    with sqlite_db.session() as session:
        actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert actions == ["person.create", "person.create"]
    assert entry is not None and entry.after is not None
    assert entry.after["kind"] == "joiner"
    assert entry.after["after"]["email"] == "<redacted>"


def test_create_twice_is_409_uniqueness(client: TestClient, hr: dict[str, str]) -> None:
    create(client, hr, user("p-1"))
    assert_scim_error(client.post(f"{BASE}/Users", json=user("p-1"), headers=hr), 409, "uniqueness")


def test_bad_values_are_400_invalid_value_without_personal_data(
    client: TestClient, hr: dict[str, str]
) -> None:
    bad_zone = client.post(f"{BASE}/Users", json=user("p-1", timezone="Mars/Base"), headers=hr)
    assert_scim_error(bad_zone, 400, "invalidValue")
    assert "time zone" in bad_zone.json()["detail"]
    unknown_boss = client.post(
        f"{BASE}/Users", json=user("p-1", **{ENTERPRISE: {"manager": "nobody"}}), headers=hr
    )
    assert_scim_error(unknown_boss, 400, "invalidValue")
    assert "unknown manager" in unknown_boss.json()["detail"]
    bad_email = client.post(
        f"{BASE}/Users", json=user("p-1", emails=[{"value": "ann-at-example"}]), headers=hr
    )
    assert_scim_error(bad_email, 400, "invalidValue")
    assert "ann-at-example" not in bad_email.text
    email_key = client.post(
        f"{BASE}/Users", json=user("ann@example.org", **{ENTERPRISE: {}}), headers=hr
    )
    assert_scim_error(email_key, 400, "invalidValue")
    assert "externalId" in email_key.json()["detail"]
    assert "ann@example.org" not in email_key.text
    other_external = client.post(f"{BASE}/Users", json=user("p-1", externalId="x-9"), headers=hr)
    assert_scim_error(other_external, 400, "invalidValue")
    not_json = client.post(
        f"{BASE}/Users",
        content=b"{nope",
        headers={**hr, "content-type": "application/scim+json"},
    )
    assert_scim_error(not_json, 400, "invalidSyntax")


def test_get_unknown_is_404_in_scim_error_schema(client: TestClient, hr: dict[str, str]) -> None:
    assert_scim_error(client.get(f"{BASE}/Users/nobody", headers=hr), 404)
    assert_scim_error(client.get(f"{BASE}/Bulk", headers=hr), 404)
    not_allowed = client.post(f"{BASE}/Users/p-1", json={}, headers=hr)
    assert_scim_error(not_allowed, 405)
    assert not_allowed.headers["allow"] == "DELETE, GET, PATCH, PUT"
    # Elsewhere the API keeps its own error shape.
    assert client.get("/people/nobody", headers=hr).json() == {"detail": "not found"}


def test_auth_hr_and_integration_only(client: TestClient, sqlite_db: Database) -> None:
    assert_scim_error(client.get(f"{BASE}/Users"), 401)
    learner_token = bearer(sqlite_db, Role.AUDITOR)
    assert_scim_error(client.get(f"{BASE}/Users", headers=learner_token), 403)
    scim_only = bearer(sqlite_db, Role.INTEGRATION, scopes=["scim"])
    assert client.get(f"{BASE}/Users", headers=scim_only).status_code == 200
    assert client.post(f"{BASE}/Users", json=user("p-1"), headers=scim_only).status_code == 201
    # The scim scope opens SCIM and nothing else; other scopes do not open SCIM.
    refused = client.post(
        "/people/import",
        content="external_id,name\np-2,Bo\n",
        headers={**scim_only, "content-type": "text/csv"},
    )
    assert refused.status_code == 403, refused.text
    assert client.get("/people", headers=scim_only).status_code == 403
    importer = bearer(sqlite_db, Role.INTEGRATION, scopes=["people:import", "people:read"])
    forbidden = client.get(f"{BASE}/Users", headers=importer)
    assert_scim_error(forbidden, 403)
    assert "scim" in forbidden.json()["detail"]


def test_filters_and_pagination(db: Database) -> None:
    """On SQLite and PostgreSQL: case-insensitive eq, co/sw with LIKE escapes, and/or."""
    app = create_app(Settings(env="test"), database=db)
    hr = bearer(db, Role.HR_ADMIN)
    with TestClient(app) as client:
        _filters_and_pagination(client, hr)


def _filters_and_pagination(client: TestClient, hr: dict[str, str]) -> None:
    for n in range(1, 8):
        extra = {ENTERPRISE: {"department": "Pharmacy" if n % 2 else "Nursing"}}
        create(client, hr, user(f"p-{n}", **extra))

    def ids(**params: Any) -> list[str]:
        response = client.get(f"{BASE}/Users", params=params, headers=hr)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
        assert body["itemsPerPage"] == len(body["Resources"])
        return [r["userName"] for r in body["Resources"]]

    assert ids(filter='userName eq "P-3"') == ["p-3"]
    assert ids(filter='externalId eq "p-4"') == ["p-4"]
    assert ids(filter='userName eq "p-3" or userName eq "p-5"') == ["p-3", "p-5"]
    department = f'{ENTERPRISE}:department eq "Pharmacy"'
    assert ids(filter=f'{department} and (userName sw "p-1" or userName eq "p-7")') == [
        "p-1",
        "p-7",
    ]
    assert ids(filter='emails co "p-6@"') == ["p-6"]
    assert ids(filter='userName co "%"') == []  # LIKE wildcards are literal
    assert ids(filter='userName sw "p_"') == []
    assert ids(filter="active eq false") == []
    page = client.get(f"{BASE}/Users", params={"startIndex": 3, "count": 2}, headers=hr).json()
    assert page["totalResults"] == 7
    assert page["startIndex"] == 3
    assert [r["userName"] for r in page["Resources"]] == ["p-3", "p-4"]
    assert ids(startIndex=0, count=-5) == []
    for bad in ('userName gt "a"', 'nickName eq "x"', 'userName eq "x" and', "userName eq 5"):
        response = client.get(f"{BASE}/Users", params={"filter": bad}, headers=hr)
        assert_scim_error(response, 400, "invalidFilter")


def test_replace_clears_omitted_core_attributes_and_keeps_the_key(
    client: TestClient, hr: dict[str, str], sqlite_db: Database
) -> None:
    create(client, hr, user("p-1"))
    body = user("p-1", title="pharmacist", timezone="America/Chicago")
    del body["addresses"]
    response = client.put(f"{BASE}/Users/p-1", json=body, headers=hr)
    assert response.status_code == 200, response.text
    person = stored(sqlite_db, "p-1")
    assert person.roles == ["pharmacist"]
    assert person.location is None
    assert person.time_zone == "America/Chicago"
    renamed = client.put(f"{BASE}/Users/p-1", json=user("p-9"), headers=hr)
    assert_scim_error(renamed, 400, "mutability")
    stale = client.put(
        f"{BASE}/Users/p-1", json=body, headers={**hr, "If-Match": 'W/"not-current"'}
    )
    assert_scim_error(stale, 412)
    with sqlite_db.session() as session:
        principal = Principal(
            token_id=1, role=Role.HR_ADMIN, person_id=None, person_external_id=None, label="t"
        )
        directory.patch_person(
            session,
            external_id="p-1",
            fields={"slack_user_id": "U012AB3CD"},
            principal=principal,
            source="api",
        )
    fresh = client.put(
        f"{BASE}/Users/p-1", json=body, headers={**hr, "If-Match": response.headers["etag"]}
    )
    assert fresh.status_code == 412, "the Slack id changed the version"
    fresh = client.put(
        f"{BASE}/Users/p-1",
        json=body,
        headers={**hr, "If-Match": client.get(f"{BASE}/Users/p-1", headers=hr).headers["etag"]},
    )
    assert fresh.status_code == 200, fresh.text
    # An identity provider that does not know the Duly extension does not erase the Slack id.
    assert stored(sqlite_db, "p-1").slack_user_id == "U012AB3CD"


def test_patch_paths(client: TestClient, hr: dict[str, str], sqlite_db: Database) -> None:
    create(client, hr, user("boss"))
    create(client, hr, user("p-1"))
    response = patch(
        client,
        hr,
        "p-1",
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "new@example.org"},
        {"op": "Replace", "path": "name.givenName", "value": "Anna"},
        {"op": "add", "path": f"{ENTERPRISE}:manager", "value": {"value": "boss"}},
        {"op": "replace", "path": "title", "value": "Charge Nurse"},
        {"op": "remove", "path": "addresses"},
    )
    assert response.status_code == 200, response.text
    person = stored(sqlite_db, "p-1")
    assert person.email == "new@example.org"
    assert person.name == "Anna Lee"
    assert person.roles == ["charge_nurse"]
    assert person.location is None
    with sqlite_db.session() as session:
        boss = session.scalar(select(Person.id).where(Person.external_id == "boss"))
    assert person.manager_id == boss
    # Entra ID style: no path, dotted keys, the manager id as a bare string, then removal.
    response = patch(
        client,
        hr,
        "p-1",
        {"op": "replace", "value": {"name.familyName": "Kim", "timezone": "Asia/Tokyo"}},
    )
    assert response.status_code == 200, response.text
    assert stored(sqlite_db, "p-1").name == "Anna Kim"
    assert stored(sqlite_db, "p-1").time_zone == "Asia/Tokyo"
    response = patch(client, hr, "p-1", {"op": "remove", "path": f"{ENTERPRISE}:manager"})
    assert response.status_code == 200, response.text
    assert stored(sqlite_db, "p-1").manager_id is None
    cycle = patch(
        client, hr, "boss", {"op": "replace", "path": f"{ENTERPRISE}:manager", "value": "boss"}
    )
    assert_scim_error(cycle, 400, "invalidValue")
    assert "cycle" in cycle.json()["detail"]
    bad_path = patch(client, hr, "p-1", {"op": "replace", "path": "emails[", "value": "x"})
    assert_scim_error(bad_path, 400, "invalidPath")
    bad_op = patch(client, hr, "p-1", {"op": "move", "path": "title", "value": "x"})
    assert_scim_error(bad_op, 400, "invalidSyntax")


def test_patch_active_false_makes_a_leaver_whom_reminders_skip(
    client: TestClient, hr: dict[str, str], sqlite_db: Database
) -> None:
    create(client, hr, user("p-1"))
    assert stage_skip(stored(sqlite_db, "p-1")) is None
    response = patch(client, hr, "p-1", {"op": "replace", "value": {"active": False}})
    assert response.status_code == 200, response.text
    assert response.json()["active"] is False
    person = stored(sqlite_db, "p-1")
    assert person.employment_status == "terminated"
    skip = stage_skip(person)
    assert skip is not None and skip[0] == "learner:terminated"
    with sqlite_db.session() as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert entry is not None and entry.after is not None
    assert entry.after["kind"] == "leaver"
    # Rehire.
    response = patch(client, hr, "p-1", {"op": "replace", "path": "active", "value": "True"})
    assert response.status_code == 200, response.text
    assert stored(sqlite_db, "p-1").employment_status == "active"


def test_delete_deactivates_and_keeps_history(
    client: TestClient, hr: dict[str, str], sqlite_db: Database
) -> None:
    create(client, hr, user("p-1"))
    response = client.delete(f"{BASE}/Users/p-1", headers=hr)
    assert response.status_code == 204, response.text
    assert stored(sqlite_db, "p-1").employment_status == "terminated"
    got = client.get(f"{BASE}/Users/p-1", headers=hr)
    assert got.status_code == 200
    assert got.json()["active"] is False


def test_discovery(client: TestClient, hr: dict[str, str]) -> None:
    config = client.get(f"{BASE}/ServiceProviderConfig", headers=hr).json()
    assert config["patch"]["supported"] is True
    assert config["filter"]["maxResults"] == 200
    types = client.get(f"{BASE}/ResourceTypes", headers=hr).json()
    assert [t["id"] for t in types["Resources"]] == ["User", "Group"]
    schema_ids = [s["id"] for s in client.get(f"{BASE}/Schemas", headers=hr).json()["Resources"]]
    assert USER in schema_ids and ENTERPRISE in schema_ids
    assert client.get(f"{BASE}/Schemas/{USER}", headers=hr).status_code == 200


def test_import_and_scim_share_the_directory_service(sqlite_db: Database) -> None:
    """The same validation and change records, whichever way a person arrives."""
    principal = Principal(
        token_id=1, role=Role.HR_ADMIN, person_id=None, person_external_id=None, label="t"
    )
    with sqlite_db.session() as session:
        person, change = directory.create_person(
            session,
            fields={"external_id": "p-1", "name": "Ann", "roles": "nurse"},
            principal=principal,
            source="api",
        )
        assert change.kind is ChangeKind.JOINER
        _, moved = directory.patch_person(
            session,
            external_id="p-1",
            fields={"department": "ICU"},
            principal=principal,
            source="api",
        )
        assert moved is not None and moved.kind is ChangeKind.MOVER
        assert moved.changed == ["department"]
        assert moved.before is not None and moved.before["department"] is None
        _, left = directory.deactivate_person(
            session, external_id="p-1", principal=principal, source="api"
        )
        assert left is not None and left.kind is ChangeKind.LEAVER
        assert left.person_id == person.id
        assert len({change.change_id, moved.change_id, left.change_id}) == 3
        with pytest.raises(directory.InvalidPerson, match="time zone"):
            directory.patch_person(
                session,
                external_id="p-1",
                fields={"time_zone": "Nowhere/Else"},
                principal=principal,
                source="api",
            )
        from store.people import parse_json

        rows, errors = parse_json([{"external_id": "p-1", "name": "Ann", "employment_status": ""}])
        outcome = directory.import_directory(
            session, rows=rows, errors=errors, kind="json", principal=principal
        )
        assert [c.kind for c in outcome.changes] == [ChangeKind.REHIRE]


GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def test_groups_are_departments(
    client: TestClient, hr: dict[str, str], sqlite_db: Database
) -> None:
    for n in (1, 2, 3):
        create(client, hr, user(f"p-{n}", **{ENTERPRISE: {}}))
    response = client.post(
        f"{BASE}/Groups",
        json={"schemas": [GROUP], "displayName": "ICU / Night", "members": [{"value": "p-1"}]},
        headers=hr,
    )
    assert response.status_code == 201, response.text
    group = response.json()
    assert response.headers["location"].endswith(f"/Groups/{group['id']}")
    assert [m["value"] for m in group["members"]] == ["p-1"]
    assert stored(sqlite_db, "p-1").department == "ICU / Night"
    again = client.post(
        f"{BASE}/Groups", json={"schemas": [GROUP], "displayName": "ICU / Night"}, headers=hr
    )
    assert_scim_error(again, 409, "uniqueness")

    def members() -> list[str]:
        got = client.get(f"{BASE}/Groups/{group['id']}", headers=hr)
        assert got.status_code == 200, got.text
        return [m["value"] for m in got.json()["members"]]

    ops = {
        "schemas": [PATCH],
        "Operations": [
            {"op": "add", "path": "members", "value": [{"value": "p-2"}, {"value": "p-3"}]}
        ],
    }
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=ops, headers=hr).status_code == 200
    assert members() == ["p-1", "p-2", "p-3"]
    ops = {
        "schemas": [PATCH],
        "Operations": [
            {"op": "remove", "path": 'members[value eq "p-1"]'},
            {"op": "Remove", "path": "members", "value": [{"value": "p-3"}]},
        ],
    }
    assert client.patch(f"{BASE}/Groups/{group['id']}", json=ops, headers=hr).status_code == 200
    assert members() == ["p-2"]
    assert stored(sqlite_db, "p-1").department is None
    assert stored(sqlite_db, "p-2").department == "ICU / Night"
    listed = client.get(
        f"{BASE}/Groups", params={"filter": 'displayName sw "icu"'}, headers=hr
    ).json()
    assert [g["displayName"] for g in listed["Resources"]] == ["ICU / Night"]
    assert_scim_error(
        client.get(f"{BASE}/Groups", params={"filter": 'members eq "p-2"'}, headers=hr),
        400,
        "invalidFilter",
    )
    unknown = client.put(
        f"{BASE}/Groups/{group['id']}",
        json={"schemas": [GROUP], "displayName": "ICU / Night", "members": [{"value": "zz"}]},
        headers=hr,
    )
    assert_scim_error(unknown, 400, "invalidValue")
    assert client.delete(f"{BASE}/Groups/{group['id']}", headers=hr).status_code == 204
    assert stored(sqlite_db, "p-2").department is None
    assert_scim_error(client.get(f"{BASE}/Groups/{group['id']}", headers=hr), 404)
    assert_scim_error(client.get(f"{BASE}/Groups/not-base64!", headers=hr), 404)


def mail_user(address: str, external_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """A User whose userName is a sign-in email (as Okta/Entra send it)."""
    body = user(address, emails=[{"value": address, "type": "work", "primary": True}], **extra)
    body[ENTERPRISE] = {"department": "Nursing"}
    if external_id is not None:
        body["externalId"] = external_id
    return body


def test_user_name_is_stored_apart_from_the_external_id(
    client: TestClient, hr: dict[str, str], sqlite_db: Database
) -> None:
    """userName (an email, as Okta/Entra send it) is kept in user_name; the key is externalId."""
    body = mail_user("ann@example.org", "e-100")
    created = create(client, hr, body)
    assert created["id"] == created["externalId"] == "e-100"
    assert created["userName"] == "ann@example.org"
    assert created[ENTERPRISE]["employeeNumber"] == "e-100"
    person = stored(sqlite_db, "e-100")
    assert person.user_name == "ann@example.org"
    assert client.get(f"{BASE}/Users/e-100", headers=hr).json()["userName"] == "ann@example.org"

    def names(query: str) -> list[str]:
        response = client.get(f"{BASE}/Users", params={"filter": query}, headers=hr)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["Resources"]]

    assert names('userName eq "ANN@example.org"') == ["e-100"]
    assert names('userName eq "e-100"') == []  # userName is not the external id any more
    assert names('externalId eq "e-100"') == ["e-100"]
    assert names(f'{ENTERPRISE}:employeeNumber eq "e-100"') == ["e-100"]
    # employeeNumber alone names the key too; an imported-style userName falls back to the id.
    by_number = mail_user("bo@example.org")
    by_number[ENTERPRISE] = {"employeeNumber": "e-200"}
    assert create(client, hr, by_number)["id"] == "e-200"
    plain = create(client, hr, user("e-300"))
    assert plain["id"] == plain["userName"] == plain["externalId"] == "e-300"
    with sqlite_db.session() as session:
        actions = [e.after for e in session.scalars(select(AuditEntry))]
    assert "ann@example.org" not in repr(actions)

    # userName may change (PUT and PATCH); the external id may not.
    renamed = dict(body, userName="ann.lee@example.org")
    response = client.put(f"{BASE}/Users/e-100", json=renamed, headers=hr)
    assert response.status_code == 200, response.text
    assert response.json()["userName"] == "ann.lee@example.org"
    assert stored(sqlite_db, "e-100").user_name == "ann.lee@example.org"
    patched = patch(client, hr, "e-100", {"op": "replace", "path": "userName", "value": "a@x.org"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["userName"] == "a@x.org"
    rekeyed = patch(client, hr, "e-100", {"op": "replace", "path": "externalId", "value": "e-9"})
    assert_scim_error(rekeyed, 400, "mutability")
    assert_scim_error(
        client.put(f"{BASE}/Users/e-100", json=dict(renamed, externalId="e-9"), headers=hr),
        400,
        "mutability",
    )
    # A PUT without externalId keeps the key.
    keyless = dict(renamed)
    del keyless["externalId"]
    assert client.put(f"{BASE}/Users/e-100", json=keyless, headers=hr).status_code == 200
    assert stored(sqlite_db, "e-100").user_name == "ann.lee@example.org"


def test_user_name_is_unique_ignoring_case_409(
    client: TestClient, hr: dict[str, str], sqlite_db: Database
) -> None:
    create(client, hr, mail_user("ann@example.org", "e-1"))
    create(client, hr, mail_user("bo@example.org", "e-2"))
    create(client, hr, user("e-3"))  # an imported-style person: userName is the id
    twin = client.post(
        f"{BASE}/Users",
        json=mail_user("ANN@example.org", "e-4"),
        headers=hr,
    )
    assert_scim_error(twin, 409, "uniqueness")
    assert "ann@example.org" not in twin.text.lower()
    takes_an_id = client.post(
        f"{BASE}/Users", json=user("e-3", externalId="e-5", **{ENTERPRISE: {}}), headers=hr
    )
    assert_scim_error(takes_an_id, 409, "uniqueness")
    steal = patch(
        client, hr, "e-2", {"op": "replace", "path": "userName", "value": "Ann@Example.org"}
    )
    assert_scim_error(steal, 409, "uniqueness")
    assert stored(sqlite_db, "e-2").user_name == "bo@example.org"
    with sqlite_db.session() as session:
        assert session.scalar(select(Person).where(Person.external_id == "e-4")) is None
