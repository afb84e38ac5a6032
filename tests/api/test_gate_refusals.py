"""Completion evidence the assessment gate would not count is refused with why (409)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from domain.contracts.assignment import AssignmentState, CompleteSignal
from domain.contracts.obligation import GateSpec
from services.assignments import gate_admits
from services.errors import Conflict

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


class _Handle:
    def __init__(self, state: AssignmentState) -> None:
        self._state = state

    async def query(self, *_: Any, **__: Any) -> AssignmentState:
        return self._state


class _Client:
    def __init__(self, state: AssignmentState) -> None:
        self._state = state

    def get_workflow_handle(self, _workflow_id: str, **_: Any) -> _Handle:
        return _Handle(self._state)


def _state(**changes: Any) -> AssignmentState:
    base: dict[str, Any] = {
        "workflow_id": "assignment/p/ich-gcp/1",
        "person": "p",
        "requirement_id": "ich-gcp",
        "requirement_title": "ICH GCP",
        "cycle": 1,
        "due_date": date(2027, 1, 1),
        "status": "due_soon",
        "stage": None,
        "stages": [],
        "stages_sent": [],
        "acknowledged_at": None,
        "completed_at": None,
        "pack_hash": "h",
        "events": [],
        "gate": GateSpec(passing_score=80, max_attempts=3, retake_after_days=1),
        "attempts_allowed": 3,
    }
    return AssignmentState(**{**base, **changes})


def _evidence(at: datetime) -> CompleteSignal:
    return CompleteSignal(completed_at=at, actor="lms", score_percent=90)


@pytest.mark.asyncio
async def test_a_retake_inside_the_cool_down_is_refused_with_when_it_opens() -> None:
    opens = NOW + timedelta(hours=20)
    client = _Client(_state(failed_attempts=1, retake_opens_at=opens))
    with pytest.raises(Conflict, match=re.escape(opens.isoformat())):
        await gate_admits(client, workflow_id="w", completion=_evidence(NOW))  # type: ignore[arg-type]
    # After the cool-down it goes through (the workflow judges the score).
    await gate_admits(client, workflow_id="w", completion=_evidence(opens))  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_evidence_after_every_attempt_is_used_is_refused() -> None:
    client = _Client(_state(status="failed", failed_attempts=3))
    with pytest.raises(Conflict, match="grant-attempts"):
        await gate_admits(client, workflow_id="w", completion=_evidence(NOW))  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_without_a_gate_nothing_is_refused() -> None:
    client = _Client(_state(gate=None, attempts_allowed=None, status="failed"))
    await gate_admits(client, workflow_id="w", completion=_evidence(NOW))  # type: ignore[arg-type]
