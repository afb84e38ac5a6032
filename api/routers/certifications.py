"""Held certifications: register, read, renew, log CE credits, suspend, reinstate, revoke.

Each certification a person holds is one ``CertificationWorkflow`` under the business key
``certification/{person}/{certification}``; each renewal closes the cycle and the workflow
continues as new for the next one. The certification types are the active rules pack's
requirements of kind ``certification``. Lists (``GET /certifications``, ``/expiring``) read the
obligations read model; a single certification is answered by its workflow, or by the read model
once the workflow is closed or unreachable.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import (
    ClockDep,
    CurrentPrincipal,
    SessionDep,
    SettingsDep,
    TemporalDep,
    ensure_visible,
    out_of_range,
    require_roles,
    signal_workflow,
    visible_person_ids,
    within,
)
from api.deps import (
    audit_action as _audit,
)
from api.pagination import Limit, Offset
from api.routers.assignments import obligation_read
from api.schemas import Accepted, ObligationRead, RestartRead
from duly.assignments import utc_offset_minutes
from duly.domain import (
    ID_PATTERN,
    BoundedDate,
    CeCredit,
    CertificateRecord,
    CertificationEvent,
    CertificationInput,
    CertificationState,
    CertificationStatus,
    ClosedCycle,
    EmploymentStatus,
    ExternalId,
    LadderStage,
    ObligationKind,
    OutOfRange,
    ReinstateCertification,
    RenewCertification,
    RevokeCertification,
    Role,
    SuspendCertification,
    add_months,
    certification_workflow_id,
)
from duly.restarts import InvalidField, RestartRefused, UnknownObligation, restart_certification
from rules.model import Pack, RenewalBasis, Requirement
from rules.obligation_facts import local_today
from store.models import Certificate, Obligation, Person
from store.packs import active_pack, load_version
from store.tokens import Principal
from workflows.certification import CertificationWorkflow

router = APIRouter(prefix="/certifications", tags=["certifications"])

QUERY_TIMEOUT = 5.0
#: Statuses a certification no longer expires from (``GET /certifications/expiring`` skips them).
CLOSED_STATUSES = (CertificationStatus.REVOKED.value, CertificationStatus.SUPERSEDED.value)
#: Verification codes: ``DULY-`` and three groups of four from the base32 alphabet (60 bits).
CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
CODE_PREFIX = "DULY"
ID_HELP = "certification ids look like certification/{person}/{certification}"

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


def new_verification_code() -> str:
    """A fresh random verification code such as ``DULY-7KQ2-MZ4P-XW3A`` (60 random bits)."""
    groups = ("".join(secrets.choice(CODE_ALPHABET) for _ in range(4)) for _ in range(3))
    return "-".join((CODE_PREFIX, *groups))


def _unused_code(session: Session) -> str:
    """A verification code no certificate has yet (a clash is ~impossible; checked anyway)."""
    while True:
        code = new_verification_code()
        if session.scalar(select(Certificate.id).where(Certificate.verification_code == code)):
            continue
        return code


def verify_url(code: str) -> str:
    """The public verification path of a code."""
    return f"/verify/{code}"


def _today() -> date:
    return datetime.now(UTC).date()


def _certification_types(pack: Pack | None) -> list[Requirement]:
    if pack is None:
        return []
    return [r for r in pack.requirements if r.kind is ObligationKind.CERTIFICATION]


def _person_of(session: Session, principal: Principal, certification_id: str) -> Person:
    """Resolve the holder of a certification id, enforcing row-level visibility (else 404)."""
    parts = certification_id.split("/")
    if (
        len(parts) != 3
        or parts[0] != "certification"
        or not all(re.match(ID_PATTERN, p) for p in parts[1:])
    ):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"unknown certification id; {ID_HELP}"
        )
    person = session.scalar(select(Person).where(Person.external_id == parts[1]))
    if person is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
    ensure_visible(session, principal, person.id)
    return person


def _not_own(principal: Principal, person: Person, what: str) -> None:
    if principal.role is Role.MANAGER and principal.person_id == person.id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"managers cannot {what} their own certifications; ask HR",
        )


def _failure(exc: WorkflowUpdateFailedError) -> str:
    cause = exc.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause)


async def _live_state(client: Client, workflow_id: str) -> CertificationState | None:
    """The workflow's ``state`` query, or None when it cannot answer."""
    try:
        handle = client.get_workflow_handle(workflow_id)
        return await asyncio.wait_for(handle.query(CertificationWorkflow.state), QUERY_TIMEOUT)
    except (RPCError, TimeoutError):
        return None
    except Exception:  # noqa: BLE001 - a failed query (e.g. no worker yet) falls back to the store
        return None


