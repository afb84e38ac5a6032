"""Completion intake from learning systems: xAPI statements, plain completions, dead letters.

An LMS (or an LRS forwarding to Duly) posts xAPI 1.0.3 statements to ``POST /xapi/statements``;
other systems post a plain JSON completion to ``POST /completions``. Each completion is matched to
a person (by ``mbox`` email or ``account`` name → external id) and, through the rules pack, to the
person's open obligation, whose workflow receives ``AssignmentWorkflow.complete``.

Whatever cannot be matched is kept as a :class:`~store.models.DeadLetter` for HR to resolve.
Duplicates (the same statement id or idempotency key) are answered without a second signal; the
record of what was processed is the audit log, so this holds across API processes (two processes
posting the same statement at the same instant may both signal it; it is audited once).

No transaction spans an ``await``: each statement is matched in one short transaction, its
workflow signalled, and the result audited in another (all database work in a worker thread).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import case, func, select, text, update
from sqlalchemy.orm import Session
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.packs import active_pack, load_version
from api import strict_json
from api.deps import (
    ClockDep,
    LazyTemporal,
    SessionDep,
    SettingsDep,
    TemporalDep,
    require_roles,
    within,
)
from api.pagination import Limit
from domain.bounds import MAX_SCORE, BoundedInstant, InstantWindow, OutOfRange, Score
from domain.contracts.assignment import CompleteSignal
from domain.roles import Role
from domain.statuses import ObligationStatus
from rules.assessment import score_percent
from services.assignments import gate_admits
from services.errors import Conflict
from store import audit
from store.db import committed
from store.models import AuditEntry, DeadLetter, Obligation, Person
from store.tokens import Principal

log = logging.getLogger("duly.api.xapi")

router = APIRouter(tags=["xapi"])

Intake = Annotated[Principal, Depends(require_roles(Role.INTEGRATION, Role.HR_ADMIN))]
HrAdmin = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN))]

VERB_COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
VERB_PASSED = "http://adlnet.gov/expapi/verbs/passed"
VERB_FAILED = "http://adlnet.gov/expapi/verbs/failed"
TRACKED_VERBS = frozenset({VERB_COMPLETED, VERB_PASSED, VERB_FAILED})

XAPI_SOURCE = "xapi"
COMPLETION_SOURCE = "completion-webhook"
XAPI_ACTION = "xapi.statement"
COMPLETION_ACTION = "completion.record"
#: First key of PostgreSQL's two-key advisory locks taken per dedupe key (0x78617069 = "xapi").
_LOCK_CLASS = 0x78617069
REDACTED = "[redacted]"
MAX_BATCH = 500
#: The largest statement payload kept in a dead letter (characters of its JSON); a larger one is
#: kept as a summary (ids, verb, activity) so one statement cannot bloat the table or the list.
MAX_DEAD_LETTER_CHARS = 16 * 1024
#: xAPI 1.0.3 §2.4.7/4.5: ISO 8601 date-time; the offset is optional (then UTC), fractions any.
_ISO_INSTANT = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}(:?\d{2})?)?$"
)
#: An Agent's Inverse Functional Identifiers: it MUST carry exactly one (xAPI 1.0.3 §2.4.2.1).
_IFIS = ("mbox", "mbox_sha1sum", "openid", "account")

# --- xAPI statement shape (only what Duly reads; every other xAPI key is allowed) -------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class XapiAccount(_Open):
    """An actor's account on a system (``name`` is the person's external id)."""

    homePage: str = Field(min_length=1)
    name: str = Field(min_length=1, max_length=200)


class XapiActor(_Open):
    """The learner: an Agent identified by ``mbox`` or ``account`` (exactly one identifier)."""

    mbox: str | None = None
    account: XapiAccount | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_identifier(cls, value: Any) -> Any:
        # Two identifiers may name two people (the mbox of one, the account of another): the
        # spec forbids it and Duly would otherwise credit one of them at random.
        if isinstance(value, dict):
            given = [key for key in _IFIS if value.get(key) is not None]
            if len(given) > 1:
                raise ValueError(
                    f"an Agent has exactly one identifier, this one has {' and '.join(given)}"
                    " (xAPI 1.0.3 2.4.2.1); send only mbox or only account"
                )
        return value

    @field_validator("mbox")
    @classmethod
    def _mailto(cls, value: str | None) -> str | None:
        if value is not None and not (value.lower().startswith("mailto:") and "@" in value):
            raise ValueError("mbox must look like mailto:name@example.com")
        return value


class XapiVerb(_Open):
    """The verb; only its IRI matters."""

    id: str = Field(min_length=1)


class XapiObject(_Open):
    """The activity; its IRI maps to a requirement's ``xapi_activity_id``."""

    id: str = Field(min_length=1, max_length=2048)


