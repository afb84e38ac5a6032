"""Exactly once with slow providers, on a real Temporal dev server (issue 11, item 6).

One stage fans out to 3 recipients x 2 channels inside one ``send_reminder`` activity. When a
provider answers in 12 s and the activity's start-to-close timeout is 30 s, Temporal times the
attempt out and starts another while the first is still running (a synchronous activity cannot
be stopped). Each (recipient, channel) must still reach the provider exactly once.

The real server applies the real timeouts and retries; the numbers are scaled down tenfold to
keep the test short (1.2 s per provider call, a 3 s start-to-close timeout: the same 0.4 ratio),
through a one-activity workflow that calls the production activity with the production retry
policy. The dev server runs on real time, so nothing here depends on the hour it starts.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import BaseModel
from sqlalchemy import select
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.assignment import AssignmentActivities
from domain.contracts.obligation import ReminderRequest, ReminderResult
from domain.kinds import ObligationKind
from duly.settings import Settings
from notifications.providers import build_channels
from rules.loader import load_pack
from store.db import Database
from store.models import Notification, Person
from store.packs import Migration, deploy
from tests.conftest import wheel_binary
from tests.fakes.fixtures import fake_sendgrid, fake_slack  # noqa: F401
from tests.fakes.providers import FakeSendGrid, FakeSlack
from workflows.assignment import RETRY

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
#: The issue's 12 s provider and 30 s timeout, scaled by 1/10.
PROVIDER_SECONDS = 1.2
TIMEOUT_SECONDS = 3.0
#: A Wednesday afternoon, UTC: no weekend or quiet-hours deferral whatever day the suite runs.
FIRED_AT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


class SendStageInput(BaseModel):
    """The reminder to send and the attempt timeout to send it under."""

    request: ReminderRequest
    timeout_seconds: float


@workflow.defn
class SendStageWorkflow:
    """Runs ``send_reminder`` exactly as the obligation workflows do, with a given timeout."""

    @workflow.run
    async def run(self, input: SendStageInput) -> ReminderResult:
        return await workflow.execute_activity_method(
            AssignmentActivities.send_reminder,
            input.request,
            start_to_close_timeout=timedelta(seconds=input.timeout_seconds),
            retry_policy=RETRY,
        )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=wheel_binary("temporal"),
        ui=False,
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


def _org(db: Database) -> tuple[str, str]:
    """A learner, their manager and the manager's manager, each on email and Slack."""
    pack = load_pack(MEDICAL)
    suffix = uuid.uuid4().hex[:6]
    with db.session() as session:
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
        top = Person(
            external_id=f"d-{suffix}",
            name="Edsger Dijkstra",
            email="edsger@example.com",
            slack_user_id="UTOP",
        )
        session.add(top)
        session.flush()
        boss = Person(
            external_id=f"m-{suffix}",
            name="Grace Hopper",
            email="grace@example.com",
            slack_user_id="UBOSS",
            manager_id=top.id,
        )
        session.add(boss)
        session.flush()
        session.add(
            Person(
                external_id=f"p-{suffix}",
                name="Ada Lovelace",
                email="ada@example.com",
                slack_user_id="UADA",
                manager_id=boss.id,
            )
        )
    return f"p-{suffix}", pack.content_hash


def _request(person: str, pack_hash: str) -> ReminderRequest:
    """The medical pack's +7d stage: learner, manager and manager's manager, email and Slack."""
    return ReminderRequest(
        workflow_id=f"assignment/{person}/hipaa-privacy-security/1",
        person=person,
        kind=ObligationKind.TRAINING,
        requirement_title="HIPAA Privacy & Security",
        due_date=date(2026, 11, 18),
        stage="+7d",
        days_before_due=-7,
        pack_hash=pack_hash,
        fired_at=FIRED_AT,
        requirement_id="hipaa-privacy-security",
    )


