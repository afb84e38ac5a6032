"""The outbox's console line names people by external id only (issue 13 item 7)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from notifications.delivery import Deliverer, Recipient, Rendered, Step
from notifications.outbox import OutboxSender
from store.db import Database
from store.models import Person

STEP = Step(
    workflow_id="assignment/p-1020/hipaa/1",
    pack_hash="a" * 64,
    stage="overdue",
    kind="training",
    fired_at=datetime(2026, 11, 23, 14, tzinfo=UTC),
)


def escalation(channel: str, notification_id: int) -> Rendered:
    # What a manager's escalation looks like: the subject and body name the learner.
    return Rendered(
        subject='Overdue: Dana Reyes has not completed "HIPAA"',
        text="Dana Reyes (dana.reyes@clinic.example) is 3 days overdue.",
    )


def test_a_managers_outbox_line_does_not_name_the_learner(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with sqlite_db.session() as session:
        manager = Person(
            external_id="p-1010", name="Marcus Webb", email="marcus.webb@clinic.example"
        )
        session.add(manager)
    recipient = Recipient("manager", "p-1010", manager, manager.email)
    hr = Recipient("hr", "hr", None, email="compliance@clinic.example")
    outbox_only = Deliverer(sqlite_db, {}, OutboxSender())
    with caplog.at_level(logging.INFO, logger="duly"):
        [to_manager] = outbox_only.deliver(STEP, recipient, ["email"], escalation)
        [to_hr] = outbox_only.deliver(STEP, hr, ["email"], escalation)
    assert to_manager.status == to_hr.status == "sent"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("OUTBOX")]
    assert len(lines) == 2, caplog.text
    for line in lines:
        for personal in ("Dana", "Reyes", "Marcus", "Webb", "@"):
            assert personal not in line, line
    assert lines[0].startswith("OUTBOX email to person p-1010 [assignment/p-1020/hipaa/1 overdue]")
    assert f"notification {to_manager.notification_id}" in lines[0]
    assert lines[1].startswith("OUTBOX email to hr [")
