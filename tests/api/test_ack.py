"""Acknowledgement tokens (notifications.ack) and the public /ack pages."""

from __future__ import annotations

import logging
import random
import string
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from temporalio.service import RPCError, RPCStatusCode

from api.app import create_app
from domain.contracts.obligation import AcknowledgeSignal
from duly.keys import Purpose, derive_key
from duly.settings import Settings
from notifications.ack import (
    AckTokenExpired,
    AckTokenInvalid,
    ack_url,
    ledger_lookup,
    make_ack_token,
    token_for,
    verify_ack_token,
)
from store.db import Database
from store.models import AuditEntry, Notification, Obligation, Person
from tests.fakes.temporal import FakeTemporal, not_found

SECRET = "test-secret-key-for-ack-tokens-0123456789"
#: The acknowledgement-link key the API derives from SECRET.
KEY = derive_key(SECRET, Purpose.ACK_LINK)
WORKFLOW = "assignment/p-1/bls/1"
FUTURE = datetime.now(UTC) + timedelta(days=30)


# --- shared helpers (also used by test_webhooks.py) ---------------------------------------------


def seed(
    db: Database,
    *,
    channel: str = "email",
    provider: str = "sendgrid",
    provider_message_id: str | None = "sg-abc",
    phone: str | None = "+15550100001",
    stage: str = "due_soon",
    fired_at: datetime | None = None,
    workflow_id: str = WORKFLOW,
    external_id: str = "p-1",
) -> int:
    """A person, their obligation and one ledger row; returns the row id."""
    now = datetime.now(UTC)
    with db.session() as session:
        person = session.scalar(select(Person).where(Person.external_id == external_id))
        if person is None:
            person = Person(
                external_id=external_id,
                name="Ann Nurse",
                email=f"{external_id}@demo.duly.example",
                phone=phone,
                slack_user_id="U0ANN" if external_id == "p-1" else None,
            )
            session.add(person)
            session.flush()
        if session.scalar(select(Obligation).where(Obligation.workflow_id == workflow_id)) is None:
            session.add(
                Obligation(
                    workflow_id=workflow_id,
                    person_id=person.id,
                    kind="training",
                    requirement_id="bls",
                    requirement_title="Basic Life Support <BLS>",
                    cycle=1,
                    due_date=date(2031, 3, 14),
                    stage=stage,
                    status="due_soon",
                    pack_hash="h" * 64,
                    as_of=now,
                )
            )
        row = Notification(
            idempotency_key=f"{workflow_id}|{'h' * 8}|{stage}|{external_id}|{channel}",
            workflow_id=workflow_id,
            person_id=person.id,
            recipient_address=person.email if channel == "email" else person.phone,
            channel=channel,
            provider=provider,
            kind="reminder",
            stage=stage,
            pack_hash="h" * 64,
            subject="Reminder: Basic Life Support",
            body="Please complete Basic Life Support.",
            status="sent",
            provider_message_id=provider_message_id,
            recipient_role="learner",
            fired_at=fired_at or now,
        )
        session.add(row)
        session.flush()
        return row.id


def token_of(db: Database, notification_id: int, expires_at: datetime = FUTURE) -> str:
    with db.session() as session:
        row = session.get(Notification, notification_id)
        assert row is not None
        return token_for(KEY, row, expires_at)


def ledger_row(db: Database, notification_id: int) -> Notification:
    with db.session() as session:
        row = session.get(Notification, notification_id)
        assert row is not None
        session.expunge(row)
        return row


def audit_actions(db: Database, action: str) -> list[AuditEntry]:
    with db.session() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        for row in rows:
            session.expunge(row)
        return rows


# --- tokens ------------------------------------------------------------------------------------

BOUND = {7: (WORKFLOW, "due_soon", "person:1"), 8: ("assignment/p-2/bls/1", "due_soon", "person:2")}


def lookup(notification_id: int) -> tuple[str, str, str] | None:
    return BOUND.get(notification_id)


