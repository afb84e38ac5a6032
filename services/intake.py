"""Completion intake: xAPI statements and plain completions, matched and signalled.

The one handling behind ``POST /xapi/statements``, ``POST /completions`` and the learning-system
connectors (``services.integrations``): each statement or completion is matched to a person
(``mbox``, ``mbox_sha1sum``, ``openid`` or ``account``; an email or external id) and, through the
rules pack, to the person's open obligation, whose workflow receives
``AssignmentWorkflow.complete``.

A statement for an activity an apprenticeship program lists (``classroom_from_lms`` in the pack
the apprenticeship is pinned to) is classroom hours instead: an hours entry of the apprentice
(:func:`services.apprenticeships.lms_classroom_hours`), idempotent by statement id.

Whatever cannot be matched is kept as a :class:`~store.models.DeadLetter` for HR to resolve.
Duplicates (the same statement id or idempotency key) are answered without a second signal; the
record of what was processed is the audit log, so this holds across API processes (two processes
posting the same statement at the same instant may both signal it; it is audited once).

Statements Duly does not use (a SubStatement, a Group actor, a verb it does not track) are
answered ``ignored`` one by one: they never reject the rest of a batch. A ``voided`` statement
reverses the completion its target recorded (the assignment is restarted, audited as
``xapi.void``).

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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

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
from domain.bounds import MAX_SCORE, BoundedInstant, InstantWindow, OutOfRange, Score
from domain.contracts.assignment import CompleteSignal
from domain.statuses import ObligationStatus
from duly.settings import Settings
from rules.assessment import score_percent
from rules.model import Cmi5Satisfied, Requirement
from services import apprenticeships, restarts
from services.assignments import gate_admits
from services.errors import Conflict, Invalid, Unavailable
from store import audit
from store.db import committed
from store.models import AuditEntry, DeadLetter, Obligation, Person

log = logging.getLogger("duly.intake")

VERB_COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
VERB_PASSED = "http://adlnet.gov/expapi/verbs/passed"
VERB_FAILED = "http://adlnet.gov/expapi/verbs/failed"
VERB_VOIDED = "http://adlnet.gov/expapi/verbs/voided"
#: cmi5's "satisfied" (the LMS judged the block or course's moveOn criteria met).
VERB_SATISFIED = "https://w3id.org/xapi/adl/verbs/satisfied"
VERB_ATTENDED = "http://adlnet.gov/expapi/verbs/attended"
TRACKED_VERBS = frozenset({VERB_COMPLETED, VERB_PASSED, VERB_FAILED})
#: Verbs whose statements for a program's LMS course are classroom hours (a failed attempt is
#: not instruction completed).
HOURS_VERBS = frozenset({VERB_COMPLETED, VERB_PASSED, VERB_ATTENDED})
#: Every verb an LRS pull asks for (``satisfied`` only counts where the pack says so).
PULLED_VERBS = (VERB_COMPLETED, VERB_PASSED, VERB_FAILED, VERB_SATISFIED, VERB_VOIDED)

XAPI_SOURCE = "xapi"
COMPLETION_SOURCE = "completion-webhook"
XAPI_ACTION = "xapi.statement"
VOID_ACTION = "xapi.void"
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
_SHA1_HEX = re.compile(r"^[0-9a-fA-F]{40}$")


@dataclass(frozen=True)
class Caller:
    """Who hands the completions in, as the audit log names them (no personal data)."""

    actor: str
    role: str


class Refused(ValueError):
    """A body that cannot be read as statements at all (the API answers 400 with the message)."""


# --- xAPI statement shape (only what Duly reads; every other xAPI key is allowed) -------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class XapiAccount(_Open):
    """An actor's account on a system (``name`` is the person's external id)."""

    homePage: str = Field(min_length=1)
    name: str = Field(min_length=1, max_length=200)


class XapiActor(_Open):
    """The learner: an Agent identified by exactly one IFI (``mbox``, ``mbox_sha1sum``, …)."""

    mbox: str | None = None
    mbox_sha1sum: str | None = None
    openid: str | None = Field(default=None, max_length=2048)
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
                    " (xAPI 1.0.3 2.4.2.1); send only one of mbox, mbox_sha1sum, openid, account"
                )
        return value

    @field_validator("mbox")
    @classmethod
    def _mailto(cls, value: str | None) -> str | None:
        if value is not None and not (value.lower().startswith("mailto:") and "@" in value):
            raise ValueError("mbox must look like mailto:name@example.com")
        return value

    @field_validator("mbox_sha1sum")
    @classmethod
    def _sha1(cls, value: str | None) -> str | None:
        if value is not None and not _SHA1_HEX.match(value):
            raise ValueError("mbox_sha1sum must be the 40 hex digits of SHA-1 over the mailto IRI")
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
    #: ISO 8601 duration (``PT3H30M``): the time attended, for courses counted by duration.
    duration: str | None = Field(default=None, min_length=1, max_length=64)


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


@dataclass(frozen=True)
class Unused:
    """A well-formed statement Duly has no use for (answered ``ignored``, never a 400)."""

    id: str | None
    reason: str


def unused_reason(item: dict[str, Any]) -> str | None:
    """Why Duly ignores a statement before validating it (None: it is read in full).

    A SubStatement describes another statement (a plan, an instructor's note), not a learner's
    completion; a Group actor names no one person. LMSs send both in batches with completions.
    """
    obj = item.get("object")
    if isinstance(obj, dict) and obj.get("objectType") == "SubStatement":
        return "ignored: a SubStatement object is not a completion"
    actor = item.get("actor")
    if isinstance(actor, dict) and actor.get("objectType") == "Group":
        return "ignored: a Group actor names no one person"
    return None


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


class _Rejected(Exception):
    """A completion that cannot be matched: answered ``status`` and kept as a dead letter."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


# --- matching -----------------------------------------------------------------------------------


def person_by_email(session: Session, email: str) -> Person:
    """The one person with this email (case-insensitive), else rejected (422)."""
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


def person_by_external_id(session: Session, external_id: str, what: str) -> Person:
    """The person with this external id, else rejected (422)."""
    person = session.scalar(select(Person).where(Person.external_id == external_id))
    if person is None:
        raise _Rejected(422, f"unknown actor: {what} not in the directory")
    return person


def _person_by_mbox_sha1(session: Session, digest: str) -> Person:
    """The person whose ``mailto:`` IRI hashes to ``digest`` (xAPI's ``mbox_sha1sum``).

    SHA-1 cannot be computed in portable SQL, so the directory's emails are hashed here (a
    10,000-person directory takes a few milliseconds). Both the stored spelling and the lower
    case are tried: LMSs hash the address as they hold it.
    """
    wanted = digest.lower()
    found: set[int] = set()
    for person_id, email in session.execute(
        select(Person.id, Person.email).where(Person.email.is_not(None))
    ):
        if email is None:
            continue
        for spelling in {email, email.lower()}:
            if hashlib.sha1(f"mailto:{spelling}".encode()).hexdigest() == wanted:
                found.add(person_id)
    if not found:
        raise _Rejected(422, "unknown actor: mbox_sha1sum matches no one in the directory")
    if len(found) > 1:
        raise _Rejected(422, "unknown actor: mbox_sha1sum matches more than one person")
    person = session.get(Person, found.pop())
    assert person is not None
    return person


def _person_by_openid(session: Session, openid: str, bases: Sequence[str]) -> Person:
    """The person an OpenID URI names: a configured base followed by their external id."""
    for base in bases:
        if base and openid.startswith(base):
            external_id = openid[len(base) :].strip("/")
            if external_id:
                return person_by_external_id(session, external_id, "openid")
    raise _Rejected(
        422,
        "unknown actor: openid is not under a known identity provider (DULY_XAPI_OPENID_BASES)",
    )


def _actor_person(session: Session, actor: XapiActor, openid_bases: Sequence[str]) -> Person:
    if actor.mbox is not None:
        return person_by_email(session, actor.mbox.split(":", 1)[1])
    if actor.account is not None:
        return person_by_external_id(session, actor.account.name, "account name")
    if actor.mbox_sha1sum is not None:
        return _person_by_mbox_sha1(session, actor.mbox_sha1sum)
    if actor.openid is not None:
        return _person_by_openid(session, actor.openid, openid_bases)
    raise _Rejected(
        422, "unknown actor: identify the actor by mbox, mbox_sha1sum, openid or account"
    )


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


def _requirement_for_activity(session: Session, activity_id: str) -> Requirement | None:
    pack = active_pack(session)
    return pack.by_xapi_activity(activity_id) if pack is not None else None


def _obligation_for_activity(
    session: Session, person: Person, activity_id: str
) -> tuple[Obligation, Requirement]:
    """The open obligation an activity IRI completes, by its pinned pack or the active pack."""
    rows = _open_obligations(session, person.id)
    for row in rows:
        pack = load_version(session, row.pack_hash)
        requirement = pack.by_xapi_activity(activity_id) if pack is not None else None
        if requirement is not None and requirement.id == row.requirement_id:
            return row, requirement
    requirement = _requirement_for_activity(session, activity_id)
    if requirement is None:
        raise _Rejected(422, "unknown activity: no requirement maps this activity id")
    match = next((r for r in rows if r.requirement_id == requirement.id), None)
    if match is None:
        _already_counted(session, person, requirement.id)
        raise _Rejected(409, f"no open obligation for requirement {requirement.id!r}")
    return match, requirement


def obligation_for_requirement(session: Session, person: Person, requirement_id: str) -> Obligation:
    """The person's open obligation for a requirement; 422 (unknown) or 409 (none open)."""
    rows = _open_obligations(session, person.id)
    row = next((r for r in rows if r.requirement_id == requirement_id), None)
    if row is not None:
        return row
    pack = active_pack(session)
    if pack is None or pack.requirement(requirement_id) is None:
        raise _Rejected(422, f"unknown requirement {requirement_id!r}")
    raise _Rejected(409, f"no open obligation for requirement {requirement_id!r}")


class _Counted(Exception):
    """The statement's attempt was already counted: its cycle closed, the next is not open yet."""

    def __init__(self, workflow_id: str, cycle: int) -> None:
        super().__init__(workflow_id)
        self.workflow_id = workflow_id
        self.cycle = cycle


def _already_counted(session: Session, person: Person, requirement_id: str) -> None:
    """Raise :class:`_Counted` when the requirement's latest cycle closed with a completion.

    LMSs send ``completed`` and ``passed`` for one attempt. The first closes the cycle and the
    workflow starts the next; until the next cycle has written its row the person has nothing
    open, and the second statement would be a 409 that an LMS retries for ever. It describes the
    attempt already counted: answered 200 ``ignored``.
    """
    latest = session.scalar(
        select(Obligation)
        .where(Obligation.person_id == person.id, Obligation.requirement_id == requirement_id)
        .order_by(Obligation.cycle.desc(), Obligation.id.desc())
        .limit(1)
    )
    if latest is not None and latest.completed_at is not None:
        raise _Counted(latest.workflow_id, latest.cycle)


def _completion_recorded(session: Session, workflow_id: str) -> bool:
    """Whether a completion (not a failed attempt) was recorded for this workflow."""
    for after in session.scalars(
        select(AuditEntry.after).where(
            AuditEntry.target == workflow_id,
            AuditEntry.action.in_((XAPI_ACTION, COMPLETION_ACTION)),
        )
    ):
        if isinstance(after, dict) and after.get("passed") is not False:
            return True
    return False


# --- dedupe, dead letters, signalling -----------------------------------------------------------


def lock_keys(session: Session, keys: list[str]) -> None:
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


def processed(session: Session, action: str, field: str, value: str) -> str | None:
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


def dead_letter(
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
    # Concurrent posts of the same key are serialised by lock_keys (PostgreSQL).
    row = DeadLetter(
        source=source[:32], reason=reason[:300], payload=_capped(payload), dedupe_key=key
    )
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


#: The dedupe keys this process is handling now (see :func:`one_at_a_time`).
_inflight: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


@asynccontextmanager
async def one_at_a_time(key: str | None) -> AsyncIterator[None]:
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


class Signaller:
    """Connects to Temporal only when a statement needs it, and signals ``complete``.

    Args:
        connect: Returns the client; whatever it raises is answered 503 (its ``detail`` when it
            has one, as the API's lazy client's HTTP 503 does).
    """

    def __init__(self, connect: Callable[[], Awaitable[Client]]) -> None:
        self._connect = connect
        self._client: Client | None = None

    async def client(self) -> Client:
        """The connected client (raises what ``connect`` raises)."""
        if self._client is None:
            self._client = await self._connect()
        return self._client

    async def complete(self, workflow_id: str, signal: CompleteSignal) -> tuple[int, str]:
        """Signal the workflow; returns an item status and outcome-detail.

        Evidence the assessment gate would not count (inside the retake cool-down, attempts
        used up) is not sent: 409 ``not counted: ...`` (``services.assignments.gate_admits``).
        """
        try:
            client = await self.client()
        except Exception as exc:  # noqa: BLE001 - any connection failure is "try again"
            return 503, f"unavailable: {getattr(exc, 'detail', type(exc).__name__)}"
        try:
            await gate_admits(client, workflow_id=workflow_id, completion=signal)
        except Conflict as refused:
            return 409, refused.detail
        try:
            await client.get_workflow_handle(workflow_id).signal("complete", signal)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return 409, "already closed"
            log.warning("signal to %s failed: %s", workflow_id, exc.status)
            return 503, f"unavailable: Temporal answered {exc.status.name}; try again"
        return 200, "recorded"


def worst(results: Sequence[ItemResult]) -> int:
    """The status of a batch: 200 when every item is fine, else the worst item's."""
    return max((r.status for r in results), default=200)


def answer(results: list[ItemResult]) -> tuple[int, IntakeAnswer]:
    """The batch's status and body."""
    code = worst(results)
    if code == 200:
        detail = f"{len(results)} processed"
    else:
        failed = sum(1 for r in results if r.status != 200)
        detail = f"{failed} of {len(results)} not recorded; see results"
    return code, IntakeAnswer(detail=detail, results=results)


async def _deliver(
    session: Session,
    caller: Caller,
    signaller: Signaller,
    obligation: Obligation,
    signal: CompleteSignal,
    *,
    action: str,
    audit_after: dict[str, Any],
    dead_key: str | None,
    dedupe: tuple[str, str, str] | None = None,
    kept: tuple[str, dict[str, Any]] | None = None,
) -> tuple[int, Outcome, str, int | None]:
    """Signal the obligation's workflow and, on success, record it in the audit log.

    Evidence the assessment gate refuses (409 ``not_counted``) is kept as a dead letter
    (``kept``: its source and the statement or completion as posted), like evidence that
    cannot be matched; the answer then carries the dead letter's id (the last element, None
    otherwise), so HR can resolve it without searching ``GET /xapi/dead-letters``.

    The audit append runs in its own short transaction in a worker thread, after the signal:
    its advisory lock is never held across an ``await``. ``dedupe`` (lock key, audit field and
    value) is checked again inside that transaction, so a statement recorded meanwhile by
    another API process is answered ``duplicate`` and recorded once.
    """
    code, detail = await signaller.complete(obligation.workflow_id, signal)
    if code == 409 and detail.startswith("not counted") and kept is not None:
        source, payload = kept
        letter = await committed(
            session, lambda: dead_letter(session, source, detail, payload, dead_key)
        )
        return code, "not_counted", detail, letter
    if code == 409:
        # The run closed. When a completion closed it, this is the second statement of that
        # attempt racing the next cycle's start: nothing to do, not an error for the LMS.
        if await committed(session, lambda: _completion_recorded(session, obligation.workflow_id)):
            return 200, "ignored", f"ignored: cycle {obligation.cycle} already completed", None
        return code, "already_closed", detail, None
    if code != 200:
        return code, "unavailable", detail, None

    def _record() -> str | None:
        if dedupe is not None:
            key, field, value = dedupe
            lock_keys(session, [key])
            done = processed(session, action, field, value)
            if done is not None:
                return done
        audit.record(
            session,
            actor=caller.actor,
            actor_role=caller.role,
            action=action,
            target=obligation.workflow_id,
            after={**audit_after, **signal.model_dump(mode="json", exclude={"actor"})},
        )
        _resolve_by_key(session, dead_key)
        return None

    if await committed(session, _record) is not None:
        return 200, "duplicate", "duplicate", None
    recorded = "recorded" if signal.passed is not False else "failed attempt recorded"
    return 200, "recorded", recorded, None


# --- xAPI ---------------------------------------------------------------------------------------

Parsed = XapiStatement | Unused


def validate_statement(item: Any, prefix: str = "statement") -> Parsed:
    """One statement, validated (or :class:`Unused`); :class:`Refused` names the bad field."""
    if not isinstance(item, dict):
        raise Refused(f"{prefix} is not an object")
    reason = unused_reason(item)
    if reason is not None:
        sid = item.get("id")
        return Unused(sid if isinstance(sid, str) and sid else None, reason)
    try:
        return XapiStatement.model_validate(item)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in error["loc"]) or "statement"
        message = error["msg"].removeprefix("Value error, ")
        raise Refused(f"malformed {prefix}: {where}: {message}") from None


def parse_statements(data: Any) -> tuple[list[dict[str, Any]], list[Parsed]]:
    """Read parsed JSON (one statement or an array) as statements, or :class:`Refused`."""
    items = data if isinstance(data, list) else [data]
    if not items:
        raise Refused("no statements")
    if len(items) > MAX_BATCH:
        raise Refused(f"at most {MAX_BATCH} statements per request")
    statements = [
        validate_statement(item, f"statement[{index}]" if isinstance(data, list) else "statement")
        for index, item in enumerate(items)
    ]
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


def _completion_signal(statement: XapiStatement, caller: Caller) -> CompleteSignal:
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
        actor=f"integration:{caller.actor}"[:128],
        score=score,
        passed=passed,
        attempt_id=registration or statement.id,
        score_percent=percent,
    )