async def _require_state(client: Client, workflow_id: str) -> CertificationState:
    """The live state, or a 404/409/503 that says why there is none."""
    state = await _live_state(client, workflow_id)
    if state is not None:
        return state
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found") from exc
        raise
    if description.status not in (None, WorkflowExecutionStatus.RUNNING):
        name = description.status.name.lower()
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"the certification is closed ({name})"
        )
    raise HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        detail="the certification workflow did not answer (is a worker running?); try again",
    )


def _refuse_if_revoked(state: CertificationState) -> None:
    if state.status == CertificationStatus.REVOKED.value:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail="the certification was revoked; register the new certificate with "
            "POST /certifications instead",
        )


def _pinned_requirement(session: Session, state: CertificationState) -> Requirement | None:
    """The certification as the pack the workflow is pinned to defines it (else the active one)."""
    pack = load_version(session, state.pack_hash) or active_pack(session)
    return pack.requirement(state.certification_id) if pack is not None else None


def renewed_expiry(
    requirement: Requirement, *, issued_on: date, current_expiry: date
) -> date | None:
    """The renewed certificate's expiry by the certification's renewal basis.

    ``from_renewal``: ``issued_on`` plus the validity. ``from_previous_expiry``: the current
    expiry plus the validity when renewed on or before it, else ``issued_on`` plus the validity.

    Returns:
        None when the certification has no validity to count with.
    """
    months = requirement.validity_months
    if months is None:
        return None
    if (
        requirement.renewal_basis is RenewalBasis.FROM_PREVIOUS_EXPIRY
        and issued_on <= current_expiry
    ):
        return add_months(current_expiry, months)
    return add_months(issued_on, months)


def _read(
    session: Session, workflow_id: str, state: CertificationState | None
) -> CertificationRead | None:
    row = session.scalar(select(Obligation).where(Obligation.workflow_id == workflow_id))
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
    latest = session.scalar(
        select(Certificate)
        .where(Certificate.workflow_id == workflow_id)
        .order_by(Certificate.cycle.desc(), Certificate.as_of.desc())
        .limit(1)
    )
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


def _reports_of(session: Session, manager: str) -> set[int]:
    """Every person under ``manager`` (direct and indirect reports); 404 for an unknown id."""
    boss = session.scalar(select(Person.id).where(Person.external_id == manager))
    if boss is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"unknown manager {manager!r}; give a person's external id",
        )
    seen: set[int] = set()
    frontier = {boss}
    while frontier:
        reports = set(session.scalars(select(Person.id).where(Person.manager_id.in_(frontier))))
        frontier = reports - seen
        seen |= frontier
    return seen