class XapiScore(_Open):
    """The score; ``scaled`` (-1..1) is preferred, ``raw`` is the LMS's own scale."""

    # Strict: a JSON number, never the string "0.9" or a boolean.
    scaled: StrictFloat | None = Field(default=None, ge=-1, le=1, allow_inf_nan=False)
    raw: StrictFloat | None = Field(default=None, ge=-MAX_SCORE, le=MAX_SCORE, allow_inf_nan=False)
    min: StrictFloat | None = Field(default=None, allow_inf_nan=False)
    max: StrictFloat | None = Field(default=None, allow_inf_nan=False)


class XapiResult(_Open):
    """The outcome of the attempt."""

    score: XapiScore | None = None
    # Strict: JSON true/false, never "yes", "true" or 1.
    success: StrictBool | None = None
    completion: StrictBool | None = None


class XapiContext(_Open):
    """Context; ``registration`` identifies the attempt."""

    registration: str | None = Field(default=None, max_length=200)


class XapiStatement(_Open):
    """An xAPI 1.0.3 Statement (required here: ``actor``, ``verb.id`` and ``object.id``)."""

    id: str | None = Field(default=None, min_length=1, max_length=200)
    actor: XapiActor
    verb: XapiVerb
    object_: XapiObject = Field(alias="object")
    result: XapiResult | None = None
    context: XapiContext | None = None
    timestamp: datetime | None = None
    stored: datetime | None = None

    @field_validator("timestamp", "stored", mode="before")
    @classmethod
    def _iso_8601(cls, value: Any) -> Any:
        # Pydantic alone would take an epoch number (1700000000) or a bare date.
        if value is None:
            return value
        if not isinstance(value, str) or not _ISO_INSTANT.match(value):
            raise ValueError(
                "must be an ISO 8601 date-time string such as 2030-05-01T10:00:00Z"
                " (xAPI 1.0.3 4.5), not a number or a date alone"
            )
        if re.search(r"-00(:?00)?$", value):
            raise ValueError("the offset -00:00 is not allowed (xAPI 1.0.3 4.5); use Z")
        return value


# --- plain completions --------------------------------------------------------------------------


class CompletionIn(BaseModel):
    """A completion from a system that does not speak xAPI."""

    model_config = ConfigDict(extra="forbid")

    person: str = Field(min_length=1, max_length=320, description="External id or email.")
    requirement_id: str = Field(min_length=1, max_length=64)
    completed_at: BoundedInstant | None = Field(
        default=None, description="Defaults to now; never in the future (5 min of skew)."
    )
    score: Score | None = None
    passed: bool | None = None
    source: str = Field(min_length=1, max_length=64)
    attempt_id: str | None = Field(default=None, max_length=200)
    certificate_id: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=180)


# --- answers ------------------------------------------------------------------------------------

Outcome = Literal[
    "recorded",
    "duplicate",
    "ignored",
    "already_closed",
    "dead_letter",
    "unavailable",
    "not_counted",
]


class ItemResult(BaseModel):
    """What happened to one statement or completion."""

    index: int
    statement_id: str | None = None
    status: int = Field(description="HTTP-style status of this item (200, 409, 422, 503).")
    outcome: Outcome
    detail: str
    workflow_id: str | None = None
    passed: bool | None = None
    dead_letter_id: int | None = None


class IntakeAnswer(BaseModel):
    """The answer to a post: the overall detail and one result per item, in order."""

    detail: str
    results: list[ItemResult]


