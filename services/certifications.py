"""Held certifications: register, renew, log CE credits, suspend, reinstate, revoke; read them.

Keyword-only functions over ``CertificationWorkflow`` (typed updates, signals and queries)
and the store; the API router maps their :mod:`services.errors` to HTTP.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.assigning import utc_offset_minutes
from activities.packs import active_pack, load_version
from domain.calendar import add_months
from domain.contracts.assignment import CompleteSignal
from domain.contracts.certification import (
    CeCredit,
    CertificateRecord,
    CertificationInput,
    CertificationState,
    CertificationStatus,
    ClosedCycle,
    ReinstateCertification,
    RenewCertification,
    RevokeCertification,
    SuspendCertification,
    ce_credits_short,
    ce_shortfall,
    renewal_date_problem,
)
from domain.ids import ID_PATTERN, certification_workflow_id
from domain.kinds import ObligationKind
from domain.roles import Role
from domain.statuses import EmploymentStatus
from rules.model import Pack, RenewalBasis, Requirement
from rules.obligation_facts import local_today
from services.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from services.temporal import signal
from store import audit, certificates
from store.db import committed
from store.models import Certificate, Obligation, Person
from store.tokens import Principal
from workflows.certification import CertificationWorkflow

QUERY_TIMEOUT = 5.0

#: Verification codes: ``DULY-`` and three groups of four from the base32 alphabet (60 bits).
CODE_ALPHABET = certificates.CODE_ALPHABET
CODE_PREFIX = certificates.CODE_PREFIX
ID_HELP = "certification ids look like certification/{person}/{certification}"


class AlreadyRegistered(Conflict):
    """The certification runs (or, for a non-HR caller, was closed): the answer names its id."""

    def __init__(self, message: str, *, workflow_id: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id

    def body(self) -> object:
        """The message and the existing certification's id."""
        return {"message": self.detail, "id": self.workflow_id}


class CeCreditsShort(Conflict):
    """A renewal must wait for continuing-education credits (the answer says how many)."""

    def __init__(self, message: str, *, required: float, logged: float, short: int) -> None:
        super().__init__(message)
        self.required, self.logged, self.short = required, logged, short

    def body(self) -> object:
        """The message and the counts, for a caller that shows or acts on them."""
        return {
            "message": self.detail,
            "ce_credits_required": self.required,
            "ce_credits_logged": self.logged,
            "ce_credits_short": self.short,
        }


def new_verification_code() -> str:
    """A fresh random verification code such as ``DULY-7KQ2-MZ4P-XW3A`` (60 random bits)."""
    return certificates.new_code()


def unused_code(session: Session) -> str:
    """A code no certificate has yet, certification or track (``store.certificates``)."""
    return certificates.unused_code(session)


def verify_url(code: str) -> str:
    """The public verification path of a code."""
    return f"/verify/{code}"


def certification_types(pack: Pack | None) -> list[Requirement]:
    """The active pack's requirements of kind certification."""
    if pack is None:
        return []
    return [r for r in pack.requirements if r.kind is ObligationKind.CERTIFICATION]


def person_of(session: Session, *, certification_id: str) -> Person:
    """The holder a certification id names (the caller checks they may see them).

    Raises:
        NotFound: The id is malformed (the detail shows the shape) or the holder is unknown.
    """
    parts = certification_id.split("/")
    if (
        len(parts) != 3
        or parts[0] != "certification"
        or not all(re.match(ID_PATTERN, p) for p in parts[1:])
    ):
        raise NotFound(f"unknown certification id; {ID_HELP}")
    person = session.scalar(select(Person).where(Person.external_id == parts[1]))
    if person is None:
        raise NotFound()
    return person


def not_own(principal: Principal, person: Person, what: str) -> None:
    """Managers act on their reports' certifications, not their own.

    Raises:
        Forbidden: A manager acting on their own.
    """
    if principal.role is Role.MANAGER and principal.person_id == person.id:
        raise Forbidden(f"managers cannot {what} their own certifications; ask HR")