async def _send_stage(
    server: WorkflowEnvironment,
    db: Database,
    sendgrid: FakeSendGrid,
    slack: FakeSlack,
    request: ReminderRequest,
) -> tuple[ReminderResult, WorkflowHandle[SendStageWorkflow, ReminderResult]]:
    settings = Settings(
        env="test",
        sendgrid_api_key=sendgrid.api_key,
        sendgrid_base_url=sendgrid.base_url,
        slack_bot_token=slack.token,
        slack_base_url=slack.base_url,
        send_lease_seconds=30,
    )
    task_queue = f"slow-{uuid.uuid4().hex[:8]}"
    executor = ThreadPoolExecutor(max_workers=8)
    worker = Worker(
        server.client,
        task_queue=task_queue,
        workflows=[SendStageWorkflow],
        activities=AssignmentActivities(db, settings, build_channels(settings)).all(),
        activity_executor=executor,
        max_concurrent_activities=8,
        # The workflow lives in this test module: no sandbox re-import of the whole test suite.
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    try:
        async with worker:
            handle = await server.client.start_workflow(
                SendStageWorkflow.run,
                SendStageInput(request=request, timeout_seconds=TIMEOUT_SECONDS),
                id=f"send-stage/{uuid.uuid4().hex[:8]}",
                task_queue=task_queue,
                execution_timeout=timedelta(minutes=2),
            )
            result = await handle.result()
    finally:
        executor.shutdown(wait=True)  # timed-out attempts still running finish here
    return result, handle


async def _attempts(handle: WorkflowHandle[SendStageWorkflow, ReminderResult]) -> int:
    """How many attempts Temporal made of the activity (the last one's number)."""
    history = await handle.fetch_history()
    started = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    return max(started)


def _keys(sendgrid: FakeSendGrid) -> list[str]:
    return [r.json["custom_args"]["idempotency_key"] for r in sendgrid.received]


def _ledger(db: Database) -> list[Notification]:
    with db.session() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


async def test_each_key_reaches_a_slow_provider_exactly_once(
    server: WorkflowEnvironment,
    sqlite_db: Database,
    fake_sendgrid: FakeSendGrid,  # noqa: F811
    fake_slack: FakeSlack,  # noqa: F811
) -> None:
    person, pack_hash = _org(sqlite_db)
    fake_sendgrid.slow_all(PROVIDER_SECONDS)
    fake_slack.slow_all(PROVIDER_SECONDS)

    result, handle = await _send_stage(
        server, sqlite_db, fake_sendgrid, fake_slack, _request(person, pack_hash)
    )

    # Six sends of 1.2 s do not fit one 3 s attempt: Temporal ran several.
    assert await _attempts(handle) >= 2
    keys = _keys(fake_sendgrid)
    assert len(keys) == 3 and len(set(keys)) == 3, Counter(keys)  # each key once, no re-send
    assert sorted(k.rsplit("|", 2)[1] for k in keys) == sorted(
        [person, person.replace("p-", "m-"), person.replace("p-", "d-")]
    )
    slack_to = [r.json["channel"] for r in fake_slack.received]
    assert sorted(slack_to) == ["UADA", "UBOSS", "UTOP"], Counter(slack_to)
    rows = _ledger(sqlite_db)
    assert [(r.recipient_role, r.channel, r.status, r.attempts) for r in rows] == [
        (role, channel, "sent", 1)
        for role in ("learner", "manager", "managers_manager")
        for channel in ("email", "slack")
    ]
    assert all(r.claim_token is None and r.lease_until is None for r in rows)
    assert sum("sent" in line for line in result.deliveries) == 6


async def test_a_send_outlasting_its_attempt_is_not_repeated_by_the_next(
    server: WorkflowEnvironment,
    sqlite_db: Database,
    fake_sendgrid: FakeSendGrid,  # noqa: F811
    fake_slack: FakeSlack,  # noqa: F811
) -> None:
    # The learner's email takes 2x the attempt's timeout: the next attempt starts while the
    # first is still waiting for SendGrid, and finds the ledger row claimed ("pending").
    person, pack_hash = _org(sqlite_db)
    fake_sendgrid.slow_next(1, 2 * TIMEOUT_SECONDS)

    result, handle = await _send_stage(
        server, sqlite_db, fake_sendgrid, fake_slack, _request(person, pack_hash)
    )

    assert await _attempts(handle) >= 2
    keys = _keys(fake_sendgrid)
    assert len(keys) == 3 and len(set(keys)) == 3, Counter(keys)
    assert len(fake_slack.received) == 3
    rows = _ledger(sqlite_db)
    assert {(r.recipient_role, r.channel): (r.status, r.attempts) for r in rows} == {
        (role, channel): ("sent", 1)
        for role in ("learner", "manager", "managers_manager")
        for channel in ("email", "slack")
    }
    assert result.deliveries[0] == "learner email sent"