class DeadLetterRead(BaseModel):
    """An unresolved completion, its actor's mbox redacted."""

    id: int
    source: str
    reason: str
    received_at: datetime
    resolved: bool
    payload: dict[str, Any]


class _Rejected(Exception):
    """A completion that cannot be matched: answered ``status`` and kept as a dead letter."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


# --- matching -----------------------------------------------------------------------------------


def _person_by_email(session: Session, email: str) -> Person:
    rows = list(
        session.scalars(
            select(Person).where(func.lower(Person.email) == email.strip().lower()).limit(2)
        )
    )
    if not rows:
        raise _Rejected(422, "unknown actor: mbox not in the directory")
    if len(rows) > 1:
        raise _Rejected(422, "unknown actor: mbox matches more than one person")
    return rows[0]


def _person_by_external_id(session: Session, external_id: str, what: str) -> Person:
    person = session.scalar(select(Person).where(Person.external_id == external_id))
    if person is None:
        raise _Rejected(422, f"unknown actor: {what} not in the directory")
    return person


def _actor_person(session: Session, actor: XapiActor) -> Person:
    if actor.mbox is not None:
        return _person_by_email(session, actor.mbox.split(":", 1)[1])
    if actor.account is not None:
        return _person_by_external_id(session, actor.account.name, "account name")
    raise _Rejected(422, "unknown actor: identify the actor by mbox or account")


def _open_obligations(session: Session, person_id: int) -> list[Obligation]:
    """The person's open obligations, highest cycle first."""
    return list(
        session.scalars(
            select(Obligation)
            .where(
                Obligation.person_id == person_id,
                Obligation.completed_at.is_(None),
                Obligation.status != ObligationStatus.CANCELLED.value,
            )
            .order_by(Obligation.cycle.desc(), Obligation.id.desc())
        )
    )


def _obligation_for_activity(session: Session, person: Person, activity_id: str) -> Obligation:
    """The open obligation an activity IRI completes, by its pinned pack or the active pack."""
    rows = _open_obligations(session, person.id)
    for row in rows:
        pack = load_version(session, row.pack_hash)
        requirement = pack.by_xapi_activity(activity_id) if pack is not None else None
        if requirement is not None and requirement.id == row.requirement_id:
            return row
    pack = active_pack(session)
    requirement = pack.by_xapi_activity(activity_id) if pack is not None else None
    if requirement is None:
        raise _Rejected(422, "unknown activity: no requirement maps this activity id")
    match = next((r for r in rows if r.requirement_id == requirement.id), None)
    if match is None:
        raise _Rejected(409, f"no open obligation for requirement {requirement.id!r}")
    return match


def _obligation_for_requirement(
    session: Session, person: Person, requirement_id: str
) -> Obligation:
    rows = _open_obligations(session, person.id)
    row = next((r for r in rows if r.requirement_id == requirement_id), None)
    if row is not None:
        return row
    pack = active_pack(session)
    if pack is None or pack.requirement(requirement_id) is None:
        raise _Rejected(422, f"unknown requirement {requirement_id!r}")
    raise _Rejected(409, f"no open obligation for requirement {requirement_id!r}")


# --- dedupe, dead letters, signalling -----------------------------------------------------------


