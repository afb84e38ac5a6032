"""Pinned rules packs: ladders from the pack, decisions as activities, rebase and apply_now."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from domain.contracts.assignment import AssignmentInput, AssignmentState, CompleteSignal
from domain.contracts.packs import AdoptPackSignal, PackMigration, RolloutRequest
from duly.worker import build_worker
from rules.loader import load_pack
from rules.model import Pack
from store.db import Database
from store.models import Notification, Person
from store.packs import Migration, deploy
from workflows.assignment import AssignmentWorkflow
from workflows.rollout import PackRolloutWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")


MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
REQUIREMENT = "hipaa-privacy-security"


def _v2(tmp_path: Path, at: str = "-21d") -> Pack:
    """The medical pack with the -7d training stage moved to ``at``."""
    target = tmp_path / f"medical{at}"
    shutil.copytree(MEDICAL, target)
    policy = target / "escalation.yaml"
    text = policy.read_text()
    old = "{at: -7d, notify: [learner], channels: [email, in_app]}"
    assert old in text
    policy.write_text(
        text.replace(old, f"{{at: {at}, notify: [learner], channels: [email, in_app]}}")
    )
    return load_pack(target)


@pytest.fixture
def packs(sqlite_db: Database, tmp_path: Path) -> tuple[Database, Pack, Pack, str]:
    v1, v2 = load_pack(MEDICAL), _v2(tmp_path)
    person = f"p-{uuid.uuid4().hex[:8]}"  # the test server outlives each test: fresh keys
    with sqlite_db.session() as session:
        session.add(
            Person(
                external_id=person,
                name="Ada Lovelace",
                email="ada@example.com",
                roles=["nurse"],
                department="Nursing",
                time_zone="UTC",
            )
        )
        deploy(session, v1, author="hr", message="v1", migration=Migration.GRANDFATHER)
    return sqlite_db, v1, v2, person


async def _start(
    env: WorkflowEnvironment, task_queue: str, person: str, pack: Pack, days: int
) -> WorkflowHandle[AssignmentWorkflow, AssignmentState]:
    now = await env.get_current_time()
    inp = AssignmentInput(
        person=person,
        requirement_id=REQUIREMENT,
        requirement_title="HIPAA Privacy & Security",
        due_date=(now + timedelta(days=days)).date(),
        assigned_by="test",
        pack_hash=pack.content_hash,
    )
    return await env.client.start_workflow(
        AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=task_queue
    )


def _sent(db: Database) -> list[tuple[str, str]]:
    """(stage, pack hash) of each stage sent, in order (a stage has a row per recipient/channel)."""
    with db.session() as session:
        rows = session.scalars(
            select(Notification).order_by(Notification.fired_at, Notification.id)
        )
        return list(dict.fromkeys((n.stage, n.pack_hash) for n in rows))


def _rows(db: Database, stage: str) -> set[tuple[str | None, str, str]]:
    """(recipient role, channel, provider) of every ledger row of ``stage``."""
    with db.session() as session:
        rows = session.scalars(select(Notification).where(Notification.stage == stage))
        return {(n.recipient_role, n.channel, n.provider) for n in rows}


async def _decisions(handle: WorkflowHandle[Any, Any]) -> list[dict[str, Any]]:
    """The decide_status results recorded in the workflow history."""
    history = await handle.fetch_history()
    scheduled: dict[int, str] = {}
    out = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name
            )
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            if scheduled.get(attrs.scheduled_event_id) == "decide_status":
                out.append(json.loads(attrs.result.payloads[0].data))
    return out


async def test_pinned_pack_drives_ladder_and_every_decision_is_in_history(
    env: WorkflowEnvironment, packs: tuple[Database, Pack, Pack, str]
) -> None:
    db, v1, _, person = packs
    task_queue = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=task_queue, db=db):
        handle = await _start(env, task_queue, person, v1, days=40)
        await env.sleep(timedelta(days=60))
        # training-default: -30d, -7d, 0d, +7d, +14d (not the built-in 90/60/30/14/7/0).
        assert [stage for stage, _ in _sent(db)] == ["-30d", "-7d", "0d", "+7d", "+14d"]
        assert {h for _, h in _sent(db)} == {v1.content_hash}
        # Recipients and channels come from training-default's stages (all to the outbox here:
        # no provider credentials). The person has no manager: that role goes unresolved.
        assert _rows(db, "-7d") == {("learner", "email", "outbox"), ("learner", "in_app", "outbox")}
        assert _rows(db, "0d") == {("learner", "email", "outbox")}
        assert _rows(db, "+14d") == {("hr", "email", "outbox")}  # the pack's HR mailbox
        state = await handle.query(AssignmentWorkflow.state)
        assert state.status == "overdue" and state.pack_hash == v1.content_hash
        await handle.signal(
            AssignmentWorkflow.complete,
            CompleteSignal(completed_at=await env.get_current_time(), actor="lms"),
        )
        final = await handle.result()
        # HIPAA recurs: completion started cycle 2. End it, or this module's shared test
        # server would wait for a worker on this task queue when the next test skips time.
        await env.client.get_workflow_handle(f"assignment/{person}/{REQUIREMENT}/2").terminate(
            "test done"
        )
    assert final.status == "compliant"
    decisions = await _decisions(handle)
    rules = [d["rule"] for d in decisions]
    assert rules[0] == "catch_all"  # 40 days out: nothing due yet
    assert "training_due_soon" in rules and "training_overdue" in rules
    assert rules[-1] == "training_completed"
    assert all(d["pack_hash"] == v1.content_hash for d in decisions)
    assert decisions[-1]["facts"]["completed"] is True
    assert decisions[-1]["facts"]["roles"] == ["nurse"]


async def test_apply_now_replans_at_once_through_the_rollout(
    env: WorkflowEnvironment, packs: tuple[Database, Pack, Pack, str]
) -> None:
    db, v1, v2, person = packs
    task_queue = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=task_queue, db=db):
        handle = await _start(env, task_queue, person, v1, days=40)
        await env.sleep(timedelta(days=12))  # -30d was sent under v1
        with db.session() as session:
            deploy(session, v2, author="hr", message="v2", migration=Migration.APPLY_NOW)
        result = await env.client.execute_workflow(
            PackRolloutWorkflow.run,
            RolloutRequest(
                pack_hash=v2.content_hash, mode=PackMigration.APPLY_NOW, deployed_by="hr"
            ),
            id=f"rollout-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        assert result.signalled >= 1
        await env.sleep(timedelta(hours=1))
        state = await handle.query(AssignmentWorkflow.state)
        assert state.pack_hash == v2.content_hash
        assert [e.kind for e in state.events].count("pack_adopted") == 1
        await env.sleep(timedelta(days=50))
        sent = _sent(db)
    assert [s for s, _ in sent] == ["-30d", "-21d", "0d", "+7d", "+14d"]
    assert sent[0][1] == v1.content_hash and {h for _, h in sent[1:]} == {v2.content_hash}


async def test_rebase_waits_for_the_next_step(
    env: WorkflowEnvironment, packs: tuple[Database, Pack, Pack, str]
) -> None:
    db, v1, v2, person = packs
    task_queue = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=task_queue, db=db):
        handle = await _start(env, task_queue, person, v1, days=40)
        await env.sleep(timedelta(days=12))
        with db.session() as session:
            deploy(session, v2, author="hr", message="v2", migration=Migration.REBASE)
        await handle.signal(
            AssignmentWorkflow.adopt_pack,
            AdoptPackSignal(pack_hash=v2.content_hash, mode=PackMigration.REBASE),
        )
        await env.sleep(timedelta(days=5))  # day 17: v1's next step (-7d, day 33) not reached
        assert (await handle.query(AssignmentWorkflow.state)).pack_hash == v1.content_hash
        await env.sleep(timedelta(days=17))  # day 34: the step came, v2 adopted
        state = await handle.query(AssignmentWorkflow.state)
        assert state.pack_hash == v2.content_hash
        # v2 has no -7d; its -21d (day 19) lies between the last notice and now: sent once, late.
        assert [s for s, _ in _sent(db)] == ["-30d", "-21d"]


async def test_a_pack_without_the_requirement_is_not_adopted(
    env: WorkflowEnvironment, packs: tuple[Database, Pack, Pack, str], tmp_path: Path
) -> None:
    db, v1, _, person = packs
    target = tmp_path / "other"
    shutil.copytree(MEDICAL, target)
    for name in ("requirements.yaml", "tracks.yaml"):  # the tracks name the requirement too
        copied = target / name
        copied.write_text(copied.read_text().replace(REQUIREMENT, "hipaa-renamed"))
    other = load_pack(target)
    task_queue = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=task_queue, db=db):
        handle = await _start(env, task_queue, person, v1, days=40)
        with db.session() as session:
            deploy(session, other, author="hr", message="rename", migration=Migration.APPLY_NOW)
        await handle.signal(
            AssignmentWorkflow.adopt_pack,
            AdoptPackSignal(pack_hash=other.content_hash, mode=PackMigration.APPLY_NOW),
        )
        await env.sleep(timedelta(hours=1))
        state = await handle.query(AssignmentWorkflow.state)
    assert state.pack_hash == v1.content_hash
    assert "pack_not_adopted" in [e.kind for e in state.events]


async def test_apply_now_after_a_late_notice_sends_nothing_more(
    env: WorkflowEnvironment, packs: tuple[Database, Pack, Pack, str], tmp_path: Path
) -> None:
    db, v1, _, person = packs
    v3 = _v2(tmp_path, "-2d")
    task_queue = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=task_queue, db=db):
        handle = await _start(env, task_queue, person, v1, days=1)  # late: one -7d notice now
        await env.sleep(timedelta(minutes=5))
        with db.session() as session:
            deploy(session, v3, author="hr", message="v3", migration=Migration.APPLY_NOW)
        await handle.signal(
            AssignmentWorkflow.adopt_pack,
            AdoptPackSignal(pack_hash=v3.content_hash, mode=PackMigration.APPLY_NOW),
        )
        await env.sleep(timedelta(hours=1))
        state = await handle.query(AssignmentWorkflow.state)
        # v3's -2d fell due after the -7d stage but before the learner's late notice went
        # out minutes ago: that notice covers it, nothing to catch up.
        assert state.pack_hash == v3.content_hash
        assert _sent(db) == [("-7d", v1.content_hash)]
