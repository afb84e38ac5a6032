"""Intake evidence inside an assessment gate's retake cool-down: 409, why, and kept (issue 17).

The running assignment's state (its ``state`` query) says when the retake opens; an xAPI
statement or plain completion timestamped before then is not sent to the workflow, answered
409 ``not_counted`` with when the next attempt counts, and kept as a dead letter for HR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domain.contracts.assignment import AssignmentState
from domain.contracts.obligation import GateSpec
from store.db import Database
from tests.api.test_xapi import (  # noqa: F401 - fixtures
    HIPAA_IRI,
    PERSON,
    WORKFLOW,
    client,
    hr,
    integration,
    statement,
)
from tests.fakes.temporal import FakeHandle, FakeTemporal

#: The statements' timestamp (tests.api.test_xapi.statement): two hours before the API's now.
ATTEMPT_AT = datetime(2030, 5, 1, 10, tzinfo=UTC)
#: One failed attempt the evening before, a one-day cool-down: the retake opens after ATTEMPT_AT.
OPENS = datetime(2030, 5, 1, 20, tzinfo=UTC)


def _state(**changes: Any) -> AssignmentState:
    base: dict[str, Any] = {
        "workflow_id": WORKFLOW,
        "person": PERSON,
        "requirement_id": "hipaa-privacy-security",
        "requirement_title": "HIPAA Privacy & Security",
        "cycle": 1,
        "due_date": date(2031, 3, 14),
        "status": "assigned",
        "stage": None,
        "stages": [],
        "stages_sent": [],
        "acknowledged_at": None,
        "completed_at": None,
        "pack_hash": "h",
        "events": [],
        "gate": GateSpec(passing_score=80, max_attempts=3, retake_after_days=1),
        "attempts_allowed": 3,
        "failed_attempts": 1,
        "retake_opens_at": OPENS,
    }
    return AssignmentState(**{**base, **changes})


@dataclass
class _GatedHandle(FakeHandle):
    async def query(self, *_: Any, **__: Any) -> AssignmentState:
        assert isinstance(self.temporal, _GatedTemporal)
        return self.temporal.state


@dataclass
class _GatedTemporal(FakeTemporal):
    """A Temporal whose assignment answers its state: one failed attempt, retake not open."""

    state: AssignmentState = field(default_factory=_state)

    def get_workflow_handle(self, workflow_id: str, **_: Any) -> FakeHandle:
        return _GatedHandle(workflow_id, self)


@pytest.fixture
def temporal() -> FakeTemporal:
    return _GatedTemporal()


def test_an_xapi_attempt_inside_the_cool_down_is_409_with_when_and_kept(
    client: TestClient,  # noqa: F811
    temporal: _GatedTemporal,
    integration: dict[str, str],  # noqa: F811
    hr: dict[str, str],  # noqa: F811
) -> None:
    body = statement("passed", result={"score": {"scaled": 0.95}, "success": True})
    answer = client.post("/xapi/statements", json=body, headers=integration)
    assert answer.status_code == 409, answer.text
    [item] = answer.json()["results"]
    assert item["outcome"] == "not_counted"
    assert "retake cool-down" in item["detail"]
    assert OPENS.isoformat() in item["detail"]  # when the next attempt counts
    assert ATTEMPT_AT.isoformat() in item["detail"]  # which attempt was refused
    assert temporal.signals == []  # nothing reached the workflow
    # Nothing is lost: the statement is kept, as posted, for HR.
    [letter] = client.get("/xapi/dead-letters", headers=hr).json()
    assert letter["source"] == "xapi" and letter["payload"]["id"] == body["id"]
    assert "retake cool-down" in letter["reason"]
    assert item["dead_letter_id"] == letter["id"]  # HR resolves it from the answer
    # Posted again (the LMS retries): still refused, still one dead letter, the same id.
    again = client.post("/xapi/statements", json=body, headers=integration)
    assert again.status_code == 409
    assert again.json()["results"][0]["dead_letter_id"] == letter["id"]
    assert len(client.get("/xapi/dead-letters", headers=hr).json()) == 1


def test_an_attempt_after_the_cool_down_goes_through(
    client: TestClient,  # noqa: F811
    temporal: _GatedTemporal,
    integration: dict[str, str],  # noqa: F811
) -> None:
    temporal.state = _state(retake_opens_at=ATTEMPT_AT - timedelta(hours=1))
    body = statement("passed", result={"score": {"scaled": 0.95}, "success": True})
    answer = client.post("/xapi/statements", json=body, headers=integration)
    assert answer.status_code == 200, answer.text
    assert [name for _, name, _ in temporal.signals] == ["complete"]


def test_attempts_used_up_and_plain_completions_are_refused_too(
    client: TestClient,  # noqa: F811
    temporal: _GatedTemporal,
    integration: dict[str, str],  # noqa: F811
    hr: dict[str, str],  # noqa: F811
    db: Database,
) -> None:
    completion = {
        "person": PERSON,
        "requirement_id": "hipaa-privacy-security",
        "completed_at": ATTEMPT_AT.isoformat(),
        "score": 90,
        "source": "lms",
        "idempotency_key": "attempt-4",
    }
    inside = client.post("/completions", json=completion, headers=integration)
    assert inside.status_code == 409 and inside.json()["outcome"] == "not_counted"
    assert isinstance(inside.json()["dead_letter_id"], int)
    assert OPENS.isoformat() in inside.json()["detail"]

    temporal.state = _state(status="failed", failed_attempts=3, retake_opens_at=None)
    used = client.post("/xapi/statements", json=statement(activity=HIPAA_IRI), headers=integration)
    assert used.status_code == 409
    assert "attempts are used" in used.json()["results"][0]["detail"]
    assert temporal.signals == []
    letters = client.get("/xapi/dead-letters", headers=hr).json()
    assert {letter["source"] for letter in letters} == {"xapi", "completion-webhook"}