@dataclass(frozen=True)
class StatementContext:
    """What every statement of one batch is handled with."""

    caller: Caller
    signaller: Signaller
    window: InstantWindow
    settings: Settings
    #: The dead letters' ``source`` (``xapi`` for posts; the integration for pulls).
    source: str = XAPI_SOURCE


async def process_statements(
    session: Session,
    ctx: StatementContext,
    raw_items: Sequence[dict[str, Any]],
    statements: Sequence[Parsed],
) -> list[ItemResult]:
    """Handle each statement in order (one at a time per statement id); one result each."""
    results: list[ItemResult] = []
    for index, (raw, statement) in enumerate(zip(raw_items, statements, strict=True)):
        if isinstance(statement, Unused):
            results.append(
                ItemResult(
                    index=index,
                    statement_id=statement.id,
                    status=200,
                    outcome="ignored",
                    detail=statement.reason,
                )
            )
            continue
        async with one_at_a_time(statement.id):
            results.append(await _one_statement(session, ctx, index, raw, statement))
    return results


def _match_statement(
    session: Session,
    ctx: StatementContext,
    item: ItemResult,
    raw: dict[str, Any],
    statement: XapiStatement,
) -> ItemResult | tuple[Obligation, CompleteSignal]:
    """The obligation and signal a statement makes, or its final answer (blocking; a thread)."""
    sid = statement.id
    if sid is not None:
        lock_keys(session, [sid])
        done = processed(session, XAPI_ACTION, "statement_id", sid)
        if done is not None:
            return item.model_copy(
                update={"outcome": "duplicate", "detail": "duplicate", "workflow_id": done}
            )
    if statement.verb.id == VERB_SATISFIED:
        # cmi5: counts only where the pack says "satisfied" completes the requirement; an
        # unmapped or ignoring activity is not an error (cmi5 LMSs send it for every block).
        requirement = _requirement_for_activity(session, statement.object_.id)
        if requirement is None or requirement.cmi5_satisfied is not Cmi5Satisfied.COMPLETES:
            return item.model_copy(
                update={
                    "detail": "ignored: satisfied does not complete this activity"
                    " (the pack's cmi5_satisfied is ignore)"
                }
            )
    try:
        _evidence_time(statement, ctx.window)
        person = _actor_person(session, statement.actor, ctx.settings.openid_bases)
        obligation, _requirement = _obligation_for_activity(session, person, statement.object_.id)
    except _Counted as counted:
        return item.model_copy(
            update={
                "detail": f"ignored: cycle {counted.cycle} already completed and the next is"
                " not open yet (the attempt counted)",
                "workflow_id": counted.workflow_id,
            }
        )
    except _Rejected as rejected:
        letter = dead_letter(session, ctx.source, rejected.reason, raw, sid)
        return item.model_copy(
            update={
                "status": rejected.status_code,
                "outcome": "dead_letter",
                "detail": rejected.reason,
                "dead_letter_id": letter,
            }
        )
    signal = _completion_signal(statement, ctx.caller)
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


