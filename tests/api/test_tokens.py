"""Issue 13 item 4: tokens that end, scopes for machines, the directory decides at request time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

import duly.cli as cli_module
from api.app import create_app
from api.token_cache import TokenCache
from domain.roles import Role
from duly.cli import app as cli
from duly.demo import load_demo_people
from duly.settings import Settings
from store.db import Database
from store.migrate import downgrade, upgrade
from store.models import ApiToken, AuditEntry, Person
from store.tokens import Scope, create_token
from tests.conftest import bearer


@pytest.fixture
def org(sqlite_db: Database) -> Database:
    with sqlite_db.session() as session:
        assert load_demo_people(session).errors == []
    return sqlite_db


@pytest.fixture
def client(org: Database) -> Iterator[TestClient]:
    settings = Settings(env="test", temporal_address="127.0.0.1:1")
    with TestClient(create_app(settings, database=org)) as test_client:
        yield test_client


def header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def people_seen(client: TestClient, headers: dict[str, str]) -> set[str]:
    response = client.get("/people?limit=1000", headers=headers)
    assert response.status_code == 200, response.text
    return {p["external_id"] for p in response.json()}


def audited(db: Database, action: str) -> list[AuditEntry]:
    with db.session() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        for row in rows:
            session.expunge(row)
        return rows


# --- the exploits ------------------------------------------------------------------------------


class FakeMonotonic:
    """The token cache's clock, moved by hand (no sleeping)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_terminated_persons_token_stops_within_the_token_cache_ttl(
    client: TestClient, org: Database
) -> None:
    # The directory decides: a termination written by another process (an import, SCIM, the
    # CLI) ends the person's tokens once this process's verification is DULY_TOKEN_CACHE_SECONDS
    # old (default 5), without any request revoking them.
    clock = FakeMonotonic()
    client.app.state.token_cache = TokenCache(5, monotonic=clock)  # type: ignore[attr-defined]
    learner = bearer(org, Role.LEARNER, "p-1020")
    manager = bearer(org, Role.MANAGER, "p-1010")
    assert client.get("/obligations", headers=learner).status_code == 200
    assert client.get("/obligations", headers=manager).status_code == 200
    with org.session() as session:
        session.execute(
            update(Person)
            .where(Person.external_id.in_(["p-1020", "p-1010"]))
            .values(employment_status="terminated")
        )
    clock.now += 4.9  # inside the TTL: this process still trusts its verification
    for headers in (learner, manager):
        assert client.get("/obligations", headers=headers).status_code == 200
    clock.now += 0.1  # the TTL has passed: asked again, the directory says no
    for headers in (learner, manager):
        response = client.get("/obligations", headers=headers)
        assert response.status_code == 401, response.text
        assert "no longer employed" in response.json()["detail"]


def test_without_the_token_cache_a_terminated_persons_token_stops_at_once(
    org: Database,
) -> None:
    settings = Settings(env="test", temporal_address="127.0.0.1:1", token_cache_seconds=0)
    with TestClient(create_app(settings, database=org)) as client:
        learner = bearer(org, Role.LEARNER, "p-1020")
        assert client.get("/obligations", headers=learner).status_code == 200
        with org.session() as session:
            session.execute(
                update(Person)
                .where(Person.external_id == "p-1020")
                .values(employment_status="terminated")
            )
        response = client.get("/obligations", headers=learner)
        assert response.status_code == 401, response.text
        assert "no longer employed" in response.json()["detail"]


