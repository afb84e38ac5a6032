"""Mentorships: profiles, matching, and the ``MentorshipWorkflow`` of each relationship.

Keyword-only functions over the store (profiles, read models) and the workflow (typed updates
and queries); the API router maps their :mod:`services.errors` to HTTP. Store work happens in
short sessions that are closed before any call to Temporal, so no transaction is held across an
``await``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities import mentorship_profiles as profiles
from activities.packs import active_pack
from domain import BUILTIN_PACK, Role
from domain.contracts.mentorship import (
    AcceptRequest,
    CancelMentorship,
    CompleteMentorship,
    DeclineRequest,
    FeedbackRequest,
    MentorshipInput,
    MentorshipState,
    MentorshipTerms,
    MentorshipType,
    NudgeTerm,
    SessionLog,
    mentorship_workflow_id,
)
from rules.matching import Match, find_mentees, find_mentors
from rules.mentorship_model import MenteeProfile, MentorProfile, MentorshipPolicy
from services.errors import Conflict, Forbidden, Invalid, NotFound
from store import audit
from store import mentorship as store
from store.db import Database
from store.models import Mentorship, MentorshipFeedback, MentorshipSession, Person
from store.tokens import Principal
from workflows.mentorship import MentorshipWorkflow

QUERY_TIMEOUT = 5.0
Side = Literal["mentor", "mentee"]
T = TypeVar("T")
#: Connects to Temporal when called (after the store checks: an invisible id is 404 even
#: while Temporal is down).
Connect = Callable[[], Awaitable[Client]]
#: Who reads every relationship (and every timeline).
READ_ALL = frozenset({Role.HR_ADMIN, Role.AUDITOR})


# --- visibility -------------------------------------------------------------------------------


def _visible(session: Session, principal: Principal) -> set[int] | None:
    """Person ids whose relationships the caller sees (None: all).

    A learner sees their own; a manager their own and their reports' (transitively); HR and
    the auditor everyone.
    """
    if principal.role in READ_ALL:
        return None
    if principal.person_id is None:
        return set()
    seen = {principal.person_id}
    if principal.role is Role.MANAGER:
        frontier = set(seen)
        while frontier:
            reports = set(session.scalars(select(Person.id).where(Person.manager_id.in_(frontier))))
            frontier = reports - seen
            seen |= frontier
    return seen


def subject(
    session: Session, principal: Principal, person: str | None, *, read: bool = False
) -> Person:
    """The person a profile or request call is about: the caller, or (HR) anyone.

    Args:
        session: The session.
        principal: The caller.
        person: Whom the call names (None: the caller).
        read: Only reading: a manager may also read their reports' profiles and matches.

    Raises:
        Forbidden: Someone other than HR naming another person they can see.
        NotFound: No such person, someone the caller cannot see, or a token without a person.
    """
    if person is None or person == principal.person_external_id:
        if principal.person_external_id is None:
            raise NotFound("this token has no person; name one with person")
        person = principal.person_external_id
    row = store.person(session, person)
    if principal.role is not Role.HR_ADMIN and person != principal.person_external_id:
        scope = _visible(session, principal)
        if row is None or (scope is not None and row.id not in scope):
            raise NotFound()
        if read:
            return row
        raise Forbidden("only HR acts on someone else's mentorship profile or requests")
    if row is None:
        raise NotFound(f"person {person!r} is not in the directory")
    return row


def terms_of(policy: MentorshipPolicy) -> MentorshipTerms:
    """The timing a relationship freezes from a pack's ``mentorship:`` section."""
    return MentorshipTerms(
        request_expiry_days=policy.request_expiry_days,
        session_cadence_days=policy.session_cadence_days,
        nudges=[
            NudgeTerm(
                after_days=step.after_days,
                notify=step.notify.value,
                channels=[channel.value for channel in step.channels],
            )
            for step in policy.nudges
        ],
        feedback_midpoint=policy.feedback.midpoint,
        feedback_end=policy.feedback.end,
        feedback_due_within_days=policy.feedback.due_within_days,
    )


def _policy(session: Session) -> tuple[MentorshipPolicy, str]:
    """The active pack's mentorship policy and its hash (the built-in defaults without one)."""
    pack = active_pack(session)
    if pack is None:
        return MentorshipPolicy(), BUILTIN_PACK
    return pack.mentorship, pack.content_hash


