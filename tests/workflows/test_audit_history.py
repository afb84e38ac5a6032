"""Auditors read a workflow's raw history (Replayer-ready) and a readable timeline."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from api.app import create_app
from domain.contracts.assignment import AssignmentInput, CompleteSignal, ExtendDueDate
from domain.contracts.obligation import AcknowledgeSignal
from domain.roles import Role
from duly.settings import Settings
from duly.worker import WORKFLOWS, build_worker
from rules.loader import load_pack
from store.db import Database
from store.models import Person
from store.packs import Migration, deploy
from tests.conftest import bearer
from workflows.assignment import AssignmentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"


async def test_history_replays_and_timeline_reads_like_a_story(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    pack = load_pack(MEDICAL)
    person = f"p-{uuid.uuid4().hex[:6]}"
    with sqlite_db.session() as session:
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
        session.add(
            Person(external_id=person, name="Ada", email="ada@example.com", time_zone="UTC")
        )
    tq = f"tq-{uuid.uuid4()}"
    now = await env.get_current_time()
    inp = AssignmentInput(
        person=person,
        requirement_id="hipaa-privacy-security",
        requirement_title="HIPAA Privacy & Security",
        due_date=(now + timedelta(days=40)).date(),
        assigned_by="hr",
        pack_hash=pack.content_hash,
    )
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await env.client.start_workflow(
            AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=tq
        )
        await env.sleep(timedelta(days=12))
        await handle.signal(
            AssignmentWorkflow.acknowledge,
            AcknowledgeSignal(acknowledged_at=await env.get_current_time(), actor="ada"),
        )
        await handle.execute_update(
            AssignmentWorkflow.extend_due_date,
            ExtendDueDate(new_due_date=inp.due_date + timedelta(days=5), reason="move", actor="hr"),
        )
        await handle.signal(
            AssignmentWorkflow.complete,
            CompleteSignal(completed_at=await env.get_current_time(), actor="lms", score=0.9),
        )
        await handle.result()

    app = create_app(Settings(env="test"), database=sqlite_db, temporal_client=env.client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://duly") as http:
        auditor = bearer(sqlite_db, Role.AUDITOR)
        raw = await http.get(f"/audit/workflows/{inp.workflow_id}/history", headers=auditor)
        assert raw.status_code == 200, raw.text
        timeline = await http.get(f"/audit/workflows/{inp.workflow_id}/timeline", headers=auditor)
        assert timeline.status_code == 200, timeline.text
        learner = bearer(sqlite_db, Role.LEARNER, person)
        forbidden = await http.get(f"/audit/workflows/{inp.workflow_id}/history", headers=learner)
        assert forbidden.status_code == 403
        missing = await http.get("/audit/workflows/assignment/x/y/1/history", headers=auditor)
        assert missing.status_code == 404

    # The raw history is what Temporal's Replayer accepts: replay it against today's code.
    history = WorkflowHistory.from_json(inp.workflow_id, raw.text)
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)

    events = timeline.json()
    kinds = [e["event"] for e in events]
    assert kinds[0] == "assigned"
    for expected in (
        "decision",
        "reminder",
        "message",
        "acknowledge",
        "extend_due_date",
        "complete",
    ):
        assert expected in kinds, (expected, kinds)
    assert kinds[-1] == "closed: completed" or "closed: completed" in kinds
    decisions = [e for e in events if e["event"] == "decision"]
    assert all(d["pack_hash"] == pack.content_hash and d["rule"] for d in decisions)
    assert decisions[-1]["status"] == "compliant"
    message = next(e for e in events if e["event"] == "message")
    assert message["recipient"] == "learner" and message["provider"] == "outbox"
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