def _statement_key(statement: XapiStatement, raw: dict[str, Any]) -> str:
    """The statement id, or (an LRS always assigns one) a digest of the statement itself."""
    if statement.id is not None:
        return statement.id
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:32]


async def _classroom_hours(
    session: Session,
    ctx: StatementContext,
    item: ItemResult,
    raw: dict[str, Any],
    statement: XapiStatement,
) -> ItemResult | None:
    """Classroom hours, when the statement is for a course of the actor's program.

    None: it is not (an unknown actor or a timestamp out of range too: the completion path
    answers those and keeps the dead letter).
    """
    sid = statement.id

    def match() -> ItemResult | int | None:
        if sid is not None:
            lock_keys(session, [sid])
            done = processed(session, XAPI_ACTION, "statement_id", sid)
            if done is not None:
                return item.model_copy(
                    update={"outcome": "duplicate", "detail": "duplicate", "workflow_id": done}
                )
        try:
            _evidence_time(statement, ctx.window)
            return _actor_person(session, statement.actor, ctx.settings.openid_bases).id
        except _Rejected:
            return None

    found = await committed(session, match)
    if found is None or isinstance(found, ItemResult):
        return found
    at = statement.timestamp or statement.stored or datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        client = await ctx.signaller.client()
    except Exception as exc:  # noqa: BLE001 - any connection failure is "try again"
        detail = f"unavailable: {getattr(exc, 'detail', type(exc).__name__)}"
        return item.model_copy(update={"status": 503, "outcome": "unavailable", "detail": detail})
    try:
        recorded = await apprenticeships.lms_classroom_hours(
            session,
            client,
            person_id=found,
            activity_id=statement.object_.id,
            statement_key=_statement_key(statement, raw),
            at=at,
            duration=statement.result.duration if statement.result else None,
            actor=ctx.caller.actor,
            actor_role=ctx.caller.role,
        )
    except Unavailable as exc:
        return item.model_copy(
            update={"status": 503, "outcome": "unavailable", "detail": exc.detail}
        )
    except (Invalid, Conflict) as exc:
        code = 422 if isinstance(exc, Invalid) else 409
        reason = f"classroom hours refused: {exc.detail}"
        letter = await committed(
            session, lambda: dead_letter(session, ctx.source, reason, raw, sid)
        )
        return item.model_copy(
            update={
                "status": code,
                "outcome": "dead_letter",
                "detail": reason,
                "dead_letter_id": letter,
            }
        )
    if recorded is None:
        return None

    def record() -> None:
        audit.record(
            session,
            actor=ctx.caller.actor,
            actor_role=ctx.caller.role,
            action=XAPI_ACTION,
            target=recorded.workflow_id,
            after={"statement_id": sid, "verb": statement.verb.id, **recorded.model_dump()},
        )
        _resolve_by_key(session, sid)

    await committed(session, record)
    waiting = "approved" if recorded.approved else "pending the supervisor's approval"
    return item.model_copy(
        update={
            "outcome": "recorded",
            "detail": f"{recorded.hours:g} classroom hours as entry {recorded.entry_id}, {waiting}",
            "workflow_id": recorded.workflow_id,
        }
    )