def _failure(exc: WorkflowUpdateFailedError) -> str:
    cause = exc.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause)


async def live_state(client: Client, *, workflow_id: str) -> CertificationState | None:
    """The workflow's ``state`` query, or None when it cannot answer."""
    try:
        handle = client.get_workflow_handle(workflow_id)
        return await asyncio.wait_for(handle.query(CertificationWorkflow.state), QUERY_TIMEOUT)
    except (RPCError, TimeoutError):
        return None
    except Exception:  # noqa: BLE001 - a failed query (e.g. no worker yet) falls back to the store
        return None


async def require_state(client: Client, *, workflow_id: str) -> CertificationState:
    """The live state.

    Raises:
        NotFound: No such workflow.
        Conflict: It has closed.
        Unavailable: It did not answer (no worker?).
    """
    state = await live_state(client, workflow_id=workflow_id)
    if state is not None:
        return state
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound() from exc
        raise
    if description.status not in (None, WorkflowExecutionStatus.RUNNING):
        name = description.status.name.lower()
        raise Conflict(f"the certification is closed ({name})")
    raise Unavailable("the certification workflow did not answer (is a worker running?); try again")


def pinned_requirement(session: Session, state: CertificationState) -> Requirement | None:
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


def reports_of(session: Session, *, manager: str) -> set[int]:
    """Every person under ``manager`` (direct and indirect reports); 404 for an unknown id."""
    boss = session.scalar(select(Person.id).where(Person.external_id == manager))
    if boss is None:
        raise NotFound(f"unknown manager {manager!r}; give a person's external id")
    seen: set[int] = set()
    frontier = {boss}
    while frontier:
        reports = set(session.scalars(select(Person.id).where(Person.manager_id.in_(frontier))))
        frontier = reports - seen
        seen |= frontier
    return seen


async def renew(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    person: Person,
    principal: Principal,
    issued_on: date | None,
    expires_on: date | None,
    certificate_number: str | None,
    issuer: str | None,
    evidence_ref: str | None,
) -> tuple[CertificateRecord, ClosedCycle]:
    """Renew: close this cycle with a new certificate (a typed ``renew`` update); audited.

    Returns:
        The new certificate and the closed cycle.

    Raises:
        Forbidden: A manager renewing their own.
        NotFound, Unavailable: See :func:`require_state`.
        Conflict: Revoked or closed, or the workflow refused; :class:`CeCreditsShort` while
            CE credits are short.
        Invalid: The dates cannot be a renewal, or no expiry can be derived.
    """
    not_own(principal, person, "renew")
    state = await require_state(client, workflow_id=workflow_id)
    if state.status == CertificationStatus.REVOKED.value:
        raise Conflict(
            "the certification was revoked; register the new certificate with "
            "POST /certifications instead"
        )
    requirement = await committed(session, lambda: pinned_requirement(session, state))
    current = state.certificate
    issued_on = issued_on or local_today(person)
    if expires_on is None and requirement is not None:
        expires_on = renewed_expiry(
            requirement, issued_on=issued_on, current_expiry=current.expires_on
        )
    if expires_on is None:
        raise Invalid(
            f"the rules pack this certification is pinned to does not define"
            f" {state.certification_id!r} any more; give expires_on"
        )
    problem = renewal_date_problem(current, issued_on=issued_on, expires_on=expires_on)
    if problem is not None:
        raise Invalid(f"renewal refused: {problem}")
    required = state.ce_credits_required
    if not required and requirement is not None:
        required = requirement.ce_credits  # the workflow has not planned its cycle yet
    shortfall = ce_shortfall(
        required,
        state.ce_credits_logged,
        how=f"log them with POST /certifications/{workflow_id}/ce-credits",
    )
    if shortfall is not None:
        raise CeCreditsShort(
            shortfall,
            required=required,
            logged=state.ce_credits_logged,
            short=ce_credits_short(required, state.ce_credits_logged),
        )
    new = CertificateRecord(
        cycle=state.cycle + 1,
        certificate_number=certificate_number,
        verification_code=await committed(session, lambda: unused_code(session)),
        issued_on=issued_on,
        expires_on=expires_on,
        issuer=issuer or current.issuer or (requirement.issuing_body if requirement else None),
        evidence_ref=evidence_ref,
    )
    request = RenewCertification(certificate=new, actor=principal.actor)
    handle = client.get_workflow_handle(workflow_id)
    try:
        closed = await handle.execute_update(CertificationWorkflow.renew, request)
    except WorkflowUpdateFailedError as exc:
        raise Conflict(f"renewal refused: {_failure(exc)}") from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("the certification is closed") from exc
        raise
    await _audit(session, principal, "certification.renew", workflow_id, request)
    return new, closed


