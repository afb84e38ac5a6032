"""Training assignments: start, read, complete and acknowledge ``AssignmentWorkflow`` runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from api.deps import (
    ClockDep,
    CurrentPrincipal,
    SessionDep,
    SettingsDep,
    TemporalDep,
    ensure_visible,
    out_of_range,
    require_roles,
    within,
)
from api.schemas import (
    Accepted,
    AcknowledgeRequest,
    AssignmentCreate,
    AssignmentRead,
    AssignmentRestart,
    CancelRequest,
    CompleteRequest,
    ExemptRequest,
    ExtendRequest,
    GrantAttemptsRequest,
    RestartRead,
    StartRequest,
    obligation_read,
)
from domain.bounds import OutOfRange
from domain.contracts.assignment import (
    AssignmentInput,
    AssignmentState,
    CancelSignal,
    CompleteSignal,
    ExemptSignal,
    ExtendDueDate,
    GrantAttempts,
    StartSignal,
)
from domain.contracts.obligation import AcknowledgeSignal
from domain.roles import Role
from services import assignments, obligations
from services.restarts import (
    InvalidField,
    RestartRefused,
    UnknownObligation,
    restart_assignment,
)
from store.db import committed, read_only
from store.models import Obligation, Person
from store.tokens import Principal

router = APIRouter(prefix="/assignments", tags=["assignments"])

QUERY_TIMEOUT = 5.0
ALREADY_ACKNOWLEDGED = "already acknowledged; nothing changed"

Assigner = Annotated[
    Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER, Role.INTEGRATION))
]
Completer = Annotated[
    Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER, Role.INTEGRATION))
]
Acknowledger = Annotated[
    Principal, Depends(require_roles(Role.LEARNER, Role.MANAGER, Role.HR_ADMIN))
]


async def _person_of(session: Session, principal: Principal, assignment_id: str) -> Person:
    """:func:`_visible_person` in a worker thread, committed (never on the event loop)."""
    return await committed(session, lambda: _visible_person(session, principal, assignment_id))


def _assignee(session: Session, principal: Principal, external_id: str) -> Person:
    """The person named in a request body, if the principal may see them (else 404)."""
    person = assignments.person(session, external_id=external_id)
    ensure_visible(session, principal, person.id)
    assignments.check_assignee(principal, person)
    return person


def _visible_person(session: Session, principal: Principal, assignment_id: str) -> Person:
    """Resolve the person an assignment id belongs to, enforcing row-level visibility."""
    person = assignments.person_of(session, assignment_id=assignment_id)
    ensure_visible(session, principal, person.id)
    return person


async def _read(
    session: Session,
    state: AssignmentState | None,
    workflow_id: str,
    fallback: AssignmentInput | None,
) -> AssignmentRead | None:
    """:func:`_read_now` in a worker thread, committed (never on the event loop)."""
    return await committed(session, lambda: _read_now(session, state, workflow_id, fallback))


def _read_now(
    session: Session,
    state: AssignmentState | None,
    workflow_id: str,
    fallback: AssignmentInput | None,
) -> AssignmentRead | None:
    return _answer(
        obligations.obligation(session, workflow_id=workflow_id), state, workflow_id, fallback
    )


def _answer(
    row: Obligation | None,
    state: AssignmentState | None,
    workflow_id: str,
    fallback: AssignmentInput | None,
) -> AssignmentRead | None:
    """The answer from the live ``state``, else the read-model ``row``, else ``fallback``."""
    read_model = obligation_read(row) if row is not None else None
    if state is not None:
        return AssignmentRead(
            id=workflow_id,
            person=state.person,
            requirement_id=state.requirement_id,
            requirement_title=state.requirement_title,
            cycle=state.cycle,
            due_date=state.due_date,
            status=state.status,
            stage=state.stage,
            live=True,
            stages=state.stages,
            stages_sent=state.stages_sent,
            next_stage=next(
                (
                    st
                    for st in state.stages
                    if st.label not in state.stages_sent
                    and st.fire_at > datetime.now(UTC)
                    and state.status not in ("cancelled", "not_applicable")
                ),
                None,
            )
            if state.completed_at is None
            else None,
            acknowledged_at=state.acknowledged_at,
            completed_at=state.completed_at,
            pack_hash=state.pack_hash,
            events=state.events,
            failed_attempts=state.failed_attempts,
            attempts_allowed=state.attempts_allowed,
            retake_opens_at=state.retake_opens_at,
            read_model=read_model,
        )
    if row is not None:
        assert row.due_date is not None
        return AssignmentRead(
            id=workflow_id,
            person=row.person.external_id,
            requirement_id=row.requirement_id,
            requirement_title=row.requirement_title,
            cycle=row.cycle,
            due_date=row.due_date,
            status=row.status,
            stage=row.stage,
            live=False,
            acknowledged_at=row.acknowledged_at,
            completed_at=row.completed_at,
            pack_hash=row.pack_hash,
            read_model=read_model,
        )
    if fallback is not None:
        return AssignmentRead(
            id=workflow_id,
            person=fallback.person,
            requirement_id=fallback.requirement_id,
            requirement_title=fallback.requirement_title,
            cycle=fallback.cycle,
            due_date=fallback.due_date,
            status="assigned",
            stage=None,
            live=False,
            pack_hash=fallback.pack_hash,
        )
    return None


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AssignmentRead,
    responses={200: {"description": "The assignment already existed; nothing new was started."}},
)
async def create_assignment(
    body: AssignmentCreate,
    response: Response,
    session: SessionDep,
    principal: Assigner,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> AssignmentRead:
    """Assign a training to a person.

    Idempotent: the workflow id is the business key ``assignment/{person}/{requirement}/{cycle}``.
    A new assignment answers **201**; the same assignment again answers **200** with the
    existing id and ``created: false`` and starts nothing.

    **422** names the field, the value and the allowed range when ``due_date`` is outside
    today − 5 years … today + 10 years (settings) or ``cycle`` outside 1 … 1000.
    """
    within(settings.due_date_window((await clock()).date()), "due_date", body.due_date)
    person = await committed(session, lambda: _assignee(session, principal, body.person))
    client = await temporal()
    done = await assignments.create(
        session,
        client,
        task_queue=settings.temporal_task_queue,
        person=person,
        title=body.requirement,
        due_date=body.due_date,
        requirement_id=body.requirement_id,
        cycle=body.cycle,
        principal=principal,
    )
    created, inp, state = done.created, done.inp, done.state
    if not created:
        response.status_code = status.HTTP_200_OK
    result = await _read(session, state, inp.workflow_id, inp)
    assert result is not None
    detail = None
    if not created and state is None:
        detail = await assignments.unanswered(client, workflow_id=inp.workflow_id)
        if detail is not None and result.read_model is None:
            detail += " (the fields of this answer are the request's)"
    return result.model_copy(update={"created": created, "detail": detail})


def _visible_read(
    session: Session, principal: Principal, assignment_id: str
) -> AssignmentRead | None:
    """Visibility check and read-model answer in one worker-thread trip."""
    return _answer(_visible_row(session, principal, assignment_id), None, assignment_id, None)


def _visible_row(session: Session, principal: Principal, assignment_id: str) -> Obligation | None:
    """The assignment's read-model row (``None`` before its first), enforcing visibility (404)."""
    row = obligations.obligation(session, workflow_id=assignment_id)
    parts = assignment_id.split("/")
    if (
        row is not None
        and len(parts) == 4
        and parts[0] == "assignment"
        and row.person.external_id == parts[1]
    ):
        # The row's person (joined in the same SELECT) is the one the id names: it answers
        # visibility, with no separate person lookup (no query at all for HR and auditors).
        ensure_visible(session, principal, row.person_id)
        return row
    # No row yet (or an id that does not name the row's person): the id's person decides
    # between 404 and asking the workflow, as before.
    _visible_person(session, principal, assignment_id)
    return row


