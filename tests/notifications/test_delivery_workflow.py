"""Reminders through the real SDKs against the provider fakes, driven by a pinned pack.

Exactly one message per (stage, recipient, channel) even when a provider fails twice first, a
permanent failure falls back to the next channel, and a worker restart re-sends nothing.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from domain.contracts.assignment import AssignmentInput
from duly.settings import Settings
from duly.worker import build_worker
from rules.loader import load_pack
from store.db import Database
from store.models import Notification, Person
from store.packs import Migration, deploy
from tests.fakes.fixtures import fake_sendgrid, fake_slack, fake_twilio  # noqa: F401
from tests.fakes.providers import FakeSendGrid, FakeSlack, FakeTwilio
from workflows.assignment import AssignmentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"


def _settings(sendgrid: FakeSendGrid, twilio: FakeTwilio, slack: FakeSlack) -> Settings:
    return Settings(
        env="test",
        sendgrid_api_key=sendgrid.api_key,
        sendgrid_base_url=sendgrid.base_url,
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from_number="+15550009999",
        twilio_base_url=twilio.base_url,
        slack_bot_token=slack.token,
        slack_base_url=slack.base_url,
    )


def _org(db: Database) -> tuple[str, str]:
    pack = load_pack(MEDICAL)
    suffix = uuid.uuid4().hex[:6]
    with db.session() as session:
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
        boss = Person(
            external_id=f"m-{suffix}",
            name="Grace Hopper",
            email="grace@example.com",
            slack_user_id="UBOSS",
            time_zone="UTC",
        )
        session.add(boss)
        session.flush()
        session.add(
            Person(
                external_id=f"p-{suffix}",
                name="Ada Lovelace",
                email="ada@example.com",
                phone="+15550100001",
                slack_user_id="UADA",
                time_zone="UTC",
                manager_id=boss.id,
            )
        )
    return f"p-{suffix}", pack.content_hash


async def _start(env: WorkflowEnvironment, task_queue: str, person: str, pack_hash: str) -> Any:
    now = await env.get_current_time()
    inp = AssignmentInput(
        person=person,
        requirement_id="hipaa-privacy-security",
        requirement_title="HIPAA Privacy & Security",
        due_date=(now + timedelta(days=40)).date(),
        assigned_by="test",
        pack_hash=pack_hash,
    )
    return await env.client.start_workflow(
        AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=task_queue
    )


def _emails(fake: FakeSendGrid) -> list[tuple[str, str]]:
    out = []
    for request in fake.accepted:
        body = request.body
        assert isinstance(body, dict)
        to = body["personalizations"][0]["to"][0]["email"]
        out.append((to, body["custom_args"]["stage"]))
    return out


async def test_exactly_once_through_failures_fallbacks_and_a_worker_restart(
    env: WorkflowEnvironment,
    sqlite_db: Database,
    fake_sendgrid: FakeSendGrid,  # noqa: F811
    fake_twilio: FakeTwilio,  # noqa: F811
    fake_slack: FakeSlack,  # noqa: F811
) -> None:
    person, pack_hash = _org(sqlite_db)
    settings = _settings(fake_sendgrid, fake_twilio, fake_slack)
    task_queue = f"tq-{uuid.uuid4()}"
    fake_sendgrid.fail_next(2)  # the first reminder's email fails twice, then goes out
    # No workflow cache (so no sticky queue) on the worker that will stop: the time-skipping
    # test server never hands a sticky task over to the next worker (a real server does, after
    # a timeout), and would stall.
    first_worker = build_worker(
        env.client,
        task_queue=task_queue,
        db=sqlite_db,
        settings=settings,
        max_cached_workflows=0,
    )
    async with first_worker:
        handle = await _start(env, task_queue, person, pack_hash)
        await env.sleep(timedelta(days=12))  # -30d (day 10)
    # The worker is gone for a while; timers wait for the next one.
    fake_slack.permanent_next(1, error="user_not_found")  # the learner's Slack at +7d
    async with build_worker(env.client, task_queue=task_queue, db=sqlite_db, settings=settings):
        for _ in range(10):  # in steps: one long skip can outlast the RPC deadline
            await env.sleep(timedelta(days=5))
    # (No query here: the time-skipping server routes a query after a worker restart to the old
    # worker's sticky queue and times out; the ledger is the evidence anyway.)
    stages = list(dict.fromkeys(r.stage for r in _ledger(sqlite_db)))
    assert stages == ["-30d", "-7d", "0d", "+7d", "+14d"]
    assert handle.id.startswith("assignment/")
    emails = _emails(fake_sendgrid)
    assert len(emails) == len(set(emails)), emails  # never twice
    assert emails == [
        ("ada@example.com", "-30d"),
        ("ada@example.com", "-7d"),
        ("ada@example.com", "0d"),
        ("grace@example.com", "0d"),
        ("ada@example.com", "+7d"),
        ("grace@example.com", "+7d"),
        ("compliance@demo.duly.example", "+14d"),
    ]
    assert len(fake_sendgrid.received) == len(emails) + 2  # the two failed attempts
    # +7d: Slack to the learner failed permanently -> SMS fallback; the manager got Slack.
    assert [r.body["channel"] for r in fake_slack.accepted] == ["UBOSS"]  # type: ignore[index]
    assert [r.body["To"] for r in fake_twilio.accepted] == ["+15550100001"]  # type: ignore[index]
    with sqlite_db.session() as session:
        rows = list(session.scalars(select(Notification).where(Notification.stage == "+7d")))
    by = {(r.recipient_role, r.channel): r for r in rows}
    assert by[("learner", "slack")].status == "failed"
    assert by[("learner", "slack")].error_code == "slack:user_not_found"
    assert by[("learner", "sms")].fallback_of == by[("learner", "slack")].id
    first = next(r for r in _ledger(sqlite_db) if r.stage == "-30d" and r.channel == "email")
    assert (first.attempts, first.status, first.provider) == (3, "sent", "sendgrid")
    assert first.provider_message_id in fake_sendgrid.message_ids


def _ledger(db: Database) -> list[Notification]:
    with db.session() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


async def test_a_bounce_after_sending_falls_back_to_the_next_channel(
    env: WorkflowEnvironment,
    sqlite_db: Database,
    fake_sendgrid: FakeSendGrid,  # noqa: F811
    fake_twilio: FakeTwilio,  # noqa: F811
    fake_slack: FakeSlack,  # noqa: F811
) -> None:
    from domain.contracts.obligation import RedeliverSignal
    from notifications.delivery import Deliverer  # noqa: F401 - the layer under test

    person, pack_hash = _org(sqlite_db)
    settings = _settings(fake_sendgrid, fake_twilio, fake_slack)
    task_queue = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=task_queue, db=sqlite_db, settings=settings):
        handle = await _start(env, task_queue, person, pack_hash)
        await env.sleep(timedelta(days=11))  # -30d went out by email
        [email] = [r for r in _ledger(sqlite_db) if r.stage == "-30d"]
        # What the SendGrid webhook does on a hard bounce: mark the row, signal the workflow.
        with sqlite_db.session() as session:
            row = session.get(Notification, email.id)
            assert row is not None
            row.status, row.error_code = "failed", "sendgrid:bounce"
        await handle.signal(
            AssignmentWorkflow.redeliver,
            RedeliverSignal(notification_id=email.id, stage="-30d", reason="sendgrid:bounce"),
        )
        await env.sleep(timedelta(hours=1))
        state = await handle.query(AssignmentWorkflow.state)
        # Its ladder still has timers: end it, or the module's shared test server would wait
        # for a worker on this task queue when the next test skips time.
        await handle.terminate("test done")
    rows = [r for r in _ledger(sqlite_db) if r.stage == "-30d"]
    assert [(r.channel, r.status) for r in rows] == [("email", "failed"), ("slack", "sent")]
    assert rows[1].fallback_of == email.id
    assert [r.body["channel"] for r in fake_slack.accepted] == ["UADA"]  # type: ignore[index]
    assert len(fake_sendgrid.accepted) == 1  # the bounced email was not sent again
    kinds = [e.kind for e in state.events]
    assert "delivery_failed" in kinds and "redelivered" in kinds


async def test_quiet_hours_defer_within_the_day_and_never_drop(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    from store.models import NotificationPreference

    person, pack_hash = _org(sqlite_db)
    with sqlite_db.session() as session:
        ada = session.scalar(select(Person).where(Person.external_id == person))
        assert ada is not None
        # Quiet 08:00-12:00 (UTC): the 09:00 reminders wait until noon. Overnight 08:00-07:00
        # would push the due-day notice to tomorrow: that one goes out at once instead.
        session.add(
            NotificationPreference(person_id=ada.id, quiet_start="08:00", quiet_end="12:00")
        )
    task_queue = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=task_queue, db=sqlite_db):
        handle = await _start(env, task_queue, person, pack_hash)
        for _ in range(11):
            await env.sleep(timedelta(days=5))
        await handle.terminate("test done")
    rows = _ledger(sqlite_db)
    learner = [r for r in rows if r.recipient_role == "learner" and r.channel == "email"]
    assert [r.stage for r in learner] == ["-30d", "-7d", "0d", "+7d"]
    assert {(r.fired_at.hour, r.fired_at.minute) for r in learner} == {(12, 0)}
    manager = [r for r in rows if r.recipient_role == "manager"]
    assert manager and {r.fired_at.hour for r in manager} == {9}  # no quiet hours of his own


async def test_same_day_early_reminders_fold_into_one_digest_but_due_day_notices_never(
    env: WorkflowEnvironment,
    sqlite_db: Database,
    fake_sendgrid: FakeSendGrid,  # noqa: F811
    fake_twilio: FakeTwilio,  # noqa: F811
    fake_slack: FakeSlack,  # noqa: F811
) -> None:
    person, pack_hash = _org(sqlite_db)
    settings = _settings(fake_sendgrid, fake_twilio, fake_slack)
    task_queue = f"tq-{uuid.uuid4()}"
    now = await env.get_current_time()
    handles = []
    async with build_worker(env.client, task_queue=task_queue, db=sqlite_db, settings=settings):
        for requirement, title in (
            ("hipaa-privacy-security", "HIPAA Privacy & Security"),
            ("fire-safety", "Fire Safety"),
        ):
            inp = AssignmentInput(
                person=person,
                requirement_id=requirement,
                requirement_title=title,
                due_date=(now + timedelta(days=40)).date(),
                assigned_by="test",
                pack_hash=pack_hash,
            )
            handles.append(
                await env.client.start_workflow(
                    AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=task_queue
                )
            )
        for _ in range(9):
            await env.sleep(timedelta(days=5))  # through -30d, -7d and the due day
        for handle in handles:
            await handle.terminate("test done")
    learner = [
        (r.body["custom_args"]["stage"], r.body["subject"])  # type: ignore[index]
        for r in fake_sendgrid.accepted
        if r.body["personalizations"][0]["to"][0]["email"] == "ada@example.com"  # type: ignore[index]
    ]
    stages = [stage for stage, _ in learner]
    # -30d and -7d: both trainings in one digest each; 0d: two separate due-day notices.
    assert stages.count("0d") == 2
    digests = [(stage, subject) for stage, subject in learner if stage.startswith("digest-")]
    assert len(digests) == 2, learner
    assert not any(stage in {"-30d", "-7d"} for stage in stages)
    bodies = [
        r.body["content"][0]["value"]  # type: ignore[index]
        for r in fake_sendgrid.accepted
        if r.body["custom_args"]["stage"].startswith("digest-")  # type: ignore[index]
    ]
    assert all("HIPAA Privacy & Security" in b and "Fire Safety" in b for b in bodies)
    folded = [r for r in _ledger(sqlite_db) if r.status == "folded"]
    assert len(folded) == 4 and all(
        r.channel_ref and r.channel_ref.startswith("digest:") for r in folded
    )


async def test_refused_credentials_hold_the_stage_without_fallback_and_deliver_once_fixed(
    env: WorkflowEnvironment,
    sqlite_db: Database,
    fake_sendgrid: FakeSendGrid,  # noqa: F811
    fake_twilio: FakeTwilio,  # noqa: F811
    fake_slack: FakeSlack,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 11, item 7: SendGrid 401 holds the emails (no fallback), HR sees them, they go out."""
    from pydantic import SecretStr

    from api.app import create_app
    from notifications.delivery import credential_alerts
    from tests.conftest import bearer
    from tests.fakes.temporal import FakeTemporal

    credential_alerts.reset()
    person, pack_hash = _org(sqlite_db)
    fixed = _settings(fake_sendgrid, fake_twilio, fake_slack).model_copy(
        update={"held_retry_initial_seconds": 60, "held_retry_max_seconds": 900}
    )
    revoked = fixed.model_copy(update={"sendgrid_api_key": SecretStr("SG.revoked-key-0000")})
    task_queue = f"tq-{uuid.uuid4()}"
    now = await env.get_current_time()
    # Due 8 days ago: created late, the workflow sends the +7d stage at once (learner, manager
    # and manager's manager by email and Slack; this learner's manager has no manager).
    inp = AssignmentInput(
        person=person,
        requirement_id="hipaa-privacy-security",
        requirement_title="HIPAA Privacy & Security",
        due_date=(now - timedelta(days=8)).date(),
        assigned_by="test",
        pack_hash=pack_hash,
    )
    handle = None
    try:
        broken_worker = build_worker(
            env.client,
            task_queue=task_queue,
            db=sqlite_db,
            settings=revoked,
            max_cached_workflows=0,
        )
        with caplog.at_level(logging.INFO):
            async with broken_worker:
                handle = await env.client.start_workflow(
                    AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=task_queue
                )
                await env.sleep(timedelta(minutes=40))  # held retries after 1, 2, 4, 8, 16 min
        rows = _ledger(sqlite_db)
        assert {(r.recipient_role, r.channel): r.status for r in rows} == {
            ("learner", "email"): "held",
            ("learner", "slack"): "sent",
            ("manager", "email"): "held",
            ("manager", "slack"): "sent",
        }  # no fallback rows (SMS, in-app): a bad key is not the recipients' fault
        held = [r for r in rows if r.status == "held"]
        assert all(r.error_code == "sendgrid:401" and r.attempts >= 3 for r in held)
        assert fake_sendgrid.accepted == [] and len(fake_sendgrid.received) >= 6
        assert len(fake_slack.accepted) == 2 and fake_twilio.received == []
        alerts = [
            r for r in caplog.records if r.name == "duly.delivery" and r.levelno >= logging.ERROR
        ]
        assert len(alerts) == 1, [r.getMessage() for r in alerts]  # one line, not one per message
        assert "sendgrid" in alerts[0].getMessage()
        assert "DULY_SENDGRID_API_KEY" in alerts[0].getMessage()
        assert "SG.revoked-key-0000" not in caplog.text and "ada@example.com" not in caplog.text

        # HR sees what is held and why.
        with TestClient(
            create_app(fixed, database=sqlite_db, temporal_client=FakeTemporal())  # type: ignore[arg-type]
        ) as api:
            listed = api.get(
                "/notifications", params={"status": "held"}, headers=bearer(sqlite_db, "hr_admin")
            )
        assert listed.status_code == 200
        assert sorted((n["recipient_role"], n["channel"]) for n in listed.json()) == [
            ("learner", "email"),
            ("manager", "email"),
        ]
        assert all("DULY_SENDGRID_API_KEY" in n["error_reason"] for n in listed.json())

        # The operator fixes the key and restarts the worker: the held emails go out, once.
        async with build_worker(env.client, task_queue=task_queue, db=sqlite_db, settings=fixed):
            for _ in range(4):
                await env.sleep(timedelta(minutes=15))
            await handle.terminate("test done")
        rows = _ledger(sqlite_db)
        assert {(r.recipient_role, r.channel): r.status for r in rows} == {
            ("learner", "email"): "sent",
            ("learner", "slack"): "sent",
            ("manager", "email"): "sent",
            ("manager", "slack"): "sent",
        }
        assert sorted(_emails(fake_sendgrid)) == [
            ("ada@example.com", "+7d"),
            ("grace@example.com", "+7d"),
        ]
        assert len(fake_slack.accepted) == 2  # nothing re-sent
        assert credential_alerts.broken() == {}
    finally:
        # A failed assertion must not leave timers running in the module's shared server.
        if handle is not None:
            with contextlib.suppress(Exception):
                await handle.terminate("test done")


