"""Assignment lifecycle on the time-skipping server: extend, exempt, cancel, start, attempts."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from domain.contracts.assignment import (
    AssignmentInput,
    CancelSignal,
    CompleteSignal,
    ExemptSignal,
    ExtendDueDate,
    StartSignal,
)
from domain.contracts.obligation import AcknowledgeSignal
from duly.worker import build_worker
from rules.loader import load_pack
from store.db import Database
from store.models import Notification, Person
from store.packs import Migration, deploy
from workflows.assignment import AssignmentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"


def _org(db: Database) -> tuple[str, str]:
    pack = load_pack(MEDICAL)
    person = f"p-{uuid.uuid4().hex[:6]}"
    with db.session() as session:
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
        session.add(
            Person(external_id=person, name="Ada", email="ada@example.com", time_zone="UTC")
        )
    return person, pack.content_hash


async def _start(env: WorkflowEnvironment, tq: str, person: str, pack_hash: str, days: int) -> Any:
    now = await env.get_current_time()
    inp = AssignmentInput(
        person=person,
        requirement_id="hipaa-privacy-security",
        requirement_title="HIPAA Privacy & Security",
        due_date=(now + timedelta(days=days)).date(),
        assigned_by="test",
        pack_hash=pack_hash,
    )
    return await env.client.start_workflow(
        AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=tq
    )


def _sent(db: Database) -> list[tuple[str, datetime]]:
    with db.session() as session:
        rows = session.scalars(
            select(Notification)
            .where(Notification.channel == "email", Notification.recipient_role == "learner")
            .order_by(Notification.id)
        )
        return [(r.stage, r.fired_at) for r in rows]


async def test_extension_replans_and_refuses_beyond_the_maximum(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    person, pack_hash = _org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await _start(env, tq, person, pack_hash, days=40)
        await env.sleep(timedelta(days=12))  # -30d sent (day 10)
        state = await handle.query(AssignmentWorkflow.state)
        original = state.due_date
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(
                AssignmentWorkflow.extend_due_date,
                ExtendDueDate(
                    new_due_date=original + timedelta(days=45), reason="long leave", actor="hr"
                ),
            )
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(
                AssignmentWorkflow.extend_due_date,
                ExtendDueDate(new_due_date=original, reason="same day", actor="hr"),
            )
        state = await handle.execute_update(
            AssignmentWorkflow.extend_due_date,
            ExtendDueDate(
                new_due_date=original + timedelta(days=20), reason="clinic move", actor="hr"
            ),
        )
        assert state.due_date == original + timedelta(days=20)
        await env.sleep(timedelta(days=60))
        await handle.terminate("test done")
    sent = _sent(sqlite_db)
    # -7d and 0d follow the new due date; -30d had gone out already and is not repeated.
    assert [s for s, _ in sent] == ["-30d", "-7d", "0d", "+7d"]  # +14d goes to HR only
    new_due = original + timedelta(days=20)
    assert sent[1][1].date() == new_due - timedelta(days=7)
    assert sent[2][1].date() == new_due


async def test_exemption_pauses_the_ladder_until_it_lapses(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    person, pack_hash = _org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await _start(env, tq, person, pack_hash, days=40)
        await env.sleep(timedelta(days=5))
        now = await env.get_current_time()
        await handle.signal(
            AssignmentWorkflow.exempt,
            ExemptSignal(
                reason="on leave",
                approver="hr-lead",
                actor="hr",
                expires_on=(now + timedelta(days=30)).date(),
            ),
        )
        await env.sleep(timedelta(days=10))
        state = await handle.query(AssignmentWorkflow.state)
        assert state.status == "exempt"
        assert _sent(sqlite_db) == []  # -30d (day 10) fell in the exemption
        await env.sleep(timedelta(days=30))  # lapsed on day 35; -7d is day 33: passed, 0d day 40
        state = await handle.query(AssignmentWorkflow.state)
        await handle.terminate("test done")
    kinds = [e.kind for e in state.events]
    assert "exempted" in kinds and "exemption_lapsed" in kinds
    assert [s for s, _ in _sent(sqlite_db)] == ["0d"]
    assert state.status == "overdue"


async def test_cancel_stops_reminders_and_closes(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    person, pack_hash = _org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await _start(env, tq, person, pack_hash, days=40)
        await env.sleep(timedelta(days=12))
        await handle.signal(
            AssignmentWorkflow.cancel, CancelSignal(reason="left the clinic", actor="hr")
        )
        state = await handle.result()
        await env.sleep(timedelta(days=40))
    assert state.status == "cancelled"
    assert [s for s, _ in _sent(sqlite_db)] == ["-30d"]


async def test_failed_attempt_does_not_complete_and_unless_skips_the_escalation(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    person, pack_hash = _org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await _start(env, tq, person, pack_hash, days=40)
        now = await env.get_current_time()
        await handle.signal(
            AssignmentWorkflow.complete,
            CompleteSignal(completed_at=now, source="xapi", actor="lms", passed=False, score=0.4),
        )
        await handle.signal(AssignmentWorkflow.start, StartSignal(started_at=now, actor="lms"))
        await handle.signal(
            AssignmentWorkflow.acknowledge, AcknowledgeSignal(acknowledged_at=now, actor="ada")
        )
        await env.sleep(timedelta(days=50))
        state = await handle.query(AssignmentWorkflow.state)
        await handle.terminate("test done")
    kinds = [e.kind for e in state.events]
    assert "attempt_failed" in kinds and "completed" not in kinds and "started" in kinds
    # training-default's +7d stage has `unless: acknowledged and started`: skipped entirely.
    assert "+7d" not in [s for s, _ in _sent(sqlite_db)]
    assert any("skipped: unless" in e.detail for e in state.events)


async def test_recurrence_runs_three_cycles_with_exact_due_dates(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    """HIPAA recurs every 12 months from completion: each cycle is its own workflow."""
    from datetime import date

    from domain.calendar import add_months

    person, pack_hash = _org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    dues: list[date] = []
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await _start(env, tq, person, pack_hash, days=40)
        for cycle in (1, 2, 3):
            for _ in range(1 if cycle == 1 else 10):  # short skips: one RPC must not time out
                await env.sleep(timedelta(days=20 if cycle == 1 else 30))
            state = await handle.query(AssignmentWorkflow.state)
            assert state.cycle == cycle
            dues.append(state.due_date)
            done_at = await env.get_current_time()
            await handle.signal(
                AssignmentWorkflow.complete, CompleteSignal(completed_at=done_at, actor="lms")
            )
            final = await handle.result()
            assert final.status == "compliant"
            assert "next_cycle" in [e.kind for e in final.events]
            if cycle < 3:
                nxt = f"assignment/{person}/hipaa-privacy-security/{cycle + 1}"
                handle = env.client.get_workflow_handle_for(AssignmentWorkflow.run, nxt)
                expected = add_months(done_at.date(), 12)
                assert (await handle.query(AssignmentWorkflow.state)).due_date == expected
        fourth = env.client.get_workflow_handle(f"assignment/{person}/hipaa-privacy-security/4")
        await fourth.terminate("test done")  # the chain goes on: cycle 4 was started
    assert dues[1] > dues[0] and dues[2] > dues[1]
    assert len(set(dues)) == 3