async def _one_statement(
    session: Session,
    ctx: StatementContext,
    index: int,
    raw: dict[str, Any],
    statement: XapiStatement,
) -> ItemResult:
    sid = statement.id
    item = ItemResult(index=index, statement_id=sid, status=200, outcome="ignored", detail="")
    if statement.verb.id == VERB_VOIDED:
        return await _void(session, ctx, item, raw, statement)
    if statement.verb.id in HOURS_VERBS:
        hours = await _classroom_hours(session, ctx, item, raw, statement)
        if hours is not None:
            return hours
    if statement.verb.id not in TRACKED_VERBS and statement.verb.id != VERB_SATISFIED:
        return item.model_copy(update={"detail": "ignored: verb not tracked"})
    # Matching (and any dead letter) is committed before the signal is awaited.
    matched = await committed(session, lambda: _match_statement(session, ctx, item, raw, statement))
    if isinstance(matched, ItemResult):
        return matched
    obligation, signal = matched
    code, outcome, detail, letter = await _deliver(
        session,
        ctx.caller,
        ctx.signaller,
        obligation,
        signal,
        action=XAPI_ACTION,
        audit_after={"statement_id": sid, "verb": statement.verb.id},
        dead_key=sid,
        dedupe=(sid, "statement_id", sid) if sid is not None else None,
        kept=(XAPI_SOURCE, raw),
    )
    return item.model_copy(
        update={
            "status": code,
            "outcome": outcome,
            "detail": detail,
            "workflow_id": obligation.workflow_id,
            "passed": signal.passed,
            "dead_letter_id": letter,
        }
    )