def _lock_keys(session: Session, keys: list[str]) -> None:
    """Serialise concurrent posts of the same dedupe keys until this (short) transaction ends.

    Taken in sorted order before any audit append (which takes its own advisory lock), so two
    requests cannot deadlock. The transaction never spans an ``await``: a statement is checked
    in one, signalled, and recorded in another that checks again. SQLite serialises writers itself.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in sorted(set(keys)):
        digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big", signed=True)
        session.execute(
            text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": _LOCK_CLASS, "b": digest}
        )


def _processed(session: Session, action: str, field: str, value: str) -> str | None:
    """The workflow id an already-processed statement id / idempotency key signalled.

    On SQLite a row written before StrictJSON may hold a bare ``NaN`` that its JSON functions
    refuse ("malformed JSON", a 500 for every later statement): such rows are skipped.
    """
    stored: Any = AuditEntry.after[field].as_string()
    if session.get_bind().dialect.name == "sqlite":
        stored = case((func.json_valid(AuditEntry.after) == 1, stored), else_=None)
    return session.scalar(
        select(AuditEntry.target).where(AuditEntry.action == action, stored == value).limit(1)
    )


def _dead_letter(
    session: Session, source: str, reason: str, payload: dict[str, Any], key: str | None
) -> int:
    """Store (or find, by ``key``) the dead letter; returns its id."""
    if key is not None:
        existing = session.scalar(select(DeadLetter).where(DeadLetter.dedupe_key == key))
        if existing is not None:
            existing.reason = reason[:300]
            existing.resolved = False
            session.flush()
            return existing.id
    # Concurrent posts of the same key are serialised by _lock_keys (PostgreSQL).
    row = DeadLetter(source=source, reason=reason[:300], payload=_capped(payload), dedupe_key=key)
    session.add(row)
    session.flush()
    return row.id


def _capped(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload to keep: whole when small, else a summary naming what was dropped."""
    size = len(json.dumps(payload, default=str))
    if size <= MAX_DEAD_LETTER_CHARS:
        return payload
    summary: dict[str, Any] = {
        "truncated": f"the statement had {size:,} characters of JSON, more than the"
        f" {MAX_DEAD_LETTER_CHARS:,} kept; its ids are below",
    }
    for key in ("id", "actor", "verb", "object"):
        value = payload.get(key)
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k in {"id", *_IFIS} and _small(v)}
        if value is not None and _small(value):
            summary[key] = value
    return summary


def _small(value: Any) -> bool:
    return len(json.dumps(value, default=str)) <= 2048


def _resolve_by_key(session: Session, key: str | None) -> None:
    """A statement that now went through resolves its earlier dead letter."""
    if key is not None:
        session.execute(
            update(DeadLetter)
            .where(DeadLetter.dedupe_key == key, DeadLetter.resolved.is_(False))
            .values(resolved=True)
        )


#: The dedupe keys this process is handling now (see :func:`_one_at_a_time`).
_inflight: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


@asynccontextmanager
async def _one_at_a_time(key: str | None) -> AsyncIterator[None]:
    """Within this process, one request at a time handles a statement id / idempotency key.

    The database lock is held only inside each short transaction, so a second post of the same
    statement in this process waits here (on the loop, without blocking it) until the first has
    recorded it, and is then answered ``duplicate`` without a second signal. Posts racing in two
    API processes may both signal; the workflow keeps the first completion, and the audit log
    records the statement once.
    """
    if key is None:
        yield
        return
    lock = _inflight.get(key)
    if lock is None:
        lock = _inflight[key] = asyncio.Lock()
    async with lock:
        yield


class _Signaller:
    """Connects to Temporal only when a statement needs it, and signals ``complete``."""

    def __init__(self, temporal: LazyTemporal) -> None:
        self._temporal = temporal
        self._client: Client | None = None

    async def complete(self, workflow_id: str, signal: CompleteSignal) -> tuple[int, str]:
        """Signal the workflow; returns an item status and outcome-detail.

        Evidence the assessment gate would not count (inside the retake cool-down, attempts
        used up) is not sent: 409 ``not counted: ...`` (``services.assignments.gate_admits``).
        """
        try:
            if self._client is None:
                self._client = await self._temporal()
            await gate_admits(self._client, workflow_id=workflow_id, completion=signal)
            await self._client.get_workflow_handle(workflow_id).signal("complete", signal)
        except Conflict as refused:
            return 409, refused.detail
        except HTTPException as exc:
            return 503, f"unavailable: {exc.detail}"
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return 409, "already closed"
            log.warning("signal to %s failed: %s", workflow_id, exc.status)
            return 503, f"unavailable: Temporal answered {exc.status.name}; try again"
        return 200, "recorded"


def _worst(results: list[ItemResult]) -> int:
    return max((r.status for r in results), default=200)