async def log_ce_credits(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    credit: CeCredit,
    principal: Principal,
) -> CertificationState:
    """Log continuing-education credits (a typed ``log_ce_credits`` update); audited.

    Raises:
        Invalid: The workflow refused them (earned before this cycle began, or in the future).
        Conflict: Revoked, being renewed or closed.
    """
    handle = client.get_workflow_handle(workflow_id)
    try:
        state = await handle.execute_update(CertificationWorkflow.log_ce_credits, credit)
    except WorkflowUpdateFailedError as exc:
        message = _failure(exc)
        closed = "revoked" in message or "already being renewed" in message
        error = Conflict if closed else Invalid
        raise error(f"credits refused: {message}") from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("the certification is closed") from exc
        raise
    await _audit(session, principal, "certification.ce_credits", workflow_id, credit)
    return state


async def _hr_signal(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    signal_ref: Any,
    name: str,
    arg: BaseModel,
    principal: Principal,
) -> None:
    await signal(
        client, workflow_id=workflow_id, signal=signal_ref, arg=arg, what="the certification"
    )
    await _audit(session, principal, f"certification.{name}", workflow_id, arg)


async def suspend(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    suspension: SuspendCertification,
    principal: Principal,
) -> None:
    """Suspend (a typed ``suspend`` signal); audited. Raises NotFound or Conflict (closed)."""
    await _hr_signal(
        session,
        client,
        workflow_id=workflow_id,
        signal_ref=CertificationWorkflow.suspend,
        name="suspend",
        arg=suspension,
        principal=principal,
    )


async def reinstate(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    reinstatement: ReinstateCertification,
    principal: Principal,
) -> None:
    """Reinstate (a typed ``reinstate`` signal); audited. Raises NotFound or Conflict."""
    await _hr_signal(
        session,
        client,
        workflow_id=workflow_id,
        signal_ref=CertificationWorkflow.reinstate,
        name="reinstate",
        arg=reinstatement,
        principal=principal,
    )


async def revoke(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    revocation: RevokeCertification,
    principal: Principal,
) -> None:
    """Revoke (a typed ``revoke`` signal); audited. Raises NotFound or Conflict."""
    await _hr_signal(
        session,
        client,
        workflow_id=workflow_id,
        signal_ref=CertificationWorkflow.revoke,
        name="revoke",
        arg=revocation,
        principal=principal,
    )


async def _audit(
    session: Session, principal: Principal, action: str, target: str, after: BaseModel
) -> None:
    """Append to the audit log in a worker thread, in its own short transaction.

    Why: the append takes the log's advisory lock; it must neither block the event loop nor
    be held across the caller's next await.
    """
    await committed(
        session,
        lambda: audit.record(
            session,
            actor=principal.actor,
            actor_role=principal.role.value,
            action=action,
            target=target,
            after=after.model_dump(mode="json"),
        ),
    )


#: Statuses a certification no longer expires from (``expiring`` skips them).
CLOSED_STATUSES = (
    CertificationStatus.REVOKED.value,
    CertificationStatus.SUPERSEDED.value,
    CertificationStatus.CANCELLED.value,
)