# --- voiding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _VoidPlan:
    """What a voiding statement found about the statement it voids."""

    target: str
    workflow_id: str | None
    completed: bool
    later_cycle: int | None
    duplicate: bool = False
    #: The apprenticeship classroom entry the voided statement made (None: a completion).
    hours_entry: str | None = None


def _plan_void(session: Session, sid: str | None, target: str) -> _VoidPlan:
    if sid is not None:
        lock_keys(session, [sid])
        if processed(session, VOID_ACTION, "statement_id", sid) is not None:
            return _VoidPlan(target, None, False, None, duplicate=True)
    entry = session.scalar(
        select(AuditEntry)
        .where(
            AuditEntry.action == XAPI_ACTION,
            AuditEntry.after["statement_id"].as_string() == target,
        )
        .limit(1)
    )
    if entry is None:
        return _VoidPlan(target, None, False, None)
    after = entry.after or {}
    if entry.target.startswith("apprenticeship/") and isinstance(after.get("entry_id"), str):
        return _VoidPlan(target, entry.target, False, None, hours_entry=after["entry_id"])
    row = session.scalar(select(Obligation).where(Obligation.workflow_id == entry.target))
    completed = (
        after.get("passed") is not False and row is not None and row.completed_at is not None
    )
    later = None
    if row is not None:
        later = session.scalar(
            select(func.max(Obligation.cycle)).where(
                Obligation.person_id == row.person_id,
                Obligation.requirement_id == row.requirement_id,
                Obligation.cycle > row.cycle,
                Obligation.status != ObligationStatus.CANCELLED.value,
            )
        )
    return _VoidPlan(target, entry.target, completed, later)