@router.get("/{assignment_id:assignment_path}", response_model=AssignmentRead)
async def get_assignment(
    assignment_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,  # before Temporal: no token means 401, never a 503
    temporal: TemporalDep,
    live: Annotated[
        bool,
        Query(
            description="Ask the running workflow (its ladder, stages sent, next reminder, "
            "timeline): one Temporal query, tens of ms. Default: the read model answers "
            "(status, stage, dates; `live: false`) without calling Temporal."
        ),
    ] = False,
) -> AssignmentRead:
    """An assignment: from the read model, or from the running workflow with ``?live=true``.

    The default answer (``live: false``) is the read model the workflow writes at each change
    (what lists and dashboards show): one indexed read, no Temporal round trip. ``?live=true``
    queries the workflow for its ladder, stages sent, next reminder and timeline (``live:
    true``; the read model when the run does not answer). A run that has not written its
    first row yet is asked either way.
    """
    if not live:
        found = await read_only(session, lambda: _visible_read(session, principal, assignment_id))
        if found is not None:
            return found
    else:
        await _person_of(session, principal, assignment_id)
    # ?live=true, or a run that has not recorded its first read-model row yet: ask it.
    client = await temporal()
    state = await assignments.live_state(client, workflow_id=assignment_id)
    result = await _read(session, state, assignment_id, None)
    if result is None:
        # A run that never recorded anything and does not answer (e.g. stuck on its input).
        hint = await assignments.unanswered(client, workflow_id=assignment_id)
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=hint or "not found")
    return result


