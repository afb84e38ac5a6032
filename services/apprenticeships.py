"""Apprenticeships: programs, enrolment, hours, reviews, evaluations, HR actions; read them.

Keyword-only functions over ``ApprenticeshipWorkflow`` (typed updates and queries) and the
store; the API router and the CLI map their :mod:`services.errors` to HTTP or exit codes.

Who sees what: the apprentice their own; the supervisor the apprentices they supervise;
a manager their reports' (transitively); HR and the auditor all. Who acts: the apprentice logs
their own hours; the supervisor (or HR) reviews hours and evaluates; HR enrols, suspends,
reinstates, withdraws and transfers the supervisor.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.assigning import utc_offset_minutes
from activities.packs import active_pack, load_version
from domain import EmploymentStatus, Role
from domain.contracts.apprenticeship import (
    ApprenticeshipInput,
    ApprenticeshipState,
    AwardRequest,
    Carried,
    ChangeEnrolment,
    EnrolmentAction,
    LogHours,
    ReviewHours,
    SubmitEvaluation,
    TransferSupervisor,
    apprenticeship_workflow_id,
)
from rules.apprenticeship import (
    EntryStatus,
    Evaluation,
    HoursEntry,
    add_years,
    lms_auto_approved,
    lms_classroom_entry,
)
from rules.apprenticeship_model import Program
from rules.model import Pack
from rules.obligation_facts import local_today
from services import certifications
from services.certifications import AlreadyRegistered, reports_of
from services.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from store import audit
from store.apprenticeships import Apprenticeship, ApprenticeshipHours
from store.db import Database, committed
from store.models import Person
from store.tokens import Principal
from workflows.apprenticeship import ApprenticeshipWorkflow

QUERY_TIMEOUT = 5.0
#: The ``as_of`` of the row enrolment writes: older than any workflow update.
ENROLLED_AS_OF = datetime(2000, 1, 1, tzinfo=UTC)
#: The principal graduation registers awards as (the audit log names it).
GRADUATION = Principal(
    token_id=0,
    role=Role.HR_ADMIN,
    person_id=None,
    person_external_id=None,
    label="apprenticeship-graduation",
)


# -- programs ----------------------------------------------------------------------------


def programs(session: Session) -> list[Program]:
    """The programs of the active rules pack (empty without one)."""
    pack = active_pack(session)
    return list(pack.programs) if pack is not None else []


def program(session: Session, *, program_id: str) -> Program:
    """One program of the active pack.

    Raises:
        NotFound: No such program.
    """
    found = next((p for p in programs(session) if p.id == program_id), None)
    if found is None:
        known = ", ".join(p.id for p in programs(session)) or "(none)"
        raise NotFound(f"no program {program_id!r} in the active rules pack; programs: {known}")
    return found


# -- access ------------------------------------------------------------------------------


def _person(session: Session, external_id: str, what: str) -> Person:
    person = session.scalar(select(Person).where(Person.external_id == external_id))
    if person is None:
        raise Invalid(
            f"{what} {external_id!r} is not in the directory; import them first", field=what
        )
    return person


def visible(session: Session, principal: Principal) -> Select[Apprenticeship]:
    """The ``select`` of the apprenticeships ``principal`` may read."""
    stmt = select(Apprenticeship)
    if principal.role in (Role.HR_ADMIN, Role.AUDITOR):
        return stmt
    me = principal.person_external_id
    if principal.role is Role.MANAGER and me is not None:
        team = reports_of(session, manager=me) | {principal.person_id or -1}
        return stmt.where(or_(Apprenticeship.person_id.in_(team), Apprenticeship.supervisor == me))
    if principal.role is Role.LEARNER and me is not None:
        return stmt.where(
            or_(Apprenticeship.person_id == principal.person_id, Apprenticeship.supervisor == me)
        )
    return stmt.where(Apprenticeship.id < 0)


def list_apprenticeships(
    session: Session, *, principal: Principal, status: str | None = None
) -> list[Apprenticeship]:
    """The apprenticeships ``principal`` may read (see the module docstring)."""
    stmt = visible(session, principal)
    if status:
        stmt = stmt.where(Apprenticeship.status == status)
    return list(session.scalars(stmt.order_by(Apprenticeship.workflow_id)).unique())


def readable(session: Session, *, principal: Principal, workflow_id: str) -> Apprenticeship:
    """One apprenticeship ``principal`` may read.

    Raises:
        NotFound: None, or not visible to them.
    """
    row = session.scalar(
        visible(session, principal).where(Apprenticeship.workflow_id == workflow_id)
    )
    if row is None:
        raise NotFound(f"no apprenticeship {workflow_id!r} you can see")
    return row


def mine(session: Session, *, principal: Principal) -> list[Apprenticeship]:
    """The caller's own apprenticeships (as the apprentice)."""
    if principal.person_id is None:
        return []  # a token not bound to a person (HR's service token) has none
    return list(
        session.scalars(
            select(Apprenticeship)
            .where(Apprenticeship.person_id == principal.person_id)
            .order_by(Apprenticeship.workflow_id)
        ).unique()
    )


