"""Held certifications: register, read, renew, log CE credits, suspend, reinstate, revoke.

Each certification a person holds is one ``CertificationWorkflow`` under the business key
``certification/{person}/{certification}``; each renewal closes the cycle and the workflow
continues as new for the next one. The certification types are the active rules pack's
requirements of kind ``certification``. Lists (``GET /certifications``, ``/expiring``) read the
obligations read model; a single certification is answered by its workflow, or by the read model
once the workflow is closed or unreachable.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from activities.packs import active_pack
from api.deps import (
    ClockDep,
    CurrentPrincipal,
    SessionDep,
    SettingsDep,
    TemporalDep,
    ensure_visible,
    out_of_range,
    require_roles,
    visible_person_ids,
    within,
)
from api.pagination import Limit, Offset
from api.schemas import Accepted, ObligationRead, RestartRead, obligation_read
from domain.bounds import BoundedDate, OutOfRange
from domain.calendar import LadderStage
from domain.contracts.certification import (
    CeCredit,
    CertificateRecord,
    CertificationEvent,
    CertificationInput,
    CertificationState,
    ClosedCycle,
    ReinstateCertification,
    RevokeCertification,
    SuspendCertification,
)
from domain.ids import ExternalId
from domain.roles import Role
from services import assignments, certifications, obligations
from services.certifications import (
    verify_url,
)
from services.restarts import InvalidField, RestartRefused, UnknownObligation, restart_certification
from store.db import committed
from store.models import Obligation, Person
from store.tokens import Principal

router = APIRouter(prefix="/certifications", tags=["certifications"])

Anyone = CurrentPrincipal
Registrar = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER))]
Renewer = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER))]
CreditLogger = Annotated[
    Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER, Role.LEARNER))
]
HrOnly = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN))]
Watcher = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN, Role.MANAGER, Role.AUDITOR))]


# --- schemas ----------------------------------------------------------------------------------


class CertificationType(BaseModel):
    """A certification people can hold, as the active rules pack defines it."""

    id: str
    title: str
    code: str | None
    issuing_body: str | None
    validity_months: int | None
    renewal_window_days: int | None
    grace_days: int
    ce_credits: float
    renewal_basis: str


class CertificationCreate(BaseModel):
    """Register a certificate a person holds (its first cycle in Duly)."""

    model_config = ConfigDict(extra="forbid")

    person: ExternalId = Field(description="The holder's external id (from the HRIS import).")
    certification_id: ExternalId = Field(description="A certification of the active pack.")
    issued_on: BoundedDate = Field(description="Not in the future.")
    expires_on: BoundedDate | None = Field(
        default=None,
        description="Defaults to issued_on plus the certification's validity; when given, "
        "within today - 5 years ... today + 10 years (DULY_DUE_DATE_PAST_YEARS / _FUTURE_YEARS).",
    )
    certificate_number: str | None = Field(default=None, max_length=120)
    issuer: str | None = Field(
        default=None, max_length=200, description="Defaults to the pack's issuing body."
    )
    evidence_ref: str | None = Field(
        default=None, max_length=500, description="Where the scanned certificate is kept."
    )


class CertificationCreated(BaseModel):
    """A registered certification: its workflow id and public verification code."""

    id: str = Field(description="The workflow id (business key).")
    person: str
    certification_id: str
    title: str
    cycle: int
    issued_on: date
    expires_on: date
    verification_code: str
    verify_url: str = Field(description="The public page that verifies this certificate.")
    status_url: str


class CertificationRead(BaseModel):
    """A certification: the live workflow state, or the read model once it is closed."""

    id: str = Field(description="The workflow id (business key).")
    person: str
    certification_id: str
    title: str
    cycle: int
    status: str
    live: bool = Field(description="true: answered by the workflow; false: by the read model.")
    certificate: CertificateRecord | None
    verify_url: str | None
    expiry_date: date | None
    renewal_opens_on: date | None = None
    grace_ends_on: date | None = None
    stage: str | None = None
    stages: list[LadderStage] = Field(default_factory=list)
    stages_sent: list[str] = Field(default_factory=list)
    ce_credits_required: float | None = None
    ce_credits_logged: float | None = None
    ce_credits_short: int | None = None
    ce_credits: list[CeCredit] = Field(default_factory=list)
    history: list[ClosedCycle] = Field(default_factory=list)
    pack_hash: str | None = None
    events: list[CertificationEvent] = Field(default_factory=list)
    read_model: ObligationRead | None = None


class RenewRequest(BaseModel):
    """A renewed certificate."""

    model_config = ConfigDict(extra="forbid")

    issued_on: BoundedDate | None = Field(
        default=None, description="Defaults to the holder's today; not in the future."
    )
    expires_on: BoundedDate | None = Field(
        default=None,
        description="Defaults by the certification's renewal_basis: from_renewal counts the "
        "validity from issued_on; from_previous_expiry from the current expiry when renewed "
        "before it.",
    )
    certificate_number: str | None = Field(default=None, max_length=120)
    issuer: str | None = Field(default=None, max_length=200)
    evidence_ref: str | None = Field(default=None, max_length=500)


class RenewResult(BaseModel):
    """The renewal: the new cycle's certificate and how the previous cycle closed."""

    id: str
    cycle: int
    issued_on: date
    expires_on: date
    verification_code: str
    verify_url: str
    outcome: str = Field(
        description="renewed_early, renewed_in_window, renewed_in_grace or renewed_after_grace."
    )
    previous: ClosedCycle


