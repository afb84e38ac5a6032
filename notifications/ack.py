"""Signed, expiring acknowledgement tokens that carry no personal data.

A token names one notification ledger row and an expiry, and is authenticated by an HMAC that
also binds the row's workflow id, stage and recipient::

    v2.<ledger row id>.<expiry, unix seconds>.<base64url HMAC-SHA256, first 128 bits>

The MAC input is ``f"{id}|{exp}|{workflow_id}|{stage}|{recipient}"`` keyed with the
acknowledgement-link key, derived from ``DULY_SECRET_KEY`` by HKDF (:mod:`duly.keys`,
``Purpose.ACK_LINK``); ``v1`` tokens were keyed with the master key itself and no longer verify.
Only the id and expiry travel in the token (and so in URLs, mail logs and Slack button
values); the workflow id, stage and recipient are looked up from the ledger when the token is
verified, so a token for a deleted or re-used row id no longer verifies.

Verification raises exactly one of two errors and nothing else, whatever the input:

* :class:`AckTokenInvalid` — malformed, forged, tampered with, signed with another key, or for
  a ledger row that does not exist;
* :class:`AckTokenExpired` — authentic, but past its expiry.

**A token is a credential of its recipient: it is never stored.** Messages are rendered with a
live token at send time; the ledger (``GET /notifications``, which HR, auditors, managers and
integrations read) keeps the redacted form, ``…/ack/<redacted>`` (:func:`redact`). A queued
message sent later gets a fresh token for its row (:func:`restore`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from store.models import Notification

VERSION = "v2"
#: How long a link stays valid after its reminder fired.
ACK_LINK_LIFETIME = timedelta(days=45)
#: What the ledger keeps in place of a token.
REDACTED = "<redacted>"
#: Any acknowledgement token (every version), as it appears in text, URLs, HTML and JSON.
TOKEN_PATTERN = re.compile(
    r"(?<![A-Za-z0-9_.-])v[0-9]+\.[0-9]+\.[0-9]+\.[A-Za-z0-9_-]{22}(?![A-Za-z0-9_-])"
)
#: Bytes of the HMAC-SHA256 kept in the token (128 bits).
MAC_BYTES = 16
#: Longer inputs are rejected before any parsing or database work.
MAX_TOKEN_LENGTH = 128

_NUMBER = re.compile(r"(?:0|[1-9][0-9]{0,18})")
_MAC = re.compile(r"[A-Za-z0-9_-]{22}")

#: ``lookup(notification_id)`` -> ``(workflow_id, stage, recipient)``, or None when unknown.
Lookup = Callable[[int], tuple[str, str, str] | None]


class AckTokenError(Exception):
    """Base class of the two verification errors (never raised itself)."""


class AckTokenInvalid(AckTokenError):
    """Malformed, forged, tampered with, or for an unknown ledger row."""


class AckTokenExpired(AckTokenError):
    """Authentic but past its expiry.

    Attributes:
        claim: What the token would have acknowledged (for a kind "expired" page).
    """

    def __init__(self, claim: AckClaim) -> None:
        super().__init__("acknowledgement token expired")
        self.claim = claim


@dataclass(frozen=True)
class AckClaim:
    """What a verified token acknowledges.

    Attributes:
        notification_id: The ledger row id.
        workflow_id: The obligation workflow the row belongs to.
        stage: The reminder stage of the row.
        recipient: The recipient the token was issued to (see :func:`recipient_of`).
        expires_at: When the token stops being accepted (UTC).
    """

    notification_id: int
    workflow_id: str
    stage: str
    recipient: str
    expires_at: datetime


def _mac(
    key: bytes, notification_id: int, exp: int, workflow_id: str, stage: str, recipient: str
) -> str:
    message = f"{notification_id}|{exp}|{workflow_id}|{stage}|{recipient}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()[:MAC_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    return int(moment.timestamp())


def make_ack_token(
    key: bytes,
    notification_id: int,
    workflow_id: str,
    stage: str,
    recipient: str,
    expires_at: datetime,
) -> str:
    """Issue a token acknowledging ledger row ``notification_id`` until ``expires_at``.

    Args:
        key: The acknowledgement-link key (``settings.key_ring().ack_link``), never the
            master key.
        notification_id: The ledger row the token acknowledges.
        workflow_id: That row's workflow id (bound by the MAC, not carried).
        stage: That row's stage (bound by the MAC, not carried).
        recipient: That row's recipient (see :func:`recipient_of`; bound, not carried).
        expires_at: Timezone-aware expiry; truncated to whole seconds.

    Returns:
        A URL-safe token of about 45 characters.

    Raises:
        ValueError: Short key, negative id or naive ``expires_at``.
    """
    if len(key) < 16:
        raise ValueError("the acknowledgement-link key must be at least 16 bytes")
    if notification_id < 0:
        raise ValueError("notification_id must not be negative")
    exp = _epoch(expires_at)
    if exp < 0:
        raise ValueError("expires_at must be after 1970")
    mac = _mac(key, notification_id, exp, workflow_id, stage, recipient)
    return f"{VERSION}.{notification_id}.{exp}.{mac}"


def verify_ack_token(
    key: bytes, token: str, lookup: Lookup, *, now: datetime | None = None
) -> AckClaim:
    """Check ``token`` and return what it acknowledges.

    The MAC is checked (in constant time) before the expiry, so only authentic tokens are ever
    reported as expired.

    Args:
        key: The acknowledgement-link key the token was issued with.
        token: The token as received (any string).
        lookup: Maps a ledger row id to ``(workflow_id, stage, recipient)``, None if unknown.
        now: The current time (tests); the wall clock otherwise.

    Returns:
        The verified claim.

    Raises:
        AckTokenInvalid: Malformed, forged, tampered with or for an unknown row.
        AckTokenExpired: Authentic but expired.
    """
    if len(key) < 16 or not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise AckTokenInvalid("malformed token")
    parts = token.split(".")
    if (
        len(parts) != 4
        or parts[0] != VERSION
        or not _NUMBER.fullmatch(parts[1])
        or not _NUMBER.fullmatch(parts[2])
        or not _MAC.fullmatch(parts[3])
    ):
        raise AckTokenInvalid("malformed token")
    notification_id, exp = int(parts[1]), int(parts[2])
    try:
        expires_at = datetime.fromtimestamp(exp, UTC)
        bound = lookup(notification_id)
    except (OverflowError, OSError, ValueError) as exc:
        raise AckTokenInvalid("malformed token") from exc
    if bound is None:
        raise AckTokenInvalid("unknown token")
    workflow_id, stage, recipient = bound
    expected = _mac(key, notification_id, exp, workflow_id, stage, recipient)
    if not hmac.compare_digest(expected.encode("ascii"), parts[3].encode("ascii")):
        raise AckTokenInvalid("bad signature")
    claim = AckClaim(notification_id, workflow_id, stage, recipient, expires_at)
    if (now or datetime.now(UTC)) >= expires_at:
        raise AckTokenExpired(claim)
    return claim


def ack_url(public_url: str, token: str) -> str:
    """The acknowledgement page for ``token`` under ``public_url`` (``…/ack/<token>``)."""
    return f"{public_url.rstrip('/')}/ack/{token}"


def recipient_of(row: Notification) -> str:
    """The recipient string a ledger row's tokens are bound to.

    The person's row id when the row is for a person, else the recipient role (a shared
    mailbox or Slack channel): stable for the row's life, and never an address.
    """
    if row.person_id is not None:
        return f"person:{row.person_id}"
    return f"role:{row.recipient_role or 'unknown'}"


def token_for(key: bytes, row: Notification, expires_at: datetime) -> str:
    """Issue a token for a ledger row (the delivery layer's entry point)."""
    return make_ack_token(key, row.id, row.workflow_id, row.stage, recipient_of(row), expires_at)


def ledger_lookup(session: Session) -> Lookup:
    """A :data:`Lookup` reading the notification ledger through ``session``."""

    def lookup(notification_id: int) -> tuple[str, str, str] | None:
        if notification_id > 2**31 - 1:  # beyond the column's range on PostgreSQL
            return None
        row = session.get(Notification, notification_id)
        if row is None:
            return None
        return row.workflow_id, row.stage, recipient_of(row)

    return lookup


def redact(text: str) -> str:
    """``text`` with every acknowledgement token replaced by ``<redacted>``."""
    return TOKEN_PATTERN.sub(REDACTED, text)


def redact_json(value: Any) -> Any:
    """A JSON value (Slack blocks, a payload) with every token in every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_json(item) for item in value]
    if isinstance(value, dict):
        return {key: redact_json(item) for key, item in value.items()}
    return value


def restore(text: str, token: str) -> str:
    """A redacted message made sendable again: each ``<redacted>`` becomes ``token``."""
    return text.replace(REDACTED, token)


def restore_json(value: Any, token: str) -> Any:
    """:func:`restore` through a JSON value."""
    if isinstance(value, str):
        return restore(value, token)
    if isinstance(value, list):
        return [restore_json(item, token) for item in value]
    if isinstance(value, dict):
        return {key: restore_json(item, token) for key, item in value.items()}
    return value
