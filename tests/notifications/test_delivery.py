"""The delivery layer: ledger first, exactly once per step, retries, fallbacks, preferences."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from notifications.channels import (
    ChannelMessage,
    ConfigurationSendError,
    PermanentSendError,
    SendResult,
    TransientSendError,
)
from notifications.delivery import (
    Budget,
    Deliverer,
    Outcome,
    Recipient,
    Rendered,
    RetryLater,
    Step,
    credential_alerts,
    step_key,
)
from notifications.outbox import OutboxSender
from notifications.preferences import is_mandatory
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
    from domain.contracts.obligation import ReminderRequest
    from domain.kinds import ObligationKind
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


# -- one live attempt per row (issue 11, item 6) ------------------------------------------------


class BlockingChannel:
    """A provider call that does not answer until the test lets it (a slow provider)."""

    def __init__(self, name: str = "email") -> None:
        self.name = name
        self.provider = f"slow-{name}"
        self.calls: list[ChannelMessage] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def send(self, message: ChannelMessage) -> SendResult:
        self.calls.append(message)
        self.entered.set()
        assert self.release.wait(10), "the test never released the provider call"
        return SendResult(self.provider, f"{self.name}-{len(self.calls)}")


def test_a_second_attempt_never_sends_a_row_whose_lease_is_live(
    db: Database, person: Person
) -> None:
    # Attempt 1 is inside the provider call (Temporal timed it out and started attempt 2).
    email = BlockingChannel()
    deliverer = Deliverer(db, {"email": email}, OutboxSender())
    first: list[Outcome] = []
    attempt_1 = threading.Thread(
        target=lambda: first.extend(deliverer.deliver(STEP, learner(person), ["email"], render))
    )
    attempt_1.start()
    assert email.entered.wait(10)

    second = deliverer.deliver(STEP, learner(person), ["email"], render)

    assert [(o.channel, o.status) for o in second] == [("email", "in_flight")]
    assert len(email.calls) == 1  # today's code sent it again ("resumed pending")
    [row] = ledger(db)
    assert row.status == "pending" and row.claim_token and row.lease_until
    email.release.set()
    attempt_1.join(10)
    assert [(o.channel, o.status) for o in first] == [("email", "sent")]
    third = deliverer.deliver(STEP, learner(person), ["email"], render)
    assert [(o.status, o.duplicate) for o in third] == [("sent", True)]
    [row] = ledger(db)
    assert (row.status, row.attempts, row.claim_token, row.lease_until) == ("sent", 1, None, None)
    assert len(email.calls) == 1


def test_racing_attempts_take_a_lease_exactly_once(db: Database, person: Person) -> None:
    email = ScriptedChannel("email", [TransientSendError("sendgrid:500", "server error")])
    deliverer = Deliverer(db, {"email": email}, OutboxSender())
    with pytest.raises(RetryLater):
        deliverer.deliver(STEP, learner(person), ["email"], render)  # a "retrying" row, no lease
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait(10)
        outcomes.extend(
            o.status for o in deliverer.deliver(STEP, learner(person), ["email"], render)
        )

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(email.accepted) == 1
    assert outcomes.count("sent") >= 1 and set(outcomes) <= {"sent", "in_flight"}
    [row] = ledger(db)
    assert (row.status, row.attempts) == ("sent", 2)


def test_an_expired_lease_is_taken_over_and_logged(
    db: Database, person: Person, caplog: pytest.LogCaptureFixture
) -> None:
    # A worker died inside the provider call: its lease runs out and the next attempt resumes.
    email = ScriptedChannel("email")
    deliverer = Deliverer(db, {"email": email}, OutboxSender(), lease=timedelta(seconds=30))
    with db.session() as session:
        session.add(
            Notification(
                idempotency_key=step_key(STEP, learner(person), "email"),
                workflow_id=STEP.workflow_id,
                person_id=person.id,
                channel="email",
                provider="fake-email",
                kind="training",
                stage=STEP.stage,
                pack_hash=STEP.pack_hash,
                subject="",
                body="",
                status="pending",
                attempts=1,
                fired_at=STEP.fired_at,
                claim_token="dead-worker",
                lease_until=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
    with caplog.at_level(logging.WARNING, logger="duly.delivery"):
        [outcome] = deliverer.deliver(STEP, learner(person), ["email"], render)
    assert outcome.status == "sent" and len(email.accepted) == 1
    assert "resumed pending notification" in caplog.text
    [row] = ledger(db)
    assert (row.attempts, row.claim_token) == (2, None)


def test_an_attempt_out_of_time_leaves_the_rest_to_the_next_one(
    db: Database, person: Person
) -> None:
    clock = [0.0]

    class SlowEmail(ScriptedChannel):
        def send(self, message: ChannelMessage) -> SendResult:
            clock[0] += 12.0  # a provider answering in 12 s
            return super().send(message)

    email, slack = SlowEmail("email"), SlowEmail("slack")
    deliverer = Deliverer(db, {"email": email, "slack": slack}, OutboxSender())
    budget = Budget(20.0, clock=lambda: clock[0])  # a 20 s start-to-close timeout

    first = deliverer.deliver(STEP, learner(person), ["email", "slack"], render, budget)

    # 8 s left < 1.5 x 12 s: the Slack message waits for a fresh attempt, unclaimed.
    assert [(o.channel, o.status) for o in first] == [("email", "sent"), ("slack", "postponed")]
    assert [r.channel for r in ledger(db)] == ["email"]
    again = deliverer.deliver(STEP, learner(person), ["email", "slack"], render, Budget(20.0))
    assert [(o.channel, o.status, o.duplicate) for o in again] == [
        ("email", "sent", True),
        ("slack", "sent", False),
    ]
    assert len(email.accepted) == len(slack.accepted) == 1


# -- held: Duly's credentials refused (issue 11, item 7) ------------------------------------------


@pytest.fixture
def alerts() -> Iterator[None]:
    credential_alerts.reset()
    yield
    credential_alerts.reset()


def test_refused_credentials_hold_the_message_without_fallback_then_it_goes_out(
    db: Database, person: Person, caplog: pytest.LogCaptureFixture, alerts: None
) -> None:
    refused = ConfigurationSendError(
        "sendgrid:401",
        "SendGrid rejected Duly's API key",
        "set DULY_SENDGRID_API_KEY to a valid API key",
    )
    email = ScriptedChannel("email", [refused, refused])
    slack, sms = ScriptedChannel("slack"), ScriptedChannel("sms")
    deliverer = Deliverer(db, {"email": email, "slack": slack, "sms": sms}, OutboxSender())

    with caplog.at_level(logging.INFO, logger="duly.delivery"):
        first = deliverer.deliver(STEP, learner(person), ["email"], render)
        again = deliverer.deliver(STEP, learner(person), ["email"], render)

    assert [(o.channel, o.status, o.attempts) for o in first] == [("email", "held", 1)]
    assert [(o.channel, o.status, o.attempts) for o in again] == [("email", "held", 2)]
    assert slack.accepted == sms.accepted == []  # no fallback: it is not the learner's fault
    [row] = ledger(db)
    assert (row.status, row.error_code) == ("held", "sendgrid:401")
    assert row.error_reason and "DULY_SENDGRID_API_KEY" in row.error_reason
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # one clear line, not one per message
    line = errors[0].getMessage()
    assert "fake-email" in line and "HELD" in line and "DULY_SENDGRID_API_KEY" in line
    assert "status=held" in line and "ada@example.com" not in line
    assert credential_alerts.broken() == {"fake-email": "sendgrid:401"}

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="duly.delivery"):
        fixed = deliverer.deliver(STEP, learner(person), ["email"], render)
    assert [(o.channel, o.status) for o in fixed] == [("email", "sent")]
    [row] = ledger(db)
    assert (row.status, row.attempts, row.error_code) == ("sent", 3, None)
    assert len(email.accepted) == 1
    assert "accepts Duly's credentials again" in caplog.text
    assert credential_alerts.broken() == {}


# -- skipped: people who left or are on leave (issue 11, item 8) -----------------------------------


def test_skip_records_why_and_settles_waiting_rows(db: Database, person: Person) -> None:
    refused = ConfigurationSendError("sendgrid:401", "bad key", "fix the key")
    email = ScriptedChannel("email", [refused])
    slack = ScriptedChannel("slack")
    deliverer = Deliverer(db, {"email": email, "slack": slack}, OutboxSender())
    deliverer.deliver(STEP, learner(person), ["email", "slack"], render)  # email held, slack sent

    outcomes = deliverer.skip(
        STEP, learner(person), ["email", "slack", "sms"], "learner:terminated", "p-1 has left"
    )

    assert [(o.channel, o.status) for o in outcomes] == [
        ("email", "skipped"),  # the held email will never go out now
        ("slack", "sent"),  # already sent: left alone
        ("sms", "skipped"),
    ]
    rows = {r.channel: r for r in ledger(db)}
    assert {c: r.status for c, r in rows.items()} == {
        "email": "skipped",
        "slack": "sent",
        "sms": "skipped",
    }
    assert (rows["sms"].error_code, rows["sms"].error_reason) == (
        "learner:terminated",
        "p-1 has left",
    )
    assert rows["sms"].recipient_address is None  # never sent: no address kept
    deliverer.deliver(STEP, learner(person), ["email", "sms"], render)
    assert email.accepted == [] and len(slack.accepted) == 1


def test_links_are_live_for_the_provider_and_redacted_in_the_ledger(
    db: Database, person: Person
) -> None:
    """Issue 13 item 1: the ledger never holds a usable acknowledgement token."""
    from notifications.ack import TOKEN_PATTERN, ledger_lookup, make_ack_token, verify_ack_token

    key = b"k" * 32
    expires = STEP.fired_at + timedelta(days=45)

    def with_link(channel: str, notification_id: int) -> Rendered:
        token = make_ack_token(
            key, notification_id, STEP.workflow_id, STEP.stage, f"person:{person.id}", expires
        )
        url = f"https://duly.example/ack/{token}"
        button = [{"type": "actions", "elements": [{"action_id": "acknowledge", "value": token}]}]
        return Rendered(f"Reminder {token}", f"Open {url}", f'<a href="{url}">ack</a>', button)

    email, slack = ScriptedChannel("email"), ScriptedChannel("slack")
    deliverer = Deliverer(db, {"email": email, "slack": slack}, OutboxSender(), ack_key=key)
    deliverer.deliver(STEP, learner(person), ["email"], with_link)
    queued_id, _ = deliverer.queue(STEP, learner(person), "slack", with_link)
    for row in ledger(db):
        stored = f"{row.subject} {row.body} {row.payload}"
        assert not TOKEN_PATTERN.search(stored), stored
        assert "<redacted>" in row.body
    # A queued message released later gets a fresh, valid token for its row.
    deliverer.release(queued_id, learner(person))
    for message in (*email.accepted, *slack.accepted):
        tokens = TOKEN_PATTERN.findall(f"{message.text} {message.html} {message.blocks}")
        assert tokens, message
        with db.session() as session:
            for token in tokens:
                claim = verify_ack_token(key, token, ledger_lookup(session))
                assert str(claim.notification_id) == message.metadata["notification_id"]
    assert not any(TOKEN_PATTERN.search(f"{r.body} {r.payload}") for r in ledger(db))


@pytest.mark.parametrize(
    ("stage", "days", "channels"),
    [("0d", None, []), ("+7d", None, []), ("c2:+3d", None, ["sms"]), ("final warning", -3, [])],
)
def test_a_learner_cannot_silence_due_day_and_overdue_notices(
    db: Database, person: Person, stage: str, days: int | None, channels: list[str]
) -> None:
    # The exploit: PUT /people/{me}/preferences {"channels": []} (or only a channel without an
    # address), and the due-day and overdue notices went nowhere ("unreachable").
    with db.session() as session:
        session.add(NotificationPreference(person_id=person.id, channels=channels))
    no_phone = Recipient("learner", "p-1", person, person.email, None, None)
    email = ScriptedChannel("email")
    deliverer = Deliverer(db, {"email": email}, OutboxSender())
    step = Step(**{**STEP.__dict__, "stage": stage, "days_before_due": days})

    outcomes = deliverer.deliver(step, no_phone, ["sms"], render)

    assert [(o.channel, o.status) for o in outcomes] == [("sms", "skipped"), ("email", "sent")]
    assert len(email.accepted) == 1


def test_early_reminders_still_follow_the_preference(db: Database, person: Person) -> None:
    with db.session() as session:
        session.add(NotificationPreference(person_id=person.id, channels=[]))
    email = ScriptedChannel("email")
    deliverer = Deliverer(db, {"email": email}, OutboxSender())
    outcomes = deliverer.deliver(STEP, learner(person), ["email"], render)
    assert [(o.channel, o.status) for o in outcomes] == [("email", "unreachable")]
    assert email.accepted == []


def test_which_notices_are_mandatory() -> None:
    assert [is_mandatory(s) for s in ("-30d", "-1d", "0d", "+7d", "c2:0d", "c3:-14d")] == [
        False,
        False,
        True,
        True,
        True,
        False,
    ]
    assert not is_mandatory("final warning") and is_mandatory("final warning", -1)
    assert not is_mandatory("0d", 3)  # the stage fired before the due day after all
