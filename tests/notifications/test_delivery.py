"""The delivery layer: ledger first, exactly once per step, retries, fallbacks, preferences."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from notifications.channels import (
    ChannelMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
)
from notifications.delivery import Deliverer, Recipient, Rendered, RetryLater, Step
from notifications.outbox import OutboxSender
from store.db import Database
from store.models import Notification, NotificationPreference, Person

STEP = Step(
    workflow_id="assignment/p-1/hipaa/1",
    pack_hash="a" * 64,
    stage="-7d",
    kind="training",
    fired_at=datetime(2026, 11, 23, 14, tzinfo=UTC),
)


class ScriptedChannel:
    """A channel that fails as scripted, then accepts; records what it accepted."""

    def __init__(self, name: str, script: list[Exception] | None = None) -> None:
        self.name = name
        self.provider = f"fake-{name}"
        self.script = list(script or [])
        self.accepted: list[ChannelMessage] = []

    def send(self, message: ChannelMessage) -> SendResult:
        if self.script:
            raise self.script.pop(0)
        self.accepted.append(message)
        return SendResult(self.provider, f"{self.name}-{len(self.accepted)}")


def render(channel: str, notification_id: int) -> Rendered:
    return Rendered(subject=f"Reminder #{notification_id}", text=f"via {channel}")


@pytest.fixture
def person(db: Database) -> Person:
    with db.session() as session:
        row = Person(
            external_id="p-1",
            name="Ada Lovelace",
            email="ada@example.com",
            phone="+15550100001",
            slack_user_id="U1",
        )
        session.add(row)
    return row


def learner(person: Person) -> Recipient:
    return Recipient("learner", "p-1", person, person.email, person.phone, person.slack_user_id)


def ledger(db: Database) -> list[Notification]:
    with db.session() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def test_each_step_goes_out_once_even_when_delivered_again(db: Database, person: Person) -> None:
    email, slack = ScriptedChannel("email"), ScriptedChannel("slack")
    deliverer = Deliverer(db, {"email": email, "slack": slack}, OutboxSender())
    first = deliverer.deliver(STEP, learner(person), ["email", "slack"], render)
    again = deliverer.deliver(STEP, learner(person), ["email", "slack"], render)
    assert [(o.channel, o.status, o.duplicate) for o in first] == [
        ("email", "sent", False),
        ("slack", "sent", False),
    ]
    assert all(o.duplicate for o in again)
    assert len(email.accepted) == len(slack.accepted) == 1
    assert email.accepted[0].to == "ada@example.com" and slack.accepted[0].to == "U1"
    rows = ledger(db)
    assert [(r.channel, r.status, r.provider, r.provider_message_id) for r in rows] == [
        ("email", "sent", "fake-email", "email-1"),
        ("slack", "sent", "fake-slack", "slack-1"),
    ]
    assert rows[0].subject == f"Reminder #{rows[0].id}"


def test_transient_failures_retry_on_the_same_row(db: Database, person: Person) -> None:
    email = ScriptedChannel(
        "email",
        [
            TransientSendError("sendgrid:500", "server error"),
            TransientSendError("sendgrid:429", "slow down", 7),
        ],
    )
    deliverer = Deliverer(db, {"email": email}, OutboxSender())
    with pytest.raises(RetryLater) as first:
        deliverer.deliver(STEP, learner(person), ["email"], render)
    assert first.value.retry_after is None
    with pytest.raises(RetryLater) as second:
        deliverer.deliver(STEP, learner(person), ["email"], render)
    assert second.value.retry_after == 7
    [row] = ledger(db)
    assert (row.status, row.attempts, row.error_code) == ("retrying", 2, "sendgrid:429")
    deliverer.deliver(STEP, learner(person), ["email"], render)
    [row] = ledger(db)
    assert (row.status, row.attempts, row.error_code) == ("sent", 3, None)
    assert len(email.accepted) == 1


def test_a_permanent_failure_falls_back_to_the_next_allowed_channel(
    db: Database, person: Person
) -> None:
    sms = ScriptedChannel("sms", [PermanentSendError("twilio:21211", "invalid 'To' number")])
    email = ScriptedChannel("email")
    deliverer = Deliverer(db, {"sms": sms, "email": email}, OutboxSender())
    outcomes = deliverer.deliver(STEP, learner(person), ["sms"], render)
    assert [(o.channel, o.status, o.fallback_from) for o in outcomes] == [
        ("sms", "failed", None),
        ("email", "sent", "sms"),
    ]
    failed, fallback = ledger(db)
    assert (failed.status, failed.error_code) == ("failed", "twilio:21211")
    assert fallback.fallback_of == failed.id and fallback.channel == "email"
    # Delivering the step again changes nothing: the failure and the fallback are settled.
    deliverer.deliver(STEP, learner(person), ["sms"], render)
    assert len(email.accepted) == 1 and len(ledger(db)) == 2


def test_preferences_opt_out_and_missing_credentials(db: Database, person: Person) -> None:
    with db.session() as session:
        session.add(
            NotificationPreference(person_id=person.id, sms_opt_out=True, channels=["sms", "email"])
        )
    email = ScriptedChannel("email")
    deliverer = Deliverer(db, {"email": email}, OutboxSender())
    outcomes = deliverer.deliver(STEP, learner(person), ["sms", "slack"], render)
    # SMS: opted out -> the next allowed channel (email); Slack: not among the allowed channels.
    assert [(o.channel, o.status) for o in outcomes] == [
        ("sms", "skipped"),
        ("email", "sent"),
        ("slack", "unreachable"),
    ]
    outbox_only = Deliverer(db, {}, OutboxSender())
    hr = Recipient("hr", "hr", None, email="compliance@clinic.example")
    [outcome] = outbox_only.deliver(STEP, hr, ["email"], render)
    assert outcome.status == "sent"
    row = ledger(db)[-1]
    assert (row.provider, row.recipient_role, row.person_id) == ("outbox", "hr", None)


def test_a_due_day_notice_is_never_deferred_past_its_day(sqlite_db: Database) -> None:
    from activities.assignment import AssignmentActivities
    from duly.domain import ObligationKind, ReminderRequest
    from notifications.delivery import Recipient
    from store.models import NotificationPreference

    with sqlite_db.session() as session:
        ada = Person(external_id="p-q", name="Ada", email="ada@example.com", time_zone="UTC")
        session.add(ada)
        session.flush()
        session.add(
            NotificationPreference(person_id=ada.id, quiet_start="08:00", quiet_end="07:00")
        )
    activities = AssignmentActivities(sqlite_db)
    fired = datetime(2026, 11, 24, 9, tzinfo=UTC)  # in quiet hours until tomorrow 07:00

    def until(days_before_due: int, business_days: bool = False) -> datetime | None:
        request = ReminderRequest(
            workflow_id="assignment/p-q/x/1",
            person="p-q",
            kind=ObligationKind.TRAINING,
            requirement_title="X",
            due_date=fired.date(),
            stage="-7d",
            days_before_due=days_before_due,
            pack_hash="builtin",
            fired_at=fired,
        )
        recipient = Recipient("learner", "p-q", ada, ada.email)
        with sqlite_db.session() as session:
            return activities._defer_until(session, request, recipient, business_days)

    assert until(7) == datetime(2026, 11, 25, 7, tzinfo=UTC)  # an early reminder waits
    assert until(0) is None  # due today: tomorrow would be too late, it goes out now
    assert until(-3) is None  # overdue: the same
