"""Provider callbacks: delivery receipts, SMS replies and Slack button clicks.

Every endpoint authenticates the provider before reading anything:

* SendGrid's Signed Event Webhook (ECDSA P-256 over timestamp + raw body, at most ten minutes
  old: a captured request replayed later is refused);
* Twilio's ``X-Twilio-Signature`` (HMAC over the public URL and the form parameters);
* Slack's ``X-Slack-Signature`` (HMAC over timestamp and raw body, at most five minutes old).

A webhook whose key is not configured answers 403 to everything, naming the ``DULY_*``
variable to set. Bodies, phone numbers and email addresses are never logged.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, Response, status
from sendgrid.helpers.eventwebhook import EventWebhook
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import MultiDict
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from api.deps import SessionDep, SettingsDep, TemporalDep
from domain.statuses import ObligationStatus
from duly.metrics import WEBHOOK_VERIFICATION_FAILURES
from duly.settings import Settings
from notifications.ack import AckTokenExpired, AckTokenInvalid, ledger_lookup, verify_ack_token
from services.acks import (
    AcknowledgeUnavailable,
    AckOutcome,
    acknowledge_notification,
    actor_for,
)
from store import audit
from store.db import committed
from store.models import Notification, NotificationPreference, Obligation, Person

log = logging.getLogger("duly.api.webhooks")

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
#: How far a signed SendGrid timestamp may be from now. Older is a replay of a captured request
#: (the signature covers the timestamp, so it cannot be refreshed); SendGrid signs at send time.
SENDGRID_MAX_AGE_SECONDS = 600

#: Webhook name -> (settings field, environment variable) of the key that enables it.
WEBHOOK_KEYS: dict[str, tuple[str, str]] = {
    "sendgrid events": ("sendgrid_webhook_public_key", "DULY_SENDGRID_WEBHOOK_PUBLIC_KEY"),
    "twilio status and sms": ("twilio_auth_token", "DULY_TWILIO_AUTH_TOKEN"),
    "slack interactions": ("slack_signing_secret", "DULY_SLACK_SIGNING_SECRET"),
}

#: Twilio error codes that will fail again for this number (so another channel is tried).
TWILIO_PERMANENT_ERRORS: Mapping[str, str] = {
    "21211": "invalid 'To' phone number",
    "21408": "sending to this region is not enabled",
    "21610": "recipient replied STOP (unsubscribed)",
    "21612": "this number cannot be reached from the sending number",
    "21614": "'To' number is not a mobile number",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "message filtered by the carrier",
    "30034": "sending number is not registered for A2P 10DLC",
}
#: Twilio error codes worth naming that may succeed later.
TWILIO_TRANSIENT_ERRORS: Mapping[str, str] = {
    "30001": "queue overflow",
    "30003": "destination handset unreachable",
    "30008": "unknown carrier error",
}

SMS_ACK_WORDS = frozenset({"ACK", "YES"})
SMS_STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
SMS_START_WORDS = frozenset({"START", "UNSTOP"})
SMS_HELP = "Reply ACK to acknowledge your latest Duly reminder, STOP to opt out."

SLACK_ACK_ACTION = "acknowledge"
SLACK_DEFAULT_API = "https://slack.com/api/"

_EMAIL = re.compile(r"[^\s@<>()\[\]\"',;:]+@[^\s@<>()\[\]\"',;:]+")
_CLOSED = frozenset({ObligationStatus.COMPLETED.value, ObligationStatus.CANCELLED.value})
_warned: set[tuple[str, ...]] = set()


def unconfigured_webhooks(settings: Settings) -> list[str]:
    """The webhooks (with the variable that enables each) that will refuse every request."""
    return [
        f"{name} ({variable})"
        for name, (field, variable) in WEBHOOK_KEYS.items()
        if not getattr(settings, field)
    ]


def warn_unconfigured(settings: Settings) -> None:
    """Log one warning listing the disabled webhooks (called once by ``create_app``)."""
    missing = tuple(unconfigured_webhooks(settings))
    if missing and missing not in _warned:
        _warned.add(missing)
        log.warning("webhooks disabled until their key is set: %s", ", ".join(missing))


def _require(settings: Settings, webhook: str) -> str:
    field, variable = WEBHOOK_KEYS[webhook]
    value = getattr(settings, field)
    if not value:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"the {webhook} webhook is disabled: set {variable} to enable it",
        )
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def _forbidden(provider: str, detail: str = "invalid signature") -> HTTPException:
    """A 403 for a request whose signature did not verify (counted per provider)."""
    WEBHOOK_VERIFICATION_FAILURES.labels(provider=provider).inc()
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=detail)


def redact(text: str, limit: int = 300) -> str:
    """``text`` with every email address replaced by ``<redacted>``, cut to ``limit``."""
    return _EMAIL.sub("<redacted>", text)[:limit]


def on_permanent_failure(session: Session, notification: Notification) -> None:
    """React to a delivery that will never succeed on this channel for this address.

    Called once per failed ledger row, after its ``error_code`` and ``error_reason`` are set
    and inside the webhook's transaction. The delivery layer re-sends the step to the same
    recipient on their next allowed channel, in a new ledger row whose ``fallback_of`` points
    at this one. This function is the single hook for that: replace or patch it as a whole.

    Args:
        session: The webhook's session.
        notification: The failed ledger row.
    """
    notification.status = "failed"
    # Signalled after the webhook's transaction commits (see _redeliver): the workflow re-runs
    # the stage, the ledger turns its sent parts into no-ops and the failed channel falls back.
    session.info.setdefault(REDELIVER, []).append(
        (notification.workflow_id, notification.stage, notification.id, notification.error_code)
    )


REDELIVER = "duly.redeliver"


async def _redeliver(session: Session, temporal: Any) -> None:
    """Signal each workflow whose message failed permanently to re-send that stage."""
    pending = session.info.pop(REDELIVER, [])
    if not pending:
        return
    # Whatever the caller changed is committed (off the loop) before any signal is awaited.
    await committed(session, lambda: None)
    from domain.contracts.obligation import RedeliverSignal

    try:
        client = await temporal()
        for workflow_id, stage, notification_id, code in pending:
            handle = client.get_workflow_handle(workflow_id)
            await handle.signal(
                "redeliver",
                RedeliverSignal(notification_id=notification_id, stage=stage, reason=code or ""),
            )
    except Exception as exc:  # noqa: BLE001 - the rows stay failed and visible to HR
        log.warning("could not ask %d workflow(s) to re-send: %s", len(pending), type(exc).__name__)


def _mark_delivered(row: Notification, at: datetime) -> None:
    if row.status != "failed":
        row.status = "delivered"
    if row.delivered_at is None:
        row.delivered_at = at


def _mark_failed(
    session: Session, row: Notification, code: str, reason: str, *, permanent: bool
) -> None:
    if row.status == "failed" and row.error_code == code:
        return  # the provider re-sent the same event
    row.status = "failed"
    row.error_code = code[:64]
    row.error_reason = redact(reason)
    if permanent:
        on_permanent_failure(session, row)


# --- SendGrid ----------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _sendgrid_verifier(public_key: str) -> EventWebhook:
    return EventWebhook(public_key)


def _sendgrid_valid(public_key: str, body: bytes, signature: str, timestamp: str) -> bool:
    try:
        verifier = _sendgrid_verifier(public_key)
    except Exception as exc:  # any parse failure means a bad key
        log.warning("DULY_SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid key (%s)", type(exc).__name__)
        raise _forbidden(
            "sendgrid", "DULY_SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid base64 ECDSA public key"
        ) from exc
    try:
        return bool(verifier.verify_signature(body.decode("utf-8"), signature, timestamp))
    except Exception:  # noqa: BLE001 - undecodable signature or body: not authentic
        return False


def _sendgrid_fresh(timestamp: str, now: float | None = None) -> bool:
    """Whether a signed timestamp (Unix seconds) lies within ten minutes of ``now``."""
    try:
        signed = int(timestamp.strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    return abs(current - signed) <= SENDGRID_MAX_AGE_SECONDS


def _sendgrid_row(session: Session, event: Mapping[str, Any]) -> Notification | None:
    key = event.get("idempotency_key")
    if isinstance(key, str) and key:
        row = session.scalar(select(Notification).where(Notification.idempotency_key == key))
        if row is not None:
            return row
    message_id = event.get("sg_message_id")
    if isinstance(message_id, str) and message_id:
        return session.scalar(
            select(Notification)
            .where(Notification.provider_message_id == message_id.split(".", 1)[0])
            .order_by(Notification.id.desc())
            .limit(1)
        )
    return None


def _event_time(event: Mapping[str, Any]) -> datetime:
    stamp = event.get("timestamp")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        try:
            return datetime.fromtimestamp(stamp, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return datetime.now(UTC)


def _apply_sendgrid_event(session: Session, row: Notification, event: Mapping[str, Any]) -> None:
    kind = event.get("event")
    reason = str(event.get("reason") or event.get("response") or kind)
    if kind == "delivered":
        _mark_delivered(row, _event_time(event))
    elif kind == "bounce" and event.get("type", "bounce") == "bounce":
        _mark_failed(session, row, "sendgrid:bounce", reason, permanent=True)
    elif kind == "dropped":
        _mark_failed(session, row, "sendgrid:dropped", reason, permanent=True)


@router.post("/sendgrid/events", status_code=status.HTTP_204_NO_CONTENT)
async def sendgrid_events(
    request: Request, session: SessionDep, settings: SettingsDep, temporal: TemporalDep
) -> Response:
    """SendGrid's Event Webhook: delivered, bounce and dropped update the ledger."""
    public_key = _require(settings, "sendgrid events")
    body = await request.body()
    signature = request.headers.get(SENDGRID_SIGNATURE_HEADER)
    timestamp = request.headers.get(SENDGRID_TIMESTAMP_HEADER)
    if (
        not signature
        or not timestamp
        or not _sendgrid_valid(public_key, body, signature, timestamp)
    ):
        raise _forbidden("sendgrid")
    if not _sendgrid_fresh(timestamp):
        raise _forbidden(
            "sendgrid",
            f"stale signature: the signed timestamp is more than {SENDGRID_MAX_AGE_SECONDS // 60}"
            " minutes from now (a replayed request, or a server clock that is off)",
        )
    try:
        events = json.loads(body)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="body is not JSON") from exc
    if not isinstance(events, list):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="body is not a JSON array")

    def _apply() -> None:
        matched = unknown = 0
        for event in events:
            if not isinstance(event, dict):
                continue
            row = _sendgrid_row(session, event)
            if row is None:
                unknown += 1
                continue
            matched += 1
            _apply_sendgrid_event(session, row, event)
        if unknown:
            log.info("sendgrid events: %d matched, %d for unknown messages", matched, unknown)

    # In a worker thread, committed before any workflow is signalled.
    await committed(session, _apply)
    await _redeliver(session, temporal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- Twilio ------------------------------------------------------------------------------------


def _public_url(request: Request, settings: Settings) -> str:
    """The URL Twilio called: ``DULY_PUBLIC_URL`` + path when set, else the request URL."""
    if not settings.public_url:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{settings.public_url.rstrip('/')}{request.url.path}{query}"


async def _twilio_params(request: Request, settings: Settings) -> MultiDict:
    """The form parameters of an authentic Twilio request (403 otherwise)."""
    auth_token = _require(settings, "twilio status and sms")
    form = await request.form()
    params = MultiDict([(k, v) for k, v in form.multi_items() if isinstance(v, str)])
    signature = request.headers.get(TWILIO_SIGNATURE_HEADER)
    if not signature:
        raise _forbidden("twilio")
    try:
        valid = RequestValidator(auth_token).validate(
            _public_url(request, settings), params, signature
        )
    except Exception:  # noqa: BLE001 - any validator failure: not authentic
        valid = False
    if not valid:
        raise _forbidden("twilio")
    return params


@router.post("/twilio/status", status_code=status.HTTP_204_NO_CONTENT)
async def twilio_status(
    request: Request, session: SessionDep, settings: SettingsDep, temporal: TemporalDep
) -> Response:
    """Twilio's message status callback: delivered, failed and undelivered update the ledger."""
    params = await _twilio_params(request, settings)
    sid = params.get("MessageSid") or params.get("SmsSid")
    message_status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()

    def _apply() -> bool:
        row = (
            session.scalar(
                select(Notification)
                .where(Notification.provider_message_id == sid)
                .order_by(Notification.id.desc())
                .limit(1)
            )
            if sid
            else None
        )
        if row is None:
            log.info("twilio status callback for an unknown message ignored")
            return False
        if message_status == "delivered":
            _mark_delivered(row, datetime.now(UTC))
        elif message_status in {"failed", "undelivered"}:
            code = (params.get("ErrorCode") or "").strip()
            permanent = code in TWILIO_PERMANENT_ERRORS
            description = TWILIO_PERMANENT_ERRORS.get(code) or TWILIO_TRANSIENT_ERRORS.get(code)
            reason = f"{message_status}: {description or 'Twilio error ' + (code or 'unknown')}"
            _mark_failed(
                session, row, f"twilio:{code or message_status}", reason, permanent=permanent
            )
        return True

    # In a worker thread, committed before any workflow is signalled.
    if not await committed(session, _apply):
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    await _redeliver(session, temporal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _twiml(text: str) -> Response:
    reply = MessagingResponse()
    reply.message(text)
    return Response(content=str(reply), media_type="application/xml")


def _latest_open_reminder(session: Session, person_ids: list[int]) -> Notification | None:
    """The newest unacknowledged ledger row of these people whose obligation is still open."""
    rows = session.scalars(
        select(Notification)
        .where(Notification.person_id.in_(person_ids), Notification.acknowledged_at.is_(None))
        .order_by(Notification.fired_at.desc(), Notification.id.desc())
        .limit(50)
    )
    for row in rows:
        obligation = session.scalar(
            select(Obligation).where(Obligation.workflow_id == row.workflow_id)
        )
        if obligation is None or (
            obligation.status not in _CLOSED
            and obligation.completed_at is None
            and obligation.acknowledged_at is None
        ):
            return row
    return None


def _title(session: Session, row: Notification) -> str:
    title = session.scalar(
        select(Obligation.requirement_title).where(Obligation.workflow_id == row.workflow_id)
    )
    return title or row.subject


def _set_sms_opt_out(session: Session, people: list[Person], opt_out: bool) -> None:
    for person in people:
        preference = session.get(NotificationPreference, person.id)
        if preference is None:
            preference = NotificationPreference(person_id=person.id, sms_opt_out=False)
            session.add(preference)
        if preference.sms_opt_out == opt_out:
            continue
        preference.sms_opt_out = opt_out
        audit.record(
            session,
            actor=f"person:{person.external_id}",
            actor_role="recipient",
            action="notification.sms_opt_out" if opt_out else "notification.sms_opt_in",
            target=f"person/{person.external_id}",
            after={"sms_opt_out": opt_out, "via": "sms reply"},
        )
    session.flush()


@router.post("/twilio/sms")
async def twilio_sms(
    request: Request, session: SessionDep, settings: SettingsDep, temporal: TemporalDep
) -> Response:
    """Incoming SMS: ACK/YES acknowledges, STOP opts out, START opts back in; TwiML reply."""
    params = await _twilio_params(request, settings)
    keyword = (params.get("Body") or "").strip().strip(".!").upper()
    phone = (params.get("From") or "").strip()

    def _decide() -> Response | tuple[Notification, str, str]:
        people = list(session.scalars(select(Person).where(Person.phone == phone))) if phone else []
        if not people:
            return _twiml(SMS_HELP)
        if keyword in SMS_STOP_WORDS:
            _set_sms_opt_out(session, people, True)
            return _twiml("You are unsubscribed from Duly texts. Reply START to resubscribe.")
        if keyword in SMS_START_WORDS:
            _set_sms_opt_out(session, people, False)
            return _twiml("You are resubscribed to Duly texts. Reply STOP to opt out.")
        if keyword not in SMS_ACK_WORDS:
            return _twiml(SMS_HELP)
        row = _latest_open_reminder(session, [p.id for p in people])
        if row is None:
            return _twiml("You have no open Duly reminders to acknowledge.")
        return (row, *actor_for(session, row))

    # Database work in a worker thread, committed before Temporal is awaited.
    decided = await committed(session, _decide)
    if isinstance(decided, Response):
        return decided
    row, actor, actor_role = decided
    try:
        outcome = await acknowledge_notification(
            session, temporal=temporal, row=row, actor=actor, actor_role=actor_role, channel="sms"
        )
    except AcknowledgeUnavailable as exc:
        log.warning("sms acknowledgement of notification %d deferred: %s", row.id, exc)
        return _twiml("Sorry, we could not record that just now. Please reply ACK again soon.")
    title = await committed(session, lambda: _title(session, row))
    if outcome is AckOutcome.CLOSED:
        return _twiml(f"Thanks. {title} is already closed; nothing more to do.")
    return _twiml(f"Thanks, acknowledged: {title}.")


# --- Slack -------------------------------------------------------------------------------------


def slack_api_url(base_url: str | None) -> str:
    """The Web API base for ``WebClient`` (``DULY_SLACK_BASE_URL`` may omit the ``/api/``)."""
    if not base_url:
        return SLACK_DEFAULT_API
    base = base_url.rstrip("/")
    if not urlsplit(base).path.endswith("/api"):
        base += "/api"
    return base + "/"


def _mrkdwn_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _update_slack_message(settings: Settings, channel: str, ts: str, text: str) -> None:
    """Replace the reminder (and its button) with ``text``; failures are only logged."""
    if settings.slack_bot_token is None:
        log.warning("cannot update the Slack message: set DULY_SLACK_BOT_TOKEN")
        return
    client = WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=slack_api_url(settings.slack_base_url),
        timeout=10,
    )
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn_escape(text)}}]
    try:
        client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
    except SlackApiError as exc:
        log.warning("slack chat.update failed: %s", exc.response.get("error", "unknown"))
    except Exception as exc:  # noqa: BLE001 - network trouble must not surface anywhere
        log.warning("slack chat.update failed: %s", type(exc).__name__)


