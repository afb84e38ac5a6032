"""Auth: bearer tokens, roles (401/403) and row-level visibility of obligations."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from api.app import create_app
from api.token_cache import TokenCache
from domain.roles import Role
from duly.cli import app as cli
from duly.demo import load_demo_people
from duly.settings import Settings
from store.db import Database
from store.models import ApiToken, Obligation, Person
from tests.conftest import bearer

#: Public by design: probes, and certificate verification (four fields, rate-limited).
OPEN_PATHS = {"/healthz", "/readyz", "/verify/{code}"}


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    # No Temporal here on purpose: auth must be decided before Temporal is touched.
    settings = Settings(env="test", temporal_address="127.0.0.1:1")
    with TestClient(create_app(settings, database=db)) as test_client:
        yield test_client


@pytest.fixture
def org(db: Database) -> None:
    """The demo org plus one obligation each for a Boston nurse, a Chicago nurse and a manager."""
    with db.session() as session:
        assert load_demo_people(session).errors == []
    with db.session() as session:
        for external_id in ("p-1020", "p-1025", "p-1010"):
            person = session.scalar(select(Person).where(Person.external_id == external_id))
            assert person is not None
            session.add(
                Obligation(
                    workflow_id=f"assignment/{external_id}/hipaa/1",
                    person_id=person.id,
                    kind="training",
                    requirement_id="hipaa",
                    requirement_title="HIPAA",
                    due_date=date(2030, 1, 1),
                    status="assigned",
                    pack_hash="builtin",
                    as_of=datetime.now(UTC),
                )
            )


#: Public endpoints authenticated by a signature instead of a bearer token: acknowledgement
#: links (HMAC over ledger row, stage and recipient) and provider webhooks (provider signatures).
SIGNED_PREFIXES = ("/ack/", "/webhooks/")


def every_protected_route(client: TestClient) -> list[tuple[str, str]]:
    routes = []
    for path, methods in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        if path in OPEN_PATHS or path.startswith(SIGNED_PREFIXES):
            continue
        concrete = path.replace("{assignment_id}", "assignment/p-1/x/1")
        concrete = re.sub(r"\{[^}]+\}", "p-1", concrete)
        routes += [(method.upper(), concrete) for method in methods]
    return routes


def test_every_endpoint_but_health_and_docs_needs_a_token(client: TestClient) -> None:
    routes = every_protected_route(client)
    assert len(routes) >= 10
    for method, path in routes:
        response = client.request(method, path)
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers["www-authenticate"] == "Bearer"
    for path in ("/healthz", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200
    # Verification needs no token: an unknown code is simply not found.
    assert client.get("/verify/NOT-A-CODE").status_code == 404


def test_unknown_and_revoked_tokens_are_401(client: TestClient, db: Database) -> None:
    assert client.get("/obligations", headers={"Authorization": "Bearer nope"}).status_code == 401
    headers = bearer(db, Role.HR_ADMIN)
    assert client.get("/obligations", headers=headers).status_code == 200
    # Revoked by another process (the CLI here): this process trusts its verification until
    # it is DULY_TOKEN_CACHE_SECONDS old; an empty cache (what that moment amounts to) asks
    # the database again. tests/api/test_token_cache.py moves the clock instead.
    with db.session() as session:
        session.execute(update(ApiToken).values(revoked_at=datetime.now(UTC)))
    client.app.state.token_cache = TokenCache(5)  # type: ignore[attr-defined]
    assert client.get("/obligations", headers=headers).status_code == 401


@pytest.mark.parametrize(
    ("role", "method", "path"),
    [
        (Role.LEARNER, "POST", "/assignments"),
        (Role.AUDITOR, "POST", "/assignments"),
        (Role.AUDITOR, "POST", "/people/import"),
        (Role.LEARNER, "POST", "/people/import"),
        (Role.MANAGER, "GET", "/audit"),
        (Role.LEARNER, "GET", "/audit/verify"),
        (Role.INTEGRATION, "POST", "/assignments/assignment/p-1020/hipaa/1/acknowledge"),
        (Role.AUDITOR, "POST", "/assignments/assignment/p-1020/hipaa/1/complete"),
        (Role.LEARNER, "POST", "/assignments/assignment/p-1020/hipaa/1/complete"),
    ],
)
def test_wrong_role_is_403(
    client: TestClient, db: Database, org: None, role: Role, method: str, path: str
) -> None:
    person = "p-1020" if role in (Role.LEARNER, Role.MANAGER) else None
    response = client.request(method, path, headers=bearer(db, role, person), json={})
    assert response.status_code == 403, response.text
    assert role.value in response.json()["detail"]


def visible(client: TestClient, headers: dict[str, str]) -> set[str]:
    response = client.get("/obligations", headers=headers)
    assert response.status_code == 200, response.text
    return {o["person"] for o in response.json()}


def test_row_level_visibility_of_obligations(client: TestClient, db: Database, org: None) -> None:
    assert visible(client, bearer(db, Role.LEARNER, "p-1020")) == {"p-1020"}
    # p-1010 manages the Boston nurses (p-1020); p-1025 reports to a peer manager.
    assert visible(client, bearer(db, Role.MANAGER, "p-1010")) == {"p-1010", "p-1020"}
    # The director above both managers sees both teams, transitively.
    assert visible(client, bearer(db, Role.MANAGER, "p-1002")) == {"p-1010", "p-1020", "p-1025"}
    assert visible(client, bearer(db, Role.AUDITOR)) == {"p-1010", "p-1020", "p-1025"}
    assert visible(client, bearer(db, Role.LEARNER, "p-1025")) == {"p-1025"}


def test_a_learner_cannot_read_someone_elses_assignment(
    client: TestClient, db: Database, org: None
) -> None:
    response = client.get(
        "/assignments/assignment/p-1020/hipaa/1", headers=bearer(db, Role.LEARNER, "p-1025")
    )
    assert response.status_code == 404


def test_tokens_cli_prints_a_token_that_is_stored_hashed(
    db: Database, monkeypatch: pytest.MonkeyPatch, client: TestClient, org: None
) -> None:
    monkeypatch.setenv("DULY_DATABASE_URL", db.url)
    runner = CliRunner()
    result = runner.invoke(cli, ["tokens", "create", "--role", "learner", "--person", "p-1020"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()  # stdout alone: TOKEN=$(duly tokens create …)
    assert token.startswith("duly_")
    with db.session() as session:
        stored = [row.token_hash for row in session.scalars(select(ApiToken))]
    assert token not in stored and len(stored) == 1
    assert visible(client, {"Authorization": f"Bearer {token}"}) == {"p-1020"}

    no_person = runner.invoke(cli, ["tokens", "create", "--role", "manager"])
    assert no_person.exit_code == 2 and "--person" in no_person.output
    bad_role = runner.invoke(cli, ["tokens", "create", "--role", "admin"])
    assert bad_role.exit_code == 2 and "hr_admin" in bad_role.output
    unknown = runner.invoke(cli, ["tokens", "create", "--role", "learner", "--person", "p-9"])
    assert unknown.exit_code == 2 and "unknown person" in unknown.output
