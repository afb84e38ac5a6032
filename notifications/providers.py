"""Provider channels on the real SDKs: SendGrid email, Twilio SMS and Slack messages.

Each class implements :class:`notifications.channels.Channel`. ``base_url`` points an SDK at another
host (the local fakes in tests, a proxy or a regional endpoint in production). Every client gets an
HTTP timeout and no SDK-level retries: Temporal's retry policy owns retrying, driven by the error
classes raised here:

* :class:`~notifications.channels.TransientSendError` -- HTTP 429 (with ``retry_after`` from the
  ``Retry-After`` header), 5xx, timeouts and connection errors;
* :class:`~notifications.channels.PermanentSendError` -- everything the provider rejected for good
  for this recipient (invalid address, unsubscribed, unknown Slack user, bad request);
* :class:`~notifications.channels.ConfigurationSendError` -- the provider refused Duly itself
  (SendGrid 401/403, Twilio 20003 and other account/sender errors, Slack ``invalid_auth``,
  ``token_revoked``…): the message is held until an operator fixes the setting the error names.

Error codes are ``"<provider>:<provider code>"`` (``sendgrid:400``, ``twilio:21211``,
``slack:user_not_found``). Reasons are short and scrubbed of email addresses and phone numbers,
and SDK exceptions are not chained, so no address reaches the ledger, the logs or Temporal history.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import sendgrid
from python_http_client.exceptions import HTTPError as SendGridHTTPError
from sendgrid.helpers.mail import CustomArg, Mail
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient

from notifications.channels import (
    Channel,
    ChannelMessage,
    ConfigurationSendError,
    PermanentSendError,
    SendError,
    SendResult,
    TransientSendError,
)

if TYPE_CHECKING:
    from duly.settings import Settings

log = logging.getLogger("duly.providers")

#: Seconds to wait for a provider before treating the send as transient.
DEFAULT_TIMEOUT = 10.0

#: The custom arg (SendGrid) carrying the ledger's idempotency key back in event webhooks.
IDEMPOTENCY_ARG = "idempotency_key"

# The SDKs log too much for a service that must not log secrets or addresses:
# * python_http_client (SendGrid) logs the ``Authorization: Bearer <api key>`` header and the whole
#   payload (recipient addresses) at DEBUG -- cap it at INFO;
# * slack_sdk logs every request body (user ids, text) at DEBUG -- it gets a logger capped at INFO;
# * Twilio's HTTP client logs every request URL and the response headers at INFO -- WARNING.
logging.getLogger("python_http_client.client").setLevel(logging.INFO)
_slack_log = logging.getLogger("duly.providers.slack")
_slack_log.setLevel(logging.INFO)
_twilio_http_log = logging.getLogger("duly.providers.twilio.http")
_twilio_http_log.setLevel(logging.WARNING)

_EMAIL_RE = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE_RE = re.compile(r"\+?\(?\d[\d\s().-]{5,}\d")


# -------------------------------------------------------------------------------------------------
# Shared helpers
# -------------------------------------------------------------------------------------------------


def _scrub(text: str, limit: int = 200) -> str:
    """Drop email addresses and phone numbers from a provider message; shorten it."""
    text = _EMAIL_RE.sub("<email>", text)
    text = _PHONE_RE.sub("<number>", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _header(headers: Any, name: str) -> str | None:
    """Case-insensitive header lookup over a dict, ``HTTPMessage`` or requests' headers."""
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() == wanted:
            return str(value)
    return None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a timeout: socket, urllib, requests or urllib3."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, TimeoutError) or "timeout" in type(current).__name__.lower():
            return True
        related: Iterable[object] = (
            getattr(current, "reason", None),
            current.__cause__,
            current.__context__,
            *current.args,
        )
        pending.extend(item for item in related if isinstance(item, BaseException))
    return False


def _transport_error(provider: str, label: str, exc: BaseException) -> TransientSendError:
    """A transient error for a request that got no HTTP answer."""
    if _is_timeout(exc):
        return TransientSendError(f"{provider}:timeout", f"{label} did not answer in time")
    return TransientSendError(
        f"{provider}:connection", f"could not reach {label} ({type(exc).__name__})"
    )