class CeCreditRequest(BaseModel):
    """Continuing-education credits earned in the current cycle."""

    model_config = ConfigDict(extra="forbid")

    credits: float = Field(gt=0, le=1000, allow_inf_nan=False)
    activity: str = Field(min_length=2, max_length=300, description="The course or activity.")
    earned_on: BoundedDate = Field(description="Not in the future, nor before the cycle began.")
    evidence_ref: str | None = Field(default=None, max_length=500)


class CertificationRestart(BaseModel):
    """Replace a certification's run (failed, stuck, or closed) with a fresh one (HR)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500, description="Why; kept in the audit log.")
    issued_on: BoundedDate | None = Field(
        default=None, description="The corrected issue date; defaults to the previous run's."
    )
    expires_on: BoundedDate | None = Field(
        default=None, description="The corrected expiry date; defaults to the previous run's."
    )
    certificate_number: str | None = Field(default=None, max_length=120)


class CertificationRestartRead(RestartRead):
    """A certification restart: the fresh run's certificate and the CE credits it carries."""

    certificate: CertificateRecord
    ce_credits: list[CeCredit] = Field(description="This cycle's credits, carried over.")
    ce_credits_dropped: list[CeCredit] = Field(
        description="Credits earned before the corrected issued_on (kept in the audit log)."
    )


class CeCreditsResult(BaseModel):
    """The current cycle's CE credits after logging."""

    id: str
    cycle: int
    ce_credits_required: float
    ce_credits_logged: float
    ce_credits_short: int
    ce_credits: list[CeCredit]


