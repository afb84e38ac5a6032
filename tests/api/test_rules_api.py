"""Rules packs through the API: hr_admin validates, previews, deploys and lists versions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from domain.roles import Role
from duly.demo import load_demo_people
from duly.settings import Settings
from store.db import Database
from store.models import AuditEntry
from tests.conftest import bearer
from tests.fakes.temporal import FakeTemporal

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"


@pytest.fixture
def client(db: Database, temporal: FakeTemporal) -> Iterator[TestClient]:
    with db.session() as session:
        assert load_demo_people(session).errors == []
    app = create_app(Settings(env="test"), database=db, temporal_client=temporal)  # type: ignore[arg-type]
    with TestClient(app) as test_client:
        yield test_client


def files(**changes: tuple[str, str]) -> dict[str, str]:
    out = {p.name: p.read_text() for p in MEDICAL.glob("*.yaml")}
    for name, (old, new) in changes.items():
        assert old in out[f"{name}.yaml"]
        out[f"{name}.yaml"] = out[f"{name}.yaml"].replace(old, new, 1)
    return out


def test_only_hr_admin_may_touch_rules(client: TestClient, db: Database) -> None:
    assert client.get("/rules/versions").status_code == 401
    manager = bearer(db, Role.MANAGER, "p-1010")
    assert client.get("/rules/versions", headers=manager).status_code == 403
    assert (
        client.post("/rules/validate", json={"files": files()}, headers=manager).status_code == 403
    )


def test_validate_reports_issues_lint_and_tests(client: TestClient, db: Database) -> None:
    hr = bearer(db, Role.HR_ADMIN)
    good = client.post("/rules/validate", json={"files": files()}, headers=hr)
    assert good.status_code == 200, good.text
    report = good.json()
    assert report["valid"] is True and report["name"] == "medical-practice"
    assert report["tests"] and all(t["passed"] for t in report["tests"])
    bad = client.post(
        "/rules/validate",
        json={
            "files": files(
                status=('when: "days_until_due < 0"\n', "when: \"days_until_due < 'soon'\"\n")
            )
        },
        headers=hr,
    ).json()
    assert bad["valid"] is False
    assert bad["issues"][0]["file"] == "status.yaml" and bad["issues"][0]["line"] > 1
    assert "number" in bad["issues"][0]["message"]
    sneaky = client.post(
        "/rules/validate", json={"files": {"../etc/pack.yaml": "x"}}, headers=hr
    ).json()
    assert sneaky["valid"] is False and "plain names" in sneaky["issues"][0]["message"]


def test_deploy_list_show_and_refuse(
    client: TestClient, db: Database, temporal: FakeTemporal
) -> None:
    hr = bearer(db, Role.HR_ADMIN)
    assert client.get("/rules/active", headers=hr).status_code == 404
    refused = client.post(
        "/rules/deploy",
        json={
            "files": files(status=("    status: overdue\n", "    status: grace_period\n")),
            "message": "oops",
        },
        headers=hr,
    )
    assert refused.status_code == 422 and "fails" in str(refused.json()["detail"]["refused"])
    deployed = client.post(
        "/rules/deploy", json={"files": files(), "message": "clinic rules v1"}, headers=hr
    )
    assert deployed.status_code == 201, deployed.text
    body = deployed.json()
    assert body["active"] is True and body["migration"] == "grandfather"
    assert temporal.started == []  # grandfather: running workflows are left alone
    active = client.get("/rules/active", headers=hr).json()
    assert active["content_hash"] == body["content_hash"] and active["message"] == "clinic rules v1"

    v2 = files(escalation=("at: -30d", "at: -45d"))
    again = client.post(
        "/rules/deploy",
        json={"files": v2, "message": "earlier first reminder", "migration": "apply_now"},
        headers=hr,
    )
    assert again.status_code == 201, again.text
    assert again.json()["rollout_workflow_id"].startswith("pack-rollout/")
    ((request, options),) = temporal.started
    assert request.mode == "apply_now" and request.pack_hash == again.json()["content_hash"]
    assert options["id"] == again.json()["rollout_workflow_id"]

    versions = client.get("/rules/versions", headers=hr).json()
    assert [v["active"] for v in versions] == [True, False]
    shown = client.get(f"/rules/versions/{body['content_hash'][:12]}", headers=hr).json()
    assert "status.yaml" in shown["content"]
    assert client.get("/rules/versions/deadbeef", headers=hr).status_code == 404
    with db.session() as session:
        actions = [e.action for e in session.query(AuditEntry).order_by(AuditEntry.id)]
    assert actions.count("rules.deploy") == 2


def test_preview_through_the_api(client: TestClient, db: Database) -> None:
    hr = bearer(db, Role.HR_ADMIN)
    response = client.post("/rules/preview", json={"files": files()}, headers=hr)
    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["obligations"] == 0 and preview["active_hash"] is None
    # 36 demo people, nobody has an obligation yet: HIPAA applies to everyone active.
    assert preview["new_requirements"]["hipaa-privacy-security"] >= 30