async def _void_refused(
    session: Session,
    ctx: StatementContext,
    item: ItemResult,
    raw: dict[str, Any],
    sid: str | None,
    workflow_id: str,
    what: str,
    why: object,
) -> ItemResult:
    """A void that cannot be carried out: 409 and a dead letter saying why, for HR."""
    reason = f"{what} not reversed: {why}"
    letter = await committed(session, lambda: dead_letter(session, ctx.source, reason, raw, sid))
    return item.model_copy(
        update={
            "status": 409,
            "outcome": "dead_letter",
            "detail": reason[:300],
            "workflow_id": workflow_id,
            "dead_letter_id": letter,
        }
    )


def _void_unavailable(item: ItemResult, workflow_id: str, exc: Exception) -> ItemResult:
    """Temporal could not be reached for a void: 503, so the LMS/LRS sends it again."""
    return item.model_copy(
        update={
            "status": 503,
            "outcome": "unavailable",
            "detail": f"unavailable: {getattr(exc, 'detail', type(exc).__name__)}",
            "workflow_id": workflow_id,
        }
    )


async def _void(
    session: Session,
    ctx: StatementContext,
    item: ItemResult,
    raw: dict[str, Any],
    statement: XapiStatement,
) -> ItemResult:
    """Reverse the completion the voided statement (``object.id``, a StatementRef) recorded.

    The completed assignment is restarted under its business key with its due date (as
    ``POST /assignments/{id}/restart`` does), audited as ``xapi.void``. When the completion
    already started a later cycle the reversal is left to HR: a dead letter says so.
    """
    sid = statement.id
    target = statement.object_.id
    plan = await committed(session, lambda: _plan_void(session, sid, target))
    if plan.duplicate:
        return item.model_copy(update={"outcome": "duplicate", "detail": "duplicate"})
    if plan.workflow_id is None:
        return item.model_copy(
            update={"detail": "ignored: Duly recorded nothing for the voided statement"}
        )
    workflow_id = plan.workflow_id
    if plan.hours_entry is not None:
        return await _void_hours(session, ctx, item, raw, statement, plan)
    reversed_run: str | None = None
    if plan.completed and plan.later_cycle is not None:
        reason = (
            f"voided statement {target} completed {workflow_id}, which already started cycle"
            f" {plan.later_cycle}; reverse it by hand (restart the assignment)"
        )
        letter = await committed(
            session, lambda: dead_letter(session, ctx.source, reason, raw, sid)
        )
        return item.model_copy(
            update={
                "status": 409,
                "outcome": "dead_letter",
                "detail": reason,
                "workflow_id": workflow_id,
                "dead_letter_id": letter,
            }
        )
    if plan.completed:
        try:
            client = await ctx.signaller.client()
            restarted = await restarts.restart_assignment(
                session,
                client,
                settings=ctx.settings,
                workflow_id=workflow_id,
                reason=f"xAPI statement {target} voided"[:200],
                actor=ctx.caller.actor,
                actor_role=ctx.caller.role,
            )
        except (restarts.RestartRefused, restarts.UnknownObligation, OutOfRange) as exc:
            return await _void_refused(
                session, ctx, item, raw, sid, workflow_id, f"voided statement {target}", exc
            )
        except Exception as exc:  # noqa: BLE001 - Temporal down: the LMS/LRS retries
            return _void_unavailable(item, workflow_id, exc)
        reversed_run = restarted.run_id or ""

    def _record() -> None:
        audit.record(
            session,
            actor=ctx.caller.actor,
            actor_role=ctx.caller.role,
            action=VOID_ACTION,
            target=workflow_id,
            before={"voided_statement_id": target, "completed": plan.completed},
            after={
                "statement_id": sid,
                "voided_statement_id": target,
                "reversed": reversed_run is not None,
                "run_id": reversed_run,
            },
        )

    await committed(session, _record)
    detail = (
        "voided: the completion was reversed and the assignment reopened"
        if reversed_run is not None
        else "voided: the statement had not completed the obligation; recorded"
    )
    return item.model_copy(
        update={"outcome": "recorded", "detail": detail, "workflow_id": workflow_id}
    )