class ReasonRequest(BaseModel):
    """Why HR suspends, reinstates or revokes a certification."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500)


class CertificationItem(BaseModel):
    """One certification in a list (from the read model)."""

    id: str
    person: str
    name: str
    department: str | None
    location: str | None
    certification_id: str
    title: str
    cycle: int
    expiry_date: date | None
    days_left: int | None = Field(description="Days until expiry (negative once expired).")
    status: str
    stage: str | None


# --- helpers ----------------------------------------------------------------------------------


def _today() -> date:
    return datetime.now(UTC).date()


async def _person_of(session: Session, principal: Principal, certification_id: str) -> Person:
    """:func:`_visible_person` in a worker thread, committed (never on the event loop)."""
    return await committed(session, lambda: _visible_person(session, principal, certification_id))


def _assignee(session: Session, principal: Principal, external_id: str) -> Person:
    """The person named in a request body, if the principal may see them (else 404)."""
    person = assignments.person(session, external_id=external_id)
    ensure_visible(session, principal, person.id)
    return person


def _visible_person(session: Session, principal: Principal, certification_id: str) -> Person:
    """Resolve the holder of a certification id, enforcing row-level visibility (else 404)."""
    person = certifications.person_of(session, certification_id=certification_id)
    ensure_visible(session, principal, person.id)
    return person


async def _read(
    session: Session, workflow_id: str, state: CertificationState | None
) -> CertificationRead | None:
    """:func:`_read_now` in a worker thread, committed (never on the event loop)."""
    return await committed(session, lambda: _read_now(session, workflow_id, state))


def _read_now(
    session: Session, workflow_id: str, state: CertificationState | None
) -> CertificationRead | None:
    row = obligations.obligation(session, workflow_id=workflow_id)
    read_model = obligation_read(row) if row is not None else None
    if state is not None:
        cert = state.certificate
        return CertificationRead(
            id=workflow_id,
            person=state.person,
            certification_id=state.certification_id,
            title=state.title,
            cycle=state.cycle,
            status=state.status,
            live=True,
            certificate=cert,
            verify_url=verify_url(cert.verification_code),
            expiry_date=cert.expires_on,
            renewal_opens_on=state.renewal_opens_on,
            grace_ends_on=state.grace_ends_on,
            stage=state.stage,
            stages=state.stages,
            stages_sent=state.stages_sent,
            ce_credits_required=state.ce_credits_required,
            ce_credits_logged=state.ce_credits_logged,
            ce_credits_short=state.ce_credits_short,
            ce_credits=state.ce_credits,
            history=state.history,
            pack_hash=state.pack_hash,
            events=state.events,
            read_model=read_model,
        )
    latest = certifications.latest_certificate(session, workflow_id=workflow_id)
    if row is None and latest is None:
        return None
    record = (
        CertificateRecord(
            cycle=latest.cycle,
            certificate_number=latest.certificate_number,
            verification_code=latest.verification_code,
            issued_on=latest.issued_on,
            expires_on=latest.expires_on,
            issuer=latest.issuer,
        )
        if latest is not None
        else None
    )
    if row is not None:
        return CertificationRead(
            id=workflow_id,
            person=row.person.external_id,
            certification_id=row.requirement_id,
            title=row.requirement_title,
            cycle=row.cycle,
            status=row.status,
            live=False,
            certificate=record,
            verify_url=verify_url(record.verification_code) if record else None,
            expiry_date=row.expiry_date,
            stage=row.stage,
            pack_hash=row.pack_hash,
            read_model=read_model,
        )
    assert latest is not None and record is not None
    return CertificationRead(
        id=workflow_id,
        person=latest.person.external_id,
        certification_id=latest.certification_id,
        title=latest.title,
        cycle=latest.cycle,
        status=latest.status,
        live=False,
        certificate=record,
        verify_url=verify_url(record.verification_code),
        expiry_date=latest.expires_on,
    )


def _item(row: Obligation, today: date) -> CertificationItem:
    person = row.person
    return CertificationItem(
        id=row.workflow_id,
        person=person.external_id,
        name=person.name,
        department=person.department,
        location=person.location,
        certification_id=row.requirement_id,
        title=row.requirement_title,
        cycle=row.cycle,
        expiry_date=row.expiry_date,
        days_left=(row.expiry_date - today).days if row.expiry_date else None,
        status=row.status,
        stage=row.stage,
    )


# --- the registry and lists (fixed paths first: the {id:path} routes would match them) ------


@router.get("/types", response_model=list[CertificationType])
def certification_types(session: SessionDep, principal: Anyone) -> list[CertificationType]:
    """The certifications people can hold: the active rules pack's certification requirements.

    Empty when no pack is deployed.
    """
    return [
        CertificationType(
            id=r.id,
            title=r.title,
            code=r.code,
            issuing_body=r.issuing_body,
            validity_months=r.validity_months,
            renewal_window_days=r.renewal_window_days,
            grace_days=r.grace_days,
            ce_credits=r.ce_credits,
            renewal_basis=r.renewal_basis.value,
        )
        for r in certifications.certification_types(active_pack(session))
    ]


@router.get("/expiring", response_model=list[CertificationItem])
def expiring_certifications(
    session: SessionDep,
    principal: Watcher,
    within: Annotated[
        int, Query(ge=0, le=3650, description="Expiring within this many days from today.")
    ] = 30,
    department: Annotated[str | None, Query(description="The holder's department")] = None,
    manager: Annotated[
        str | None, Query(description="A manager's external id: their (indirect) reports")
    ] = None,
    location: Annotated[str | None, Query(description="The holder's location")] = None,
    limit: Limit = 500,
) -> list[CertificationItem]:
    """Certifications expiring within ``within`` days, soonest first.

    Already-expired certifications that were not renewed are included (negative ``days_left``);
    revoked and superseded ones are not. Days are counted from today's date in UTC. A manager
    sees their reports only.
    """
    today = _today()
    rows = certifications.expiring(
        session,
        scope=visible_person_ids(session, principal),
        today=today,
        within_days=within,
        manager=manager,
        department=department,
        location=location,
        limit=limit,
    )
    return [_item(row, today) for row in rows]


@router.get("", response_model=list[CertificationItem])
def list_certifications(
    session: SessionDep,
    principal: Anyone,
    person: Annotated[str | None, Query(description="A holder's external id")] = None,
    status_: Annotated[
        str | None, Query(alias="status", description="compliant, renewal_due, revoked, …")
    ] = None,
    department: Annotated[str | None, Query(description="The holder's department")] = None,
    location: Annotated[str | None, Query(description="The holder's location")] = None,
    certification: Annotated[str | None, Query(description="A certification id")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[CertificationItem]:
    """Held certifications from the read model, soonest expiry first.

    A learner sees their own, a manager their reports', HR and auditors everyone's.
    """
    rows = certifications.list_certifications(
        session,
        scope=visible_person_ids(session, principal),
        person=person,
        status=status_,
        department=department,
        location=location,
        certification=certification,
        limit=limit,
        offset=offset,
    )
    today = _today()
    return [_item(row, today) for row in rows]


# --- register ---------------------------------------------------------------------------------


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CertificationCreated)
async def register_certification(
    body: CertificationCreate,
    session: SessionDep,
    principal: Registrar,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> CertificationCreated:
    """Register a certificate a person holds (HR, or a manager for their reports).

    Starts the certification's workflow, which reminds the holder before it expires. The
    verification code is generated here; anyone can check it at ``GET /verify/{code}``.
    A certification that is already registered and running answers **409** with its id.
    **422** names the field, value and allowed range when ``issued_on`` is in the future or a
    given ``expires_on`` is outside the due-date window.
    """
    within(settings.past_date_window((await clock()).date()), "issued_on", body.issued_on)
    if body.expires_on is not None:
        within(settings.due_date_window((await clock()).date()), "expires_on", body.expires_on)
    person = await committed(session, lambda: _assignee(session, principal, body.person))
    inp = await certifications.register(
        session,
        await temporal(),
        task_queue=settings.temporal_task_queue,
        person=person,
        certification_id=body.certification_id,
        issued_on=body.issued_on,
        expires_on=body.expires_on,
        certificate_number=body.certificate_number,
        issuer=body.issuer,
        evidence_ref=body.evidence_ref,
        principal=principal,
        now=await clock(),
    )
    cert, workflow_id = inp.certificate, inp.workflow_id
    return CertificationCreated(
        id=workflow_id,
        person=inp.person,
        certification_id=inp.certification_id,
        title=inp.title,
        cycle=cert.cycle,
        issued_on=cert.issued_on,
        expires_on=cert.expires_on,
        verification_code=cert.verification_code,
        verify_url=verify_url(cert.verification_code),
        status_url=f"/certifications/{workflow_id}",
    )


# --- one certification ------------------------------------------------------------------------


@router.get("/{certification_id:certification_path}", response_model=CertificationRead)
async def get_certification(
    certification_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,  # before Temporal: no token means 401, never a 503
    temporal: TemporalDep,
) -> CertificationRead:
    """A certification with its cycles, CE credits, ladder and events.

    Answered by the running workflow (``live: true``), or by the read model when the workflow
    is closed or unreachable. A learner sees their own, a manager their reports'.
    """
    await _person_of(session, principal, certification_id)
    state = await certifications.live_state(await temporal(), workflow_id=certification_id)
    result = await _read(session, certification_id, state)
    if result is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
    return result


@router.post("/{certification_id:path}/renew", response_model=RenewResult)
async def renew_certification(
    certification_id: str,
    body: RenewRequest,
    session: SessionDep,
    principal: Renewer,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> RenewResult:
    """Renew: close this cycle with a new certificate (HR, or a manager for their reports).

    **409** while CE credits are short (with how many), or when the certification is revoked
    or closed; **422** when the dates cannot be a renewal or are out of range.
    """
    if body.issued_on is not None:
        within(settings.past_date_window((await clock()).date()), "issued_on", body.issued_on)
    if body.expires_on is not None:
        within(settings.due_date_window((await clock()).date()), "expires_on", body.expires_on)
    person = await _person_of(session, principal, certification_id)
    new, closed = await certifications.renew(
        session,
        await temporal(),
        workflow_id=certification_id,
        person=person,
        principal=principal,
        issued_on=body.issued_on,
        expires_on=body.expires_on,
        certificate_number=body.certificate_number,
        issuer=body.issuer,
        evidence_ref=body.evidence_ref,
    )
    return RenewResult(
        id=certification_id,
        cycle=new.cycle,
        issued_on=new.issued_on,
        expires_on=new.expires_on,
        verification_code=new.verification_code,
        verify_url=verify_url(new.verification_code),
        outcome=closed.outcome,
        previous=closed,
    )


@router.post("/{certification_id:path}/ce-credits", response_model=CeCreditsResult)
async def log_ce_credits(
    certification_id: str,
    body: CeCreditRequest,
    session: SessionDep,
    principal: CreditLogger,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> CeCreditsResult:
    """Log continuing-education credits (the holder themself, their manager or HR).

    **422** when the workflow refuses them (earned before this cycle began, or in the future);
    **409** when the certification is revoked, being renewed or closed.
    """
    within(settings.past_date_window((await clock()).date()), "earned_on", body.earned_on)
    await _person_of(session, principal, certification_id)
    credit = CeCredit(
        credits=body.credits,
        activity=body.activity,
        earned_on=body.earned_on,
        evidence_ref=body.evidence_ref,
        actor=principal.actor,
    )
    state = await certifications.log_ce_credits(
        session, await temporal(), workflow_id=certification_id, credit=credit, principal=principal
    )
    return CeCreditsResult(
        id=certification_id,
        cycle=state.cycle,
        ce_credits_required=state.ce_credits_required,
        ce_credits_logged=state.ce_credits_logged,
        ce_credits_short=state.ce_credits_short,
        ce_credits=state.ce_credits,
    )


@router.post(
    "/{certification_id:path}/suspend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
)
async def suspend_certification(
    certification_id: str,
    body: ReasonRequest,
    session: SessionDep,
    principal: HrOnly,
    temporal: TemporalDep,
) -> Accepted:
    """Suspend (HR): the status becomes ``suspended`` and reminders stop until reinstated."""
    await _person_of(session, principal, certification_id)
    signal = SuspendCertification(reason=body.reason, actor=principal.actor)
    await certifications.suspend(
        session,
        await temporal(),
        workflow_id=certification_id,
        suspension=signal,
        principal=principal,
    )
    return Accepted(id=certification_id, detail="suspension recorded; GET shows the new status")


@router.post(
    "/{certification_id:path}/reinstate",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
)
async def reinstate_certification(
    certification_id: str,
    body: ReasonRequest,
    session: SessionDep,
    principal: HrOnly,
    temporal: TemporalDep,
) -> Accepted:
    """Reinstate (HR): lift a suspension; reminders resume from now."""
    await _person_of(session, principal, certification_id)
    signal = ReinstateCertification(reason=body.reason, actor=principal.actor)
    await certifications.reinstate(
        session,
        await temporal(),
        workflow_id=certification_id,
        reinstatement=signal,
        principal=principal,
    )
    return Accepted(id=certification_id, detail="reinstatement recorded; GET shows the status")


@router.post(
    "/{certification_id:path}/revoke",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
)
async def revoke_certification(
    certification_id: str,
    body: ReasonRequest,
    session: SessionDep,
    principal: HrOnly,
    temporal: TemporalDep,
) -> Accepted:
    """Revoke (HR): terminal; the holder and their manager are told and the workflow ends."""
    await _person_of(session, principal, certification_id)
    signal = RevokeCertification(reason=body.reason, actor=principal.actor)
    await certifications.revoke(
        session,
        await temporal(),
        workflow_id=certification_id,
        revocation=signal,
        principal=principal,
    )
    return Accepted(id=certification_id, detail="revocation recorded; the certification ends")


@router.post("/{certification_id:path}/restart", response_model=CertificationRestartRead)
async def restart(
    certification_id: str,
    body: CertificationRestart,
    session: SessionDep,
    principal: HrOnly,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> CertificationRestartRead:
    """Replace a failed, stuck or closed certification run with a fresh one (HR).

    The running run (if any) is terminated with the reason and a fresh run of the same cycle
    starts under the same id: same verification code and closed cycles, the corrected
    ``issued_on``/``expires_on``/``certificate_number``, and this cycle's CE credits carried
    over from the audit log (those earned before a corrected ``issued_on`` are dropped and
    listed). Audited as ``certification.restart``. **422** names a field that is out of range or
    unusable; **404** when nothing ran under the id; **409** when the person has left.
    """
    await _person_of(session, principal, certification_id)
    client = await temporal()
    try:
        done = await restart_certification(
            session,
            client,
            settings=settings,
            workflow_id=certification_id,
            reason=body.reason,
            actor=principal.actor,
            actor_role=principal.role.value,
            issued_on=body.issued_on,
            expires_on=body.expires_on,
            certificate_number=body.certificate_number,
            today=(await clock()).date(),
        )
    except OutOfRange as problem:
        raise out_of_range(problem) from problem
    except InvalidField as problem:
        raise RequestValidationError([problem.error()]) from problem
    except UnknownObligation as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except RestartRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    assert isinstance(done.input, CertificationInput)
    answer = RestartRead.of(done, body.reason, f"/certifications/{certification_id}")
    return CertificationRestartRead(
        **answer.model_dump(),
        certificate=done.input.certificate,
        ce_credits=done.input.ce_credits,
        ce_credits_dropped=done.dropped_credits,
    )
