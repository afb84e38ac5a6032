"""The channel interface every provider implements (SendGrid, Twilio, Slack; the outbox).

A channel sends one rendered message to one address and reports the provider's message id. It
classifies failures so the caller (an activity) can let Temporal retry what may succeed later and
fall back to another channel for what never will:

* :class:`TransientSendError` — 5xx, timeouts, connection errors, 429 (with ``retry_after``
  seconds when the provider said so). The activity re-raises it; Temporal's retry policy backs off.
* :class:`PermanentSendError` — invalid number, unsubscribed, unknown Slack user, bad request.
  The activity records it in the ledger and tries the recipient's next allowed channel.
* :class:`ConfigurationSendError` — the provider refused *Duly* (a bad, revoked or
  under-privileged credential, an unverified sender). No recipient is at fault and every other
  message on that provider would fail the same way, so the message is ``held`` (no fallback)
  and retried with backoff until an operator applies ``fix``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ChannelMessage:
    """One message for one address on one channel, already rendered.

    Attributes:
        idempotency_key: The ledger key of this step (also sent to providers that dedupe).
        to: Email address, E.164 phone number, Slack user id (``U…``) or channel (``#name``).
        subject: Email subject (also the Slack notification fallback text).
        text: Plain text body (email text part, SMS body, Slack fallback text).
        html: Email HTML part (autoescaped template output).
        blocks: Slack Block Kit blocks (with the Acknowledge button).
        metadata: Provider-visible, PII-free tags (workflow id, stage) for receipts.
    """

    idempotency_key: str
    to: str
    subject: str
    text: str
    html: str | None = None
    blocks: list[dict[str, Any]] | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    """What the provider accepted."""

    provider: str
    provider_message_id: str
    #: Slack: the channel id the message was posted to (needed to update it later).
    channel_ref: str | None = None


class SendError(Exception):
    """A send that did not go out.

    Attributes:
        code: The provider's error code (HTTP status, Twilio code, Slack error string).
        reason: A short, PII-free explanation for the ledger and HR.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class TransientSendError(SendError):
    """May succeed if retried later (5xx, timeout, 429)."""

    def __init__(self, code: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(code, reason)
        self.retry_after = retry_after


class PermanentSendError(SendError):
    """Will never succeed for this address on this channel."""


class ConfigurationSendError(SendError):
    """The provider refused Duly's own credentials or configuration, not the recipient.

    Attributes:
        fix: What an operator must change (setting names, provider console steps; never a
            secret), for the log line and the ledger.
    """

    def __init__(self, code: str, reason: str, fix: str) -> None:
        super().__init__(code, reason)
        self.fix = fix


class Channel(Protocol):
    """A way to reach people: ``name`` is the pack's channel (email, sms, slack)."""

    name: str
    provider: str

    def send(self, message: ChannelMessage) -> SendResult:
        """Send ``message`` once.

        Raises:
            TransientSendError: Retry later.
            PermanentSendError: Never retry on this channel for this address.
            ConfigurationSendError: Duly's credentials or settings were refused: hold.
        """
        ...