async def _void_hours(
    session: Session,
    ctx: StatementContext,
    item: ItemResult,
    raw: dict[str, Any],
    statement: XapiStatement,
    plan: _VoidPlan,
) -> ItemResult:
    """Withdraw the classroom hours entry a voided statement made (pending or approved).

    Audited as ``xapi.void`` (before: the entry and its status; after: withdrawn or why not).
    An entry that can no longer be withdrawn (its period advanced and its hours were folded
    into the summary) is a 409 and a dead letter asking HR to correct the hours by hand.
    """
    sid = statement.id
    target, workflow_id, entry_id = plan.target, plan.workflow_id, plan.hours_entry
    assert workflow_id is not None and entry_id is not None
    reason = f"xAPI statement {target} voided"
    try:
        client = await ctx.signaller.client()
        was = await apprenticeships.void_classroom_hours(
            session,
            client,
            workflow_id=workflow_id,
            entry_id=entry_id,
            reason=reason,
            actor=ctx.caller.actor,
            actor_role=ctx.caller.role,
        )
    except (Invalid, Conflict) as exc:
        return await _void_refused(
            session, ctx, item, raw, sid, workflow_id, f"voided statement {target}", exc.detail
        )
    except Exception as exc:  # noqa: BLE001 - Temporal down: the LMS/LRS retries
        return _void_unavailable(item, workflow_id, exc)
    withdrawn = was != "rejected"

    def _record() -> None:
        audit.record(
            session,
            actor=ctx.caller.actor,
            actor_role=ctx.caller.role,
            action=VOID_ACTION,
            target=workflow_id,
            before={"voided_statement_id": target, "entry_id": entry_id, "entry_status": was},
            after={
                "statement_id": sid,
                "voided_statement_id": target,
                "entry_id": entry_id,
                "reversed": withdrawn,
            },
        )

    await committed(session, _record)
    detail = {
        "pending": f"voided: classroom entry {entry_id} rejected before approval",
        "approved": f"voided: approved classroom entry {entry_id} withdrawn; its hours no longer"
        " count",
    }.get(was, f"voided: classroom entry {entry_id} was already rejected; recorded")
    return item.model_copy(
        update={"outcome": "recorded", "detail": detail, "workflow_id": workflow_id}
    )


