"""The role matrix: every route × every caller against the declaration in api/policy.py.

Walks the app's route table, so a route nobody declared fails here before it ships, and calls
each route anonymously, as each role, and on another person's resource (issue 13 item 7).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.errors import iter_routes
from api.policy import POLICY, ROLES, Access, Policy, Scope, markdown
from domain.roles import Role
from duly.demo import load_demo_people
from duly.settings import Settings
from store.db import Database
from store.models import Notification, Obligation, Person
from tests.conftest import bearer
from tests.fakes.temporal import FakeTemporal, NoWorkflows

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- role-table:begin -->", "<!-- role-table:end -->"

#: The demo org: p-1010 manages the learner p-1020; p-1025 reports to a peer manager, so
#: neither p-1010 nor p-1020 may see them.
MANAGER, LEARNER, OTHER = "p-1010", "p-1020", "p-1025"
PERSON_OF = {Role.MANAGER: MANAGER, Role.LEARNER: LEARNER}


def declared_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path template) of every HTTP route the app answers (HEAD rides on GET)."""
    found = set()
    for route in iter_routes(app):
        path = getattr(route, "path_format", None) or getattr(route, "path", None)
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD" and path is not None:
                found.add((method, path))
    return found


@pytest.fixture
def temporal() -> FakeTemporal:
    return NoWorkflows()


@pytest.fixture
def app(sqlite_db: Database, temporal: FakeTemporal) -> Any:
    # Every route per token: the rate limiter (tests/api/test_limits.py) would answer first.
    settings = Settings(
        env="test",
        temporal_address="127.0.0.1:1",
        rate_limit_per_token="off",
        rate_limit_anonymous="off",
        verify_rate_limit_per_minute=0,
    )
    return create_app(settings, database=sqlite_db, temporal_client=temporal)  # type: ignore[arg-type]


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def org(sqlite_db: Database) -> None:
    """The demo org (see :func:`seed_org`)."""
    seed_org(sqlite_db)


def seed_org(db: Database) -> None:
    """The demo people, an assignment, a certification and a notification for three of them."""
    now = datetime.now(UTC)
    with db.session() as session:
        assert load_demo_people(session).errors == []
    with db.session() as session:
        for external_id in (MANAGER, LEARNER, OTHER):
            person = session.scalar(select(Person).where(Person.external_id == external_id))
            assert person is not None
            for kind, workflow_id in (
                ("training", f"assignment/{external_id}/hipaa/1"),
                ("certification", f"certification/{external_id}/bls"),
            ):
                session.add(
                    Obligation(
                        workflow_id=workflow_id,
                        person_id=person.id,
                        kind=kind,
                        requirement_id="hipaa" if kind == "training" else "bls",
                        requirement_title="HIPAA" if kind == "training" else "BLS",
                        due_date=date.today() + timedelta(days=60),
                        status="assigned",
                        pack_hash="builtin",
                        as_of=now,
                    )
                )
            session.add(
                Notification(
                    idempotency_key=f"k-{external_id}",
                    workflow_id=f"assignment/{external_id}/hipaa/1",
                    person_id=person.id,
                    channel="email",
                    provider="outbox",
                    kind="training",
                    stage="-7d",
                    pack_hash="builtin",
                    subject="Reminder",
                    body="Reminder",
                    status="sent",
                    recipient_role="learner",
                    fired_at=now,
                )
            )