# --- profiles ---------------------------------------------------------------------------------


def get_profile(
    session: Session, *, principal: Principal, side: Side, person: str | None
) -> MentorProfile | MenteeProfile:
    """A mentor or mentee profile, with certifications and track record filled in.

    Raises:
        Forbidden, NotFound: See :func:`_subject`; NotFound also when there is no profile.
    """
    who = subject(session, principal, person, read=True)
    found: list[Any] = (
        profiles.mentor_profiles(session, only=who.external_id)
        if side == "mentor"
        else profiles.mentee_profiles(session, only=who.external_id)
    )
    if not found:
        raise NotFound(f"{who.external_id!r} has no {side} profile; create it with PUT")
    profile: MentorProfile | MenteeProfile = found[0]
    return profile


def put_profile(
    session: Session,
    *,
    principal: Principal,
    side: Side,
    person: str | None,
    data: dict[str, Any],
) -> MentorProfile | MenteeProfile:
    """Create or replace a profile (certifications and the track record are computed).

    Raises:
        Forbidden, NotFound: See :func:`_subject`.
        Invalid: The profile does not validate.
    """
    who = subject(session, principal, person)
    body = {k: v for k, v in data.items() if k not in store.COMPUTED}
    body["person_id"] = who.external_id
    try:
        if side == "mentor":
            profiles.save_mentor(session, who, MentorProfile.model_validate(body))
        else:
            profiles.save_mentee(session, who, MenteeProfile.model_validate(body))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise Invalid(f"the {side} profile is invalid: {exc}") from exc
    session.flush()
    audit.record(
        session,
        actor=principal.actor,
        actor_role=principal.role.value,
        action=f"mentorship.profile.{side}",
        target=who.external_id,
        after={"updated": True},
    )
    return get_profile(session, principal=principal, side=side, person=who.external_id)


# --- matching ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranked:
    """A ranked list and the pack whose weights ranked it."""

    matches: list[Match]
    pack_hash: str


def find_mentor(
    session: Session, *, principal: Principal, person: str | None, limit: int
) -> Ranked:
    """The best mentors for a mentee (the caller; HR may name anyone), with explanations.

    Raises:
        NotFound: The mentee has no profile.
    """
    mentee = get_profile(session, principal=principal, side="mentee", person=person)
    assert isinstance(mentee, MenteeProfile)
    policy, pack_hash = _policy(session)
    # Prepared once per change of the mentors' data (see profiles.prepared_mentors).
    mentors = profiles.prepared_mentors(session)
    matches = find_mentors(
        mentee, mentors, policy.weights, limit, ideal_gap=policy.ideal_experience_gap
    )
    return Ranked(matches, pack_hash)


def find_mentee(
    session: Session, *, principal: Principal, person: str | None, limit: int
) -> Ranked:
    """The mentees a mentor (the caller; HR may name anyone) would suit best.

    Raises:
        NotFound: The mentor has no profile.
    """
    mentor = get_profile(session, principal=principal, side="mentor", person=person)
    assert isinstance(mentor, MentorProfile)
    policy, pack_hash = _policy(session)
    # Prepared once per change of the mentees' data (see profiles.prepared_mentees).
    mentees = profiles.prepared_mentees(session)
    matches = find_mentees(
        mentor, mentees, policy.weights, limit, ideal_gap=policy.ideal_experience_gap
    )
    return Ranked(matches, pack_hash)


# --- relationships ----------------------------------------------------------------------------