def _slack_payload(body: bytes) -> dict[str, Any]:
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        payload = json.loads(form.get("payload", [""])[0])
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="no JSON payload") from exc
    if not isinstance(payload, dict):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="payload is not an object")
    return payload


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@router.post("/slack/interactions")
async def slack_interactions(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    background: BackgroundTasks,
) -> Response:
    """Slack's interactivity endpoint: the "Acknowledge" button on reminders."""
    signing_secret = _require(settings, "slack interactions")
    body = await request.body()
    try:
        valid = SignatureVerifier(signing_secret).is_valid(
            body=body,
            timestamp=request.headers.get("X-Slack-Request-Timestamp"),
            signature=request.headers.get("X-Slack-Signature"),
        )
    except (ValueError, TypeError):  # a non-numeric timestamp or a non-UTF-8 body
        valid = False
    if not valid:
        raise _forbidden("slack")
    payload = _slack_payload(body)
    ok = Response(status_code=status.HTTP_200_OK)
    if payload.get("type") != "block_actions":
        return ok
    actions = payload.get("actions")
    action = next(
        (
            a
            for a in (actions if isinstance(actions, list) else [])
            if isinstance(a, dict) and a.get("action_id") == SLACK_ACK_ACTION
        ),
        None,
    )
    if action is None:
        return ok
    key = settings.key_ring().ack_link

    def _look_up() -> tuple[Notification, Person | None, dict[str, Any], str, str] | None:
        try:
            claim = verify_ack_token(
                key,
                str(action.get("value", "")),
                ledger_lookup(session),
            )
        except (AckTokenExpired, AckTokenInvalid) as exc:
            log.info("slack acknowledgement refused: %s", type(exc).__name__)
            return None
        row = session.get(Notification, claim.notification_id)
        if row is None:
            return None
        user = _dict(payload.get("user"))
        slack_user = str(user.get("id") or "")
        person = (
            session.scalar(select(Person).where(Person.slack_user_id == slack_user))
            if slack_user
            else None
        )
        if person is not None and person.id == row.person_id:
            actor, actor_role = actor_for(session, row)
        elif person is not None:
            actor, actor_role = f"person:{person.external_id}", "recipient"
        else:
            actor, actor_role = f"slack:{slack_user or 'unknown'}", "recipient"
        return row, person, user, actor, actor_role

    # Database work in a worker thread, committed before Temporal is awaited.
    found = await committed(session, _look_up)
    if found is None:
        return ok
    row, person, user, actor, actor_role = found
    try:
        outcome = await acknowledge_notification(
            session, temporal=temporal, row=row, actor=actor, actor_role=actor_role, channel="slack"
        )
    except AcknowledgeUnavailable as exc:
        log.warning("slack acknowledgement of notification %d deferred: %s", row.id, exc)
        return ok
    channel = _dict(payload.get("channel")).get("id")
    ts = _dict(payload.get("message")).get("ts")
    if isinstance(channel, str) and isinstance(ts, str) and row.acknowledged_at is not None:
        when = row.acknowledged_at.strftime("%Y-%m-%d %H:%M UTC")
        if outcome is AckOutcome.ALREADY:
            text = f"Already acknowledged at {when}"
        else:
            name = person.name if person is not None else str(user.get("name") or "someone")
            text = f"Acknowledged by {name} at {when}"
        background.add_task(_update_slack_message, settings, channel, ts, text)
    return ok
