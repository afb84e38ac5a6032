"""The /integrations API: HR configures connectors, tests them and syncs them now."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from domain.contracts.integration import SyncRequest, integration_schedule_id
from domain.roles import Role
from duly.settings import Settings
from store.db import Database
from store.models import AuditEntry
from tests.conftest import bearer
from tests.fakes.temporal import FakeTemporal


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(env="test", data_dir=tmp_path / "data")


@pytest.fixture
def client(sqlite_db: Database, temporal: FakeTemporal, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, database=sqlite_db, temporal_client=temporal)  # type: ignore[arg-type]
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def hr(sqlite_db: Database) -> dict[str, str]:
    return bearer(sqlite_db, Role.HR_ADMIN)


def test_hr_adds_tests_syncs_changes_and_removes_an_integration(
    client: TestClient,
    hr: dict[str, str],
    temporal: FakeTemporal,
    settings: Settings,
    sqlite_db: Database,
) -> None:
    (settings.drop_root / "provider").mkdir(parents=True)
    created = client.post(
        "/integrations",
        json={"name": "provider csv", "kind": "csv_drop", "config": {"folder": "provider"}},
        headers=hr,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    integration_id = body["integration"]["id"]
    assert body["schedule"] == "created"
    schedule_id = integration_schedule_id(integration_id)
    assert body["integration"]["schedule_id"] == schedule_id
    schedule = temporal.schedules[schedule_id]
    assert schedule.action.args == [SyncRequest(integration_id=integration_id)]
    assert schedule.state.paused is False

    listed = client.get("/integrations", headers=hr).json()
    assert [i["name"] for i in listed] == ["provider csv"]
    assert listed[0]["error_count"] == 0 and listed[0]["last_sync_at"] is None

    tested = client.post(f"/integrations/{integration_id}/test", headers=hr)
    assert tested.status_code == 200 and tested.json()["ok"] is True

    synced = client.post(f"/integrations/{integration_id}/sync", headers=hr)
    assert synced.status_code == 202
    [(request, options)] = temporal.started
    assert request == SyncRequest(integration_id=integration_id, trigger="api")
    assert options["id"] == synced.json()["workflow_id"]

    # Disabling pauses the schedule (updated in place, not created twice).
    changed = client.patch(f"/integrations/{integration_id}", json={"enabled": False}, headers=hr)
    assert changed.status_code == 200 and changed.json()["schedule"] == "updated"
    assert temporal.schedules[schedule_id].state.paused is True

    assert client.delete(f"/integrations/{integration_id}", headers=hr).status_code == 204
    assert schedule_id not in temporal.schedules
    assert client.get(f"/integrations/{integration_id}", headers=hr).status_code == 404
    with sqlite_db.session() as session:
        actions = list(
            session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.action.like("integration.%"))
                .order_by(AuditEntry.id)
            )
        )
    assert actions == ["integration.create", "integration.update", "integration.delete"]


def test_bad_configs_are_422_naming_the_problem(client: TestClient, hr: dict[str, str]) -> None:
    secret = client.post(
        "/integrations",
        json={
            "name": "lms",
            "kind": "moodle",
            "config": {"base_url": "https://moodle.example"},
            "secret_ref": "plain-token-pasted-here",
        },
        headers=hr,
    )
    assert secret.status_code == 422 and "not stored" in secret.text
    assert "plain-token-pasted-here" not in client.get("/integrations", headers=hr).text
    kind = client.post("/integrations", json={"name": "x", "kind": "cornerstone"}, headers=hr)
    assert kind.status_code == 422


def test_connection_test_reports_a_missing_secret(
    client: TestClient, hr: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_LRS_SECRET", raising=False)
    created = client.post(
        "/integrations",
        json={
            "name": "lrs",
            "kind": "xapi_lrs",
            "config": {"endpoint": "https://lrs.example/xapi/"},
            "secret_ref": "env:NO_SUCH_LRS_SECRET",
        },
        headers=hr,
    )
    assert created.status_code == 201, created.text
    tested = client.post(f"/integrations/{created.json()['integration']['id']}/test", headers=hr)
    assert tested.status_code == 200
    assert tested.json() == {
        "ok": False,
        "detail": "the secret env:NO_SUCH_LRS_SECRET is missing or empty on this host",
    }


def test_only_hr_reaches_integrations(client: TestClient, sqlite_db: Database) -> None:
    # Person-bound roles are covered by the role matrix (tests/api/test_role_matrix.py).
    for role in (Role.AUDITOR, Role.INTEGRATION):
        assert client.get("/integrations", headers=bearer(sqlite_db, role)).status_code == 403