@router.post(
    "/{assignment_id:path}/complete",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
)
async def complete_assignment(
    assignment_id: str,
    body: CompleteRequest,
    session: SessionDep,
    principal: Completer,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> Accepted:
    """Record completion evidence (LMS, HR or the learner's manager).

    **422** when ``completed_at`` is in the future (beyond DULY_CLOCK_SKEW_SECONDS) or older
    than DULY_DUE_DATE_PAST_YEARS: a future completion would date the next cycle from it.
    """
    now = await clock()
    completed_at = within(settings.evidence_window(now), "completed_at", body.completed_at or now)
    person = await _person_of(session, principal, assignment_id)
    signal = CompleteSignal(
        completed_at=completed_at,
        source=body.source,
        actor=principal.actor,
        score=body.score,
        passed=body.passed,
        attempt_id=body.attempt_id,
        certificate_id=body.certificate_id,
        note=body.note,
        score_percent=_percent(body.score_percent, body.score),
    )
    await assignments.complete(
        session,
        await temporal(),
        workflow_id=assignment_id,
        person=person,
        completion=signal,
        principal=principal,
    )
    return Accepted(id=assignment_id, detail="completion recorded; GET shows the new status")


def _percent(score_percent: float | None, score: float | None) -> float | None:
    """The percentage a gate compares: ``score_percent``, else a ``score`` within 0..100."""
    if score_percent is not None:
        return score_percent
    if score is not None and 0 <= score <= 100:
        return score
    return None


@router.post(
    "/{assignment_id:path}/acknowledge",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
)
async def acknowledge_assignment(
    assignment_id: str,
    body: AcknowledgeRequest,
    session: SessionDep,
    principal: Acknowledger,
    temporal: TemporalDep,
) -> Accepted:
    """Acknowledge the reminders (the learner themself, their manager or HR).

    Idempotent: once the assignment has recorded an acknowledgement (or a completion) nothing
    is sent to the workflow again, so repeated calls add nothing to its history.
    """

    def _visible_and_recorded() -> bool:
        row = _visible_row(session, principal, assignment_id)
        # As store.obligations.acknowledgement_recorded decides, from the row already read.
        return row is not None and (row.acknowledged_at is not None or row.completed_at is not None)

    # Visibility and "already acknowledged?" in one worker-thread trip (reads only), and
    # before connecting to Temporal: a repeat is answered from the read model alone.
    if await read_only(session, _visible_and_recorded):
        return Accepted(id=assignment_id, detail=ALREADY_ACKNOWLEDGED)
    signal = AcknowledgeSignal(
        acknowledged_at=datetime.now(UTC), actor=principal.actor, channel=body.channel
    )
    sent = await assignments.acknowledge(
        session,
        await temporal(),
        workflow_id=assignment_id,
        acknowledgement=signal,
        principal=principal,
    )
    detail = "acknowledgement recorded" if sent else ALREADY_ACKNOWLEDGED
    return Accepted(id=assignment_id, detail=detail)


HrOrManager = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER))]
HrOnly = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN))]
Starter = Annotated[
    Principal, Depends(require_roles(Role.LEARNER, Role.HR_ADMIN, Role.INTEGRATION))
]