def test_an_integration_token_does_only_what_its_scopes_say(
    client: TestClient, org: Database
) -> None:
    # Created the way an operator would, without naming scopes: the least, xapi:write only.
    with org.session() as session:
        token = create_token(session, role=Role.INTEGRATION, label="LMS")
    lms = header(token)
    csv = "external_id,name,email,manager\np-1020,Ava Fakeworth,attacker@evil.example,\n"
    rewrite = client.post(
        "/people/import", headers=lms, files={"file": ("people.csv", csv, "text/csv")}
    )
    assert rewrite.status_code == 403, rewrite.text
    assert "people:import" in rewrite.json()["detail"]
    with org.session() as session:
        ava = session.scalar(select(Person).where(Person.external_id == "p-1020"))
        assert ava is not None and ava.email != "attacker@evil.example"
    # No reading the directory, the ledger or anyone's obligations either.
    for path in ("/people", "/people/p-1020", "/notifications", "/obligations"):
        assert client.get(path, headers=lms).status_code == 403, path
    # What it is for still works (here: a malformed statement is refused for its content).
    statement = client.post("/xapi/statements", headers=lms, json={})
    assert statement.status_code not in (401, 403), statement.text

    # Scopes given at creation open exactly those routes.
    reader = bearer(org, Role.INTEGRATION, scopes=[Scope.PEOPLE_READ])
    assert "p-1020" in people_seen(client, reader)
    assert client.post("/xapi/statements", headers=reader, json={}).status_code == 403
    completer = bearer(org, Role.INTEGRATION, scopes=[Scope.COMPLETIONS_WRITE])
    complete = "/assignments/assignment/p-1020/hipaa/1/complete"
    assert client.post(complete, headers=lms, json={}).status_code == 403
    assert client.post(complete, headers=completer, json={}).status_code not in (401, 403)


def test_person_tokens_expire_and_integration_tokens_only_by_choice(
    client: TestClient, org: Database
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=91)
    with org.session() as session:
        old = create_token(session, role=Role.LEARNER, person_external_id="p-1020", now=long_ago)
        fresh = create_token(session, role=Role.LEARNER, person_external_id="p-1020")
        machine = create_token(
            session, role=Role.INTEGRATION, scopes=[Scope.PEOPLE_READ], lifetime=None, now=long_ago
        )
    expired = client.get("/obligations", headers=header(old))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    assert client.get("/obligations", headers=header(fresh)).status_code == 200
    assert client.get("/people", headers=header(machine)).status_code == 200


def test_a_managers_visibility_follows_the_directory_at_request_time(
    client: TestClient, org: Database
) -> None:
    manager = bearer(org, Role.MANAGER, "p-1010")
    assert "p-1020" in people_seen(client, manager)
    with org.session() as session:
        other = session.scalar(select(Person.id).where(Person.external_id == "p-1011"))
        session.execute(
            update(Person).where(Person.external_id == "p-1020").values(manager_id=other)
        )
    assert "p-1020" not in people_seen(client, manager)
    assert "p-1020" in people_seen(client, bearer(org, Role.MANAGER, "p-1011"))


# --- listing and revoking ------------------------------------------------------------------------


def test_hr_lists_and_revokes_tokens_through_the_api(client: TestClient, org: Database) -> None:
    hr = bearer(org, Role.HR_ADMIN)
    with org.session() as session:
        victim = create_token(session, role=Role.LEARNER, person_external_id="p-1020")
    listed = client.get("/tokens", headers=hr)
    assert listed.status_code == 200, listed.text
    assert victim not in listed.text and "token_hash" not in listed.text
    row = next(t for t in listed.json() if t["person"] == "p-1020")
    assert row["state"] == "active" and row["expires_at"] is not None
    for role, person in ((Role.LEARNER, "p-1020"), (Role.MANAGER, "p-1010"), (Role.AUDITOR, None)):
        assert client.get("/tokens", headers=bearer(org, role, person)).status_code == 403
        forbidden = client.delete(f"/tokens/{row['id']}", headers=bearer(org, role, person))
        assert forbidden.status_code == 403

    revoked = client.delete(f"/tokens/{row['id']}", headers=hr)
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert client.get("/obligations", headers=header(victim)).status_code == 401
    assert row["id"] not in {t["id"] for t in client.get("/tokens", headers=hr).json()}
    every = client.get("/tokens?all=true", headers=hr).json()
    assert {t["id"]: t["state"] for t in every}[row["id"]] == "revoked"
    (entry,) = audited(org, "token.revoke")
    assert entry.target == f"token:{row['id']}" and entry.actor_role == "hr_admin"
    assert client.delete("/tokens/999999", headers=hr).status_code == 404