async def _signal(client: Client, workflow_id: str, name: str, arg: object) -> None:
    await signal_workflow(client, workflow_id, name, arg, what="the certification")


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
        for r in _certification_types(active_pack(session))
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
    stmt = (
        select(Obligation)
        .join(Person, Obligation.person_id == Person.id)
        .where(
            Obligation.kind == ObligationKind.CERTIFICATION.value,
            Obligation.expiry_date.is_not(None),
            Obligation.expiry_date <= today + timedelta(days=within),
            Obligation.status.not_in(CLOSED_STATUSES),
        )
    )
    scope = visible_person_ids(session, principal)
    if scope is not None:
        stmt = stmt.where(Obligation.person_id.in_(scope))
    if manager:
        stmt = stmt.where(Obligation.person_id.in_(_reports_of(session, manager)))
    if department:
        stmt = stmt.where(Person.department == department)
    if location:
        stmt = stmt.where(Person.location == location)
    stmt = stmt.order_by(Obligation.expiry_date, Obligation.id).limit(limit)
    return [_item(row, today) for row in session.scalars(stmt).unique()]


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
    stmt = (
        select(Obligation)
        .join(Person, Obligation.person_id == Person.id)
        .where(Obligation.kind == ObligationKind.CERTIFICATION.value)
    )
    scope = visible_person_ids(session, principal)
    if scope is not None:
        stmt = stmt.where(Obligation.person_id.in_(scope))
    if person:
        stmt = stmt.where(Person.external_id == person)
    if status_:
        stmt = stmt.where(Obligation.status == status_)
    if department:
        stmt = stmt.where(Person.department == department)
    if location:
        stmt = stmt.where(Person.location == location)
    if certification:
        stmt = stmt.where(Obligation.requirement_id == certification)
    stmt = stmt.order_by(Obligation.expiry_date, Obligation.id).limit(limit).offset(offset)
    today = _today()
    return [_item(row, today) for row in session.scalars(stmt).unique()]


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
    person = session.scalar(select(Person).where(Person.external_id == body.person))
    if person is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"unknown person {body.person!r}; import them first (POST /people/import)",
        )
    ensure_visible(session, principal, person.id)
    _not_own(principal, person, "register")
    if person.employment_status == EmploymentStatus.TERMINATED:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"person {body.person!r} has left (employment_status=terminated)",
        )
    pack = active_pack(session)
    if pack is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="no rules pack is deployed, so no certification types exist; deploy one "
            "first (`duly rules deploy PATH` or POST /rules/deploy)",
        )
    requirement = pack.requirement(body.certification_id)
    if requirement is None or requirement.kind is not ObligationKind.CERTIFICATION:
        valid = ", ".join(r.id for r in _certification_types(pack)) or "(none)"
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"certification_id {body.certification_id!r} is not a certification of the"
            f" active rules pack {pack.info.name!r}; valid ids: {valid}"
            " (see GET /certifications/types)",
        )
    expires_on = body.expires_on
    if expires_on is None:
        months = requirement.validity_months
        if months is None:  # pragma: no cover - the pack model requires validity
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail=f"{requirement.id!r} has no validity in the pack; give expires_on",
            )
        expires_on = add_months(body.issued_on, months)
    if expires_on <= body.issued_on:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"expires_on ({expires_on.isoformat()}) must be after issued_on"
            f" ({body.issued_on.isoformat()})",
        )
    workflow_id = certification_workflow_id(person.external_id, requirement.id)
    client = await temporal()
    await _refuse_existing(client, workflow_id, principal)
    inp = CertificationInput(
        person=person.external_id,
        certification_id=requirement.id,
        title=requirement.title,
        certificate=CertificateRecord(
            cycle=1,
            certificate_number=body.certificate_number,
            verification_code=_unused_code(session),
            issued_on=body.issued_on,
            expires_on=expires_on,
            issuer=body.issuer or requirement.issuing_body,
            evidence_ref=body.evidence_ref,
        ),
        pack_hash=pack.content_hash,
        utc_offset_minutes=utc_offset_minutes(person.time_zone, expires_on),
        registered_by=principal.actor,
    )
    try:
        await client.start_workflow(
            CertificationWorkflow.run,
            inp,
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            # A revoked (closed) certification may be registered again; a running one may not.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except WorkflowAlreadyStartedError as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail={
                "message": f"{requirement.id!r} is already registered for {person.external_id!r};"
                " renew it with POST /certifications/{id}/renew",
                "id": workflow_id,
            },
        ) from exc
    _audit(session, principal, "certification.register", workflow_id, inp.model_dump(mode="json"))
    cert = inp.certificate
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


