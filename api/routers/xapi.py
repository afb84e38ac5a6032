"""Completion intake from learning systems: xAPI statements, plain completions, dead letters.

An LMS (or an LRS forwarding to Duly) posts xAPI 1.0.3 statements to ``POST /xapi/statements``;
other systems post a plain JSON completion to ``POST /completions``. The handling (matching a
person and an obligation, signalling its workflow, dead letters, duplicates, voiding) is
:mod:`services.intake`, shared with the learning-system connectors (``services.integrations``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select

from api import strict_json
from api.deps import (
    ClockDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    require_roles,
    within,
)
from api.pagination import Limit
from domain.roles import Role
from services import intake
from services.intake import CompletionIn, IntakeAnswer, ItemResult, redact
from store import audit
from store.models import DeadLetter
from store.tokens import Principal

router = APIRouter(tags=["xapi"])

Intake = Annotated[Principal, Depends(require_roles(Role.INTEGRATION, Role.HR_ADMIN))]
HrAdmin = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN))]


class DeadLetterRead(BaseModel):
    """An unresolved completion, its actor's mbox redacted."""

    id: int
    source: str
    reason: str
    received_at: datetime
    resolved: bool
    payload: dict[str, Any]


def _caller(principal: Principal) -> intake.Caller:
    return intake.Caller(actor=principal.actor, role=principal.role.value)


def _parse(raw: bytes) -> tuple[list[dict[str, Any]], list[intake.Parsed]]:
    """Parse the body into statements, or 400 naming the offending field."""
    try:
        return intake.parse_statements(strict_json.loads(raw))
    except strict_json.JsonRefused as refused:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(refused)) from None
    except intake.Refused as refused:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(refused)) from None


def _answer(results: list[ItemResult]) -> JSONResponse:
    code, body = intake.answer(results)
    return JSONResponse(status_code=code, content=body.model_dump(mode="json"))


@router.post(
    "/xapi/statements",
    response_model=IntakeAnswer,
    responses={
        400: {"description": "Malformed statement (the detail names the field); nothing done."},
        409: {
            "model": IntakeAnswer,
            "description": "No open obligation, already closed, or not counted by the"
            " assessment gate (retake cool-down, attempts used; kept as a dead letter).",
        },
        422: {"model": IntakeAnswer, "description": "Unknown actor or activity (dead-lettered)."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
        }
    },
)
async def post_statements(
    request: Request,
    session: SessionDep,
    principal: Intake,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> JSONResponse:
    """Record completions from xAPI 1.0.3 Statements (one Statement or an array).

    ``completed``, ``passed`` and ``failed`` verbs are tracked (cmi5 ``satisfied`` where the
    pack's ``cmi5_satisfied`` is ``completes``); ``voided`` reverses a completion Duly
    recorded; others, SubStatements and Group actors are answered ``ignored`` without failing
    the batch. Actors are matched by ``mbox``, ``mbox_sha1sum``, ``openid`` (under
    DULY_XAPI_OPENID_BASES) or ``account``. A ``failed`` verb or ``result.success: false``
    records a failed attempt without completing. The same statement id posted again is
    answered ``duplicate`` and signals nothing. The status is 200 when every statement is fine,
    else the worst per-statement status (409, 422, 503). A statement timestamped in the future
    (beyond DULY_CLOCK_SKEW_SECONDS) or older than DULY_DUE_DATE_PAST_YEARS is answered 422 and
    kept as a dead letter.
    """
    # Parsing and validating a batch takes a while: a worker thread, so the loop keeps answering.
    raw_items, statements = await asyncio.to_thread(_parse, await request.body())
    ctx = intake.StatementContext(
        caller=_caller(principal),
        signaller=intake.Signaller(temporal),
        window=settings.evidence_window(await clock()),
        settings=settings,
    )
    results = await intake.process_statements(session, ctx, raw_items, statements)
    return await asyncio.to_thread(_answer, results)


@router.post(
    "/completions",
    response_model=ItemResult,
    responses={
        409: {
            "model": ItemResult,
            "description": "No open obligation, already closed, or not counted by the"
            " assessment gate (retake cool-down, attempts used; kept as a dead letter).",
        },
        422: {"description": "Malformed, or unknown person or requirement (dead-lettered)."},
    },
)
async def post_completion(
    body: CompletionIn,
    session: SessionDep,
    principal: Intake,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> JSONResponse:
    """Record one completion for a person (external id or email) and requirement.

    Idempotent by ``idempotency_key``: the same key again is answered ``duplicate``.
    Unknown people or requirements answer 422 and are kept as dead letters; a ``completed_at``
    in the future or out of range answers 422 naming it (nothing is recorded).
    """
    now = await clock()
    completed_at = within(settings.evidence_window(now), "completed_at", body.completed_at or now)
    item = await intake.process_completion(
        session, _caller(principal), intake.Signaller(temporal), body, completed_at
    )
    return JSONResponse(status_code=item.status, content=item.model_dump(mode="json"))


# --- dead letters -------------------------------------------------------------------------------


def _shown_payload(payload: Any) -> dict[str, Any]:
    """The payload as listed: redacted, or a note when it cannot be shown.

    Rows stored before the parse limits may nest hundreds of levels (serialising them failed
    the whole list for everyone) or not be an object; the row is still listed, with its id, so
    HR can resolve it.
    """
    levels = strict_json.depth(payload)
    if levels > strict_json.MAX_DEPTH:
        return {"unreadable": f"the payload nests {levels} levels deep; not shown"}
    if not isinstance(payload, dict):
        return {"unreadable": f"the payload is a JSON {type(payload).__name__}, not an object"}
    return cast(dict[str, Any], redact(payload))


def _dead_letter_read(row: DeadLetter) -> DeadLetterRead:
    return DeadLetterRead(
        id=row.id,
        source=row.source,
        reason=row.reason,
        received_at=row.received_at,
        resolved=row.resolved,
        payload=_shown_payload(row.payload),
    )


@router.get("/xapi/dead-letters", response_model=list[DeadLetterRead])
def list_dead_letters(
    session: SessionDep,
    principal: HrAdmin,
    limit: Limit = 200,
) -> list[DeadLetterRead]:
    """Unresolved completions (xAPI and plain), oldest first, with mboxes redacted."""
    rows = session.scalars(
        select(DeadLetter)
        .where(DeadLetter.resolved.is_(False))
        .order_by(DeadLetter.received_at, DeadLetter.id)
        .limit(limit)
    )
    return [_dead_letter_read(row) for row in rows]


@router.post("/xapi/dead-letters/{dead_letter_id}/resolve", response_model=DeadLetterRead)
def resolve_dead_letter(
    dead_letter_id: int, session: SessionDep, principal: HrAdmin
) -> DeadLetterRead:
    """Mark a dead letter resolved (audited); resolving it again changes nothing."""
    row = session.get(DeadLetter, dead_letter_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
    if not row.resolved:
        row.resolved = True
        audit.record(
            session,
            actor=principal.actor,
            actor_role=principal.role.value,
            action="xapi.dead_letter.resolve",
            target=f"dead_letter/{row.id}",
            before={"resolved": False, "reason": row.reason},
            after={"resolved": True},
        )
    return _dead_letter_read(row)