def test_cli_creates_lists_and_revokes(
    client: TestClient, org: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DULY_DATABASE_URL", org.url)
    monkeypatch.setenv("DULY_TOKEN_LIFETIME_DAYS", "7")
    clock = FakeMonotonic()
    client.app.state.token_cache = TokenCache(5, monotonic=clock)  # type: ignore[attr-defined]
    runner = CliRunner()
    made = runner.invoke(
        cli,
        ["tokens", "create", "--role", "integration", "--label", "LMS", "--scope", "people:read"],
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert token.startswith("duly_")
    assert client.get("/people", headers=header(token)).status_code == 200
    with org.session() as session:
        stored = session.scalars(select(ApiToken)).one()
        assert stored.scopes == ["people:read"]
        assert stored.expires_at is not None
        assert timedelta(days=6) < stored.expires_at - datetime.now(UTC) <= timedelta(days=7)
    assert [e.action for e in audited(org, "token.create")] == ["token.create"]

    monkeypatch.setattr(cli_module.console, "width", 200)
    listing = runner.invoke(cli, ["tokens", "list"])
    assert listing.exit_code == 0 and "people:read" in listing.output
    assert token not in listing.output

    refused = [
        ["tokens", "create", "--role", "learner", "--person", "p-1020", "--no-expiry"],
        ["tokens", "create", "--role", "learner", "--person", "p-1020", "--scope", "xapi:write"],
        ["tokens", "create", "--role", "integration", "--scope", "root"],
    ]
    for args in refused:
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)

    revoked = runner.invoke(cli, ["tokens", "revoke", str(stored.id)])
    assert revoked.exit_code == 0, revoked.output
    # The CLI is another process: the API stops accepting the token once its own verification
    # is DULY_TOKEN_CACHE_SECONDS old.
    clock.now += 5
    assert client.get("/people", headers=header(token)).status_code == 401
    assert len(audited(org, "token.revoke")) == 1
    assert runner.invoke(cli, ["tokens", "revoke", "424242"]).exit_code == 2


# --- the migration -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_gives_old_tokens_an_expiry_and_old_integrations_their_scopes(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    upgrade(url, "0007")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for role in ("hr_admin", "integration"):
                conn.execute(
                    sa.text(
                        "INSERT INTO api_tokens (token_hash, prefix, role, created_at) "
                        "VALUES (:hash, 'duly_x', :role, :now)"
                    ),
                    {"hash": role * 4, "role": role, "now": datetime.now(UTC)},
                )
        upgrade(url)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT role, expires_at, scopes FROM api_tokens ORDER BY id")
            ).all()
        assert [r.role for r in rows] == ["hr_admin", "integration"]
        assert all(r.expires_at is not None for r in rows)
        assert rows[0].scopes is None
        assert "xapi:write" in str(rows[1].scopes) and "people:import" in str(rows[1].scopes)
        downgrade(url, "0007")
        upgrade(url)
    finally:
        engine.dispose()


def test_every_scope_opens_a_route_and_integration_routes_name_their_scopes(
    client: TestClient,
) -> None:
    """The policy is the one scope table: no scope that opens nothing, no open-ended route."""
    from api.policy import POLICY, Access, Policy
    from domain.roles import Role
    from store.tokens import Scope

    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    app_routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    granted = {g for key, p in POLICY.items() if key in app_routes for g in p.grants}
    assert granted == set(Scope)
    with pytest.raises(ValueError, match="grants"):
        Policy(Access.TOKEN, frozenset({Role.INTEGRATION}))
