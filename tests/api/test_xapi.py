"""xAPI statements, plain completions and dead letters (api.routers.xapi)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from temporalio.service import RPCError, RPCStatusCode

from api.app import create_app
from domain.contracts.assignment import CompleteSignal
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

HIPAA_IRI = "https://lms.demo.duly.example/xapi/activities/hipaa-privacy-security"
FIRE_IRI = "https://lms.demo.duly.example/xapi/activities/fire-safety"
VERB = "http://adlnet.gov/expapi/verbs/"
PERSON = "p-1002"
EMAIL = "marcus.testwell@demo.duly.example"
WORKFLOW = f"assignment/{PERSON}/hipaa-privacy-security/1"
#: The API's "now": statements below are timestamped two hours before it.
NOW = datetime(2030, 5, 1, 12, tzinfo=UTC)


@pytest.fixture
def client(db: Database, temporal: FakeTemporal) -> Iterator[TestClient]:
    with db.session() as session:
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
                due_date=date(2031, 3, 14),
                stage=None,
                status="assigned",
                pack_hash=version.content_hash,
                as_of=datetime.now(UTC),
            )
        )
    app = create_app(
        Settings(env="test"),
        database=db,
        temporal_client=temporal,  # type: ignore[arg-type]
        clock=fixed_clock(NOW),
    )
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def integration(db: Database) -> dict[str, str]:
    return bearer(db, Role.INTEGRATION)


@pytest.fixture
def hr(db: Database) -> dict[str, str]:
    return bearer(db, Role.HR_ADMIN)


def statement(
    verb: str = "completed",
    *,
    mbox: str | None = f"mailto:{EMAIL}",
    account: str | None = None,
    activity: str = HIPAA_IRI,
    result: dict[str, Any] | None = None,
    sid: str | None = None,
) -> dict[str, Any]:
    actor: dict[str, Any] = {"objectType": "Agent", "name": "Marcus"}
    if mbox is not None:
        actor["mbox"] = mbox
    if account is not None:
        actor["account"] = {"homePage": "https://lms.demo.duly.example", "name": account}
    body: dict[str, Any] = {
        "id": sid or str(uuid.uuid4()),
        "actor": actor,
        "verb": {"id": VERB + verb, "display": {"en-US": verb}},
        "object": {"id": activity, "objectType": "Activity"},
        "timestamp": "2030-05-01T10:00:00Z",
        "context": {"registration": "11111111-2222-3333-4444-555555555555"},
        "version": "1.0.3",
    }
    if result is not None:
        body["result"] = result
    return body


def test_completed_by_mbox_signals_passed_with_score(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str], db: Database
) -> None:
    body = statement(
        mbox=f"mailto:{EMAIL.upper()}",
        result={"score": {"scaled": 0.92}, "success": True, "completion": True},
    )
    response = client.post("/xapi/statements", json=body, headers=integration)
    assert response.status_code == 200, response.text
    [item] = response.json()["results"]
    assert item["outcome"] == "recorded" and item["workflow_id"] == WORKFLOW
    [(workflow_id, name, signal)] = temporal.signals
    assert (workflow_id, name) == (WORKFLOW, "complete")
    assert isinstance(signal, CompleteSignal)
    assert signal.passed is True and signal.score == 0.92 and signal.source == "xapi"
    assert signal.completed_at == datetime(2030, 5, 1, 10, tzinfo=UTC)
    assert signal.attempt_id == "11111111-2222-3333-4444-555555555555"
    assert signal.actor.startswith("integration:")
    with db.session() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "xapi.statement"))
        assert entry is not None and entry.target == WORKFLOW
        assert entry.after is not None and entry.after["statement_id"] == body["id"]


def test_failed_verb_and_account_actor_signal_passed_false(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str]
) -> None:
    body = statement("failed", mbox=None, account=PERSON, result={"score": {"scaled": 0.4}})
    response = client.post("/xapi/statements", json=body, headers=integration)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["passed"] is False
    [(_, _, signal)] = temporal.signals
    assert signal.passed is False and signal.score == 0.4


def test_untracked_verb_is_ignored(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str], db: Database
) -> None:
    response = client.post("/xapi/statements", json=statement("attempted"), headers=integration)
    assert response.status_code == 200
    assert response.json()["results"][0]["detail"] == "ignored: verb not tracked"
    assert temporal.signals == []
    with db.session() as session:
        assert session.scalars(select(DeadLetter)).all() == []


def test_batch_with_unknown_actor_is_422_and_dead_lettered(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str], db: Database
) -> None:
    stranger = "nobody@elsewhere.example"
    bad = statement("passed", mbox=f"mailto:{stranger}")
    good = statement("passed")
    response = client.post("/xapi/statements", json=[bad, good], headers=integration)
    assert response.status_code == 422
    assert stranger not in response.text
    first, second = response.json()["results"]
    assert first["status"] == 422 and first["outcome"] == "dead_letter"
    assert "unknown actor" in first["detail"] and "mbox not in the directory" in first["detail"]
    assert second["status"] == 200 and second["outcome"] == "recorded"
    assert [s[0] for s in temporal.signals] == [WORKFLOW]
    assert temporal.signals[0][2].passed is True
    with db.session() as session:
        [letter] = session.scalars(select(DeadLetter)).all()
        assert letter.source == "xapi" and letter.dedupe_key == bad["id"]
        assert letter.id == first["dead_letter_id"]


def test_unknown_activity_is_422_and_dead_lettered(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str], db: Database
) -> None:
    body = statement(activity="https://lms.example.com/course/unknown")
    response = client.post("/xapi/statements", json=body, headers=integration)
    assert response.status_code == 422
    assert "unknown activity" in response.json()["results"][0]["detail"]
    assert temporal.signals == []
    # Posting it again keeps one dead letter.
    assert client.post("/xapi/statements", json=body, headers=integration).status_code == 422
    with db.session() as session:
        assert len(session.scalars(select(DeadLetter)).all()) == 1


def test_known_activity_without_open_obligation_is_409(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str], db: Database
) -> None:
    response = client.post(
        "/xapi/statements", json=statement(activity=FIRE_IRI), headers=integration
    )
    assert response.status_code == 409
    assert "no open obligation" in response.json()["results"][0]["detail"]
    assert temporal.signals == []
    with db.session() as session:
        assert len(session.scalars(select(DeadLetter)).all()) == 1


def test_duplicate_statement_id_signals_once(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str]
) -> None:
    body = statement("passed")
    assert client.post("/xapi/statements", json=body, headers=integration).status_code == 200
    again = client.post("/xapi/statements", json=body, headers=integration)
    assert again.status_code == 200
    assert again.json()["results"][0]["outcome"] == "duplicate"
    assert len(temporal.signals) == 1


def test_closed_workflow_is_already_closed(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str]
) -> None:
    temporal.error = RPCError("workflow execution already completed", RPCStatusCode.NOT_FOUND, b"")
    response = client.post("/xapi/statements", json=statement(), headers=integration)
    assert response.status_code == 409
    assert response.json()["results"][0]["detail"] == "already closed"


@pytest.mark.parametrize(
    ("mutate", "field_name"),
    [
        (lambda s: s.pop("actor"), "actor"),
        (lambda s: s["verb"].pop("id"), "verb.id"),
        (lambda s: s.pop("object"), "object"),
        (lambda s: s["actor"].update(mbox="ada@example.com"), "actor.mbox"),
    ],
)
def test_malformed_statement_is_400(
    client: TestClient,
    temporal: FakeTemporal,
    integration: dict[str, str],
    mutate: Any,
    field_name: str,
) -> None:
    body = statement()
    mutate(body)
    response = client.post("/xapi/statements", json=[statement(), body], headers=integration)
    assert response.status_code == 400
    assert field_name in response.json()["detail"]
    assert temporal.signals == []


def test_invalid_json_is_400(client: TestClient, integration: dict[str, str]) -> None:
    response = client.post(
        "/xapi/statements",
        content=b"{not json",
        headers={**integration, "Content-Type": "application/json"},
    )
    assert response.status_code == 400


def test_auth(client: TestClient, db: Database) -> None:
    assert client.post("/xapi/statements", json=statement()).status_code == 401
    learner = bearer(db, Role.LEARNER, PERSON)
    assert client.post("/xapi/statements", json=statement(), headers=learner).status_code == 403
    assert client.get("/xapi/dead-letters", headers=bearer(db, Role.INTEGRATION)).status_code == 403
    hr = bearer(db, Role.HR_ADMIN)
    assert client.post("/xapi/statements", json=statement(), headers=hr).status_code == 200


def test_completions_and_idempotency_key(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str]
) -> None:
    body = {
        "person": PERSON,
        "requirement_id": "hipaa-privacy-security",
        "score": 88,
        "passed": True,
        "source": "lms-x",
        "certificate_id": "CERT-1",
        "idempotency_key": "lms-x-42",
    }
    response = client.post("/completions", json=body, headers=integration)
    assert response.status_code == 200, response.text
    assert response.json()["workflow_id"] == WORKFLOW
    again = client.post("/completions", json=body, headers=integration)
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    [(_, _, signal)] = temporal.signals
    assert signal.source == "lms-x" and signal.certificate_id == "CERT-1" and signal.score == 88


def test_completions_unknown_person_and_requirement(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str], db: Database
) -> None:
    base = {"requirement_id": "hipaa-privacy-security", "source": "lms-x"}
    unknown_person = client.post(
        "/completions", json={**base, "person": "ghost@x.example"}, headers=integration
    )
    assert unknown_person.status_code == 422
    assert "ghost@x.example" not in unknown_person.text
    unknown_req = client.post(
        "/completions",
        json={**base, "person": PERSON, "requirement_id": "basket-weaving"},
        headers=integration,
    )
    assert unknown_req.status_code == 422
    assert temporal.signals == []
    with db.session() as session:
        letters = session.scalars(select(DeadLetter)).all()
        assert {letter.source for letter in letters} == {"completion-webhook"}
        assert len(letters) == 2


def test_dead_letters_list_redacted_and_resolve(
    client: TestClient, integration: dict[str, str], hr: dict[str, str], db: Database
) -> None:
    stranger = "nobody@elsewhere.example"
    client.post("/xapi/statements", json=statement(mbox=f"mailto:{stranger}"), headers=integration)
    listed = client.get("/xapi/dead-letters", headers=hr)
    assert listed.status_code == 200
    [letter] = listed.json()
    assert stranger not in listed.text
    assert letter["payload"]["actor"]["mbox"] == "[redacted]"
    assert letter["source"] == "xapi" and "unknown actor" in letter["reason"]
    resolved = client.post(f"/xapi/dead-letters/{letter['id']}/resolve", headers=hr)
    assert resolved.status_code == 200 and resolved.json()["resolved"] is True
    assert client.get("/xapi/dead-letters", headers=hr).json() == []
    assert client.post("/xapi/dead-letters/999999/resolve", headers=hr).status_code == 404
    with db.session() as session:
        entry = session.scalar(
            select(AuditEntry).where(AuditEntry.action == "xapi.dead_letter.resolve")
        )
        assert entry is not None and entry.target == f"dead_letter/{letter['id']}"
