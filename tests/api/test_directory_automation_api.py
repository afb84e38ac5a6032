"""Directory changes through the API start the automation; the import's dry run saves nothing.

Temporal is the in-memory fake: these check what is started (one ``DirectoryChangeWorkflow``
per changed person, business key person + change id) and what the dry run answers; the
workflows themselves are tested in tests/workflows/test_directory_workflow.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from domain.contracts.directory import DirectoryChangeInput, ReconcileRequest
from domain.roles import Role
from duly.settings import Settings
from rules.loader import load_pack
from store.db import Database
from store.models import Person
from store.packs import Migration, deploy
from tests.conftest import bearer
from tests.fakes.temporal import FakeTemporal

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
BASE = "/scim/v2"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.fixture
def app_client(sqlite_db: Database, temporal: FakeTemporal) -> Iterator[TestClient]:
    with sqlite_db.session() as session:
        deploy(
            session, load_pack(MEDICAL), author="hr", message="v1", migration=Migration.GRANDFATHER
        )
    app = create_app(Settings(env="test"), database=sqlite_db, temporal_client=temporal)  # type: ignore[arg-type]
    with TestClient(app) as client:
        yield client


def _changes(temporal: FakeTemporal) -> list[tuple[str, str]]:
    """(workflow id, change kind) of each DirectoryChangeWorkflow started."""
    return [
        (kwargs["id"], arg.change.kind.value)
        for arg, kwargs in temporal.started
        if isinstance(arg, DirectoryChangeInput)
    ]


PEOPLE = [
    {"external_id": "p-1", "name": "Ada", "roles": ["nurse"], "department": "Nursing"},
    {"external_id": "p-2", "name": "Bob", "roles": ["receptionist"], "department": "Front Office"},
]


def test_import_dry_run_answers_per_person_and_saves_nothing(
    app_client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    hr = bearer(sqlite_db, Role.HR_ADMIN)
    response = app_client.post("/people/import?dry_run=true", json=PEOPLE, headers=hr)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["created"] == 2 and report["automated"] == 0
    plans = {p["external_id"]: p for p in report["dry_run"]}
    assert plans["p-1"]["kind"] == "joiner"
    assert plans["p-1"]["assign"] == [
        "hipaa-privacy-security",
        "fire-safety",
        "osha-bloodborne-pathogens",
        # Certifications that apply and are not held: an obligation to obtain each.
        "bls-certification",
        "acls-certification",
    ]
    assert plans["p-1"]["certificates_needed"] == ["bls-certification", "acls-certification"]
    assert plans["p-2"]["assign"] == ["hipaa-privacy-security", "fire-safety"]
    with sqlite_db.session() as session:
        assert session.scalar(select(func.count()).select_from(Person)) == 0
    assert temporal.started == []


def test_import_starts_one_change_workflow_per_changed_person(
    app_client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    hr = bearer(sqlite_db, Role.HR_ADMIN)
    first = app_client.post("/people/import", json=PEOPLE, headers=hr).json()
    assert first["automated"] == 2
    started = _changes(temporal)
    assert [kind for _, kind in started] == ["joiner", "joiner"]
    assert [wid.split("/")[1] for wid, _ in started] == ["p-1", "p-2"]
    temporal.started.clear()
    moved: list[dict[str, Any]] = [
        {**PEOPLE[0], "department": "Front Office", "roles": ["receptionist"]},
        PEOPLE[1],  # unchanged: nothing started
    ]
    second = app_client.post("/people/import", json=moved, headers=hr).json()
    assert second["automated"] == 1 and [k for _, k in _changes(temporal)] == ["mover"]
    temporal.started.clear()
    # The dry run of a leaver says what closes (the joiner workflows ran on the fake: none).
    leaving = [{**PEOPLE[0], "employment_status": "terminated"}]
    dry = app_client.post("/people/import?dry_run=true", json=leaving, headers=hr).json()
    assert dry["dry_run"][0]["kind"] == "leaver" and dry["dry_run"][0]["revoke_tokens"]


def test_scim_deactivation_starts_a_leaver_workflow(
    app_client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    hr = bearer(sqlite_db, Role.HR_ADMIN)
    created = app_client.post(
        f"{BASE}/Users",
        json={"schemas": [USER], "userName": "p-7", "name": {"formatted": "Cy"}, "title": "nurse"},
        headers=hr,
    )
    assert created.status_code == 201, created.text
    assert delete_and_kinds(app_client, hr, temporal) == ["joiner", "leaver"]


def delete_and_kinds(client: TestClient, hr: dict[str, str], temporal: FakeTemporal) -> list[str]:
    assert client.delete(f"{BASE}/Users/p-7", headers=hr).status_code == 204
    return [kind for _, kind in _changes(temporal)]


def test_automation_off_starts_nothing(sqlite_db: Database, temporal: FakeTemporal) -> None:
    app = create_app(
        Settings(env="test", directory_automation=False),
        database=sqlite_db,
        temporal_client=temporal,  # type: ignore[arg-type]
    )
    hr = bearer(sqlite_db, Role.HR_ADMIN)
    with TestClient(app) as client:
        report = client.post("/people/import", json=PEOPLE, headers=hr).json()
    assert report["created"] == 2 and report["automated"] == 0 and temporal.started == []


def test_deploy_that_changes_applies_to_starts_a_reconciliation(
    app_client: TestClient, sqlite_db: Database, temporal: FakeTemporal
) -> None:
    hr = bearer(sqlite_db, Role.HR_ADMIN)
    files = {p.name: p.read_text() for p in MEDICAL.glob("*.yaml")}
    same = app_client.post("/rules/deploy", json={"files": files, "message": "same"}, headers=hr)
    assert same.status_code == 201, same.text
    assert "directory_reconcile_workflow_id" not in same.json()
    old = "      roles: [nurse, physician, technician]\n"
    assert old in files["requirements.yaml"]
    files["requirements.yaml"] = files["requirements.yaml"].replace(
        old, "      roles: [physician]\n"
    )
    narrowed = app_client.post(
        "/rules/deploy", json={"files": files, "message": "OSHA: physicians only"}, headers=hr
    )
    assert narrowed.status_code == 201, narrowed.text
    body = narrowed.json()
    assert body["audience_changed"] == ["osha-bloodborne-pathogens"]
    assert body["directory_reconcile_workflow_id"].startswith("directory-reconcile/pack-")
    assert [a for a, _ in temporal.started if isinstance(a, ReconcileRequest)]
