"""Signing in to the pages: one-time emailed links and pasted API tokens.

A sign-in link is signed, expiring and single use, and carries no personal data::

    s1.<person row id>.<expiry, unix seconds>.<nonce, 32 hex>.<base64url HMAC-SHA256, 128 bits>

keyed with the sign-in-link key (``DULY_SECRET_KEY`` through HKDF, :mod:`duly.keys`). Redeeming
one records its nonce in ``used_sign_in_links`` (a primary key: the second redemption fails,
even when two race) and opens a session.

A session is an ordinary API token with the session's lifetime (``DULY_WEB_SESSION_MINUTES``),
role ``manager`` for a person with reports and ``learner`` otherwise: every page request is
authenticated by :func:`store.tokens.check_token`, so the pages have the API's roles, row-level
scope, revocation and "terminated people stop at once" by construction, not by a second copy.
Signing out revokes it. HR and auditors sign in by pasting their own API token instead.

The link is emailed through the notification machinery: the configured email channel
(SendGrid) or the outbox, and a row in the notification ledger whose body has the link
redacted (the link is a credential, like an acknowledgement link).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.roles import Role
from domain.statuses import EmploymentStatus
from duly.settings import Settings
from notifications.channels import Channel, ChannelMessage, SendError
from notifications.outbox import OutboxSender
from notifications.providers import build_channels
from store.models import Notification, Person, UsedSignInLink
from store.tokens import create_token, revoke_token

log = logging.getLogger("duly.signin")

VERSION = "s1"
MAC_BYTES = 16
MAX_LINK_LENGTH = 160
_LINK = re.compile(
    r"s1\.(0|[1-9][0-9]{0,9})\.([1-9][0-9]{0,11})\.([0-9a-f]{32})\.([A-Za-z0-9_-]{22})"
)
#: What the ledger keeps in place of the link.
REDACTED_LINK = "<sign-in link redacted>"
#: The ledger's "kind" and "stage" of a sign-in message.
KIND, STAGE = "sign_in", "link"


class LinkInvalid(Exception):
    """Malformed, forged, or for a person who cannot sign in."""


class LinkExpired(Exception):
    """Authentic but past its expiry."""


class LinkUsed(Exception):
    """Authentic and unexpired, but already redeemed once."""


@dataclass(frozen=True)
class LinkClaim:
    """A verified link: whose it is, its nonce and its expiry."""

    person_id: int
    nonce: str
    expires_at: datetime


def _mac(key: bytes, person_id: int, exp: int, nonce: str) -> str:
    digest = hmac.new(key, f"{VERSION}|{person_id}|{exp}|{nonce}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:MAC_BYTES]).rstrip(b"=").decode("ascii")


def make_link_token(key: bytes, person_id: int, expires_at: datetime) -> str:
    """A fresh one-time sign-in token for ``person_id`` valid until ``expires_at``."""
    exp = int(expires_at.timestamp())
    nonce = secrets.token_hex(16)
    return f"{VERSION}.{person_id}.{exp}.{nonce}.{_mac(key, person_id, exp, nonce)}"


def verify_link_token(key: bytes, token: str, *, now: datetime) -> LinkClaim:
    """Check a link's signature, then its expiry (in that order: only authentic ones expire).

    Raises:
        LinkInvalid: Malformed or forged.
        LinkExpired: Authentic but expired.
    """
    match = _LINK.fullmatch(token) if len(token) <= MAX_LINK_LENGTH else None
    if match is None:
        raise LinkInvalid("malformed sign-in link")
    person_id, exp, nonce, mac = int(match[1]), int(match[2]), match[3], match[4]
    if not hmac.compare_digest(_mac(key, person_id, exp, nonce).encode(), mac.encode()):
        raise LinkInvalid("bad signature")
    expires_at = datetime.fromtimestamp(exp, UTC)
    if now >= expires_at:
        raise LinkExpired("this sign-in link has expired")
    return LinkClaim(person_id, nonce, expires_at)


def link_url(settings: Settings, token: str) -> str:
    """The page that redeems ``token`` (it asks for a click: a GET never signs anyone in)."""
    return f"{settings.api_base_url.rstrip('/')}/ui/sign-in/link/{token}"


def _email_channel(settings: Settings) -> Channel:
    channel = build_channels(settings).get("email")
    return channel if channel is not None else OutboxSender()


def request_link(
    session: Session,
    *,
    settings: Settings,
    email: str,
    now: datetime,
    channel: Channel | None = None,
) -> bool:
    """Email a one-time sign-in link to the active person with this address.

    The caller always answers the same ("if the address is known, a link is on its way"), so
    addresses cannot be probed; the return value is for tests and logs only.

    Args:
        session: The store.
        settings: For the key, the link lifetime, the public URL and the email provider.
        email: The address typed on the sign-in page (compared case-insensitively).
        now: The current instant.
        channel: The email channel (tests); the configured provider or the outbox otherwise.

    Returns:
        Whether a message was sent.
    """
    address = email.strip().lower()
    if not address or len(address) > 320:
        return False
    person = session.scalar(
        select(Person).where(
            func.lower(Person.email) == address,
            Person.employment_status != EmploymentStatus.TERMINATED,
        )
    )
    if person is None or not person.email:
        return False
    expires_at = now + timedelta(minutes=settings.sign_in_link_minutes)
    token = make_link_token(settings.key_ring().sign_in_link, person.id, expires_at)
    nonce = token.split(".")[3]
    url = link_url(settings, token)
    minutes = settings.sign_in_link_minutes
    subject = "Your Duly sign-in link"
    text = (
        f"Hello {person.name},\n\nSign in to Duly with this link (valid for {minutes} minutes, "
        f"once):\n\n{url}\n\nIf you did not ask for it, ignore this message."
    )
    row = Notification(
        idempotency_key=f"sign-in|{nonce}",
        workflow_id=f"sign-in/{person.external_id}",
        person_id=person.id,
        recipient_address=person.email,
        channel="email",
        provider="outbox",
        kind=KIND,
        stage=STAGE,
        pack_hash="-",
        subject=subject,
        body=text.replace(url, REDACTED_LINK),
        status="pending",
        recipient_role="learner",
        fired_at=now,
    )
    session.add(row)
    session.flush()
    sender = channel or _email_channel(settings)
    row.provider = sender.provider
    try:
        result = sender.send(
            ChannelMessage(
                idempotency_key=row.idempotency_key,
                to=person.email,
                subject=subject,
                text=text,
                metadata={
                    "workflow_id": row.workflow_id,
                    "stage": STAGE,
                    "channel": "email",
                    "recipient": person.external_id,
                    "notification_id": str(row.id),
                },
            )
        )
    except SendError as exc:
        row.status, row.error_code, row.error_reason = "failed", exc.code, exc.reason[:300]
        log.warning("sign-in link for person %s not sent: %s", person.external_id, exc.code)
        return False
    row.status = "sent"
    row.provider_message_id = result.provider_message_id
    return True


def session_role(session: Session, person: Person) -> Role:
    """The role a person signed in by link gets: manager when anyone reports to them."""
    has_reports = session.scalar(select(Person.id).where(Person.manager_id == person.id).limit(1))
    return Role.MANAGER if has_reports is not None else Role.LEARNER


def redeem_link(session: Session, *, settings: Settings, token: str, now: datetime) -> str:
    """Redeem a sign-in link once and return a new session token (an API token, in clear).

    Raises:
        LinkInvalid: Malformed, forged, or the person is unknown or terminated.
        LinkExpired: Past its expiry.
        LinkUsed: Redeemed before.
    """
    claim = verify_link_token(settings.key_ring().sign_in_link, token, now=now)
    person = session.get(Person, claim.person_id)
    if person is None or person.employment_status == EmploymentStatus.TERMINATED:
        raise LinkInvalid("this person cannot sign in")
    try:
        with session.begin_nested():
            session.add(
                UsedSignInLink(
                    nonce=claim.nonce, person_id=person.id, used_at=now, expires_at=claim.expires_at
                )
            )
            session.flush()
    except IntegrityError:
        raise LinkUsed("this sign-in link has already been used") from None
    return create_token(
        session,
        role=session_role(session, person),
        person_external_id=person.external_id,
        label="web session (sign-in link)",
        lifetime=timedelta(minutes=settings.web_session_minutes),
        now=now,
    )


def end_session(session: Session, *, token_id: int, revoke: bool) -> None:
    """Sign out: revoke the session's token when the session created it (a link sign-in).

    A pasted API token is the person's own and stays valid; only the cookie is dropped.
    """
    if revoke:
        revoke_token(session, token_id)