def _answer(results: list[ItemResult]) -> JSONResponse:
    code = _worst(results)
    if code == 200:
        detail = f"{len(results)} processed"
    else:
        failed = sum(1 for r in results if r.status != 200)
        detail = f"{failed} of {len(results)} not recorded; see results"
    body = IntakeAnswer(detail=detail, results=results)
    return JSONResponse(status_code=code, content=body.model_dump(mode="json"))


async def _deliver(
    session: Session,
    principal: Principal,
    signaller: _Signaller,
    obligation: Obligation,
    signal: CompleteSignal,
    *,
    action: str,
    audit_after: dict[str, Any],
    dead_key: str | None,
    dedupe: tuple[str, str, str] | None = None,
    kept: dict[str, Any] | None = None,
) -> tuple[int, Outcome, str]:
    """Signal the obligation's workflow and, on success, record it in the audit log.

    Evidence the assessment gate refuses (409 ``not_counted``) is kept as a dead letter
    (``kept``: the statement or completion as posted), like evidence that cannot be matched.

    The audit append runs in its own short transaction in a worker thread, after the signal:
    its advisory lock is never held across an ``await``. ``dedupe`` (lock key, audit field and
    value) is checked again inside that transaction, so a statement recorded meanwhile by
    another API process is answered ``duplicate`` and recorded once.
    """
    code, detail = await signaller.complete(obligation.workflow_id, signal)
    if code == 409 and detail.startswith("not counted") and kept is not None:
        source = XAPI_SOURCE if action == XAPI_ACTION else COMPLETION_SOURCE
        await committed(session, lambda: _dead_letter(session, source, detail, kept, dead_key))
        return code, "not_counted", detail
    if code == 409:
        return code, "already_closed", detail
    if code != 200:
        return code, "unavailable", detail

    def _record() -> str | None:
        if dedupe is not None:
            key, field, value = dedupe
            _lock_keys(session, [key])
            done = _processed(session, action, field, value)
            if done is not None:
                return done
        audit.record(
            session,
            actor=principal.actor,
            actor_role=principal.role.value,
            action=action,
            target=obligation.workflow_id,
            after={**audit_after, **signal.model_dump(mode="json", exclude={"actor"})},
        )
        _resolve_by_key(session, dead_key)
        return None

    if await committed(session, _record) is not None:
        return 200, "duplicate", "duplicate"
    return 200, "recorded", "recorded" if signal.passed is not False else "failed attempt recorded"


# --- xAPI ---------------------------------------------------------------------------------------


def _parse_statements(raw: bytes) -> tuple[list[dict[str, Any]], list[XapiStatement]]:
    """Parse the body into statements, or 400 naming the offending field."""
    try:
        data = strict_json.loads(raw)
    except strict_json.JsonRefused as refused:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(refused)) from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="no statements")
    if len(items) > MAX_BATCH:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail=f"at most {MAX_BATCH} statements per request"
        )
    statements: list[XapiStatement] = []
    for index, item in enumerate(items):
        prefix = f"statement[{index}]" if isinstance(data, list) else "statement"
        if not isinstance(item, dict):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"{prefix} is not an object")
        try:
            statements.append(XapiStatement.model_validate(item))
        except ValidationError as exc:
            error = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in error["loc"]) or "statement"
            message = error["msg"].removeprefix("Value error, ")
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                detail=f"malformed {prefix}: {where}: {message}",
            ) from None
    return items, statements


def _evidence_time(statement: XapiStatement, window: InstantWindow) -> None:
    """422 (dead-lettered) for a statement dated in the future or too long ago.

    A future completion would date a ``from_completion`` recurrence from it (a 2099 statement
    would make the next cycle due in 2100).
    """
    for name in ("timestamp", "stored"):
        value = getattr(statement, name)
        if value is not None:
            try:
                window.check(name, value)
            except OutOfRange as problem:
                raise _Rejected(422, str(problem)) from problem
            return


