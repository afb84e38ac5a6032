"""The medical-practice escalation ladder up a real three-level chain, on the time-skipping server.

training-default: -30d learner email; -7d learner email + in_app; 0d learner + manager email;
+7d learner + manager + managers_manager email + slack (unless acknowledged and started);
+14d the HR mailbox by email. Every assertion reads the notification ledger.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from domain.contracts.assignment import AssignmentInput, AssignmentState
from duly.worker import build_worker
from rules.loader import load_pack
from store.db import Database
from store.models import Notification, Person
from store.packs import Migration, deploy
from workflows.assignment import AssignmentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
HR_MAILBOX = "compliance@demo.duly.example"  # pack.yaml contacts.hr_mailbox
REQUIREMENT = "hipaa-privacy-security"

#: (stage, recipient_role, recipient_address, channel, days after the due date)
Row = tuple[str, str, str | None, str, int]


@dataclass(frozen=True)
class Member:
    """One person of the test directory."""

    external_id: str
    email: str
    slack: str


def _member(db: Database, tag: str, key: str, name: str, manager: str | None) -> Member:
    """Add a person (UTC, so reminders land at 09:00 UTC) reporting to ``manager``."""
    external_id = f"{key}-{tag}"
    email = f"{key}.{tag}@clinic.example"
    slack = f"U{key.upper()}{tag.upper()}"[:32]
    with db.session() as session:
        manager_id = None
        if manager is not None:
            boss = session.scalar(select(Person).where(Person.external_id == manager))
            assert boss is not None
            manager_id = boss.id
        session.add(
            Person(
                external_id=external_id,
                name=name,
                email=email,
                slack_user_id=slack,
                roles=[key],
                time_zone="UTC",
                manager_id=manager_id,
            )
        )
    return Member(external_id, email, slack)


def _deploy(db: Database) -> str:
    pack = load_pack(MEDICAL)
    with db.session() as session:
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
    assert pack.info.contacts is not None and pack.info.contacts.hr_mailbox == HR_MAILBOX
    return pack.content_hash


async def _start(
    env: WorkflowEnvironment, task_queue: str, learner: Member, pack_hash: str, days: int
) -> tuple[WorkflowHandle[AssignmentWorkflow, AssignmentState], date]:
    now = await env.get_current_time()
    inp = AssignmentInput(
        person=learner.external_id,
        requirement_id=REQUIREMENT,
        requirement_title="HIPAA Privacy & Security",
        due_date=(now + timedelta(days=days)).date(),
        assigned_by="test",
        pack_hash=pack_hash,
    )
    handle = await env.client.start_workflow(
        AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=task_queue
    )
    return handle, inp.due_date


async def _sleep_days(env: WorkflowEnvironment, days: int) -> None:
    """Skip ``days`` of simulated time in pieces of at most 30 days (one RPC each)."""
    while days > 0:
        step = min(days, 30)
        await env.sleep(timedelta(days=step))
        days -= step


def _ledger(db: Database, workflow_id: str) -> list[Notification]:
    with db.session() as session:
        return list(
            session.scalars(
                select(Notification)
                .where(Notification.workflow_id == workflow_id)
                .order_by(Notification.fired_at, Notification.id)
            )
        )


def _rows(rows: list[Notification], due: date) -> list[Row]:
    return [
        (
            n.stage,
            n.recipient_role or "",
            n.recipient_address,
            n.channel,
            (n.fired_at.date() - due).days,
        )
        for n in rows
    ]


def _check_common(rows: list[Notification], pack_hash: str) -> None:
    """Every send went out (outbox), at 09:00 UTC, on the pinned pack, once."""
    for n in rows:
        assert n.status == "sent", (n.stage, n.recipient_role, n.channel, n.status)
        assert n.pack_hash == pack_hash
        assert n.fallback_of is None
        assert n.fired_at.time().replace(microsecond=0) == time(9, 0), (n.stage, n.fired_at)
    keys = [n.idempotency_key for n in rows]
    assert len(keys) == len(set(keys))


def _ladder(
    learner: Member, manager: Member, director: Member, *, boss7: tuple[Member, Member] | None
) -> list[Row]:
    """The exact expected ledger; ``boss7`` replaces (manager, director) from +7d on."""
    m7, d7 = boss7 or (manager, director)
    return [
        ("-30d", "learner", learner.email, "email", -30),
        ("-7d", "learner", learner.email, "email", -7),
        ("-7d", "learner", learner.external_id, "in_app", -7),
        ("0d", "learner", learner.email, "email", 0),
        ("0d", "manager", manager.email, "email", 0),
        ("+7d", "learner", learner.email, "email", 7),
        ("+7d", "learner", learner.slack, "slack", 7),
        ("+7d", "manager", m7.email, "email", 7),
        ("+7d", "manager", m7.slack, "slack", 7),
        ("+7d", "managers_manager", d7.email, "email", 7),
        ("+7d", "managers_manager", d7.slack, "slack", 7),
        ("+14d", "hr", HR_MAILBOX, "email", 14),
    ]


def _person_ids(db: Database, *members: Member) -> dict[str, int]:
    with db.session() as session:
        return {
            m.external_id: session.scalars(
                select(Person.id).where(Person.external_id == m.external_id)
            ).one()
            for m in members
        }


async def test_overdue_training_climbs_learner_manager_director_then_hr(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    tag = uuid.uuid4().hex[:6]
    pack_hash = _deploy(sqlite_db)
    director = _member(sqlite_db, tag, "director", "Dora Director", None)
    manager = _member(sqlite_db, tag, "manager", "Max Manager", director.external_id)
    learner = _member(sqlite_db, tag, "nurse", "Nina Nurse", manager.external_id)
    task_queue = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=task_queue, db=sqlite_db):
        handle, due = await _start(env, task_queue, learner, pack_hash, days=40)
        await _sleep_days(env, 60)  # past +14d (due + 14 days, 09:00) with nothing after it
        state = await handle.query(AssignmentWorkflow.state)
        await handle.terminate("test done")  # overdue, waiting for completion forever

    rows = _ledger(sqlite_db, handle.id)
    assert _rows(rows, due) == _ladder(learner, manager, director, boss7=None)
    _check_common(rows, pack_hash)
    ids = _person_ids(sqlite_db, learner, manager, director)
    by_role = {(n.stage, n.recipient_role): n.person_id for n in rows}
    assert by_role[("+7d", "learner")] == ids[learner.external_id]
    assert by_role[("+7d", "manager")] == ids[manager.external_id]
    assert by_role[("+7d", "managers_manager")] == ids[director.external_id]
    assert by_role[("+14d", "hr")] is None  # a mailbox, not a person

    assert state.status == "overdue"
    assert state.stages_sent == ["-30d", "-7d", "0d", "+7d", "+14d"]
    sent = [e.detail for e in state.events if e.kind == "reminder_sent"]
    assert sent[-2:] == [
        "+7d: learner email sent; learner slack sent; manager email sent; manager slack sent;"
        " managers_manager email sent; managers_manager slack sent",
        "+14d: hr email sent",
    ]


async def test_chain_is_resolved_at_send_time_after_a_team_move(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    tag = uuid.uuid4().hex[:6]
    pack_hash = _deploy(sqlite_db)
    old_director = _member(sqlite_db, tag, "olddir", "Olga Olddirector", None)
    old_manager = _member(sqlite_db, tag, "oldmgr", "Oscar Oldmanager", old_director.external_id)
    new_director = _member(sqlite_db, tag, "newdir", "Nadia Newdirector", None)
    new_manager = _member(sqlite_db, tag, "newmgr", "Ned Newmanager", new_director.external_id)
    learner = _member(sqlite_db, tag, "nurse", "Nina Nurse", old_manager.external_id)
    task_queue = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=task_queue, db=sqlite_db):
        handle, due = await _start(env, task_queue, learner, pack_hash, days=40)
        await _sleep_days(env, 42)  # 0d (due day, 09:00) has gone out; +7d has not
        before: list[Any] = _rows(_ledger(sqlite_db, handle.id), due)
        assert [r[:2] for r in before][-2:] == [("0d", "learner"), ("0d", "manager")]
        assert before[-1][2] == old_manager.email
        with sqlite_db.session() as session:
            moved = session.scalar(select(Person).where(Person.external_id == learner.external_id))
            assert moved is not None
            moved.manager_id = _person_ids(sqlite_db, new_manager)[new_manager.external_id]
        await _sleep_days(env, 30)  # past +7d and +14d
        await handle.terminate("test done")

    rows = _ledger(sqlite_db, handle.id)
    assert _rows(rows, due) == _ladder(
        learner, old_manager, old_director, boss7=(new_manager, new_director)
    )
    _check_common(rows, pack_hash)
    addresses = {n.recipient_address for n in rows if n.stage in ("+7d", "+14d")}
    assert old_manager.email not in addresses and old_manager.slack not in addresses
    assert old_director.email not in addresses and old_director.slack not in addresses
    # The old director was never escalated to at all: 0d copies the manager only.
    assert old_director.email not in {n.recipient_address for n in rows}