# Errors raised by the transports under the SDKs when no HTTP answer arrived: urllib (SendGrid,
# Slack) raises URLError/TimeoutError/ConnectionError (all OSError) or http.client exceptions;
# requests (Twilio) raises RequestException, which subclasses OSError too.
_TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


# -------------------------------------------------------------------------------------------------
# SendGrid
# -------------------------------------------------------------------------------------------------


class SendGridEmail:
    """Email through SendGrid's v3 Mail Send API (``sendgrid.SendGridAPIClient``).

    The message's ``metadata`` and its idempotency key travel as ``custom_args``, so SendGrid's
    event webhook reports them back with each delivery event.
    """

    name: str = "email"
    provider: str = "sendgrid"

    def __init__(
        self,
        api_key: str,
        from_email: str,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        kwargs: dict[str, Any] = {"api_key": api_key}
        if base_url:
            kwargs["host"] = base_url.rstrip("/")  # the SDK appends /v3/mail/send
        self._client: Any = sendgrid.SendGridAPIClient(**kwargs)
        # SendGridAPIClient takes no timeout, but its python_http_client.Client does and passes it
        # to every child client it builds (client.mail.send...) and on to urllib's opener.open().
        self._client.client.timeout = timeout
        self._from_email = from_email

    def _mail(self, message: ChannelMessage) -> Any:
        mail = Mail(
            from_email=self._from_email,
            to_emails=message.to,
            subject=message.subject,
            plain_text_content=message.text,
            html_content=message.html,
        )
        args = {**message.metadata, IDEMPOTENCY_ARG: message.idempotency_key}
        mail.custom_arg = [CustomArg(key=key, value=str(value)) for key, value in args.items()]
        return mail

    def send(self, message: ChannelMessage) -> SendResult:
        """Send one email; returns SendGrid's ``X-Message-Id``."""
        mail = self._mail(message)
        try:
            response = self._client.send(mail)
        except SendGridHTTPError as exc:
            raise _sendgrid_error(exc) from None
        except _TRANSPORT_ERRORS as exc:
            raise _transport_error("sendgrid", "SendGrid", exc) from None
        message_id = _header(response.headers, "X-Message-Id") or ""
        return SendResult(provider=self.provider, provider_message_id=message_id)


def _sendgrid_reason(body: Any) -> str:
    """The ``errors[].message`` (and ``field``) of a SendGrid error body, scrubbed."""
    try:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        payload = json.loads(text) if text else {}
    except ValueError:
        return ""
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for error in errors:
        if not isinstance(error, dict) or not error.get("message"):
            continue
        part = str(error["message"])
        if error.get("field"):
            part += f" ({error['field']})"
        parts.append(part)
    return _scrub("; ".join(parts))


#: SendGrid answers about Duly's own account: (what happened, what an operator must fix).
SENDGRID_CONFIGURATION: dict[int, tuple[str, str]] = {
    401: (
        "SendGrid rejected Duly's API key (invalid, expired or revoked)",
        "set DULY_SENDGRID_API_KEY to a valid API key with the Mail Send permission and "
        "restart the worker",
    ),
    403: (
        "SendGrid refused Duly's account (the API key lacks Mail Send, or the sender is not "
        "verified)",
        "give the API key the Mail Send permission and make DULY_SENDGRID_FROM_EMAIL a verified "
        "sender (SendGrid > Settings > Sender Authentication)",
    ),
}


def _sendgrid_error(exc: Any) -> SendError:
    status = int(getattr(exc, "status_code", 0) or 0)
    code = f"sendgrid:{status}"
    reason = _sendgrid_reason(getattr(exc, "body", b""))
    headers = getattr(exc, "headers", None)
    if status in SENDGRID_CONFIGURATION:
        what, fix = SENDGRID_CONFIGURATION[status]
        return ConfigurationSendError(code, f"{what}: {reason}" if reason else what, fix)
    if status == 429:
        retry_after = _retry_after(_header(headers, "Retry-After"))
        reset = _header(headers, "X-RateLimit-Reset")  # SendGrid's own: epoch seconds
        if retry_after is None and reset and reset.strip().isdigit():
            retry_after = max(0.0, float(reset) - time.time())
        return TransientSendError(code, reason or "SendGrid rate limit", retry_after)
    if status >= 500 or status == 408:
        return TransientSendError(code, reason or f"SendGrid server error (HTTP {status})")
    return PermanentSendError(code, reason or f"SendGrid rejected the message (HTTP {status})")


# -------------------------------------------------------------------------------------------------
# Twilio
# -------------------------------------------------------------------------------------------------

#: PII-free reasons for the Twilio error codes a send meets most.
TWILIO_REASONS: dict[int, str] = {
    20003: "Twilio authentication failed (check the account SID and auth token)",
    20005: "the Twilio account is not active (suspended or closed)",
    21212: "the 'From' phone number is not valid for this account",
    20429: "Twilio rate limit",
    21211: "invalid 'To' phone number",
    21408: "SMS to this region is not enabled on the Twilio account",
    21602: "message body is required",
    21603: "'From' phone number is required",
    21604: "'To' phone number is required",
    21606: "the 'From' number cannot send this message",
    21608: "trial accounts can only send to verified numbers",
    21610: "recipient has unsubscribed (replied STOP)",
    21612: "the 'To' number cannot receive SMS from this sender",
    21614: "'To' number is not a mobile number",
    21617: "message body exceeds 1600 characters",
}

_TWILIO_TRANSIENT_CODES = frozenset({20429, 20500, 20503})

_TWILIO_CREDENTIALS_FIX = (
    "check DULY_TWILIO_ACCOUNT_SID and DULY_TWILIO_AUTH_TOKEN (Twilio console > Account info; "
    "a rotated auth token must be updated) and restart the worker"
)
_TWILIO_SENDER_FIX = (
    "set DULY_TWILIO_FROM_NUMBER to an SMS-capable number of this Twilio account and restart "
    "the worker"
)
#: Twilio errors about Duly's own account or sender, with what an operator must fix.
TWILIO_CONFIGURATION: dict[int, str] = {
    20003: _TWILIO_CREDENTIALS_FIX,
    20005: "reactivate the Twilio account (Twilio console > Billing)",
    21212: _TWILIO_SENDER_FIX,
    21603: _TWILIO_SENDER_FIX,
    21606: _TWILIO_SENDER_FIX,
}


class TwilioSms:
    """SMS through Twilio's Programmable Messaging (``twilio.rest.Client``)."""

    name: str = "sms"
    provider: str = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str | None = None,
        status_callback: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._from_number = from_number
        self._status_callback = status_callback
        # Response headers of this thread's last request: Twilio's exceptions carry no headers,
        # and Retry-After lives there. (A channel may be shared by several activity threads.)
        self._last = threading.local()
        http_client = TwilioHttpClient(
            timeout=timeout,
            logger=_twilio_http_log,
            request_hooks={"response": [self._remember_response]},
        )
        self._client: Any = TwilioClient(account_sid, auth_token, http_client=http_client)
        if base_url:
            # Domains build absolute URLs from ``base_url`` at request time (Domain.absolute_url).
            self._client.api.base_url = base_url.rstrip("/")
            # TWILIO_EDGE/TWILIO_REGION would rewrite the host name of every request URL.
            self._client.edge = None
            self._client.region = None

    def _remember_response(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._last.headers = dict(response.headers)

    def send(self, message: ChannelMessage) -> SendResult:
        """Send one SMS; returns the message SID (``SM…``)."""
        kwargs: dict[str, Any] = {"to": message.to, "from_": self._from_number}
        kwargs["body"] = message.text
        if self._status_callback:
            kwargs["status_callback"] = self._status_callback
        self._last.headers = None
        try:
            sent = self._client.messages.create(**kwargs)
        except TwilioRestException as exc:
            raise self._error(exc.status, exc.code, str(exc.msg or "")) from None
        except TwilioServiceException as exc:
            detail = str(exc.detail or exc.title or "")
            raise self._error(exc.status, exc.code, detail) from None
        except _TRANSPORT_ERRORS as exc:
            raise _transport_error("twilio", "Twilio", exc) from None
        return SendResult(provider=self.provider, provider_message_id=str(sent.sid))

    def _error(self, status: Any, code: Any, message: str) -> SendError:
        status = int(status or 0)
        try:
            number = int(code) if code is not None else status
        except (TypeError, ValueError):
            number = status
        error_code = f"twilio:{number}"
        text = message.removeprefix("Unable to create record: ")
        reason = TWILIO_REASONS.get(number) or _scrub(text) or f"Twilio error (HTTP {status})"
        if status == 429 or number == 20429:
            headers = getattr(self._last, "headers", None)
            return TransientSendError(
                error_code, reason, _retry_after(_header(headers, "Retry-After"))
            )
        if status >= 500 or status == 408 or number in _TWILIO_TRANSIENT_CODES:
            return TransientSendError(error_code, reason)
        if number in TWILIO_CONFIGURATION or status in {401, 403}:
            fix = TWILIO_CONFIGURATION.get(number, _TWILIO_CREDENTIALS_FIX)
            return ConfigurationSendError(error_code, reason, fix)
        return PermanentSendError(error_code, reason)


# -------------------------------------------------------------------------------------------------
# Slack
# -------------------------------------------------------------------------------------------------

#: PII-free reasons for the Slack errors a post meets most (any other error is permanent too).
SLACK_REASONS: dict[str, str] = {
    "user_not_found": "Slack user not found",
    "channel_not_found": "Slack channel not found (or the bot cannot see it)",
    "not_in_channel": "the bot is not a member of the Slack channel",
    "is_archived": "the Slack channel is archived",
    "invalid_auth": "Slack bot token is invalid",
    "not_authed": "no Slack bot token was sent",
    "account_inactive": "the Slack bot's account is inactive",
    "token_revoked": "Slack bot token was revoked",
    "token_expired": "Slack bot token has expired",
    "team_access_not_granted": "the Slack app is not installed in this workspace",
    "no_permission": "the Slack bot lacks permission",
    "missing_scope": "the Slack bot token lacks a required scope",
    "msg_too_long": "message text is too long for Slack",
    "no_text": "the Slack message has no text",
    "invalid_blocks": "the Slack blocks are invalid",
    "cannot_dm_bot": "cannot message a Slack bot user",
    "user_disabled": "the Slack user is deactivated",
    "restricted_action": "the Slack workspace restricts posting here",
    "message_not_found": "the Slack message to update no longer exists",
    "cant_update_message": "the Slack message cannot be updated by this bot",
    "edit_window_closed": "the Slack message is too old to edit",
}

#: Slack ``error`` values (HTTP 200) worth retrying.
SLACK_TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)

_SLACK_TOKEN_FIX = (
    "set DULY_SLACK_BOT_TOKEN to the app's current bot token (Slack app > OAuth & Permissions; "
    "reinstall the app if it was revoked) and restart the worker"
)
_SLACK_SCOPE_FIX = (
    "add the chat:write and im:write scopes to the Slack app, reinstall it, and update "
    "DULY_SLACK_BOT_TOKEN if the token changed"
)
#: Slack errors about Duly's own bot token or app, with what an operator must fix.
SLACK_CONFIGURATION: dict[str, str] = {
    "invalid_auth": _SLACK_TOKEN_FIX,
    "not_authed": _SLACK_TOKEN_FIX,
    "account_inactive": _SLACK_TOKEN_FIX,
    "token_revoked": _SLACK_TOKEN_FIX,
    "token_expired": _SLACK_TOKEN_FIX,
    "team_access_not_granted": "install the Slack app in the workspace and update "
    "DULY_SLACK_BOT_TOKEN",
    "missing_scope": _SLACK_SCOPE_FIX,
    "no_permission": _SLACK_SCOPE_FIX,
}

_SLACK_ERROR_RE = re.compile(r"[a-z0-9_]{1,64}")


def _slack_api_url(base_url: str) -> str:
    """``http://host:port`` → ``http://host:port/api/`` (WebClient's ``base_url`` ends in /api/)."""
    root = base_url.rstrip("/")
    if not root.endswith("/api"):
        root += "/api"
    return root + "/"


class SlackMessenger:
    """Slack messages from the Duly bot (``slack_sdk.WebClient``), posted and later updated."""

    name: str = "slack"
    provider: str = "slack"

    def __init__(
        self, bot_token: str, base_url: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        kwargs: dict[str, Any] = {}
        if base_url:
            kwargs["base_url"] = _slack_api_url(base_url)
        self._client = WebClient(
            token=bot_token,
            # Annotated int, but only handed to urllib's urlopen(), which takes float seconds.
            timeout=timeout,  # type: ignore[arg-type]
            # An empty list disables the default ConnectionErrorRetryHandler (None would not).
            retry_handlers=[],
            logger=_slack_log,
            **kwargs,
        )

    def send(self, message: ChannelMessage) -> SendResult:
        """Post to a user (``U…``, opens the bot's DM) or channel; returns ts and channel id."""
        return self._call(
            "chat_postMessage",
            channel=message.to,
            text=message.text or message.subject,
            blocks=message.blocks,
        )

    def update(
        self, channel_ref: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> SendResult:
        """Replace the text and blocks of a posted message (e.g. after Acknowledge)."""
        return self._call("chat_update", channel=channel_ref, ts=ts, text=text, blocks=blocks)

    def _call(self, method: str, **kwargs: Any) -> SendResult:
        try:
            response = getattr(self._client, method)(**kwargs)
        except SlackApiError as exc:
            raise _slack_error(exc) from None
        except _TRANSPORT_ERRORS as exc:
            raise _transport_error("slack", "Slack", exc) from None
        return SendResult(
            provider=self.provider,
            provider_message_id=str(response["ts"]),
            channel_ref=str(response["channel"]),
        )


def _slack_error(exc: SlackApiError) -> SendError:
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    error = str(data.get("error") or "") if isinstance(data, dict) else ""
    if status == 429 or error == "ratelimited":
        retry_after = _retry_after(_header(getattr(response, "headers", None), "Retry-After"))
        return TransientSendError("slack:ratelimited", "Slack rate limit", retry_after)
    if status >= 500 or status == 408:
        return TransientSendError(f"slack:http_{status}", f"Slack server error (HTTP {status})")
    if not _SLACK_ERROR_RE.fullmatch(error):  # a non-JSON body: SDK puts a long message there
        error = f"http_{status}"
    reason = SLACK_REASONS.get(error, f"Slack error {error}")
    if error in SLACK_TRANSIENT_ERRORS:
        return TransientSendError(f"slack:{error}", reason)
    if error in SLACK_CONFIGURATION:
        return ConfigurationSendError(f"slack:{error}", reason, SLACK_CONFIGURATION[error])
    return PermanentSendError(f"slack:{error}", reason)


# -------------------------------------------------------------------------------------------------
# Wiring
# -------------------------------------------------------------------------------------------------


def build_channels(
    settings: Settings,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    twilio_status_callback: str | None = None,
) -> dict[str, Channel]:
    """One provider channel per channel name whose credentials are configured.

    A channel without credentials is absent; the caller falls back to the outbox for it.
    Logs only channel names and setting names, never secrets or addresses.
    """
    channels: dict[str, Channel] = {}
    missing: dict[str, str] = {}

    sendgrid_key = _secret(settings.sendgrid_api_key)
    if sendgrid_key and settings.sendgrid_from_email:
        channels["email"] = SendGridEmail(
            sendgrid_key,
            settings.sendgrid_from_email,
            settings.sendgrid_base_url,
            timeout=timeout,
        )
    else:
        missing["email"] = "DULY_SENDGRID_API_KEY"

    twilio_token = _secret(settings.twilio_auth_token)
    if settings.twilio_account_sid and twilio_token and settings.twilio_from_number:
        channels["sms"] = TwilioSms(
            settings.twilio_account_sid,
            twilio_token,
            settings.twilio_from_number,
            settings.twilio_base_url,
            twilio_status_callback,
            timeout=timeout,
        )
    else:
        missing["sms"] = (
            "DULY_TWILIO_ACCOUNT_SID, DULY_TWILIO_AUTH_TOKEN and DULY_TWILIO_FROM_NUMBER"
        )

    slack_token = _secret(settings.slack_bot_token)
    if slack_token:
        channels["slack"] = SlackMessenger(slack_token, settings.slack_base_url, timeout=timeout)
    else:
        missing["slack"] = "DULY_SLACK_BOT_TOKEN"

    for channel, variables in missing.items():
        log.info(
            "%s channel: no provider credentials (set %s); using the outbox", channel, variables
        )
    return channels


def _secret(value: Any) -> str | None:
    """The value of a ``SecretStr`` (or plain string), None when unset or blank."""
    if value is None:
        return None
    raw = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return raw.strip() or None