def make(notification_id: int = 7, expires_at: datetime = FUTURE) -> str:
    workflow_id, stage, recipient = BOUND[notification_id]
    return make_ack_token(KEY, notification_id, workflow_id, stage, recipient, expires_at)


def test_round_trip_and_url() -> None:
    token = make()
    claim = verify_ack_token(KEY, token, lookup)
    assert (claim.notification_id, claim.workflow_id, claim.stage) == (7, WORKFLOW, "due_soon")
    assert claim.recipient == "person:1"
    assert claim.expires_at == datetime.fromtimestamp(int(FUTURE.timestamp()), UTC)
    assert ack_url("https://duly.example/", token) == f"https://duly.example/ack/{token}"
    # Compact, URL-safe and free of the bound data.
    assert len(token) < 50
    assert set(token) <= set(string.ascii_letters + string.digits + "-_.")
    assert "assignment" not in token and "person" not in token


def _replace_part(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


def _flip(text: str) -> str:
    return ("B" if text[0] == "A" else "A") + text[1:]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: _replace_part(t, 0, "v1"),
        lambda t: _replace_part(t, 1, "8"),  # another existing row
        lambda t: _replace_part(t, 1, "07"),  # same number, non-canonical
        lambda t: _replace_part(t, 2, str(int(t.split(".")[2]) + 3600)),  # extended expiry
        lambda t: _replace_part(t, 3, _flip(t.split(".")[3])),
        lambda t: _replace_part(t, 3, t.split(".")[3][:-1]),
        lambda t: t + "A",
        lambda t: t.upper(),
    ],
    ids=["version", "id", "id-leading-zero", "expiry", "mac", "mac-short", "appended", "case"],
)
def test_tampering_with_any_part_is_invalid(tamper: Any) -> None:
    with pytest.raises(AckTokenInvalid):
        verify_ack_token(KEY, tamper(make()), lookup)


def test_wrong_secret_unknown_row_and_changed_binding_are_invalid() -> None:
    token = make()
    with pytest.raises(AckTokenInvalid):
        verify_ack_token(derive_key("another-secret", Purpose.ACK_LINK), token, lookup)
    with pytest.raises(AckTokenInvalid):  # the master key itself signs nothing
        verify_ack_token(SECRET.encode(), token, lookup)
    with pytest.raises(AckTokenInvalid):
        verify_ack_token(KEY, token, lambda _id: None)
    with pytest.raises(AckTokenInvalid):  # the row now belongs to another recipient
        verify_ack_token(KEY, token, lambda _id: (WORKFLOW, "due_soon", "person:9"))


def test_expired_is_its_own_error_and_checked_after_the_mac() -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(AckTokenExpired) as expired:
        verify_ack_token(KEY, make(expires_at=past), lookup)
    assert not isinstance(expired.value, AckTokenInvalid)
    assert expired.value.claim.notification_id == 7
    # An expired *forged* token is invalid, not expired.
    forged = _replace_part(make(expires_at=past), 3, _flip(make(expires_at=past).split(".")[3]))
    with pytest.raises(AckTokenInvalid):
        verify_ack_token(KEY, forged, lookup)
    # Explicit clock: valid just before expiry.
    token = make(expires_at=FUTURE)
    assert verify_ack_token(KEY, token, lookup, now=FUTURE - timedelta(seconds=2))
    with pytest.raises(AckTokenExpired):
        verify_ack_token(KEY, token, lookup, now=FUTURE + timedelta(seconds=1))


GARBAGE = [
    "",
    ".",
    "...",
    "v1...",
    "v1.7.1.",
    "v1.-7.1." + "A" * 22,
    "v1.7.99999999999999999." + "A" * 22,  # expiry beyond datetime's range
    "v1.99999999999." + "1" * 10 + "." + "A" * 22,
    "v1.7.1." + "=" * 22,
    "v1.7.1.AAAAAAAAAAAAAAAAAAAA==",
    "v1.٧.1." + "A" * 22,  # a non-ASCII digit
    "v1.7.1." + "A" * 21 + "é",
    "v1.7.1.\x00" + "A" * 21,
    "v1.7.1." + "A" * 5000,
    "\ud800",
    "💥" * 40,
]


