"""Issue 13 item 1: nothing the ledger shows lets one person acknowledge as another.

The exploit: as the auditor, read a learner's reminder from ``GET /notifications``, take the
acknowledgement link out of its body and ``POST`` it; the audit log then said the learner
acknowledged. Now the ledger keeps ``…/ack/<redacted>`` and only the message the provider
delivered holds a live link.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from activities.assignment import AssignmentActivities
from api.app import create_app
from domain.contracts.obligation import ReminderRequest
from domain.kinds import ObligationKind
from duly.settings import Settings
from notifications.channels import ChannelMessage, SendResult
from store.db import Database
from store.models import AuditEntry, Notification, Person
from tests.conftest import bearer
from tests.fakes.temporal import FakeTemporal

SECRET = "master-key-for-the-ack-leak-test-0123456789abcdef"
#: Any acknowledgement link with a token in it (every token version).
LINK = re.compile(r"/ack/(v[0-9]+\.[0-9]+\.[0-9]+\.[A-Za-z0-9_-]{22})")


class CapturingEmail:
    """The learner's mailbox: records what the provider was given."""

    name = "email"
    provider = "fake-email"

    def __init__(self) -> None:
        self.accepted: list[ChannelMessage] = []

    def send(self, message: ChannelMessage) -> SendResult:
        self.accepted.append(message)
        return SendResult(self.provider, f"mail-{len(self.accepted)}")


REQUEST = ReminderRequest(
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


@pytest.fixture
def org(sqlite_db: Database) -> Database:
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


@pytest.fixture
def settings() -> Settings:
    return Settings(env="test", secret_key=SECRET)


@pytest.fixture
def temporal() -> FakeTemporal:
    return FakeTemporal()


@pytest.fixture
def client(org: Database, settings: Settings, temporal: FakeTemporal) -> Iterator[TestClient]:
    app = create_app(settings, database=org, temporal_client=temporal)  # type: ignore[arg-type]
    with TestClient(app) as test_client:
        yield test_client


def acknowledgements(db: Database) -> list[AuditEntry]:
    with db.session() as session:
        rows = list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == "notification.acknowledge")
            )
        )
        for row in rows:
            session.expunge(row)
        return rows


def test_auditor_reading_the_ledger_cannot_acknowledge_as_the_learner(
    org: Database, settings: Settings, client: TestClient, temporal: FakeTemporal
) -> None:
    mailbox = CapturingEmail()
    AssignmentActivities(org, settings, {"email": mailbox}).send_reminder(REQUEST)
    (delivered,) = mailbox.accepted
    assert LINK.search(delivered.text), "the learner's own message carries a live link"

    for role in ("auditor", "hr_admin"):
        listed = client.get("/notifications", headers=bearer(org, role))
        assert listed.status_code == 200, listed.text
        (row,) = listed.json()
        # No token anywhere in what the API returns, only the redacted form of the link.
        assert not LINK.search(listed.text), listed.text
        assert "/ack/<redacted>" in row["body"]
        # The exploit itself: take whatever link the body holds and press the button.
        path = re.search(r"/ack/\S+", row["body"])
        assert path is not None
        answer = client.post(path.group(0).rstrip(".,)"))
        assert "Acknowledged" not in answer.text
    assert temporal.signals == []
    assert acknowledgements(org) == []
    with org.session() as session:
        stored = session.scalars(select(Notification)).one()
        assert stored.acknowledged_at is None
        assert not LINK.search(f"{stored.subject} {stored.body} {stored.payload}")

    # The learner's own link still works, once.
    match = LINK.search(delivered.text)
    assert match is not None
    done = client.post(f"/ack/{match.group(1)}")
    assert done.status_code == 200 and "Acknowledged" in done.text
    assert [entry.actor for entry in acknowledgements(org)] == ["person:p-1"]


def test_a_retried_send_stays_one_row_and_renders_a_fresh_working_link(
    org: Database, settings: Settings, client: TestClient
) -> None:
    mailbox = CapturingEmail()
    acts = AssignmentActivities(org, settings, {"email": mailbox})
    first = acts.send_reminder(REQUEST)
    again = acts.send_reminder(REQUEST)
    assert not first.duplicate and again.duplicate
    with org.session() as session:
        assert len(session.scalars(select(Notification)).all()) == 1
    assert len(mailbox.accepted) == 1


def test_a_token_signed_with_the_master_key_is_refused(
    org: Database, settings: Settings, client: TestClient, temporal: FakeTemporal
) -> None:
    """Per-purpose keys: the master key (or another purpose's key) signs no link."""
    from duly.keys import Purpose, derive_key
    from notifications.ack import token_for

    mailbox = CapturingEmail()
    AssignmentActivities(org, settings, {"email": mailbox}).send_reminder(REQUEST)
    with org.session() as session:
        row = session.scalars(select(Notification)).one()
        forged = [
            token_for(SECRET.encode(), row, datetime(2031, 1, 1, tzinfo=UTC)),
            token_for(
                derive_key(SECRET, Purpose.SIGN_IN_LINK), row, datetime(2031, 1, 1, tzinfo=UTC)
            ),
        ]
    for token in forged:
        assert "Acknowledged" not in client.post(f"/ack/{token}").text
    assert temporal.signals == []