# --- plain completions --------------------------------------------------------------------------


async def process_completion(
    session: Session,
    caller: Caller,
    signaller: Signaller,
    body: CompletionIn,
    completed_at: datetime,
    *,
    source: str = COMPLETION_SOURCE,
    index: int = 0,
) -> ItemResult:
    """Record one plain completion (idempotent by its ``idempotency_key``)."""
    key = body.idempotency_key
    dead_key = f"completion:{key}" if key is not None else None
    item = ItemResult(index=index, statement_id=key, status=200, outcome="recorded", detail="")
    async with one_at_a_time(dead_key):
        # Matching (and any dead letter) is committed before the signal is awaited.
        matched = await committed(
            session,
            lambda: _match_completion(session, caller, body, item, completed_at, source),
        )
        if isinstance(matched, ItemResult):
            return matched
        obligation, signal = matched
        code, outcome, detail, letter = await _deliver(
            session,
            caller,
            signaller,
            obligation,
            signal,
            action=COMPLETION_ACTION,
            audit_after={"idempotency_key": key},
            dead_key=dead_key,
            dedupe=(dead_key, "idempotency_key", key) if dead_key and key else None,
            kept=(source, body.model_dump(mode="json")),
        )
    return item.model_copy(
        update={
            "status": code,
            "outcome": outcome,
            "detail": detail,
            "workflow_id": obligation.workflow_id,
            "passed": signal.passed,
            "dead_letter_id": letter,
        }
    )


def _match_completion(
    session: Session,
    caller: Caller,
    body: CompletionIn,
    item: ItemResult,
    completed_at: datetime,
    source: str,
) -> ItemResult | tuple[Obligation, CompleteSignal]:
    """The obligation and signal a completion makes, or its final answer (blocking; a thread)."""
    key = body.idempotency_key
    dead_key = f"completion:{key}" if key is not None else None
    if key is not None:
        lock_keys(session, [f"completion:{key}"])
        done = processed(session, COMPLETION_ACTION, "idempotency_key", key)
        if done is not None:
            return item.model_copy(
                update={"outcome": "duplicate", "detail": "duplicate", "workflow_id": done}
            )
    try:
        if "@" in body.person:
            person = person_by_email(session, body.person.removeprefix("mailto:"))
        else:
            person = person_by_external_id(session, body.person, "person")
        obligation = obligation_for_requirement(session, person, body.requirement_id)
    except _Rejected as rejected:
        reason = rejected.reason.replace("unknown actor: mbox", "unknown person: email")
        reason = reason.replace("unknown actor:", "unknown person:")
        letter = dead_letter(session, source, reason, body.model_dump(mode="json"), dead_key)
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
        actor=f"integration:{caller.actor}"[:128],
        score=body.score,
        passed=body.passed,
        attempt_id=body.attempt_id,
        certificate_id=body.certificate_id,
        # A plain completion's score is a percentage when it lies within 0..100.
        score_percent=body.score if body.score is not None and 0 <= body.score <= 100 else None,
    )
    return obligation, signal
