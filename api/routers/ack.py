"""Public acknowledgement pages behind signed links (no bearer token).

``GET /ack/{token}`` shows what is being acknowledged and a button; it never changes anything,
because mail scanners and link previews fetch every URL in a message. ``POST /ack/{token}``
acknowledges: it signals ``AssignmentWorkflow.acknowledge`` and marks the ledger row, once.

The token (see :mod:`notifications.ack`) is the only credential, so it is kept out of logs
(uvicorn's access log is filtered), out of caches (``Cache-Control: no-store``) and out of
``Referer`` headers (``Referrer-Policy: no-referrer``). Every outcome is a small HTML page;
nothing here answers 500 for any token.

:func:`acknowledge_notification` is shared with the SMS and Slack webhooks.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.orm import Session

from api.deps import SessionDep, SettingsDep, TemporalDep
from notifications.ack import (
    AckClaim,
    AckTokenExpired,
    AckTokenInvalid,
    ledger_lookup,
    verify_ack_token,
)
from services.acks import (
    AcknowledgeUnavailable,
    AckOutcome,
    acknowledge_notification,
    actor_for,
    describe,
)
from store.db import committed
from store.models import Notification

log = logging.getLogger("duly.api.ack")

router = APIRouter(prefix="/ack", tags=["acknowledgements"])

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

#: Sent with every page: the URL is a credential.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}

_ACK_PATH = re.compile(r"/ack/[^\s\"?#]+")


class _RedactAckTokens(logging.Filter):
    """Replaces ``/ack/<token>`` with ``/ack/<redacted>`` in access-log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _ACK_PATH.sub("/ack/<redacted>", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        if isinstance(record.msg, str) and "/ack/" in record.msg:
            record.msg = _ACK_PATH.sub("/ack/<redacted>", record.msg)
        return True


def install_log_redaction(logger_name: str = "uvicorn.access") -> None:
    """Keep acknowledgement tokens out of the access log (idempotent)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _RedactAckTokens) for f in logger.filters):
        logger.addFilter(_RedactAckTokens())


install_log_redaction()


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def page(template: str, status_code: int = status.HTTP_200_OK, **context: Any) -> HTMLResponse:
    """Render ``api/templates/ack/<template>`` with the no-store, no-referrer headers."""
    html = _environment().get_template(f"ack/{template}").render(**context)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def _message(status_code: int, heading: str, text: str) -> HTMLResponse:
    return page("message.html", status_code, heading=heading, text=text)


def _expired() -> HTMLResponse:
    return _message(
        status.HTTP_410_GONE,
        "This link has expired",
        "Acknowledgement links only work for a limited time. Open Duly, or reply to the "
        "latest reminder you received, to acknowledge it.",
    )


def _invalid() -> HTMLResponse:
    return _message(
        status.HTTP_404_NOT_FOUND,
        "This link is not valid",
        "The link may have been copied incompletely. Open the latest reminder and use its link, "
        "or open Duly.",
    )


def _unavailable() -> HTMLResponse:
    response = _message(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "Please try again in a minute",
        "Duly could not record your acknowledgement just now. Nothing was lost; reload this "
        "page in a minute and press the button again.",
    )
    response.headers["Retry-After"] = "60"
    return response


def _verify(session: Session, key: bytes, token: str) -> Notification | HTMLResponse:
    """The ledger row a token acknowledges, or the error page to answer with."""
    try:
        claim: AckClaim = verify_ack_token(key, token, ledger_lookup(session))
    except AckTokenExpired:
        return _expired()
    except AckTokenInvalid:
        return _invalid()
    row = session.get(Notification, claim.notification_id)
    return row if row is not None else _invalid()


@router.get("/{token:path}", response_class=HTMLResponse)
def show_acknowledgement(token: str, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    """Show the reminder and an "Acknowledge" button; changes nothing."""
    row = _verify(session, settings.key_ring().ack_link, token)
    if isinstance(row, HTMLResponse):
        return row
    return page("confirm.html", item=describe(session, row))


@router.post("/{token:path}", response_class=HTMLResponse)
async def acknowledge(
    token: str, session: SessionDep, settings: SettingsDep, temporal: TemporalDep
) -> HTMLResponse:
    """Acknowledge the reminder (idempotent) and thank the person."""
    key = settings.key_ring().ack_link

    def _look_up() -> tuple[Notification, str, str] | HTMLResponse:
        row = _verify(session, key, token)
        if isinstance(row, HTMLResponse):
            return row
        return (row, *actor_for(session, row))

    # Database work runs in a worker thread and commits before Temporal is awaited.
    found = await committed(session, _look_up)
    if isinstance(found, HTMLResponse):
        return found
    row, actor, actor_role = found
    channel = row.channel if row.channel != "email" else "email-link"
    try:
        outcome = await acknowledge_notification(
            session,
            temporal=temporal,
            row=row,
            actor=actor,
            actor_role=actor_role,
            channel=channel,
        )
    except AcknowledgeUnavailable as exc:
        log.warning("acknowledgement of notification %d deferred: %s", row.id, exc)
        return _unavailable()
    item = await committed(session, lambda: describe(session, row))
    return page("done.html", item=item, closed=outcome is AckOutcome.CLOSED)
