"""People who left or are on leave (issue 11, item 8): who is told, and what the ledger says.

The send path reads the directory at send time: a learner who left gets nothing and nobody is
escalated to about them; a learner on leave is not reminded (their manager still is); a
manager on leave is passed over for the next active person up the chain.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from activities.apprenticeship import ApprenticeshipActivities
from activities.assignment import AssignmentActivities
from api.app import create_app
from domain.contracts.apprenticeship import NoticeRequest
from domain.contracts.digest import DigestRequest
from domain.contracts.obligation import ReminderRequest
from domain.kinds import ObligationKind
from duly.settings import Settings
from notifications.channels import ChannelMessage, SendResult
from notifications.delivery import Rendered, Step
from notifications.recipients import person_recipient
from rules.loader import load_pack
from store.db import Database
from store.models import Notification, Person
from store.packs import Migration, deploy
from tests.conftest import bearer
from tests.fakes.temporal import FakeTemporal

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
#: A Wednesday afternoon (UTC): no weekend or quiet-hours deferral.
FIRED_AT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


class Recording:
    """A provider channel that accepts everything and remembers the addresses."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.provider = f"rec-{name}"
        self.to: list[str] = []

    def send(self, message: ChannelMessage) -> SendResult:
        self.to.append(message.to)
        return SendResult(self.provider, f"{self.name}-{len(self.to)}")


@dataclass
class Org:
    db: Database
    pack_hash: str
    email: Recording
    slack: Recording
    activities: AssignmentActivities

    def status(self, external_id: str, employment_status: str) -> None:
        with self.db.session() as session:
            person = session.scalar(select(Person).where(Person.external_id == external_id))
            assert person is not None
            person.employment_status = employment_status

    def send(self, stage: str = "+7d", days_before_due: int = -7) -> list[str]:
        result = self.activities.send_reminder(
            ReminderRequest(
                workflow_id="assignment/ada/hipaa-privacy-security/1",
                person="ada",
                kind=ObligationKind.TRAINING,
                requirement_title="HIPAA Privacy & Security",
                due_date=date(2026, 11, 18),
                stage=stage,
                days_before_due=days_before_due,
                pack_hash=self.pack_hash,
                fired_at=FIRED_AT,
                requirement_id="hipaa-privacy-security",
            )
        )
        return result.deliveries

    def ledger(self) -> dict[tuple[str | None, str, str], Notification]:
        """Rows by (role, recipient key from the idempotency key, channel)."""
        with self.db.session() as session:
            rows = session.scalars(select(Notification).order_by(Notification.id))
            return {(r.recipient_role, r.idempotency_key.split("|")[3], r.channel): r for r in rows}


@pytest.fixture
def org(db: Database) -> Org:
    """ada -> grace (manager) -> edsger (manager's manager) -> barbara; all on email and Slack."""
    pack = load_pack(MEDICAL)
    with db.session() as session:
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
        manager_id = None
        for external_id, name in (
            ("barbara", "Barbara Liskov"),
            ("edsger", "Edsger Dijkstra"),
            ("grace", "Grace Hopper"),
            ("ada", "Ada Lovelace"),
        ):
            person = Person(
                external_id=external_id,
                name=name,
                email=f"{external_id}@example.com",
                slack_user_id=f"U{external_id.upper()}",
                manager_id=manager_id,
            )
            session.add(person)
            session.flush()
            manager_id = person.id
    email, slack = Recording("email"), Recording("slack")
    activities = AssignmentActivities(
        db, Settings(env="test"), {"email": email, "slack": slack}, digest=None
    )
    return Org(db, pack.content_hash, email, slack, activities)


def test_everyone_active_gets_the_escalation(org: Org) -> None:
    org.send()
    assert org.email.to == ["ada@example.com", "grace@example.com", "edsger@example.com"]
    assert org.slack.to == ["UADA", "UGRACE", "UEDSGER"]


def test_a_learner_who_left_stops_the_whole_stage_and_the_ledger_says_why(org: Org) -> None:
    org.status("ada", "terminated")

    lines = org.send()

    assert org.email.to == [] and org.slack.to == []  # not the learner, not their managers
    rows = org.ledger()
    assert {(role, key, channel) for role, key, channel in rows} == {
        (role, key, channel)
        for role, key in (("learner", "ada"), ("manager", "grace"), ("managers_manager", "edsger"))
        for channel in ("email", "slack")
    }
    assert {(r.status, r.error_code) for r in rows.values()} == {("skipped", "learner:terminated")}
    assert all(r.recipient_address is None for r in rows.values())
    assert "manager email skipped (learner:terminated)" in lines
    # A re-run of the stage (retry, replay) sends nothing either.
    org.send()
    assert org.email.to == []


def test_a_learner_on_leave_is_not_reminded_but_the_manager_still_is(org: Org) -> None:
    org.status("ada", "leave")

    org.send()

    assert org.email.to == ["grace@example.com", "edsger@example.com"]
    rows = org.ledger()
    learner = rows[("learner", "ada", "email")]
    assert (learner.status, learner.error_code) == ("skipped", "learner:leave")
    assert learner.error_reason and "on leave" in learner.error_reason


