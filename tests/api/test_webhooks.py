"""Provider webhooks: SendGrid events, Twilio status and SMS replies, Slack interactions."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from api.app import create_app
from api.routers import webhooks
from domain.contracts.obligation import AcknowledgeSignal
from duly.settings import Settings
from store.db import Database
from store.models import Notification, NotificationPreference, Person
from tests.api.test_ack import (
    SECRET,
    WORKFLOW,
    FakeTemporal,
    audit_actions,
    ledger_row,
    not_found,
    seed,
    token_of,
)
from tests.fakes.fixtures import fake_slack  # noqa: F401 - fixture
from tests.fakes.providers import FakeSlack

TWILIO_TOKEN = "twilio-auth-token-for-tests"
SLACK_SECRET = "slack-signing-secret-for-tests"
PUBLIC_URL = "https://duly.example"
PHONE = "+15550100001"

SG_KEY = ec.generate_private_key(ec.SECP256R1())
SG_PUBLIC = base64.b64encode(
    SG_KEY.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
).decode()


def make_client(db: Database, temporal: FakeTemporal, **settings: Any) -> TestClient:
    config = Settings(env="test", secret_key=SECRET, **settings)
    return TestClient(create_app(config, database=db, temporal_client=temporal))  # type: ignore[arg-type]


@pytest.fixture
def client(db: Database, temporal: FakeTemporal) -> Iterator[TestClient]:
    with make_client(
        db,
        temporal,
        public_url=PUBLIC_URL,
        sendgrid_webhook_public_key=SG_PUBLIC,
        twilio_auth_token=TWILIO_TOKEN,
        slack_signing_secret=SLACK_SECRET,
    ) as test_client:
        yield test_client


@pytest.fixture
def hook_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = webhooks.on_permanent_failure

    def recording(session: Any, notification: Notification) -> None:
        calls.append(notification.id)
        original(session, notification)

    monkeypatch.setattr(webhooks, "on_permanent_failure", recording)
    return calls


# --- SendGrid ----------------------------------------------------------------------------------


def sendgrid_post(
    client: TestClient,
    events: Any,
    key: ec.EllipticCurvePrivateKey = SG_KEY,
    *,
    age_seconds: int = 0,
) -> Any:
    body = json.dumps(events)
    timestamp = str(int(time.time()) - age_seconds)
    signature = key.sign((timestamp + body).encode(), ec.ECDSA(hashes.SHA256()))
    return client.post(
        "/webhooks/sendgrid/events",
        content=body,
        headers={
            "content-type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        },
    )


def test_sendgrid_delivered_matches_the_message_id_prefix(
    client: TestClient, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    notification_id = seed(db)
    events = [
        {"event": "processed", "sg_message_id": "sg-abc.filter0001.1.0", "timestamp": 1},
        {"event": "delivered", "sg_message_id": "sg-abc.filter0001.1.0", "timestamp": 1767225600},
        {"event": "delivered", "sg_message_id": "sg-unknown.filter.1", "email": "x@y.example"},
        "not an event",
    ]
    with caplog.at_level(logging.INFO, logger="duly"):
        response = sendgrid_post(client, events)

    assert response.status_code == 204
    row = ledger_row(db, notification_id)
    assert row.status == "delivered"
    assert row.delivered_at is not None and row.delivered_at.year == 2026
    assert "1 for unknown" in caplog.text and "x@y.example" not in caplog.text


def test_sendgrid_bounce_and_dropped_fail_the_row_once(
    client: TestClient, db: Database, hook_calls: list[int], temporal: FakeTemporal
) -> None:
    bounced = seed(db)
    dropped = seed(db, stage="overdue", provider_message_id="sg-def")
    blocked = seed(db, stage="final", provider_message_id="sg-ghi")
    bounce = {
        "event": "bounce",
        "type": "bounce",
        "sg_message_id": "sg-abc.filter.2",
        "email": "ann@demo.duly.example",
        "reason": "550 5.1.1 <ann@demo.duly.example>: Recipient address rejected",
    }
    key = ledger_row(db, dropped).idempotency_key
    events = [
        bounce,
        bounce,  # SendGrid re-sends events: the hook still runs once
        {"event": "dropped", "idempotency_key": key, "reason": "Bounced Address"},
        {"event": "bounce", "type": "blocked", "sg_message_id": "sg-ghi.x", "reason": "later"},
    ]

    assert sendgrid_post(client, events).status_code == 204

    row = ledger_row(db, bounced)
    assert (row.status, row.error_code) == ("failed", "sendgrid:bounce")
    assert row.error_reason == "550 5.1.1 <<redacted>>: Recipient address rejected"
    row = ledger_row(db, dropped)
    assert (row.status, row.error_code, row.error_reason) == (
        "failed",
        "sendgrid:dropped",
        "Bounced Address",
    )
    assert ledger_row(db, blocked).status == "sent"  # soft bounce: SendGrid retries
    assert hook_calls == [bounced, dropped]
    # Each workflow is asked to re-send the stage (its failed channel then falls back).
    redelivered = [(name, signal.notification_id) for _, name, signal in temporal.signals]
    assert redelivered == [("redeliver", bounced), ("redeliver", dropped)]


def test_sendgrid_bad_signature_is_403(client: TestClient, db: Database) -> None:
    notification_id = seed(db)
    events = [{"event": "delivered", "sg_message_id": "sg-abc.f"}]
    other_key = ec.generate_private_key(ec.SECP256R1())

    assert sendgrid_post(client, events, key=other_key).status_code == 403
    assert client.post("/webhooks/sendgrid/events", json=events).status_code == 403
    response = client.post(
        "/webhooks/sendgrid/events",
        json=events,
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": "not base64!",
            "X-Twilio-Email-Event-Webhook-Timestamp": "1",
        },
    )
    assert response.status_code == 403
    assert ledger_row(db, notification_id).status == "sent"


def test_a_replayed_sendgrid_request_older_than_ten_minutes_is_refused(
    client: TestClient, db: Database
) -> None:
    # The exploit: a captured, validly signed "bounce" replayed later fails a delivered message.
    notification_id = seed(db)
    events = [{"event": "bounce", "type": "bounce", "sg_message_id": "sg-abc.f", "reason": "x"}]

    stale = sendgrid_post(client, events, age_seconds=11 * 60)
    future = sendgrid_post(client, events, age_seconds=-11 * 60)

    assert stale.status_code == 403 and "stale signature" in stale.json()["detail"]
    assert future.status_code == 403
    assert ledger_row(db, notification_id).status == "sent"
    # Nine minutes old (a slow queue on SendGrid's side) is still accepted.
    assert sendgrid_post(client, events, age_seconds=9 * 60).status_code == 204
    assert ledger_row(db, notification_id).status == "failed"


def test_sendgrid_with_a_broken_key_setting_is_403(db: Database, temporal: FakeTemporal) -> None:
    with make_client(db, temporal, sendgrid_webhook_public_key="not-a-key") as client:
        response = sendgrid_post(client, [])
    assert response.status_code == 403
    assert "DULY_SENDGRID_WEBHOOK_PUBLIC_KEY" in response.json()["detail"]


# --- unconfigured ------------------------------------------------------------------------------


def test_unconfigured_webhooks_refuse_everything_and_warn_once(
    db: Database,
    temporal: FakeTemporal,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhooks, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="duly.api.webhooks"):
        client = make_client(db, temporal)
        make_client(db, temporal)
    warnings = [r.getMessage() for r in caplog.records if r.name == "duly.api.webhooks"]
    assert len(warnings) == 1
    for variable in (
        "DULY_SENDGRID_WEBHOOK_PUBLIC_KEY",
        "DULY_TWILIO_AUTH_TOKEN",
        "DULY_SLACK_SIGNING_SECRET",
    ):
        assert variable in warnings[0]

    with client:
        for path, variable in (
            ("/webhooks/sendgrid/events", "DULY_SENDGRID_WEBHOOK_PUBLIC_KEY"),
            ("/webhooks/twilio/status", "DULY_TWILIO_AUTH_TOKEN"),
            ("/webhooks/twilio/sms", "DULY_TWILIO_AUTH_TOKEN"),
            ("/webhooks/slack/interactions", "DULY_SLACK_SIGNING_SECRET"),
        ):
            response = client.post(path, data={"a": "b"})
            assert response.status_code == 403, path
            assert variable in response.json()["detail"]


# --- Twilio ------------------------------------------------------------------------------------


def twilio_post(
    client: TestClient, path: str, params: dict[str, str], *, url: str | None = None
) -> Any:
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url or PUBLIC_URL + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def status_params(sid: str, status: str, code: str | None = None) -> dict[str, str]:
    params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC123", "To": PHONE}
    if code:
        params["ErrorCode"] = code
    return params


def test_twilio_status_updates_the_ledger(
    client: TestClient, db: Database, hook_calls: list[int]
) -> None:
    delivered = seed(db, channel="sms", provider="twilio", provider_message_id="SM1")
    permanent = seed(db, channel="sms", provider="twilio", provider_message_id="SM2", stage="b")
    transient = seed(db, channel="sms", provider="twilio", provider_message_id="SM3", stage="c")
    path = "/webhooks/twilio/status"

    assert twilio_post(client, path, status_params("SM1", "delivered")).status_code == 204
    assert (
        twilio_post(client, path, status_params("SM2", "undelivered", "30005")).status_code == 204
    )
    assert twilio_post(client, path, status_params("SM3", "failed", "30003")).status_code == 204
    assert twilio_post(client, path, status_params("SM404", "delivered")).status_code == 204

    row = ledger_row(db, delivered)
    assert row.status == "delivered" and row.delivered_at is not None
    row = ledger_row(db, permanent)
    assert (row.status, row.error_code) == ("failed", "twilio:30005")
    assert row.error_reason is not None and "unknown destination" in row.error_reason
    row = ledger_row(db, transient)
    assert (row.status, row.error_code) == ("failed", "twilio:30003")
    assert hook_calls == [permanent]


def test_twilio_signature_uses_the_request_url_without_public_url(
    db: Database, temporal: FakeTemporal
) -> None:
    notification_id = seed(db, channel="sms", provider="twilio", provider_message_id="SM1")
    path = "/webhooks/twilio/status"
    with make_client(db, temporal, twilio_auth_token=TWILIO_TOKEN) as client:
        params = status_params("SM1", "delivered")
        assert twilio_post(client, path, params).status_code == 403  # signed for PUBLIC_URL
        response = twilio_post(client, path, params, url="http://testserver" + path)
    assert response.status_code == 204
    assert ledger_row(db, notification_id).status == "delivered"


def test_twilio_invalid_signature_is_403(client: TestClient, db: Database) -> None:
    notification_id = seed(db, channel="sms", provider="twilio", provider_message_id="SM1")
    params = status_params("SM1", "delivered")
    signature = RequestValidator("wrong").compute_signature(PUBLIC_URL + "/x", params)

    for path in ("/webhooks/twilio/status", "/webhooks/twilio/sms"):
        assert client.post(path, data=params).status_code == 403
        response = client.post(path, data=params, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 403
    tampered = dict(params, MessageStatus="failed")
    good = RequestValidator(TWILIO_TOKEN).compute_signature(
        PUBLIC_URL + "/webhooks/twilio/status", params
    )
    response = client.post(
        "/webhooks/twilio/status", data=tampered, headers={"X-Twilio-Signature": good}
    )
    assert response.status_code == 403
    assert ledger_row(db, notification_id).status == "sent"


def sms(client: TestClient, body: str, sender: str = PHONE) -> Any:
    response = twilio_post(
        client, "/webhooks/twilio/sms", {"From": sender, "To": "+15550009999", "Body": body}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    return response.text


def test_sms_ack_acknowledges_the_latest_open_reminder(
    client: TestClient, db: Database, temporal: FakeTemporal
) -> None:
    from datetime import UTC, datetime, timedelta

    older = seed(db, channel="sms", fired_at=datetime.now(UTC) - timedelta(days=3))
    latest = seed(db, channel="sms", stage="overdue")

    reply = sms(client, "  ack ")

    assert "<Message>Thanks, acknowledged: Basic Life Support &lt;BLS&gt;.</Message>" in reply
    ((workflow_id, name, signal),) = temporal.signals
    assert (workflow_id, name) == (WORKFLOW, "acknowledge")
    assert isinstance(signal, AcknowledgeSignal)
    assert (signal.actor, signal.channel) == ("person:p-1", "sms")
    assert ledger_row(db, latest).acknowledged_at is not None
    assert ledger_row(db, older).acknowledged_at is None
    assert len(audit_actions(db, "notification.acknowledge")) == 1

    # The obligation read model now says acknowledged (as the workflow's activity would).
    from store.models import Obligation

    with db.session() as session:
        obligation = session.scalar(select(Obligation).where(Obligation.workflow_id == WORKFLOW))
        assert obligation is not None
        obligation.acknowledged_at = datetime.now(UTC)
    assert "no open Duly reminders" in sms(client, "YES")
    assert len(temporal.signals) == 1


def test_sms_ack_for_a_closed_workflow(
    client: TestClient, db: Database, temporal: FakeTemporal
) -> None:
    notification_id = seed(db, channel="sms")
    temporal.error = not_found()

    assert "already closed" in sms(client, "ACK")
    assert ledger_row(db, notification_id).acknowledged_at is not None


def preference(db: Database) -> NotificationPreference | None:
    with db.session() as session:
        person = session.scalar(select(Person).where(Person.external_id == "p-1"))
        assert person is not None
        row = session.get(NotificationPreference, person.id)
        if row is not None:
            session.expunge(row)
        return row


def test_sms_stop_and_start(client: TestClient, db: Database) -> None:
    seed(db, channel="sms")

    assert "unsubscribed" in sms(client, "Stop")
    pref = preference(db)
    assert pref is not None and pref.sms_opt_out is True
    assert "unsubscribed" in sms(client, "UNSUBSCRIBE")  # idempotent
    assert len(audit_actions(db, "notification.sms_opt_out")) == 1

    assert "resubscribed" in sms(client, "start")
    pref = preference(db)
    assert pref is not None and pref.sms_opt_out is False
    (entry,) = audit_actions(db, "notification.sms_opt_in")
    assert entry.actor == "person:p-1" and PHONE not in json.dumps(entry.after)


def test_sms_help_and_unknown_numbers(
    client: TestClient, db: Database, temporal: FakeTemporal
) -> None:
    notification_id = seed(db, channel="sms")
    help_text = "Reply ACK to acknowledge your latest Duly reminder, STOP to opt out."

    assert help_text in sms(client, "what is this?")
    assert help_text in sms(client, "ACK", sender="+15550100999")
    assert help_text in sms(client, "STOP", sender="+15550100999")

    assert temporal.signals == []
    assert ledger_row(db, notification_id).acknowledged_at is None
    assert preference(db) is None


# --- Slack -------------------------------------------------------------------------------------


@pytest.fixture
def slack_client(
    db: Database,
    temporal: FakeTemporal,
    fake_slack: FakeSlack,  # noqa: F811
) -> Iterator[TestClient]:
    with make_client(
        db,
        temporal,
        slack_signing_secret=SLACK_SECRET,
        slack_bot_token=fake_slack.token,
        slack_base_url=fake_slack.base_url,
    ) as test_client:
        yield test_client


def slack_post(
    client: TestClient, payload: dict[str, Any], *, age: int = 0, secret: str = SLACK_SECRET
) -> Any:
    body = urlencode({"payload": json.dumps(payload)})
    timestamp = str(int(time.time()) - age)
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return client.post(
        "/webhooks/slack/interactions",
        content=body,
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature or "",
        },
    )


def posted_reminder(fake: FakeSlack) -> tuple[str, str]:
    client = WebClient(token=fake.token, base_url=fake.base_url + "/api/")
    response = client.chat_postMessage(channel="U0ANN", text="Reminder: Basic Life Support")
    return str(response["channel"]), str(response["ts"])


def block_action(token: str, channel: str, ts: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": "U0ANN", "name": "ann"},
        "channel": {"id": channel},
        "message": {"ts": ts},
        "actions": [{"action_id": "acknowledge", "value": token, "type": "button"}],
    }


def test_slack_button_acknowledges_and_updates_the_message(
    slack_client: TestClient,
    db: Database,
    temporal: FakeTemporal,
    fake_slack: FakeSlack,  # noqa: F811
) -> None:
    notification_id = seed(db, channel="slack", provider="slack")
    channel, ts = posted_reminder(fake_slack)
    payload = block_action(token_of(db, notification_id), channel, ts)

    response = slack_post(slack_client, payload)

    assert response.status_code == 200
    ((workflow_id, name, signal),) = temporal.signals
    assert (workflow_id, name, signal.channel, signal.actor) == (
        WORKFLOW,
        "acknowledge",
        "slack",
        "person:p-1",
    )
    assert ledger_row(db, notification_id).acknowledged_at is not None
    message = fake_slack.messages[(channel, ts)]
    assert message["text"].startswith("Acknowledged by Ann Nurse at ")
    assert message["blocks"][0]["type"] == "section"
    assert message["blocks"][0]["text"]["text"] == message["text"]

    # A second click: no second signal; the message says it was already acknowledged.
    assert slack_post(slack_client, payload).status_code == 200
    assert len(temporal.signals) == 1
    assert fake_slack.messages[(channel, ts)]["text"].startswith("Already acknowledged at ")


def test_slack_rejects_bad_and_stale_signatures(
    slack_client: TestClient,
    db: Database,
    temporal: FakeTemporal,
    fake_slack: FakeSlack,  # noqa: F811
) -> None:
    notification_id = seed(db, channel="slack", provider="slack")
    payload = block_action(token_of(db, notification_id), "D0ANN", "1.2")

    assert slack_post(slack_client, payload, secret="wrong").status_code == 403
    assert slack_post(slack_client, payload, age=6 * 60).status_code == 403
    response = slack_client.post(
        "/webhooks/slack/interactions",
        content="payload=%7B%7D",
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": "yesterday",
            "X-Slack-Signature": "v0=abc",
        },
    )
    assert response.status_code == 403
    assert temporal.signals == []
    assert ledger_row(db, notification_id).acknowledged_at is None
    assert not any(r.path.endswith("chat.update") for r in fake_slack.received)


def test_slack_ignores_forged_tokens_and_other_actions(
    slack_client: TestClient,
    db: Database,
    temporal: FakeTemporal,
    fake_slack: FakeSlack,  # noqa: F811
) -> None:
    notification_id = seed(db, channel="slack", provider="slack")
    token = token_of(db, notification_id)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BA")

    assert slack_post(slack_client, block_action(forged, "D0ANN", "1.2")).status_code == 200
    other = block_action(token, "D0ANN", "1.2")
    other["actions"][0]["action_id"] = "snooze"
    assert slack_post(slack_client, other).status_code == 200
    assert slack_post(slack_client, {"type": "view_submission"}).status_code == 200

    assert temporal.signals == []
    assert ledger_row(db, notification_id).acknowledged_at is None
    assert fake_slack.received == []