async def _refuse_existing(client: Client, workflow_id: str, principal: Principal) -> None:
    """409 when the certification runs; only HR may register a closed (revoked) one again."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return
        raise
    if description.status in (None, WorkflowExecutionStatus.RUNNING):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail={
                "message": "this certification is already registered and running; renew it"
                " with POST /certifications/{id}/renew",
                "id": workflow_id,
            },
        )
    if principal.role is not Role.HR_ADMIN:
        name = description.status.name.lower()
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail={
                "message": f"this certification was closed ({name}); only HR may register it again",
                "id": workflow_id,
            },
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
    _person_of(session, principal, certification_id)
    state = await _live_state(await temporal(), certification_id)
    result = _read(session, certification_id, state)
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
    person = _person_of(session, principal, certification_id)
    _not_own(principal, person, "renew")
    client = await temporal()
    state = await _require_state(client, certification_id)
    _refuse_if_revoked(state)
    requirement = _pinned_requirement(session, state)
    current = state.certificate
    issued_on = body.issued_on or local_today(person)
    expires_on = body.expires_on
    if expires_on is None and requirement is not None:
        expires_on = renewed_expiry(
            requirement, issued_on=issued_on, current_expiry=current.expires_on
        )
    if expires_on is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"the rules pack this certification is pinned to does not define"
            f" {state.certification_id!r} any more; give expires_on",
        )
    _check_renewal_dates(current, issued_on, expires_on)
    required = state.ce_credits_required
    if not required and requirement is not None:
        required = requirement.ce_credits  # the workflow has not planned its cycle yet
    short = max(0, math.ceil(required - state.ce_credits_logged))
    if short > 0:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail={
                "message": f"{short} CE credit{'s' if short != 1 else ''} short:"
                f" {state.ce_credits_logged:g} of {required:g} logged this cycle; log them"
                f" with POST /certifications/{certification_id}/ce-credits before renewing",
                "ce_credits_required": required,
                "ce_credits_logged": state.ce_credits_logged,
                "ce_credits_short": short,
            },
        )
    new = CertificateRecord(
        cycle=state.cycle + 1,
        certificate_number=body.certificate_number,
        verification_code=_unused_code(session),
        issued_on=issued_on,
        expires_on=expires_on,
        issuer=body.issuer or current.issuer or (requirement.issuing_body if requirement else None),
        evidence_ref=body.evidence_ref,
    )
    request = RenewCertification(certificate=new, actor=principal.actor)
    handle = client.get_workflow_handle(certification_id)
    try:
        closed = await handle.execute_update(CertificationWorkflow.renew, request)
    except WorkflowUpdateFailedError as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"renewal refused: {_failure(exc)}"
        ) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail="the certification is closed"
            ) from exc
        raise
    _audit(
        session, principal, "certification.renew", certification_id, request.model_dump(mode="json")
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


def _check_renewal_dates(current: CertificateRecord, issued_on: date, expires_on: date) -> None:
    """422 for dates the workflow would refuse anyway, with how to fix them."""
    if expires_on <= issued_on:
        problem = (
            f"expires_on ({expires_on.isoformat()}) must be after issued_on"
            f" ({issued_on.isoformat()})"
        )
    elif expires_on <= current.expires_on:
        problem = (
            f"the renewed certificate must expire after the current one"
            f" ({current.expires_on.isoformat()}); got expires_on {expires_on.isoformat()}"
        )
    elif issued_on < current.issued_on:
        problem = (
            f"issued_on ({issued_on.isoformat()}) is before the current certificate was issued"
            f" ({current.issued_on.isoformat()})"
        )
    else:
        return
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"renewal refused: {problem}")


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
    _person_of(session, principal, certification_id)
    credit = CeCredit(
        credits=body.credits,
        activity=body.activity,
        earned_on=body.earned_on,
        evidence_ref=body.evidence_ref,
        actor=principal.actor,
    )
    client = await temporal()
    handle = client.get_workflow_handle(certification_id)
    try:
        state = await handle.execute_update(CertificationWorkflow.log_ce_credits, credit)
    except WorkflowUpdateFailedError as exc:
        message = _failure(exc)
        closed = "revoked" in message or "already being renewed" in message
        raise HTTPException(
            status.HTTP_409_CONFLICT if closed else status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"credits refused: {message}",
        ) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail="the certification is closed"
            ) from exc
        raise
    _audit(
        session,
        principal,
        "certification.ce_credits",
        certification_id,
        credit.model_dump(mode="json"),
    )
    return CeCreditsResult(
        id=certification_id,
        cycle=state.cycle,
        ce_credits_required=state.ce_credits_required,
        ce_credits_logged=state.ce_credits_logged,
        ce_credits_short=state.ce_credits_short,
        ce_credits=state.ce_credits,
    )


async def _hr_signal(
    certification_id: str,
    session: Session,
    principal: Principal,
    client: Client,
    name: str,
    signal: BaseModel,
) -> None:
    await _signal(client, certification_id, name, signal)
    _audit(
        session,
        principal,
        f"certification.{name}",
        certification_id,
        signal.model_dump(mode="json"),
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
    _person_of(session, principal, certification_id)
    signal = SuspendCertification(reason=body.reason, actor=principal.actor)
    await _hr_signal(certification_id, session, principal, await temporal(), "suspend", signal)
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
    _person_of(session, principal, certification_id)
    signal = ReinstateCertification(reason=body.reason, actor=principal.actor)
    await _hr_signal(certification_id, session, principal, await temporal(), "reinstate", signal)
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
    _person_of(session, principal, certification_id)
    signal = RevokeCertification(reason=body.reason, actor=principal.actor)
    await _hr_signal(certification_id, session, principal, await temporal(), "revoke", signal)
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
    _person_of(session, principal, certification_id)
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