async def test_a_learner_who_left_gets_nothing_and_nobody_is_escalated_to(
    env: WorkflowEnvironment,
    sqlite_db: Database,
    fake_sendgrid: FakeSendGrid,  # noqa: F811
    fake_twilio: FakeTwilio,  # noqa: F811
    fake_slack: FakeSlack,  # noqa: F811
) -> None:
    """Issue 11, item 8: a person imported as terminated mid-ladder; the ledger says why."""
    from store.people import import_people, parse_csv

    person, pack_hash = _org(sqlite_db)
    settings = _settings(fake_sendgrid, fake_twilio, fake_slack)
    task_queue = f"tq-{uuid.uuid4()}"
    handle = None
    try:
        async with build_worker(env.client, task_queue=task_queue, db=sqlite_db, settings=settings):
            handle = await _start(env, task_queue, person, pack_hash)
            await env.sleep(timedelta(days=12))  # -30d (day 10) went out
            with sqlite_db.session() as session:
                boss = session.scalar(select(Person).where(Person.external_id == f"m-{person[2:]}"))
                assert boss is not None
                rows, errors = parse_csv(
                    "external_id,name,email,manager,employment_status\n"
                    f"{person},Ada Lovelace,ada@example.com,{boss.external_id},terminated\n"
                )
                report = import_people(session, rows, errors)
                assert not report.errors
            for _ in range(9):  # -7d, due day, +7d, +14d
                await env.sleep(timedelta(days=5))
            await handle.terminate("test done")
        assert _emails(fake_sendgrid) == [("ada@example.com", "-30d")]
        assert fake_slack.received == [] and fake_twilio.received == []
        later = [r for r in _ledger(sqlite_db) if r.stage != "-30d"]
        assert {r.stage for r in later} == {"-7d", "0d", "+7d", "+14d"}
        assert all(r.status == "skipped" and r.error_code == "learner:terminated" for r in later)
        assert {r.recipient_role for r in later} == {"learner", "manager", "hr"}
        assert all(r.error_reason and "has left" in r.error_reason for r in later)
    finally:
        # A failed assertion must not leave timers running in the module's shared server.
        if handle is not None:
            with contextlib.suppress(Exception):
                await handle.terminate("test done")