@pytest.mark.parametrize("token", GARBAGE)
def test_garbage_is_invalid_never_another_exception(token: str) -> None:
    with pytest.raises(AckTokenInvalid):
        verify_ack_token(KEY, token, lookup)


def test_random_input_only_ever_raises_the_two_errors() -> None:
    rng = random.Random(20240601)
    alphabet = string.printable + "v1." * 10 + "é💥"
    real = make()
    for _ in range(2000):
        if rng.random() < 0.5:
            candidate = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        else:
            chars = list(real)
            chars[rng.randrange(len(chars))] = rng.choice(alphabet)
            candidate = "".join(chars)
        if candidate == real:
            continue
        with pytest.raises((AckTokenInvalid, AckTokenExpired)):
            verify_ack_token(KEY, candidate, lookup)


def test_make_refuses_naive_expiry_and_empty_secret() -> None:
    with pytest.raises(ValueError):
        make_ack_token(KEY, 1, WORKFLOW, "due_soon", "person:1", datetime(2030, 1, 1))
    with pytest.raises(ValueError):
        make_ack_token(b"", 1, WORKFLOW, "due_soon", "person:1", FUTURE)


def test_ledger_lookup_binds_row_and_ignores_out_of_range_ids(sqlite_db: Database) -> None:
    notification_id = seed(sqlite_db)
    token = token_of(sqlite_db, notification_id)
    with sqlite_db.session() as session:
        claim = verify_ack_token(KEY, token, ledger_lookup(session))
        assert claim.notification_id == notification_id
        assert ledger_lookup(session)(2**40) is None


# --- pages -------------------------------------------------------------------------------------


@pytest.fixture
def client(db: Database, temporal: FakeTemporal) -> Iterator[TestClient]:
    settings = Settings(env="test", secret_key=SECRET)
    app = create_app(settings, database=db, temporal_client=temporal)  # type: ignore[arg-type]
    with TestClient(app) as test_client:
        yield test_client


def assert_private(response: Any) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-type"].startswith("text/html")


def test_get_shows_the_reminder_and_changes_nothing(
    client: TestClient, db: Database, temporal: FakeTemporal
) -> None:
    notification_id = seed(db)
    token = token_of(db, notification_id)

    for _ in range(2):  # a mail scanner prefetching twice
        response = client.get(f"/ack/{token}")
        assert response.status_code == 200
        assert_private(response)
        assert "Basic Life Support &lt;BLS&gt;" in response.text  # autoescaped
        assert "due soon" in response.text
        assert "14 March 2031" in response.text
        assert '<form method="post">' in response.text
        assert ">Acknowledge</button>" in response.text
        assert token not in response.text

    assert temporal.signals == []
    assert ledger_row(db, notification_id).acknowledged_at is None
    assert audit_actions(db, "notification.acknowledge") == []


def test_post_acknowledges_once_and_is_idempotent(
    client: TestClient, db: Database, temporal: FakeTemporal
) -> None:
    notification_id = seed(db)
    token = token_of(db, notification_id)

    first = client.post(f"/ack/{token}")
    assert first.status_code == 200
    assert_private(first)
    assert "Acknowledged — thank you" in first.text

    assert len(temporal.signals) == 1
    workflow_id, name, signal = temporal.signals[0]
    assert (workflow_id, name) == (WORKFLOW, "acknowledge")
    assert isinstance(signal, AcknowledgeSignal)
    assert (signal.actor, signal.channel) == ("person:p-1", "email-link")
    acknowledged_at = ledger_row(db, notification_id).acknowledged_at
    assert acknowledged_at is not None
    (entry,) = audit_actions(db, "notification.acknowledge")
    assert (entry.actor, entry.target) == ("person:p-1", WORKFLOW)
    assert entry.after is not None and entry.after["notification_id"] == notification_id
    assert "@" not in str(entry.after)

    second = client.post(f"/ack/{token}")
    assert second.status_code == 200
    assert "Acknowledged — thank you" in second.text
    assert len(temporal.signals) == 1
    assert ledger_row(db, notification_id).acknowledged_at == acknowledged_at
    assert len(audit_actions(db, "notification.acknowledge")) == 1

    page = client.get(f"/ack/{token}")
    assert "already acknowledged" in page.text
    assert "<form" not in page.text