@router.post(
    "/{assignment_id:path}/start", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted
)
async def start_training(
    assignment_id: str,
    body: StartRequest,
    session: SessionDep,
    principal: Starter,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> Accepted:
    """Record that the learner began (their own assignment; or HR, or the LMS)."""
    now = await clock()
    started_at = within(settings.evidence_window(now), "started_at", body.started_at or now)
    await _person_of(session, principal, assignment_id)
    signal = StartSignal(started_at=started_at, actor=principal.actor, source=body.source)
    sent = await assignments.start_training(
        session, await temporal(), workflow_id=assignment_id, start=signal, principal=principal
    )
    detail = "start recorded" if sent else "already started; nothing changed"
    return Accepted(id=assignment_id, detail=detail)


@router.post("/{assignment_id:path}/extend", response_model=AssignmentRead)
async def extend_assignment(
    assignment_id: str,
    body: ExtendRequest,
    session: SessionDep,
    principal: HrOrManager,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> AssignmentRead:
    """Move the due date later (reason required; at most the pack's max extension).

    An update, not a signal: the answer is the re-planned assignment, or **422** with why the
    workflow refused (not later than now, beyond the maximum, already closed) or with the
    allowed range when ``new_due_date`` is outside the due-date window.
    """
    within(settings.due_date_window((await clock()).date()), "new_due_date", body.new_due_date)
    person = await _person_of(session, principal, assignment_id)
    update = ExtendDueDate(
        new_due_date=body.new_due_date, reason=body.reason, actor=principal.actor
    )
    state = await assignments.extend(
        session,
        await temporal(),
        workflow_id=assignment_id,
        person=person,
        update=update,
        principal=principal,
    )
    read = await _read(session, state, assignment_id, None)
    assert read is not None  # the workflow answered with its state
    return read


@router.post(
    "/{assignment_id:path}/exempt", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted
)
async def exempt_assignment(
    assignment_id: str,
    body: ExemptRequest,
    session: SessionDep,
    principal: HrOnly,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> Accepted:
    """Exempt the person (HR): reminders pause; it lapses on ``expires_on``."""
    if body.expires_on is not None:
        within(settings.due_date_window((await clock()).date()), "expires_on", body.expires_on)
    await _person_of(session, principal, assignment_id)
    signal = ExemptSignal(
        reason=body.reason,
        approver=body.approver,
        actor=principal.actor,
        expires_on=body.expires_on,
    )
    await assignments.exempt(
        session, await temporal(), workflow_id=assignment_id, exemption=signal, principal=principal
    )
    return Accepted(id=assignment_id, detail="exemption recorded")


@router.post(
    "/{assignment_id:path}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted
)
async def cancel_assignment(
    assignment_id: str,
    body: CancelRequest,
    session: SessionDep,
    principal: HrOrManager,
    temporal: TemporalDep,
) -> Accepted:
    """Cancel the obligation (HR, or a manager for their reports); reminders stop."""
    person = await _person_of(session, principal, assignment_id)
    signal = CancelSignal(reason=body.reason, actor=principal.actor)
    await assignments.cancel(
        session,
        await temporal(),
        workflow_id=assignment_id,
        person=person,
        cancellation=signal,
        principal=principal,
    )
    return Accepted(id=assignment_id, detail="cancelled; reminders stop")


@router.post("/{assignment_id:path}/restart", response_model=RestartRead)
async def restart(
    assignment_id: str,
    body: AssignmentRestart,
    session: SessionDep,
    principal: HrOnly,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> RestartRead:
    """Replace a failed, stuck or closed assignment with a fresh run under the same id (HR).

    The running run (if any) is terminated with the reason, and a fresh one starts under the
    same business key, built like ``POST /assignments`` (the active pack) from the corrected
    ``due_date``/``requirement`` or the previous run's. Audited as ``assignment.restart`` with
    the previous run's id, status and recorded input. Reminders the previous run already sent
    are not sent again (the ledger keys on the workflow id, pack and stage). **422** names a
    field that is out of range or missing; **404** when nothing ran under the id; **409** when
    the person has left.
    """
    await _person_of(session, principal, assignment_id)
    client = await temporal()
    try:
        done = await restart_assignment(
            session,
            client,
            settings=settings,
            workflow_id=assignment_id,
            reason=body.reason,
            actor=principal.actor,
            actor_role=principal.role.value,
            due_date=body.due_date,
            title=body.requirement,
            today=(await clock()).date(),
        )
    except OutOfRange as problem:
        loc: tuple[str, ...] = ("path",) if problem.field == "cycle" else ("body",)
        raise out_of_range(problem, loc) from problem
    except InvalidField as problem:
        raise RequestValidationError([problem.error()]) from problem
    except UnknownObligation as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except RestartRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return RestartRead.of(done, body.reason, f"/assignments/{assignment_id}")


@router.post("/{assignment_id:path}/grant-attempts", response_model=AssignmentRead)
async def grant_attempts(
    assignment_id: str,
    body: GrantAttemptsRequest,
    session: SessionDep,
    principal: HrOnly,
    temporal: TemporalDep,
) -> AssignmentRead:
    """Grant extra assessment attempts (HR, audited); a ``failed`` assignment reopens.

    **422** when the requirement has no attempt limit or the assignment is closed.
    """
    await _person_of(session, principal, assignment_id)
    state = await assignments.grant_attempts(
        session,
        await temporal(),
        workflow_id=assignment_id,
        grant=GrantAttempts(attempts=body.attempts, reason=body.reason, actor=principal.actor),
        principal=principal,
    )
    read = await _read(session, state, assignment_id, None)
    assert read is not None  # the workflow answered with its state
    return read