async def request(
    db: Database,
    connect: Connect,
    *,
    principal: Principal,
    mentor: str,
    mentee: str | None,
    type: MentorshipType,
    goals: list[str],
    duration_months: int,
    milestones: list[str],
    message: str | None,
    task_queue: str,
) -> MentorshipInput:
    """Ask a mentor: start the relationship's workflow (``pending``).

    Raises:
        Forbidden: Someone other than HR asking on another's behalf.
        NotFound: The mentee or the mentor is unknown, or the mentor has no profile.
        Conflict: The mentor is not accepting or has no free slot; the same request is pending.
        Invalid: Asking oneself.
    """

    def prepare(session: Session) -> tuple[str, int, MentorshipPolicy, str]:
        who = subject(session, principal, mentee)
        mentor_row = store.person(session, mentor)
        if mentor_row is None:
            raise NotFound(f"mentor {mentor!r} is not in the directory")
        if mentor_row.id == who.id:
            raise Invalid(
                "a mentee cannot ask themself; pick a mentor from GET /mentorship/find-mentor"
            )
        found = profiles.mentor_profiles(session, only=mentor)
        if not found:
            raise NotFound(f"{mentor!r} has no mentor profile")
        if not found[0].has_capacity:
            raise Conflict(
                f"{mentor!r} is not taking mentees now (accepting: "
                f"{found[0].accepting_mentees}, {found[0].active_mentees} of"
                f" {found[0].max_mentees} slots taken); ask another mentor"
            )
        open_one = store.open_between(session, who.id, mentor_row.id)
        if open_one is not None:
            raise Conflict(
                f"{who.external_id!r} and {mentor!r} already have a {open_one.status}"
                f" mentorship ({open_one.workflow_id})"
            )
        n = store.count_between(session, who.id, mentor_row.id) + 1
        policy, pack_hash = _policy(session)
        return who.external_id, n, policy, pack_hash

    mentee_id, n, policy, pack_hash = await _in_thread(db, prepare)
    inp = MentorshipInput(
        workflow_id=mentorship_workflow_id(mentee_id, mentor, n),
        mentee=mentee_id,
        mentor=mentor,
        pack_hash=pack_hash,
        terms=terms_of(policy),
        type=type,
        goals=goals,
        duration_months=duration_months,
        milestones=milestones,
        message=message,
    )

    # The read model's row is written before the workflow starts, so the request can be read,
    # accepted or declined as soon as this answers; the workflow's own writes supersede it.
    def placeholder(session: Session) -> None:
        store.placeholder(session, inp.workflow_id, mentee=mentee_id, mentor=mentor, inp=inp)

    try:
        await _in_thread(db, placeholder)
    except IntegrityError as exc:  # the same request, made at the same moment
        raise Conflict(f"this request is already pending as {inp.workflow_id}") from exc
    client = await connect()
    try:
        await client.start_workflow(
            MentorshipWorkflow.run, inp, id=inp.workflow_id, task_queue=task_queue
        )
    except BaseException as exc:
        await _in_thread(db, lambda session: store.drop_placeholder(session, inp.workflow_id))
        if isinstance(exc, WorkflowAlreadyStartedError):
            raise Conflict(f"this request is already pending as {inp.workflow_id}") from exc
        raise
    await _audited(db, principal, "mentorship.request", inp.workflow_id, {"mentor": mentor})
    return inp