def _supervises(principal: Principal, row: Apprenticeship) -> None:
    if principal.role is Role.HR_ADMIN:
        return
    if principal.person_external_id is None or principal.person_external_id != row.supervisor:
        raise Forbidden("only the apprenticeship's supervisor (or HR) may do this")


def entries(session: Session, *, workflow_id: str) -> list[ApprenticeshipHours]:
    """Every hours entry of an apprenticeship, as recorded (the whole record)."""
    return list(
        session.scalars(
            select(ApprenticeshipHours)
            .where(ApprenticeshipHours.workflow_id == workflow_id)
            .order_by(ApprenticeshipHours.day, ApprenticeshipHours.id)
        )
    )


# -- workflow calls ------------------------------------------------------------------------


async def state(client: Client, *, workflow_id: str) -> ApprenticeshipState:
    """The live state.

    Raises:
        NotFound: No such workflow.
        Unavailable: It did not answer (no worker?).
    """
    handle = client.get_workflow_handle(workflow_id)
    try:
        return await asyncio.wait_for(handle.query(ApprenticeshipWorkflow.state), QUERY_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"no apprenticeship {workflow_id!r}") from exc
        raise Unavailable("the apprenticeship workflow did not answer; try again") from exc
    except TimeoutError as exc:
        raise Unavailable("the apprenticeship workflow did not answer; try again") from exc


async def _update(client: Client, workflow_id: str, update: Any, arg: Any) -> ApprenticeshipState:
    handle = client.get_workflow_handle(workflow_id)
    try:
        result: ApprenticeshipState = await handle.execute_update(update, arg)
        return result
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise Invalid(message) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict(f"the apprenticeship {workflow_id!r} is not running") from exc
        raise


def _audit(session: Session, principal: Principal, action: str, target: str, after: Any) -> None:
    audit.record(
        session,
        actor=principal.actor,
        actor_role=principal.role.value,
        action=action,
        target=target,
        after=after,
    )


async def _audited(
    session: Session, principal: Principal, action: str, target: str, request: BaseModel
) -> None:
    """:func:`_audit` in a worker thread, committed at once (the audit lock is released)."""
    after = request.model_dump(mode="json")
    await committed(session, lambda: _audit(session, principal, action, target, after))


def _supervised(session: Session, principal: Principal, workflow_id: str) -> Apprenticeship:
    """The apprenticeship, when ``principal`` supervises it (or is HR); blocking."""
    row = readable(session, principal=principal, workflow_id=workflow_id)
    _supervises(principal, row)
    return row