def _completion_signal(statement: XapiStatement, principal: Principal) -> CompleteSignal:
    verb = statement.verb.id
    result = statement.result
    success = result.success if result is not None else None
    passed: bool | None
    if verb == VERB_FAILED or success is False:
        passed = False
    elif verb == VERB_PASSED:
        passed = True
    else:
        passed = success
    score = None
    percent = None
    if result is not None and result.score is not None:
        xs = result.score
        score = xs.scaled if xs.scaled is not None else xs.raw
        # What a requirement's passing_score compares (None when the scale is unknown).
        percent = score_percent(xs.scaled, xs.raw, xs.min, xs.max).percent
    when = statement.timestamp or statement.stored or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    registration = statement.context.registration if statement.context else None
    return CompleteSignal(
        completed_at=when,
        source=XAPI_SOURCE,
        actor=f"integration:{principal.actor}"[:128],
        score=score,
        passed=passed,
        attempt_id=registration or statement.id,
        score_percent=percent,
    )


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

    ``completed``, ``passed`` and ``failed`` verbs are tracked; others are ignored. A ``failed``
    verb or ``result.success: false`` records a failed attempt without completing. The same
    statement id posted again is answered ``duplicate`` and signals nothing. The status is 200
    when every statement is fine, else the worst per-statement status (409, 422, 503). A
    statement timestamped in the future (beyond DULY_CLOCK_SKEW_SECONDS) or older than
    DULY_DUE_DATE_PAST_YEARS is answered 422 and kept as a dead letter.
    """
    # Parsing and validating a batch takes a while: a worker thread, so the loop keeps answering.
    raw_items, statements = await asyncio.to_thread(_parse_statements, await request.body())
    signaller = _Signaller(temporal)
    results: list[ItemResult] = []
    window = settings.evidence_window(await clock())
    for index, (raw, statement) in enumerate(zip(raw_items, statements, strict=True)):
        async with _one_at_a_time(statement.id):
            results.append(
                await _one_statement(session, principal, signaller, index, raw, statement, window)
            )
    return await asyncio.to_thread(_answer, results)


def _match_statement(
    session: Session,
    principal: Principal,
    item: ItemResult,
    raw: dict[str, Any],
    statement: XapiStatement,
    window: InstantWindow,
) -> ItemResult | tuple[Obligation, CompleteSignal]:
    """The obligation and signal a statement makes, or its final answer (blocking; a thread)."""
    sid = statement.id
    if sid is not None:
        _lock_keys(session, [sid])
        done = _processed(session, XAPI_ACTION, "statement_id", sid)
        if done is not None:
            return item.model_copy(
                update={"outcome": "duplicate", "detail": "duplicate", "workflow_id": done}
            )
    try:
        _evidence_time(statement, window)
        person = _actor_person(session, statement.actor)
        obligation = _obligation_for_activity(session, person, statement.object_.id)
    except _Rejected as rejected:
        letter = _dead_letter(session, XAPI_SOURCE, rejected.reason, raw, sid)
        return item.model_copy(
            update={
                "status": rejected.status_code,
                "outcome": "dead_letter",
                "detail": rejected.reason,
                "dead_letter_id": letter,
            }
        )
    signal = _completion_signal(statement, principal)
    if obligation.cycle > 1 and signal.completed_at < obligation.created_at:
        # LMSs send "completed" and "passed" for one attempt: the second statement arrives after
        # the first closed the cycle and started the next; it must not satisfy the new cycle.
        return item.model_copy(
            update={
                "detail": f"ignored: the attempt predates cycle {obligation.cycle}"
                " (it counted for an earlier cycle)",
                "workflow_id": obligation.workflow_id,
            }
        )
    return obligation, signal


async def _one_statement(
    session: Session,
    principal: Principal,
    signaller: _Signaller,
    index: int,
    raw: dict[str, Any],
    statement: XapiStatement,
    window: InstantWindow,
) -> ItemResult:
    sid = statement.id
    item = ItemResult(index=index, statement_id=sid, status=200, outcome="ignored", detail="")
    if statement.verb.id not in TRACKED_VERBS:
        return item.model_copy(update={"detail": "ignored: verb not tracked"})
    # Matching (and any dead letter) is committed before the signal is awaited.
    matched = await committed(
        session, lambda: _match_statement(session, principal, item, raw, statement, window)
    )
    if isinstance(matched, ItemResult):
        return matched
    obligation, signal = matched
    code, outcome, detail = await _deliver(
        session,
        principal,
        signaller,
        obligation,
        signal,
        action=XAPI_ACTION,
        audit_after={"statement_id": sid, "verb": statement.verb.id},
        dead_key=sid,
        dedupe=(sid, "statement_id", sid) if sid is not None else None,
        kept=raw,
    )
    return item.model_copy(
        update={
            "status": code,
            "outcome": outcome,
            "detail": detail,
            "workflow_id": obligation.workflow_id,
            "passed": signal.passed,
        }
    )


# --- plain completions --------------------------------------------------------------------------


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
    key = body.idempotency_key
    dead_key = f"completion:{key}" if key is not None else None
    item = ItemResult(index=0, statement_id=key, status=200, outcome="recorded", detail="")
    async with _one_at_a_time(dead_key):
        # Matching (and any dead letter) is committed before the signal is awaited.
        matched = await committed(
            session, lambda: _match_completion(session, principal, body, item, completed_at)
        )
        if isinstance(matched, ItemResult):
            return JSONResponse(status_code=matched.status, content=matched.model_dump(mode="json"))
        obligation, signal = matched
        code, outcome, detail = await _deliver(
            session,
            principal,
            _Signaller(temporal),
            obligation,
            signal,
            action=COMPLETION_ACTION,
            audit_after={"idempotency_key": key},
            dead_key=dead_key,
            dedupe=(dead_key, "idempotency_key", key) if dead_key and key else None,
            kept=body.model_dump(mode="json"),
        )
    item = item.model_copy(
        update={
            "status": code,
            "outcome": outcome,
            "detail": detail,
            "workflow_id": obligation.workflow_id,
            "passed": signal.passed,
        }
    )
    return JSONResponse(status_code=code, content=item.model_dump(mode="json"))


def _match_completion(
    session: Session,
    principal: Principal,
    body: CompletionIn,
    item: ItemResult,
    completed_at: datetime,
) -> ItemResult | tuple[Obligation, CompleteSignal]:
    """The obligation and signal a completion makes, or its final answer (blocking; a thread)."""
    key = body.idempotency_key
    dead_key = f"completion:{key}" if key is not None else None
    if key is not None:
        _lock_keys(session, [f"completion:{key}"])
        done = _processed(session, COMPLETION_ACTION, "idempotency_key", key)
        if done is not None:
            return item.model_copy(
                update={"outcome": "duplicate", "detail": "duplicate", "workflow_id": done}
            )
    try:
        if "@" in body.person:
            person = _person_by_email(session, body.person.removeprefix("mailto:"))
        else:
            person = _person_by_external_id(session, body.person, "person")
        obligation = _obligation_for_requirement(session, person, body.requirement_id)
    except _Rejected as rejected:
        reason = rejected.reason.replace("unknown actor: mbox", "unknown person: email")
        reason = reason.replace("unknown actor:", "unknown person:")
        letter = _dead_letter(
            session, COMPLETION_SOURCE, reason, body.model_dump(mode="json"), dead_key
        )
        return item.model_copy(
            update={
                "status": rejected.status_code,
                "outcome": "dead_letter",
                "detail": reason,
                "dead_letter_id": letter,
            }
        )
    signal = CompleteSignal(
        completed_at=completed_at,
        source=body.source,
        actor=f"integration:{principal.actor}"[:128],
        score=body.score,
        passed=body.passed,
        attempt_id=body.attempt_id,
        certificate_id=body.certificate_id,
        # A plain completion's score is a percentage when it lies within 0..100.
        score_percent=body.score if body.score is not None and 0 <= body.score <= 100 else None,
    )
    return obligation, signal


# --- dead letters -------------------------------------------------------------------------------


def redact(value: Any) -> Any:
    """A copy of a payload with every ``mbox`` (and an email-like ``person``) redacted."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in ("mbox", "mbox_sha1sum") or (
                key == "person" and isinstance(item, str) and "@" in item
            ):
                out[key] = REDACTED
            else:
                out[key] = redact(item)
        return out
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


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