def expiring(
    session: Session,
    *,
    scope: Collection[int] | None,
    today: date,
    within_days: int,
    manager: str | None = None,
    department: str | None = None,
    location: str | None = None,
    limit: int = 500,
) -> list[Obligation]:
    """Certifications expiring by ``today + within_days`` (or expired, not renewed), soonest first.

    Revoked and superseded ones are left out. ``scope``: the person ids the caller may see.

    Raises:
        NotFound: ``manager`` is unknown.
    """
    stmt = (
        select(Obligation)
        .join(Person, Obligation.person_id == Person.id)
        .where(
            Obligation.kind == ObligationKind.CERTIFICATION.value,
            Obligation.expiry_date.is_not(None),
            Obligation.expiry_date <= today + timedelta(days=within_days),
            Obligation.status.not_in(CLOSED_STATUSES),
        )
    )
    if scope is not None:
        stmt = stmt.where(Obligation.person_id.in_(scope))
    if manager:
        stmt = stmt.where(Obligation.person_id.in_(reports_of(session, manager=manager)))
    if department:
        stmt = stmt.where(Person.department == department)
    if location:
        stmt = stmt.where(Person.location == location)
    stmt = stmt.order_by(Obligation.expiry_date, Obligation.id).limit(limit)
    return list(session.scalars(stmt).unique())


def list_certifications(
    session: Session,
    *,
    scope: Collection[int] | None,
    person: str | None = None,
    status: str | None = None,
    department: str | None = None,
    location: str | None = None,
    certification: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Obligation]:
    """Held certifications from the read model, soonest expiry first, within ``scope``."""
    stmt = (
        select(Obligation)
        .join(Person, Obligation.person_id == Person.id)
        .where(Obligation.kind == ObligationKind.CERTIFICATION.value)
    )
    if scope is not None:
        stmt = stmt.where(Obligation.person_id.in_(scope))
    if person:
        stmt = stmt.where(Person.external_id == person)
    if status:
        stmt = stmt.where(Obligation.status == status)
    if department:
        stmt = stmt.where(Person.department == department)
    if location:
        stmt = stmt.where(Person.location == location)
    if certification:
        stmt = stmt.where(Obligation.requirement_id == certification)
    stmt = stmt.order_by(Obligation.expiry_date, Obligation.id).limit(limit).offset(offset)
    return list(session.scalars(stmt).unique())


