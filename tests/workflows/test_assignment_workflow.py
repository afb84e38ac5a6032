"""AssignmentWorkflow on the time-skipping test server: the whole ladder in simulated time."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from domain.contracts.assignment import AssignmentInput, AssignmentState, CompleteSignal
from domain.contracts.obligation import AcknowledgeSignal
from domain.statuses import ObligationStatus
from duly.worker import build_worker
from store.db import Database
from store.models import Notification, Obligation, Person
from tests.timeskip import skip_to
from workflows.assignment import AssignmentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")

HISTORIES = Path(__file__).parent / "histories"


@pytest.fixture
def people(sqlite_db: Database) -> Database:
    with sqlite_db.session() as session:
        session.add(
            Person(
                external_id="p-1",
                name="Ada Lovelace",
                email="ada@example.com",
                roles=["nurse"],
                time_zone="America/New_York",
            )
        )
    return sqlite_db


async def start(
    client: Client, task_queue: str, due: date, offset_minutes: int = 0
) -> WorkflowHandle[AssignmentWorkflow, AssignmentState]:
    # The test server outlives each test, so every test gets its own business key.
    inp = AssignmentInput(
        person="p-1",
        requirement_id=f"hipaa-{uuid.uuid4().hex[:8]}",
        requirement_title="HIPAA Privacy",
        due_date=due,
        utc_offset_minutes=offset_minutes,
        assigned_by="test",
    )
    return await client.start_workflow(
        AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=task_queue
    )


def ledger(db: Database) -> list[Notification]:
    with db.session() as session:
        return list(session.scalars(select(Notification).order_by(Notification.fired_at)))


def obligation(db: Database) -> Obligation:
    with db.session() as session:
        row = session.scalar(select(Obligation))
        assert row is not None
        return row


async def test_whole_ladder_fires_on_the_right_days_then_completes(
    env: WorkflowEnvironment,
    ladder_start: datetime,
    people: Database,
    request: pytest.FixtureRequest,
) -> None:
    """The built-in ladder to the instant from every start of ``LADDER_STARTS``.

    Reminders land at 09:00 New York time on their days (planned in the learner's zone, DST
    included), the status turns overdue at the end of the due day there, whatever the hour or
    day of the month the assignment was made.
    """
    task_queue = f"tq-{uuid.uuid4()}"
    due = (ladder_start + timedelta(days=120)).date()
    offset = -300  # the input's fallback offset; stages are planned in the person's zone
    new_york = ZoneInfo("America/New_York")
    # 09:00 in New York on each stage's own day, whatever the DST offset that day.
    reminder = {
        days: datetime.combine(due - timedelta(days=days), time(9), new_york).astimezone(UTC)
        for days in (90, 60, 30, 14, 7, 0)
    }
    due_at = datetime.combine(due + timedelta(days=1), time(0), new_york).astimezone(UTC)
    minute = timedelta(minutes=1)
    async with build_worker(env.client, task_queue=task_queue, db=people):
        handle = await start(env.client, task_queue, due, offset)
        # A minute either side of each reminder: nothing early, each one on time.
        for days, at in reminder.items():
            before = len(ledger(people))
            await skip_to(env, at - minute)
            assert len(ledger(people)) == before, f"-{days}d sent early"
            await skip_to(env, at + minute)
            assert len(ledger(people)) == before + 1, f"-{days}d not sent at {at}"
        assert obligation(people).status == ObligationStatus.DUE_SOON
        await skip_to(env, due_at - minute)
        assert obligation(people).status == ObligationStatus.DUE_SOON  # still on the due day
        await skip_to(env, due_at + minute)
        assert obligation(people).status == ObligationStatus.OVERDUE

        sent = ledger(people)
        assert [n.stage for n in sent] == ["-90d", "-60d", "-30d", "-14d", "-7d", "0d"]
        for n, days in zip(sent, (90, 60, 30, 14, 7, 0), strict=True):
            assert reminder[days] <= n.fired_at < reminder[days] + minute, (n.stage, n.fired_at)
            assert n.channel == "email" and n.recipient_address == "ada@example.com"
        assert "due in 90 days" in sent[0].subject
        assert sent[-1].subject.startswith("Due today")

        completed_at = await env.get_current_time()
        await handle.signal(
            AssignmentWorkflow.complete,
            CompleteSignal(completed_at=completed_at, source="lms", actor="lms"),
        )
        state = await handle.result()
        assert state.status == ObligationStatus.COMPLETED
        assert state.stages_sent == ["-90d", "-60d", "-30d", "-14d", "-7d", "0d"]
        if os.environ.get("DULY_RECORD_HISTORIES") and request.node.callspec.id == "11:59":
            # Refresh the replay fixture: only when a change is *meant* to alter histories
            # (and then running workflows need workflow.patched).
            history = await handle.fetch_history()
            HISTORIES.mkdir(exist_ok=True)
            (HISTORIES / "assignment_full_ladder.json").write_text(history.to_json())
        row = obligation(people)
        assert row.status == ObligationStatus.COMPLETED and row.completed_at is not None
        assert len(ledger(people)) == 6  # completion sends nothing more
    # The status flipped when the workflow re-decided: at a reminder once due within 30 days,
    # overdue at the due instant itself, completed on the evidence. (Each is recorded after an
    # activity, so at its instant or just after: the server's clock runs while activities do.)
    flips = [(e.at, e.detail.split()[0]) for e in state.events if e.kind == "status"]
    assert [s for _, s in flips] == ["assigned", "due_soon", "overdue", "completed"]
    at = {s: a for a, s in flips}
    assert ladder_start <= at["assigned"] < ladder_start + minute
    assert any(r <= at["due_soon"] < r + minute for r in reminder.values()), at["due_soon"]
    assert due_at - at["due_soon"] <= timedelta(days=30)
    assert due_at <= at["overdue"] < due_at + minute
    assert completed_at <= at["completed"] < completed_at + minute


async def test_completion_stops_the_ladder(env: WorkflowEnvironment, people: Database) -> None:
    task_queue = f"tq-{uuid.uuid4()}"
    now = await env.get_current_time()
    due = (now + timedelta(days=100)).date()
    async with build_worker(env.client, task_queue=task_queue, db=people):
        handle = await start(env.client, task_queue, due)
        await env.sleep(timedelta(days=45))  # past -90d and -60d only
        assert [n.stage for n in ledger(people)] == ["-90d", "-60d"]
        assert obligation(people).status == ObligationStatus.ASSIGNED

        await handle.signal(
            AssignmentWorkflow.acknowledge,
            AcknowledgeSignal(acknowledged_at=await env.get_current_time(), actor="p-1"),
        )
        await handle.signal(
            AssignmentWorkflow.complete,
            CompleteSignal(completed_at=await env.get_current_time(), source="api", actor="hr"),
        )
        state = await handle.result()
        assert state.status == ObligationStatus.COMPLETED
        assert state.acknowledged_at is not None
        await env.sleep(timedelta(days=90))
        assert [n.stage for n in ledger(people)] == ["-90d", "-60d"]


async def test_late_assignment_gets_one_immediate_notice(
    env: WorkflowEnvironment, people: Database
) -> None:
    task_queue = f"tq-{uuid.uuid4()}"
    now = await env.get_current_time()
    due = (now + timedelta(days=10)).date()  # -90d, -60d, -30d, -14d are already past
    async with build_worker(env.client, task_queue=task_queue, db=people):
        handle = await start(env.client, task_queue, due)
        await env.sleep(timedelta(minutes=1))
        sent = ledger(people)
        assert [n.stage for n in sent] == ["-14d"]
        assert "You have been assigned" in sent[0].body
        # The learner got a link; the ledger keeps it redacted (a token acts as the learner).
        assert "/ack/<redacted>" in sent[0].body
        # The notice states the real days left, not the -14d stage's offset.
        days_left = (due - now.date()).days
        assert f"due in {days_left} days" in sent[0].subject, sent[0].subject
        state = await handle.query(AssignmentWorkflow.state)
        assert state.status == ObligationStatus.DUE_SOON
        assert [e.kind for e in state.events].count("stage_skipped") == 3
        await env.sleep(timedelta(days=11))
        assert [n.stage for n in ledger(people)] == ["-14d", "-7d", "0d"]


async def test_retried_send_is_a_no_op(env: WorkflowEnvironment, people: Database) -> None:
    """The ledger key makes a repeated activity call harmless."""
    from activities.assignment import AssignmentActivities
    from domain.contracts.obligation import ReminderRequest
    from domain.kinds import ObligationKind

    acts = AssignmentActivities(people)
    req = ReminderRequest(
        workflow_id="assignment/p-1/hipaa/1",
        person="p-1",
        kind=ObligationKind.TRAINING,
        requirement_title="HIPAA Privacy",
        due_date=date(2030, 1, 1),
        stage="-7d",
        days_before_due=7,
        pack_hash="builtin",
        fired_at=datetime(2029, 12, 25, tzinfo=UTC),
    )
    first = acts.send_reminder(req)
    second = acts.send_reminder(req)
    assert not first.duplicate and second.duplicate
    assert len(ledger(people)) == 1


async def test_assignment_created_after_its_due_date_says_overdue(
    env: WorkflowEnvironment, people: Database
) -> None:
    task_queue = f"tq-{uuid.uuid4()}"
    now = await env.get_current_time()
    due = (now - timedelta(days=2)).date()
    async with build_worker(env.client, task_queue=task_queue, db=people):
        handle = await start(env.client, task_queue, due)
        await env.sleep(timedelta(minutes=1))
        sent = ledger(people)
        assert [n.stage for n in sent] == ["0d"]
        assert sent[0].subject == 'Overdue: your training "HIPAA Privacy" was due 2 days ago'
        state = await handle.query(AssignmentWorkflow.state)
        assert state.status == ObligationStatus.OVERDUE
        assert obligation(people).status == ObligationStatus.OVERDUE


async def test_recorded_histories_replay_against_todays_code() -> None:
    """A change that would break running workflows (non-determinism) fails here.

    The fixture is a real history (whole ladder, then completion) recorded by an earlier version.
    If a change must alter the command sequence, guard it with ``workflow.patched`` and keep this
    fixture; re-record (DULY_RECORD_HISTORIES=1) only with a new one added alongside.
    """
    files = sorted(HISTORIES.glob("*.json"))
    assert files, "no recorded histories to replay"
    from workflows.certification import CertificationWorkflow
    from workflows.mentorship import MentorshipWorkflow
    from workflows.project import ProjectReadinessWorkflow

    replayer = Replayer(
        workflows=[
            AssignmentWorkflow,
            CertificationWorkflow,
            ProjectReadinessWorkflow,
            MentorshipWorkflow,
        ],
        data_converter=pydantic_data_converter,
    )
    for path in files:
        history = WorkflowHistory.from_json("replayed", path.read_text())
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