def test_a_closed_workflow_still_marks_the_row_kindly(
    client: TestClient, db: Database, temporal: FakeTemporal
) -> None:
    notification_id = seed(db)
    temporal.error = not_found()

    response = client.post(f"/ack/{token_of(db, notification_id)}")

    assert response.status_code == 200
    assert "already closed" in response.text
    assert ledger_row(db, notification_id).acknowledged_at is not None
    (entry,) = audit_actions(db, "notification.acknowledge")
    assert entry.after is not None and entry.after["workflow_closed"] is True


def test_temporal_trouble_is_a_retry_page_and_records_nothing(
    client: TestClient, db: Database, temporal: FakeTemporal
) -> None:
    notification_id = seed(db)
    temporal.error = RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")

    response = client.post(f"/ack/{token_of(db, notification_id)}")

    assert response.status_code == 503
    assert_private(response)
    assert "try again" in response.text
    assert ledger_row(db, notification_id).acknowledged_at is None
    assert audit_actions(db, "notification.acknowledge") == []


def test_expired_link_is_410(client: TestClient, db: Database, temporal: FakeTemporal) -> None:
    notification_id = seed(db)
    token = token_of(db, notification_id, datetime.now(UTC) - timedelta(minutes=1))

    for method in (client.get, client.post):
        response = method(f"/ack/{token}")
        assert response.status_code == 410
        assert_private(response)
        assert "This link has expired" in response.text
        assert "reply to the latest reminder" in response.text
    assert temporal.signals == []
    assert ledger_row(db, notification_id).acknowledged_at is None


def test_tampered_link_is_404(client: TestClient, db: Database, temporal: FakeTemporal) -> None:
    notification_id = seed(db)
    token = token_of(db, notification_id)
    forged = _replace_part(token, 3, _flip(token.split(".")[3]))

    for method in (client.get, client.post):
        response = method(f"/ack/{forged}")
        assert response.status_code == 404
        assert_private(response)
        assert "not valid" in response.text
    assert temporal.signals == []


@pytest.mark.parametrize(
    "path",
    [
        "/ack/x",
        "/ack/v1.1.1.AAAA",
        "/ack/v1.99999999999999999999.1." + "A" * 22,
        "/ack/v1.1.99999999999999999." + "A" * 22,
        "/ack/%00%ff",
        "/ack/a/b/c",
        "/ack/" + "A" * 3000,
        "/ack/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    ],
)
def test_garbage_links_are_4xx_never_500(client: TestClient, path: str) -> None:
    for method in (client.get, client.post):
        response = method(path)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert "<script>" not in response.text


def test_the_token_never_reaches_the_logs(
    client: TestClient, db: Database, temporal: FakeTemporal, caplog: pytest.LogCaptureFixture
) -> None:
    notification_id = seed(db)
    token = token_of(db, notification_id)
    temporal.error = RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")

    with caplog.at_level(logging.DEBUG):
        client.get(f"/ack/{token}")
        client.post(f"/ack/{token}")
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    assert ours and not any(token in message for message in ours)

    # uvicorn's access log line is redacted by the filter the router installs.
    access = logging.getLogger("uvicorn.access")
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/ack/{token}", "1.1", 200),
        None,
    )
    assert all(f.filter(record) for f in access.filters)  # type: ignore[union-attr]
    assert token not in record.getMessage()
    assert "/ack/<redacted>" in record.getMessage()