async def _in_thread(db: Database, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one session on a worker thread (store work stays off the event loop).

    The transaction ends before the caller awaits anything else.
    """

    def run() -> T:
        with db.session() as session:
            return work(session)

    return await asyncio.to_thread(run)


async def _audited(
    db: Database, principal: Principal, action: str, target: str, after: Any
) -> None:
    """Record an action in the audit log, off the event loop."""

    def work(session: Session) -> None:
        _audit(session, principal, action, target, after)

    await _in_thread(db, work)


def _audit(session: Session, principal: Principal, action: str, target: str, after: Any) -> None:
    audit.record(
        session,
        actor=principal.actor,
        actor_role=principal.role.value,
        action=action,
        target=target,
        after=after,
    )


def _load(session: Session, principal: Principal, workflow_id: str) -> Mentorship:
    """The relationship's read model, if the caller may see it (404 otherwise)."""
    row = store.relationship(session, workflow_id)
    if row is None:
        raise NotFound()
    scope = _visible(session, principal)
    if scope is not None and not {row.mentee_id, row.mentor_id} & scope:
        raise NotFound()
    return row


@dataclass(frozen=True)
class _Parties:
    mentee: str
    mentor: str
    mentee_id: int
    mentor_id: int
    row_id: int


def _parties(db: Database, principal: Principal, workflow_id: str) -> _Parties:
    with db.session() as session:
        row = _load(session, principal, workflow_id)
        return _Parties(
            row.mentee.external_id, row.mentor.external_id, row.mentee_id, row.mentor_id, row.id
        )


def _require_party(principal: Principal, parties: _Parties, *sides: Side) -> str:
    """The caller's person id when they are one of ``sides`` (HR may act for anyone)."""
    allowed = {"mentee": parties.mentee, "mentor": parties.mentor}
    me = principal.person_external_id
    if principal.role is Role.HR_ADMIN:
        return me or principal.actor
    if me is None or me not in {allowed[side] for side in sides}:
        names = " or ".join(f"the {side}" for side in sides)
        raise Forbidden(f"only {names} (or HR) may do this")
    return me


async def _update(client: Client, workflow_id: str, update: Any, arg: Any) -> MentorshipState:
    handle = client.get_workflow_handle(workflow_id)
    try:
        state: MentorshipState = await handle.execute_update(update, arg)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise Conflict(message) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("the mentorship has ended") from exc
        raise
    return state


async def accept(
    db: Database, connect: Connect, *, principal: Principal, workflow_id: str
) -> MentorshipState:
    """The mentor (or HR) accepts; a slot is claimed atomically.

    Raises:
        Conflict: Not pending, or the mentor has no free slot (the reason says which).
    """
    parties = await asyncio.to_thread(_parties, db, principal, workflow_id)
    by = _require_party(principal, parties, "mentor")
    client = await connect()
    state = await _update(client, workflow_id, MentorshipWorkflow.accept, AcceptRequest(by=by))
    # The pack's mentorship requirements were completed while the workflow recorded the
    # acceptance (activities.mentorship_requirements), before the update answered.
    await _audited(db, principal, "mentorship.accept", workflow_id, {"status": state.status})
    return state


async def decline(
    db: Database, connect: Connect, *, principal: Principal, workflow_id: str, reason: str | None
) -> MentorshipState:
    """The mentor (or HR) declines, optionally with a reason for the mentee."""
    parties = await asyncio.to_thread(_parties, db, principal, workflow_id)
    by = _require_party(principal, parties, "mentor")
    state = await _update(
        await connect(),
        workflow_id,
        MentorshipWorkflow.decline,
        DeclineRequest(by=by, reason=reason),
    )
    await _audited(db, principal, "mentorship.decline", workflow_id, {"reason": reason})
    return state


async def log_session(
    db: Database, connect: Connect, *, principal: Principal, workflow_id: str, log: dict[str, Any]
) -> MentorshipState:
    """Either side logs a session (the cadence restarts); its notes are kept for its author.

    Raises:
        Invalid: The session does not validate.
        Conflict: Not active, or the workflow refused it (a date in the future...).
    """
    parties = await asyncio.to_thread(_parties, db, principal, workflow_id)
    by = _require_party(principal, parties, "mentee", "mentor")
    try:
        entry = SessionLog.model_validate({**log, "by": by})
    except ValueError as exc:
        raise Invalid(f"the session is invalid: {exc}") from exc
    state = await _update(await connect(), workflow_id, MentorshipWorkflow.log_session, entry)

    def record(session: Session) -> None:
        author = store.person(session, by)
        session.add(
            MentorshipSession(
                mentorship_id=parties.row_id,
                author_id=author.id if author is not None else None,
                held_on=entry.held_on,
                duration_minutes=entry.duration_minutes,
                details=entry.model_dump(
                    mode="json", exclude={"by", "notes", "held_on", "duration_minutes"}
                ),
                notes=entry.notes,
            )
        )
        _audit(
            session,
            principal,
            "mentorship.session",
            workflow_id,
            {"held_on": entry.held_on.isoformat()},
        )

    await _in_thread(db, record)
    return state


async def feedback(
    db: Database, connect: Connect, *, principal: Principal, workflow_id: str, body: dict[str, Any]
) -> MentorshipState:
    """The mentee or the mentor gives midpoint or end feedback (once per phase each)."""
    parties = await asyncio.to_thread(_parties, db, principal, workflow_id)
    me = principal.person_external_id
    if me not in (parties.mentee, parties.mentor):
        raise Forbidden("only the mentee or the mentor gives feedback on their mentorship")
    try:
        request = FeedbackRequest.model_validate({**body, "by": me})
    except ValueError as exc:
        raise Invalid(f"the feedback is invalid: {exc}") from exc
    state = await _update(await connect(), workflow_id, MentorshipWorkflow.feedback, request)
    side = "mentee" if me == parties.mentee else "mentor"

    def record(session: Session) -> None:
        session.add(
            MentorshipFeedback(
                mentorship_id=parties.row_id,
                author_id=parties.mentee_id if side == "mentee" else parties.mentor_id,
                side=side,
                phase=request.phase.value,
                rating=request.rating,
                comment=request.comment,
            )
        )

    try:
        await _in_thread(db, record)
    except IntegrityError as exc:  # the workflow refuses a second one first; belt and braces
        raise Conflict(f"the {side} already gave {request.phase.value} feedback") from exc
    return state


async def complete(
    db: Database,
    connect: Connect,
    *,
    principal: Principal,
    workflow_id: str,
    note: str | None,
) -> MentorshipState:
    """Complete the relationship (either side or HR); the mentor's record counts it.

    Completed before its planned end date, the pack requirements it satisfied re-open when
    the workflow records the end (:mod:`activities.mentorship_requirements`), as for every
    other way a relationship ends.
    """
    parties = await asyncio.to_thread(_parties, db, principal, workflow_id)
    by = _require_party(principal, parties, "mentee", "mentor")
    client = await connect()
    state = await _update(
        client, workflow_id, MentorshipWorkflow.complete, CompleteMentorship(by=by, note=note)
    )
    await _audited(db, principal, "mentorship.complete", workflow_id, {"note": note})
    return state


async def cancel(
    db: Database,
    connect: Connect,
    *,
    principal: Principal,
    workflow_id: str,
    reason: str,
) -> MentorshipState:
    """Cancel a pending or active relationship with a reason (either side or HR).

    An active one's satisfied pack requirements re-open when the workflow records the end
    (:mod:`activities.mentorship_requirements`).
    """
    parties = await asyncio.to_thread(_parties, db, principal, workflow_id)
    by = _require_party(principal, parties, "mentee", "mentor")
    client = await connect()
    state = await _update(
        client, workflow_id, MentorshipWorkflow.cancel, CancelMentorship(by=by, reason=reason)
    )
    await _audited(db, principal, "mentorship.cancel", workflow_id, {"reason": reason})
    return state


# --- reading ----------------------------------------------------------------------------------


def read_row(row: Mentorship) -> dict[str, Any]:
    """A relationship's read model as plain data."""
    return {
        "id": row.workflow_id,
        "mentee": row.mentee.external_id,
        "mentor": row.mentor.external_id,
        "status": row.status,
        "type": row.type,
        "goals": list(row.goals or []),
        "milestones": list(row.milestones or []),
        "duration_months": row.duration_months,
        "requested_at": row.requested_at,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "reason": row.reason,
    }


def list_visible(session: Session, *, principal: Principal, mine: bool) -> list[dict[str, Any]]:
    """Relationships the caller sees: their own (``mine``), or also their reports' / all."""
    query = select(Mentorship).order_by(Mentorship.requested_at.desc(), Mentorship.id)
    if mine:
        if principal.person_id is None:
            return []
        scope: set[int] | None = {principal.person_id}
    else:
        scope = _visible(session, principal)
    if scope is not None:
        query = query.where(or_(Mentorship.mentee_id.in_(scope), Mentorship.mentor_id.in_(scope)))
    return [read_row(row) for row in session.scalars(query).unique()]


async def read(
    db: Database, connect: Connect, *, principal: Principal, workflow_id: str
) -> dict[str, Any]:
    """One relationship: its read model, the workflow's live state and timeline, its sessions.

    Session notes are shown to their author and HR only.
    """

    def load(session: Session) -> dict[str, Any]:
        row = _load(session, principal, workflow_id)
        body = read_row(row)
        sessions = []
        for entry in session.scalars(
            select(MentorshipSession)
            .where(MentorshipSession.mentorship_id == row.id)
            .order_by(MentorshipSession.held_on, MentorshipSession.id)
        ):
            visible = principal.role is Role.HR_ADMIN or (
                entry.author_id is not None and entry.author_id == principal.person_id
            )
            sessions.append(
                {
                    "held_on": entry.held_on,
                    "duration_minutes": entry.duration_minutes,
                    **entry.details,
                    "notes": entry.notes if visible else None,
                }
            )
        body["sessions"] = sessions
        body["requirements"] = [
            {
                "obligation": f.obligation_workflow_id,
                "requirement": f.requirement_id,
                "fulfilled_at": f.fulfilled_at,
                "reopened_as": f.reopened_as,
                "reopened_at": f.reopened_at,
                "reason": f.reopened_reason,
            }
            for f in store.fulfilments(session, row.id)
        ]
        return body

    body = await _in_thread(db, load)
    client = await connect()
    try:
        handle = client.get_workflow_handle(workflow_id)
        state = await asyncio.wait_for(handle.query(MentorshipWorkflow.state), QUERY_TIMEOUT)
    except (RPCError, TimeoutError):
        state = None
    except Exception:  # noqa: BLE001 - a failed query (no worker yet) falls back to the store
        state = None
    if state is not None:
        # The workflow is the truth; the read model may be a moment behind it.
        body.update(
            status=state.status.value,
            reason=state.reason,
            started_at=state.started_at,
            ended_at=state.ended_at,
            expires_at=state.expires_at,
            ends_at=state.ends_at,
            next_session_due=state.next_session_due,
            feedback=state.feedback,
            next_matches=state.next_matches,
            timeline=[e.model_dump(mode="json") for e in state.events],
        )
    return body


# --- CSV import (HR) --------------------------------------------------------------------------

#: Columns holding lists (``;``-separated in a cell).
LIST_COLUMNS = frozenset(
    {
        "specializations",
        "equipment_expertise",
        "communication_preferences",
        "preferred_times",
        "specialization_interests",
        "skills_to_develop",
    }
)
#: Columns holding yes/no.
BOOL_COLUMNS = frozenset({"accepting_mentees", "willing_remote", "open_to_remote"})
_YES, _NO = {"yes", "y", "true", "1"}, {"no", "n", "false", "0"}


@dataclass(frozen=True)
class RowProblem:
    """Why one CSV row was not imported (the header is row 1)."""

    row: int
    column: str | None
    message: str


@dataclass(frozen=True)
class ProfileImport:
    """What a profile import wrote and refused."""

    written: int
    errors: list[RowProblem]


def _cells(raw: dict[str, str | None], row: int) -> tuple[dict[str, Any], list[RowProblem]]:
    data: dict[str, Any] = {}
    problems: list[RowProblem] = []
    availability: dict[str, Any] = {}
    for column, value in raw.items():
        text = (value or "").strip()
        if not column or not text:
            continue  # an empty cell keeps the default
        column = column.strip().lower()
        if column in BOOL_COLUMNS:
            if text.lower() not in _YES | _NO:
                problems.append(RowProblem(row, column, f"{text!r} is not yes or no"))
                continue
            data[column] = text.lower() in _YES
        elif column in LIST_COLUMNS:
            items = [part.strip() for part in text.split(";") if part.strip()]
            (availability if column == "preferred_times" else data)[column] = items
        elif column == "hours_per_month":
            availability[column] = text
        else:
            data[column] = text
    if availability:
        data["availability"] = availability
    return data, problems


def import_profiles(
    session: Session, *, principal: Principal, side: Side, text: str
) -> ProfileImport:
    """Create or replace profiles from CSV: one row per person (column ``person``).

    Lists are ``;``-separated (``video;phone``); yes/no columns take yes/no; ``hours_per_month``
    and ``preferred_times`` make the availability; an empty cell keeps the default. A bad row is
    reported (row, column, what to fix) and every other row is written.

    Raises:
        Invalid: The file has no ``person`` column.
    """
    import csv
    import io

    from pydantic import ValidationError

    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "person" not in [f.strip().lower() for f in reader.fieldnames]:
        raise Invalid("the CSV needs a header row with a `person` column (the person's id)")
    written, errors = 0, []
    model = MentorProfile if side == "mentor" else MenteeProfile
    for index, raw in enumerate(reader, start=2):
        data, problems = _cells(dict(raw), index)
        person = str(data.pop("person", "") or "")
        if problems:
            errors += problems
            continue
        who = store.person(session, person) if person else None
        if who is None:
            errors.append(RowProblem(index, "person", f"{person!r} is not in the directory"))
            continue
        try:
            profile = model.model_validate(
                {k: v for k, v in data.items() if k not in store.COMPUTED} | {"person_id": person}
            )
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(part) for part in error["loc"]) or None
                errors.append(RowProblem(index, where, error["msg"]))
            continue
        if isinstance(profile, MentorProfile):
            profiles.save_mentor(session, who, profile)
        else:
            profiles.save_mentee(session, who, profile)
        written += 1
    _audit(
        session,
        principal,
        f"mentorship.import.{side}",
        f"{written} profiles",
        {"written": written, "errors": len(errors)},
    )
    return ProfileImport(written, errors)
