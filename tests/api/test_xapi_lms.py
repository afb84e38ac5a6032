# ruff: noqa: F811 - the fixtures imported from test_xapi are parameters here
"""xAPI as LMSs really send it: hashed and OpenID actors, SubStatements, voiding, cmi5, races."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from domain.contracts.assignment import CompleteSignal
from duly.settings import Settings
from services import intake, restarts
from store.db import Database
from store.models import AuditEntry, DeadLetter, Obligation
from tests.api.test_xapi import (  # noqa: F401 - fixtures
    EMAIL,
    HIPAA_IRI,
    NOW,
    PERSON,
    WORKFLOW,
    client,
    integration,
    statement,
)
from tests.fakes.temporal import FakeTemporal, not_found

SATISFIED = "https://w3id.org/xapi/adl/verbs/satisfied"


def _actor(**ifi: Any) -> dict[str, Any]:
    return {"objectType": "Agent", **ifi}


def test_mbox_sha1sum_actor_is_matched_to_the_person(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str]
) -> None:
    body = statement(mbox=None)
    body["actor"] = _actor(mbox_sha1sum=hashlib.sha1(f"mailto:{EMAIL}".encode()).hexdigest())
    response = client.post("/xapi/statements", json=body, headers=integration)
    assert response.status_code == 200, response.text
    assert [(w, n) for w, n, _ in temporal.signals] == [(WORKFLOW, "complete")]


def test_unknown_mbox_sha1sum_is_dead_lettered(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str], db: Database
) -> None:
    body = statement(mbox=None)
    body["actor"] = _actor(mbox_sha1sum="0" * 40)
    response = client.post("/xapi/statements", json=body, headers=integration)
    assert response.status_code == 422
    assert "mbox_sha1sum" in response.json()["results"][0]["detail"]
    assert temporal.signals == []


def test_openid_actor_is_matched_under_a_configured_base(
    db: Database, temporal: FakeTemporal, integration: dict[str, str], client: TestClient
) -> None:
    body = statement(mbox=None)
    body["actor"] = _actor(openid=f"https://id.example.org/u/{PERSON}")
    # Without DULY_XAPI_OPENID_BASES nobody can be named by openid: dead-lettered, saying why.
    refused = client.post("/xapi/statements", json=body, headers=integration)
    assert refused.status_code == 422
    assert "DULY_XAPI_OPENID_BASES" in refused.json()["results"][0]["detail"]
    client.app.state.settings = Settings(  # type: ignore[attr-defined]
        env="test", xapi_openid_bases="https://other.example/, https://id.example.org/u/"
    )
    body["id"] = str(uuid.uuid4())
    response = client.post("/xapi/statements", json=body, headers=integration)
    assert response.status_code == 200, response.text
    assert [w for w, _, _ in temporal.signals] == [WORKFLOW]


def test_substatement_and_group_do_not_reject_the_completion_in_the_batch(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str]
) -> None:
    sub = statement()
    sub["object"] = {
        "objectType": "SubStatement",
        "actor": {"mbox": f"mailto:{EMAIL}"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/attempted"},
        "object": {"id": HIPAA_IRI},
    }
    group = statement()
    group["actor"] = {"objectType": "Group", "member": [{"mbox": f"mailto:{EMAIL}"}]}
    done = statement("passed")
    response = client.post("/xapi/statements", json=[sub, group, done], headers=integration)
    assert response.status_code == 200, response.text
    outcomes = [(r["outcome"], r["detail"][:30]) for r in response.json()["results"]]
    assert outcomes[0] == ("ignored", "ignored: a SubStatement object")
    assert outcomes[1] == ("ignored", "ignored: a Group actor names n")
    assert outcomes[2][0] == "recorded"
    assert [w for w, _, _ in temporal.signals] == [WORKFLOW]


def test_satisfied_is_ignored_unless_the_pack_says_it_completes(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str]
) -> None:
    # The demo pack leaves cmi5_satisfied at its default (ignore).
    body = statement()
    body["verb"] = {"id": SATISFIED}
    response = client.post("/xapi/statements", json=body, headers=integration)
    assert response.status_code == 200
    assert response.json()["results"][0]["detail"].startswith("ignored: satisfied")
    assert temporal.signals == []


def test_pair_of_one_attempt_racing_the_next_cycle_is_not_a_409(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str], db: Database
) -> None:
    first = statement("completed")
    assert client.post("/xapi/statements", json=first, headers=integration).status_code == 200
    # The run closed on the first statement (the workflow wrote completed_at) and cycle 2 has
    # not written its row yet: the person has nothing open for the requirement.
    with db.session() as session:
        session.execute(
            update(Obligation)
            .where(Obligation.workflow_id == WORKFLOW)
            .values(completed_at=datetime(2030, 5, 1, 10, tzinfo=UTC), status="completed")
        )
    response = client.post("/xapi/statements", json=statement("passed"), headers=integration)
    assert response.status_code == 200, response.text
    [item] = response.json()["results"]
    assert item["outcome"] == "ignored" and "cycle 1 already completed" in item["detail"]
    assert len(temporal.signals) == 1


def test_pair_racing_a_closed_run_whose_row_is_still_open_is_not_a_409(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str]
) -> None:
    assert client.post("/xapi/statements", json=statement(), headers=integration).status_code == 200
    temporal.error = not_found()  # the run completed; its read model row is not updated yet
    response = client.post("/xapi/statements", json=statement("passed"), headers=integration)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["outcome"] == "ignored"


def test_closed_run_without_a_recorded_completion_is_still_409(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str]
) -> None:
    temporal.error = not_found()
    response = client.post("/xapi/statements", json=statement(), headers=integration)
    assert response.status_code == 409


def _void(target: str) -> dict[str, Any]:
    body = statement()
    body["id"] = str(uuid.uuid4())
    body["verb"] = {"id": "http://adlnet.gov/expapi/verbs/voided"}
    body["object"] = {"objectType": "StatementRef", "id": target}
    return body


def test_voiding_reverses_the_completion_it_recorded(
    client: TestClient,
    temporal: FakeTemporal,
    integration: dict[str, str],
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    restarted: list[dict[str, Any]] = []

    async def restart(session: Any, client: Any, **kwargs: Any) -> Any:
        restarted.append(kwargs)
        return type("R", (), {"run_id": "run-2"})()

    monkeypatch.setattr(restarts, "restart_assignment", restart)
    done = statement("passed")
    assert client.post("/xapi/statements", json=done, headers=integration).status_code == 200
    with db.session() as session:
        session.execute(
            update(Obligation)
            .where(Obligation.workflow_id == WORKFLOW)
            .values(completed_at=datetime(2030, 5, 1, 10, tzinfo=UTC), status="completed")
        )
    void = _void(done["id"])
    response = client.post("/xapi/statements", json=void, headers=integration)
    assert response.status_code == 200, response.text
    [item] = response.json()["results"]
    assert item["outcome"] == "recorded" and "reversed" in item["detail"]
    assert [r["workflow_id"] for r in restarted] == [WORKFLOW]
    assert "voided" in restarted[0]["reason"]
    with db.session() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == intake.VOID_ACTION))
        assert entry is not None and entry.target == WORKFLOW
        assert entry.after is not None and entry.after["reversed"] is True
    # The same voiding statement again changes nothing.
    again = client.post("/xapi/statements", json=void, headers=integration)
    assert again.json()["results"][0]["outcome"] == "duplicate"
    assert len(restarted) == 1


def test_voiding_a_completion_that_started_a_later_cycle_goes_to_hr(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str], db: Database
) -> None:
    done = statement("passed")
    assert client.post("/xapi/statements", json=done, headers=integration).status_code == 200
    with db.session() as session:
        row = session.scalar(select(Obligation).where(Obligation.workflow_id == WORKFLOW))
        assert row is not None
        row.completed_at = datetime(2030, 5, 1, 10, tzinfo=UTC)
        session.add(
            Obligation(
                workflow_id=WORKFLOW.replace("/1", "/2"),
                person_id=row.person_id,
                kind=row.kind,
                requirement_id=row.requirement_id,
                requirement_title=row.requirement_title,
                cycle=2,
                due_date=row.due_date,
                status="assigned",
                pack_hash=row.pack_hash,
                as_of=NOW,
            )
        )
    response = client.post("/xapi/statements", json=_void(done["id"]), headers=integration)
    assert response.status_code == 409
    [item] = response.json()["results"]
    assert item["outcome"] == "dead_letter" and "cycle 2" in item["detail"]
    with db.session() as session:
        assert session.get(DeadLetter, item["dead_letter_id"]) is not None


def test_voiding_what_duly_never_recorded_is_ignored(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str]
) -> None:
    response = client.post("/xapi/statements", json=_void(str(uuid.uuid4())), headers=integration)
    assert response.status_code == 200
    assert response.json()["results"][0]["detail"].startswith("ignored: Duly recorded nothing")


def test_a_failed_attempt_voided_is_recorded_without_a_restart(
    client: TestClient, temporal: FakeTemporal, integration: dict[str, str]
) -> None:
    failed = statement("failed")
    assert client.post("/xapi/statements", json=failed, headers=integration).status_code == 200
    response = client.post("/xapi/statements", json=_void(failed["id"]), headers=integration)
    assert response.status_code == 200
    assert "had not completed" in response.json()["results"][0]["detail"]
    signal = temporal.signals[0][2]
    assert isinstance(signal, CompleteSignal) and signal.passed is False