async def register(
    session: Session,
    client: Client,
    *,
    task_queue: str,
    person: Person,
    certification_id: str,
    issued_on: date,
    expires_on: date | None,
    certificate_number: str | None,
    issuer: str | None,
    evidence_ref: str | None,
    principal: Principal,
    now: datetime | None = None,
) -> CertificationInput:
    """Register a held certificate: start its workflow (typed ``run``); audited.

    An open obligation to obtain it (``assignment/{person}/{certification}/{cycle}``, which
    the directory automation starts for a joiner or mover the certification applies to) is
    completed by the registration, as of ``now`` (default: the system clock).

    Returns:
        The started workflow's input (its certificate carries the new verification code).

    Raises:
        Forbidden: A manager registering their own.
        Conflict: The person has left; :class:`AlreadyRegistered` when it runs (or was
            closed and the caller is not HR).
        Invalid: No pack, not a certification of the active pack, or impossible dates.
    """
    not_own(principal, person, "register")
    if person.employment_status == EmploymentStatus.TERMINATED:
        raise Conflict(f"person {person.external_id!r} has left (employment_status=terminated)")
    pack = await committed(session, lambda: active_pack(session))
    if pack is None:
        raise Invalid(
            "no rules pack is deployed, so no certification types exist; deploy one "
            "first (`duly rules deploy PATH` or POST /rules/deploy)"
        )
    requirement = pack.requirement(certification_id)
    if requirement is None or requirement.kind is not ObligationKind.CERTIFICATION:
        valid = ", ".join(r.id for r in certification_types(pack)) or "(none)"
        raise Invalid(
            f"certification_id {certification_id!r} is not a certification of the"
            f" active rules pack {pack.info.name!r}; valid ids: {valid}"
            " (see GET /certifications/types)"
        )
    if expires_on is None:
        months = requirement.validity_months
        if months is None:  # pragma: no cover - the pack model requires validity
            raise Invalid(f"{requirement.id!r} has no validity in the pack; give expires_on")
        expires_on = add_months(issued_on, months)
    if expires_on <= issued_on:
        raise Invalid(
            f"expires_on ({expires_on.isoformat()}) must be after issued_on"
            f" ({issued_on.isoformat()})"
        )
    workflow_id = certification_workflow_id(person.external_id, requirement.id)
    await _refuse_existing(client, workflow_id=workflow_id, principal=principal)
    inp = CertificationInput(
        person=person.external_id,
        certification_id=requirement.id,
        title=requirement.title,
        certificate=CertificateRecord(
            cycle=1,
            certificate_number=certificate_number,
            verification_code=await committed(session, lambda: unused_code(session)),
            issued_on=issued_on,
            expires_on=expires_on,
            issuer=issuer or requirement.issuing_body,
            evidence_ref=evidence_ref,
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
            task_queue=task_queue,
            # A revoked (closed) certification may be registered again; a running one may not.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except WorkflowAlreadyStartedError as exc:
        raise AlreadyRegistered(
            f"{requirement.id!r} is already registered for {person.external_id!r};"
            " renew it with POST /certifications/{id}/renew",
            workflow_id=workflow_id,
        ) from exc
    await _audit(session, principal, "certification.register", workflow_id, inp)
    await fulfil_obtain(
        session,
        client,
        person=person,
        certification_id=requirement.id,
        code=inp.certificate.verification_code,
        actor=principal.actor,
        now=now or datetime.now(UTC),
    )
    return inp


async def fulfil_obtain(
    session: Session,
    client: Client,
    *,
    person: Person,
    certification_id: str,
    code: str,
    actor: str,
    now: datetime,
) -> list[str]:
    """Complete the person's open obligations to obtain ``certification_id``.

    Returns:
        The workflow ids signalled (a finished one is skipped).
    """
    open_ids = await committed(
        session,
        lambda: list(
            session.scalars(
                select(Obligation.workflow_id).where(
                    Obligation.person_id == person.id,
                    Obligation.requirement_id == certification_id,
                    Obligation.workflow_id.like("assignment/%"),
                    Obligation.completed_at.is_(None),
                    Obligation.status.not_in(OBTAIN_CLOSED),
                )
            )
        ),
    )
    done: list[str] = []
    for workflow_id in open_ids:
        try:
            await client.get_workflow_handle(workflow_id).signal(
                "complete",
                CompleteSignal(
                    completed_at=now,
                    source="certification",
                    actor=actor[:128],
                    note="certificate registered",
                    certificate_id=code,
                ),
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            continue
        done.append(workflow_id)
    return done


#: Statuses of an obligation to obtain a certificate that is over.
OBTAIN_CLOSED = ("cancelled", "not_applicable", "completed")


async def _refuse_existing(client: Client, *, workflow_id: str, principal: Principal) -> None:
    """Refuse a running certification; only HR may register a closed (revoked) one again."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return
        raise
    if description.status in (None, WorkflowExecutionStatus.RUNNING):
        raise AlreadyRegistered(
            "this certification is already registered and running; renew it"
            " with POST /certifications/{id}/renew",
            workflow_id=workflow_id,
        )
    if principal.role is not Role.HR_ADMIN:
        name = description.status.name.lower()
        raise AlreadyRegistered(
            f"this certification was closed ({name}); only HR may register it again",
            workflow_id=workflow_id,
        )


def latest_certificate(session: Session, *, workflow_id: str) -> Certificate | None:
    """The newest public verification record of a certification (its latest cycle)."""
    return session.scalar(
        select(Certificate)
        .where(Certificate.workflow_id == workflow_id)
        .order_by(Certificate.cycle.desc(), Certificate.as_of.desc())
        .limit(1)
    )