def concrete(path: str, person: str) -> str:
    """``path`` with its parameters filled for a resource of ``person``."""
    values = {
        "external_id": person,
        "assignment_id": f"assignment/{person}/hipaa/1",
        "certification_id": f"certification/{person}/bls",
        "workflow_id": f"assignment/{person}/hipaa/1",
        "bulk_id": "bulk-matrix",
        "content_hash": "0" * 64,
        "dead_letter_id": "1",
        "token": "v1.1.forged",
        "code": "NOT-A-CODE",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


def body(method: str, path: str, person: str) -> dict[str, Any] | None:
    """A valid body, so the row-level check (after validation) is what answers."""
    if method not in ("POST", "PUT"):
        return None
    soon = (date.today() + timedelta(days=30)).isoformat()
    today = date.today().isoformat()
    return {
        "/assignments": {"person": person, "requirement": "HIPAA", "due_date": soon},
        "/certifications": {"person": person, "certification_id": "bls", "issued_on": today},
        "/assignments/bulk": {
            "requirement_id": "hipaa",
            "requirement_title": "HIPAA",
            "due_date": soon,
            "selector": {"manager": person},
        },
        "/assignments/{assignment_id}/extend": {"new_due_date": soon, "reason": "on leave"},
        "/assignments/{assignment_id}/cancel": {"reason": "left the team"},
        "/mentorship/request": {"mentee": person, "mentor": MANAGER},
        "/mentorship/profile/mentor": {"person": person},
        "/mentorship/profile/mentee": {"person": person},
        "/mentorship/{mentee}/{mentor}/{n}/cancel": {"reason": "moved away"},
        "/assignments/{assignment_id}/grant-attempts": {"reason": "retrained"},
        "/tracks/{track_id}/enroll": {"person": person},
        "/tracks/{track_id}/withdraw": {"person": person, "reason": "left the project"},
        "/projects": {"name": "P", "client": "C", "go_live": soon, "project_manager": person},
        "/projects/{project_id}/tracks": {"track_id": "x", "people_needed": 1, "due_date": soon},
        "/projects/{project_id}/go-live": {"go_live": soon},
        "/apprenticeship/enroll": {
            "person": person,
            "program_id": "elevator-mechanic",
            "supervisor": MANAGER,
        },
        "/me/apprenticeship/log-hours": {"id": "e-1", "day": today, "kind": "work", "hours": 8},
        "/apprenticeship/{apprenticeship_id}/evaluate": {"id": "ev-1", "day": today, "score": 80},
        "/apprenticeship/{apprenticeship_id}/hours/{entry_id}/reject": {"reason": "wrong day"},
        "/apprenticeship/{apprenticeship_id}/transfer-supervisor": {"supervisor": MANAGER},
        "/certifications/{certification_id}/ce-credits": {
            "credits": 1,
            "activity": "course",
            "earned_on": today,
        },
    }.get(path, {})


def call(
    client: TestClient, method: str, path: str, person: str, headers: dict[str, str]
) -> tuple[int, str]:
    payload = body(method, path, person)
    response = client.request(method, concrete(path, person), headers=headers, json=payload)
    return response.status_code, response.text


@pytest.fixture
def headers(sqlite_db: Database, org: None) -> dict[Role | None, dict[str, str]]:
    tokens: dict[Role | None, dict[str, str]] = {None: {}}
    for role in ROLES:
        tokens[role] = bearer(sqlite_db, role, PERSON_OF.get(role))
    return tokens


def test_every_route_is_declared_and_every_declaration_is_a_route(app: Any) -> None:
    routes = declared_routes(app)
    undeclared = sorted(routes - POLICY.keys())
    assert not undeclared, (
        f"routes without an access policy: {undeclared}; declare each in api/policy.py POLICY "
        "(who may call it and which rows it reaches), then regenerate the README table with "
        "`python -m api.policy --markdown`"
    )
    stale = sorted(POLICY.keys() - routes)
    assert not stale, f"api/policy.py declares routes the app does not have: {stale}"


def test_the_readme_role_table_is_generated_from_the_policy() -> None:
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, f"README.md needs {BEGIN} … {END} around the table"
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    assert table == markdown(), (
        "README.md's role table differs from api/policy.py: replace it with the output of "
        "`python -m api.policy --markdown`"
    )


def expected_problem(policy: Policy, role: Role | None, status: int) -> str | None:
    """Why ``status`` breaks ``policy`` for ``role`` on a resource it may see (None: fine)."""
    if status >= 500 and status != 503:
        return "server error"
    if policy.access is Access.PUBLIC:
        return "refused a public route" if status in (401, 403) else None
    if policy.access is Access.SIGNED:
        return "accepted without a signature" if status < 300 else None
    if role is None:
        return None if status == 401 else "expected 401 without a token"
    if not policy.admits(role):
        return None if status == 403 else "expected 403 for this role"
    if status in (401, 403):
        return "refused an admitted role"
    return None


def test_every_route_answers_every_caller_as_declared(
    client: TestClient, headers: dict[Role | None, dict[str, str]]
) -> None:
    problems = []
    for (method, path), policy in sorted(POLICY.items()):
        for role in (None, *ROLES):
            # An admitted role on a resource it may see: its own, or (manager) a report's.
            person = LEARNER
            if role is Role.MANAGER and policy.scope is Scope.SELF:
                person = MANAGER
            status, text = call(client, method, path, person, headers[role])
            why = expected_problem(policy, role, status)
            if why:
                who = role.value if role else "no token"
                problems.append(f"{method} {path} as {who}: {status} ({why}) {text[:160]}")
    assert not problems, "\n".join(problems)


def test_nobody_reaches_another_persons_resource(
    client: TestClient, headers: dict[Role | None, dict[str, str]]
) -> None:
    problems = []
    checked = 0
    for (method, path), policy in sorted(POLICY.items()):
        if policy.access is not Access.TOKEN or policy.scope in (Scope.ALL, Scope.STARTER):
            continue
        for role in (Role.LEARNER, Role.MANAGER):
            if not policy.admits(role):
                continue
            status, text = call(client, method, path, OTHER, headers[role])
            names_other = OTHER in text or "certification/p-1025" in text
            if "{" in path or method != "GET":
                # A resource (or a write naming a person) of someone the caller cannot see.
                checked += 1
                if status != 404:
                    problems.append(f"{method} {path} as {role.value}: {status}, not 404: {text}")
            elif status != 200 or names_other:
                # A list: answered, and without the other person's rows.
                checked += 1
                problems.append(f"{method} {path} as {role.value} lists {OTHER}: {text[:200]}")
            else:
                checked += 1
    assert not problems, "\n".join(problems)
    assert checked >= 20


def test_a_manager_may_not_act_on_their_own_obligation(
    client: TestClient, headers: dict[Role | None, dict[str, str]]
) -> None:
    problems = []
    for (method, path), policy in sorted(POLICY.items()):
        if policy.scope is Scope.NOT_OWN and policy.admits(Role.MANAGER):
            status, text = call(client, method, path, MANAGER, headers[Role.MANAGER])
            if status != 403:
                problems.append(f"{method} {path}: {status} {text[:200]}")
        if policy.scope is Scope.SELF and policy.admits(Role.MANAGER):
            # Visible (a report) but not themself: 403.
            status, text = call(client, method, path, LEARNER, headers[Role.MANAGER])
            if status != 403:
                problems.append(f"{method} {path} on a report: {status} {text[:200]}")
    assert not problems, "\n".join(problems)


def test_a_new_route_without_a_policy_is_caught(app: Any) -> None:
    assert not declared_routes(app) - POLICY.keys()

    @app.get("/tokens/recent")  # type: ignore[untyped-decorator]
    def list_tokens() -> list[str]:
        return []

    assert declared_routes(app) - POLICY.keys() == {("GET", "/tokens/recent")}