async def enroll(
    session: Session,
    client: Client,
    *,
    task_queue: str,
    person: str,
    program_id: str,
    supervisor: str,
    enrolled_on: date | None,
    principal: Principal,
    pack_hash: str | None = None,
    carried: Carried | None = None,
) -> ApprenticeshipInput:
    """Enrol a person in a program of the active pack (HR); starts its workflow.

    ``pack_hash`` enrols against another stored pack version instead (the demo: the
    field-technicians pack carries the program while another pack is active). ``carried``
    starts from a recorded summary (an apprentice transferring in with approved hours and
    skills signed off elsewhere; the demo's apprentices at different stages).

    Raises:
        Invalid: Unknown person, supervisor or program; a future date; self-supervision.
        Conflict: The person has left, or is already enrolled in the program.
    """
    # Database sections run in a worker thread, each committed before the next await on
    # Temporal (store.db.committed): the event loop never blocks, no lock spans an await.
    apprentice, pack, inp = await committed(
        session,
        lambda: _enrolment(
            session,
            person=person,
            program_id=program_id,
            supervisor=supervisor,
            enrolled_on=enrolled_on,
            principal=principal,
            pack_hash=pack_hash,
            carried=carried,
        ),
    )
    try:
        await client.start_workflow(
            ApprenticeshipWorkflow.run,
            inp,
            id=inp.workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError as exc:
        raise Conflict(f"{person!r} is already enrolled in {program_id!r}", field="person") from exc

    def record() -> None:
        _placeholder(session, inp, apprentice, pack.program(program_id))
        _audit(
            session,
            principal,
            "apprenticeship.enroll",
            inp.workflow_id,
            inp.model_dump(mode="json"),
        )

    await committed(session, record)
    return inp


def _enrolment(
    session: Session,
    *,
    person: str,
    program_id: str,
    supervisor: str,
    enrolled_on: date | None,
    principal: Principal,
    pack_hash: str | None,
    carried: Carried | None,
) -> tuple[Person, Pack, ApprenticeshipInput]:
    """Check an enrolment against the directory and the pack (blocking; see :func:`enroll`)."""
    apprentice = _person(session, person, "person")
    if apprentice.employment_status == EmploymentStatus.TERMINATED:
        raise Conflict(f"person {person!r} has left (employment_status=terminated)", field="person")
    _person(session, supervisor, "supervisor")
    if supervisor == person:
        raise Invalid(
            "an apprentice cannot supervise themselves; name a journeyworker", field="supervisor"
        )
    pack = load_version(session, pack_hash) if pack_hash else active_pack(session)
    if pack is None or pack.program(program_id) is None:
        known = ", ".join(p.id for p in (pack.programs if pack else [])) or "(none)"
        raise Invalid(
            f"program {program_id!r} is not in the active rules pack; programs: {known}"
            " (see GET /apprenticeship/programs)",
            field="program_id",
        )
    today = local_today(apprentice.time_zone)
    day = enrolled_on or today
    if day > today:
        raise Invalid(
            f"enrolled_on {day.isoformat()} is in the future (today is {today})",
            field="enrolled_on",
        )
    inp = ApprenticeshipInput(
        person=person,
        program_id=program_id,
        pack_hash=pack.content_hash,
        supervisor=supervisor,
        enrolled_on=day,
        utc_offset_minutes=utc_offset_minutes(apprentice.time_zone, day),
        enrolled_by=principal.actor,
        carried=carried,
    )
    return apprentice, pack, inp


def _placeholder(
    session: Session, inp: ApprenticeshipInput, person: Person, found: Program | None
) -> None:
    """The read-model row right away, so the apprentice can log at once.

    The workflow's first record overwrites it (its ``as_of`` is older than any workflow time).
    """
    assert found is not None  # checked by the caller
    if session.scalar(
        select(Apprenticeship.id).where(Apprenticeship.workflow_id == inp.workflow_id)
    ):
        return
    row = Apprenticeship(
        workflow_id=inp.workflow_id,
        person_id=person.id,
        program_id=found.id,
        program_name=found.name,
        pack_hash=inp.pack_hash,
        supervisor=inp.supervisor,
        status="active",
        compliance_status="on_track",
        decided_by="enrolled",
        period=1,
        wage_percentage=found.periods[0].wage_percentage,
        enrolled_on=inp.enrolled_on,
        expected_completion=add_years(inp.enrolled_on, found.duration_years),
        work_approved=0.0,
        classroom_approved=0.0,
        summary={},
        as_of=ENROLLED_AS_OF,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        pass  # the workflow recorded itself first


async def log_hours(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    entry: HoursEntry,
    principal: Principal,
    source: str = "api",
    corrects: str | None = None,
    reason: str | None = None,
) -> ApprenticeshipState:
    """Log hours on an apprenticeship (the apprentice their own; HR and imports any).

    Raises:
        Invalid: The entry is refused; the message says every reason (nothing recorded).
    """

    def check() -> None:
        row = readable(session, principal=principal, workflow_id=workflow_id)
        if principal.role is not Role.HR_ADMIN and principal.person_id != row.person_id:
            raise Forbidden("apprentices log their own hours")

    await committed(session, check)
    request = LogHours(
        entry=entry, actor=principal.actor, source=source, corrects=corrects, reason=reason
    )
    result = await _update(client, workflow_id, ApprenticeshipWorkflow.log_hours, request)
    await _audited(session, principal, "apprenticeship.log_hours", workflow_id, request)
    return result


async def review_hours(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    entry_id: str,
    approve: bool,
    reason: str | None,
    principal: Principal,
) -> ApprenticeshipState:
    """The supervisor (or HR) approves or rejects an entry."""
    await committed(session, lambda: _supervised(session, principal, workflow_id))
    request = ReviewHours(entry_id=entry_id, approve=approve, actor=principal.actor, reason=reason)
    result = await _update(client, workflow_id, ApprenticeshipWorkflow.review_hours, request)
    action = "approve" if approve else "reject"
    await _audited(session, principal, f"apprenticeship.{action}_hours", workflow_id, request)
    return result


async def evaluate(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    evaluation_id: str,
    evaluation: Evaluation,
    notes: str,
    principal: Principal,
) -> ApprenticeshipState:
    """The supervisor (or HR) records an evaluation."""
    await committed(session, lambda: _supervised(session, principal, workflow_id))
    request = SubmitEvaluation(
        evaluation_id=evaluation_id, evaluation=evaluation, notes=notes, actor=principal.actor
    )
    result = await _update(client, workflow_id, ApprenticeshipWorkflow.evaluate, request)
    await _audited(session, principal, "apprenticeship.evaluate", workflow_id, request)
    return result


async def change(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    action: EnrolmentAction,
    reason: str,
    principal: Principal,
) -> ApprenticeshipState:
    """HR suspends, reinstates or withdraws an apprenticeship."""
    await committed(
        session, lambda: readable(session, principal=principal, workflow_id=workflow_id)
    )
    request = ChangeEnrolment(action=action, actor=principal.actor, reason=reason)
    result = await _update(client, workflow_id, ApprenticeshipWorkflow.change_enrolment, request)
    await _audited(session, principal, f"apprenticeship.{action.value}", workflow_id, request)
    return result


async def transfer(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    supervisor: str,
    reason: str,
    principal: Principal,
) -> ApprenticeshipState:
    """HR hands the apprentice to another supervising journeyworker."""

    def check() -> None:
        readable(session, principal=principal, workflow_id=workflow_id)
        _person(session, supervisor, "supervisor")

    await committed(session, check)
    request = TransferSupervisor(supervisor=supervisor, actor=principal.actor, reason=reason)
    try:
        result = await _update(
            client, workflow_id, ApprenticeshipWorkflow.transfer_supervisor, request
        )
    except Invalid as exc:
        # The workflow's refusals (self-supervision, the same supervisor) are the supervisor's.
        raise Invalid(exc.detail, field="supervisor") from exc
    await _audited(session, principal, "apprenticeship.transfer", workflow_id, request)
    return result


# -- classroom hours from the LMS (xAPI) -----------------------------------------------------

#: The source an LMS entry is recorded with (``apprenticeship_hours.source``).
LMS_SOURCE = "xapi"


class LmsHours(BaseModel):
    """What one xAPI statement did to an apprenticeship."""

    workflow_id: str
    entry_id: str
    hours: float
    approved: bool


def _lms_course_of(
    session: Session, person_id: int, activity_id: str
) -> tuple[Apprenticeship, Program, str] | None:
    """The person's apprenticeship whose pinned program lists the activity (blocking).

    Active enrolments first; a suspended or ended one is still matched, so the statement is
    refused with the apprenticeship's own reason rather than as an unknown activity.
    """
    person = session.get(Person, person_id)
    if person is None:
        return None
    rows = session.scalars(
        select(Apprenticeship)
        .where(Apprenticeship.person_id == person_id)
        .order_by(Apprenticeship.status != "active", Apprenticeship.id)
    )
    for row in rows:
        pack = load_version(session, row.pack_hash)
        program = pack.program(row.program_id) if pack is not None else None
        if program is not None and program.lms_course(activity_id) is not None:
            return row, program, person.time_zone
    return None


async def lms_classroom_hours(
    session: Session,
    client: Client,
    *,
    person_id: int,
    activity_id: str,
    statement_key: str,
    at: datetime,
    duration: str | None,
    actor: str,
    actor_role: str,
) -> LmsHours | None:
    """Record an xAPI statement as classroom hours, when it is for a course of the person's program.

    The courses are ``classroom_from_lms`` of the pack the apprenticeship is pinned to. The
    entry id is ``xapi-{statement_key}`` (the statement id): the same statement again is the
    same entry (idempotent). The hours are the course's, or the statement's duration; the day
    is the apprentice's local date at ``at``. They wait for the supervisor, or are approved at
    once when the program says ``approval: auto``. Audited like hours from the API, as
    ``actor`` (the integration that handed the statement in) with ``actor_role``.

    Returns:
        What was recorded, or None when no program of the person lists the activity.

    Raises:
        Invalid: The statement cannot be hours (no duration, too many hours in the day, a future
            day, a suspended or withdrawn apprenticeship...): the message says why.
        Conflict: The apprenticeship is no longer running.
    """
    found = await committed(session, lambda: _lms_course_of(session, person_id, activity_id))
    if found is None:
        return None
    row, program, zone = found
    try:
        entry = lms_classroom_entry(
            program,
            activity_id=activity_id,
            entry_id=f"xapi-{statement_key}"[:100],
            day=local_today(zone, at),
            duration=duration,
        )
    except ValueError as exc:
        raise Invalid(str(exc)) from exc
    assert entry is not None  # the course is listed (found above)
    request = LogHours(entry=entry, actor=actor, source=LMS_SOURCE)
    await _update(client, row.workflow_id, ApprenticeshipWorkflow.log_hours, request)

    def audited(action: str, what: BaseModel) -> None:
        after = what.model_dump(mode="json")
        audit.record(
            session,
            actor=actor,
            actor_role=actor_role,
            action=action,
            target=row.workflow_id,
            after=after,
        )

    await committed(session, lambda: audited("apprenticeship.log_hours", request))
    approved = lms_auto_approved(program)
    if approved:
        review = ReviewHours(entry_id=entry.id, approve=True, actor=actor)
        try:
            await _update(client, row.workflow_id, ApprenticeshipWorkflow.review_hours, review)
        except Invalid:
            # Approved by an earlier delivery of this statement: nothing to do again.
            live = await state(client, workflow_id=row.workflow_id)
            if not any(e.id == entry.id and e.status is EntryStatus.APPROVED for e in live.entries):
                raise
        else:
            await committed(session, lambda: audited("apprenticeship.approve_hours", review))
    return LmsHours(
        workflow_id=row.workflow_id, entry_id=entry.id, hours=entry.hours, approved=approved
    )


async def void_classroom_hours(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    entry_id: str,
    reason: str,
    actor: str,
    actor_role: str,
) -> str:
    """Withdraw the classroom entry a voided xAPI statement made (a rejection with ``reason``).

    A pending entry is rejected; an approved one is withdrawn too (its hours stop counting, the
    timeline says ``hours_withdrawn``), as long as the workflow still holds it one by one. A
    rejected one is left as it is. Audited as ``apprenticeship.reject_hours`` like a
    supervisor's rejection.

    Returns:
        The entry's status before: ``pending``, ``approved`` or ``rejected``.

    Raises:
        Invalid: The workflow no longer holds the entry one by one (approved hours folded into
            an earlier period's summary): it cannot be withdrawn automatically.
        Conflict: The apprenticeship is no longer running.
    """
    live = await state(client, workflow_id=workflow_id)
    entry = next((e for e in live.entries if e.id == entry_id), None)
    if entry is None:
        raise Invalid(
            f"entry {entry_id} was already counted in an earlier period's summary (its period"
            " advanced); correct the hours by hand"
        )
    if entry.status is EntryStatus.REJECTED:
        return entry.status.value
    request = ReviewHours(
        entry_id=entry_id, approve=False, actor=actor, reason=reason, withdraw=True
    )
    await _update(client, workflow_id, ApprenticeshipWorkflow.review_hours, request)
    after = {**request.model_dump(mode="json"), "was": entry.status.value}
    await committed(
        session,
        lambda: audit.record(
            session,
            actor=actor,
            actor_role=actor_role,
            action="apprenticeship.reject_hours",
            target=workflow_id,
            after=after,
        ),
    )
    return entry.status.value


def workflow_id_of(person: str, program_id: str) -> str:
    """The apprenticeship's id (``apprenticeship/{person}/{program}``)."""
    return apprenticeship_workflow_id(person, program_id)


# -- graduation ----------------------------------------------------------------------------


def award_registrar(db: Database, client: Client) -> Any:
    """The function the graduation activity calls: register awards through the service."""

    async def register_awards(request: AwardRequest, task_queue: str) -> list[str]:
        lines: list[str] = []
        for certification_id in request.certification_ids:
            with db.session() as session:
                person = _person(session, request.person, "person")
                pack = load_version(session, request.pack_hash)
                if pack is None or pack.requirement(certification_id) is None:
                    lines.append(f"{certification_id}: not in the pinned pack, not registered")
                    continue
                try:
                    inp = await certifications.register(
                        session,
                        client,
                        task_queue=task_queue,
                        person=person,
                        certification_id=certification_id,
                        issued_on=request.issued_on,
                        expires_on=None,
                        certificate_number=None,
                        issuer=None,
                        evidence_ref=request.workflow_id,
                        principal=GRADUATION,
                    )
                except AlreadyRegistered:
                    lines.append(f"{certification_id}: already registered")
                    continue
                except Invalid as error:
                    lines.append(f"{certification_id}: not registered ({error.detail})")
                    continue
                lines.append(f"{certification_id}: {inp.certificate.verification_code}")
        return lines

    return register_awards