def test_a_manager_on_leave_is_passed_over_for_the_next_active_one(org: Org) -> None:
    org.status("grace", "leave")

    lines = org.send()

    # edsger gets it once as the manager (he is also the manager's manager: one copy).
    assert org.email.to == ["ada@example.com", "edsger@example.com"]
    assert org.slack.to == ["UADA", "UEDSGER"]
    rows = org.ledger()
    passed = rows[("manager", "grace", "email")]
    assert (passed.status, passed.error_code) == ("skipped", "recipient:leave")
    assert (
        passed.error_reason
        == "manager grace is on leave: sent to edsger, the next active person up the chain"
    )
    assert rows[("manager", "edsger", "email")].status == "sent"
    assert any(
        line.startswith("manager email skipped: manager grace is on leave") for line in lines
    )


def test_managers_who_left_are_skipped_up_to_the_first_active_one(org: Org) -> None:
    org.status("grace", "terminated")
    org.status("edsger", "leave")

    org.send()

    assert org.email.to == ["ada@example.com", "barbara@example.com"]
    rows = org.ledger()
    assert rows[("manager", "grace", "email")].error_code == "recipient:terminated"
    assert rows[("manager", "edsger", "email")].error_code == "recipient:leave"
    assert rows[("manager", "barbara", "email")].status == "sent"


def test_nobody_active_up_the_chain_is_recorded(org: Org) -> None:
    for person in ("grace", "edsger", "barbara"):
        org.status(person, "leave")

    org.send()

    assert org.email.to == ["ada@example.com"]
    reason = org.ledger()[("manager", "grace", "email")].error_reason
    assert reason and reason.endswith("nobody active above them to notify instead")


def test_skipped_rows_are_visible_to_hr(org: Org) -> None:
    org.status("ada", "terminated")
    org.send()
    with TestClient(
        create_app(Settings(env="test"), database=org.db, temporal_client=FakeTemporal())  # type: ignore[arg-type]
    ) as api:
        listed = api.get(
            "/notifications", params={"status": "skipped"}, headers=bearer(org.db, "hr_admin")
        )
    assert listed.status_code == 200
    assert len(listed.json()) == 6
    assert {n["error_code"] for n in listed.json()} == {"learner:terminated"}


def test_a_queued_digest_for_someone_who_left_is_skipped(org: Org) -> None:
    # An early reminder queued for the day's digest; the learner leaves before it goes out.
    step = Step(
        workflow_id=f"assignment/ada/fire-{uuid.uuid4().hex[:4]}/1",
        pack_hash=org.pack_hash,
        stage="-30d",
        kind="training",
        fired_at=FIRED_AT,
    )
    with org.db.session() as session:
        ada = session.scalar(select(Person).where(Person.external_id == "ada"))
        assert ada is not None
        recipient = person_recipient("learner", ada)
    deliverer = org.activities._deliverer
    notification_id, status = deliverer.queue(
        step, recipient, "email", lambda _c, _n: Rendered(subject="Fire safety", text="due soon")
    )
    assert status == "queued"
    org.status("ada", "terminated")

    result = org.activities.send_digest(
        DigestRequest(
            person="ada", channel="email", day=FIRED_AT.date(), notification_ids=[notification_id]
        )
    )

    assert result.sent == 0 and result.status.startswith("skipped 1")
    assert org.email.to == []
    with org.db.session() as session:
        row = session.get(Notification, notification_id)
        assert row is not None and (row.status, row.error_code) == ("skipped", "learner:terminated")


def test_an_apprenticeship_notice_skips_a_supervisor_who_left_and_goes_up_their_chain(
    db: Database,
) -> None:
    # The evaluation escalation (supervisors_manager, supervisor) about an apprentice whose
    # supervisor and the supervisor's manager both left: the next active one up gets it.
    field = load_pack(MEDICAL.parent / "field-technicians")
    with db.session() as session:
        deploy(session, field, author="hr", message="v1", migration=Migration.GRANDFATHER)
        manager_id = None
        for external_id, status in (("top", "active"), ("mg", "terminated"), ("jw", "terminated")):
            person = Person(
                external_id=external_id,
                name=external_id,
                email=f"{external_id}@example.com",
                manager_id=manager_id,
                employment_status=status,
            )
            session.add(person)
            session.flush()
            manager_id = person.id
        session.add(Person(external_id="ap", name="ap", email="ap@example.com"))
    email = Recording("email")
    sender = AssignmentActivities(db, Settings(env="test"), {"email": email}, digest=None)
    lines = ApprenticeshipActivities(db, sender.deliverer).notice(
        NoticeRequest(
            workflow_id="apprenticeship/ap/elevator-mechanic",
            person="ap",
            supervisor="jw",
            pack_hash=field.content_hash,
            program_id="elevator-mechanic",
            key="ev-261125",
            event="evaluation_overdue",
            notify=["supervisors_manager", "supervisor"],
            subject="Evaluation overdue",
            text="An evaluation is overdue.",
            fired_at=FIRED_AT,
        )
    )
    assert email.to == ["top@example.com"]
    assert "supervisor: jw has left" in lines
