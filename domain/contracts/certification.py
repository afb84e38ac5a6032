"""Certification workflow contract (``workflows.certification.CertificationWorkflow``)."""

from __future__ import annotations

import math
from datetime import date, datetime
from enum import StrEnum

from pydantic import Field

from domain.base import Contract
from domain.bounds import BoundedDate, Cycle
from domain.calendar import LadderStage
from domain.contracts.obligation import LadderEvent
from domain.ids import BUILTIN_PACK, ExternalId, certification_workflow_id


def ce_credits_short(required: float, logged: float) -> int:
    """Whole continuing-education credits still missing (0 when enough are logged)."""
    return max(0, math.ceil(required - logged))


class CertificationStatus(StrEnum):
    """Statuses a certification workflow sets itself (the rest come from the pack's rules)."""

    SUSPENDED = "suspended"
    REVOKED = "revoked"
    SUPERSEDED = "superseded"
    #: The holder left: Duly no longer follows it (not a revocation by the issuer).
    CANCELLED = "cancelled"


class CertificateRecord(Contract):
    """One issued certificate: a cycle of a certification."""

    cycle: Cycle
    certificate_number: str | None = Field(default=None, max_length=120)
    #: The public verification code (``GET /verify/{code}``).
    verification_code: str = Field(pattern=r"^[A-Z0-9-]{6,40}$")
    issued_on: BoundedDate
    expires_on: BoundedDate
    issuer: str | None = Field(default=None, max_length=200)
    evidence_ref: str | None = Field(default=None, max_length=500)


def renewal_date_problem(
    current: CertificateRecord, *, issued_on: date, expires_on: date
) -> str | None:
    """Why a renewed certificate's dates cannot follow ``current`` (None when they can).

    The one check: the API answers 422 with it before asking, and the workflow's ``renew``
    validator refuses with it (a caller that skipped the API).
    """
    if expires_on <= issued_on:
        return (
            f"expires_on ({expires_on.isoformat()}) must be after issued_on"
            f" ({issued_on.isoformat()})"
        )
    if expires_on <= current.expires_on:
        return (
            f"the renewed certificate must expire after the current one"
            f" ({current.expires_on.isoformat()}); got expires_on {expires_on.isoformat()}"
        )
    if issued_on < current.issued_on:
        return (
            f"issued_on ({issued_on.isoformat()}) is before the current certificate was issued"
            f" ({current.issued_on.isoformat()})"
        )
    return None


def ce_shortfall(required: float, logged: float, *, how: str = "log them") -> str | None:
    """Why a renewal must wait for CE credits, or None when enough are logged.

    Args:
        required: Credits the cycle requires.
        logged: Credits logged this cycle.
        how: How to log them (the API names its endpoint).
    """
    short = ce_credits_short(required, logged)
    if short <= 0:
        return None
    return (
        f"{short} CE credit{'s' if short != 1 else ''} short: {logged:g} of"
        f" {required:g} logged this cycle; {how} before renewing"
    )


#: The most CE credit entries one certification cycle keeps (``log_ce_credits`` refuses more,
#: and a refused update writes nothing to the workflow's history). Far above any real cycle
#: (dozens of courses), far below Temporal's 2,000 updates per run, so renewal always fits.
CE_CREDIT_ENTRIES_PER_CYCLE = 200


class CeCredit(Contract):
    """Continuing-education credits logged against the current cycle (an update's input)."""

    credits: float = Field(gt=0, le=1000, allow_inf_nan=False)
    activity: str = Field(min_length=2, max_length=300)
    earned_on: BoundedDate
    evidence_ref: str | None = Field(default=None, max_length=500)
    actor: str = Field(max_length=128)


class ClosedCycle(Contract):
    """The record of a finished cycle, kept in the next cycle's input (bounded: one per cycle)."""

    certificate: CertificateRecord
    #: renewed_early, renewed_in_window, renewed_in_grace, renewed_after_grace.
    outcome: str
    closed_on: BoundedDate
    ce_credits_logged: float = Field(default=0, ge=0, le=1_000_000, allow_inf_nan=False)
    #: The final status of the cycle before it closed (e.g. renewal_due, grace_period).
    last_status: str
    #: The run that carried the cycle (its history stays readable under the same workflow id).
    run_id: str


class CertificationInput(Contract):
    """Starts (or, after a renewal, continues) a ``CertificationWorkflow``."""

    person: ExternalId
    certification_id: ExternalId
    title: str = Field(min_length=1, max_length=200)
    certificate: CertificateRecord
    pack_hash: str = BUILTIN_PACK
    utc_offset_minutes: int = Field(default=0, ge=-14 * 60, le=14 * 60)
    registered_by: str = "system"
    #: Earlier cycles, oldest first (carried across continue-as-new).
    history: list[ClosedCycle] = Field(default_factory=list)
    #: CE credits already logged in this cycle: a restart (``services.restarts``) carries them into
    #: the fresh run; empty for a new cycle.
    ce_credits: list[CeCredit] = Field(default_factory=list, max_length=1000)

    @property
    def workflow_id(self) -> str:
        """The business-key workflow id."""
        return certification_workflow_id(self.person, self.certification_id)


class RenewCertification(Contract):
    """Update: a renewed certificate; the cycle closes and the next one begins."""

    certificate: CertificateRecord
    actor: str = Field(max_length=128)


class SuspendCertification(Contract):
    """Signal (HR): pause the certification (reminders stop) until it is reinstated."""

    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field(max_length=128)


class ReinstateCertification(Contract):
    """Signal (HR): lift a suspension; the ladder resumes from now."""

    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field(max_length=128)


class RevokeCertification(Contract):
    """Signal (HR): revoke the certification; terminal, reminders stop."""

    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field(max_length=128)


class CertificationEvent(LadderEvent):
    """One line of a certification's timeline (``issued``, ``renewed``, ``lapsed``, …)."""


class CertificationState(Contract):
    """What the certification workflow's ``state`` query answers."""

    workflow_id: str
    person: str
    certification_id: str
    title: str
    cycle: int
    status: str
    certificate: CertificateRecord
    renewal_opens_on: date | None
    grace_ends_on: date | None
    stage: str | None
    stages: list[LadderStage]
    stages_sent: list[str]
    ce_credits_required: float
    ce_credits_logged: float
    ce_credits: list[CeCredit]
    history: list[ClosedCycle]
    pack_hash: str
    events: list[CertificationEvent]

    @property
    def ce_credits_short(self) -> int:
        """Whole credits still missing for renewal (0 when enough are logged)."""
        return ce_credits_short(self.ce_credits_required, self.ce_credits_logged)


class CertificateUpdate(Contract):
    """Activity input: upsert one certificate's public verification record."""

    workflow_id: str
    person: str
    certification_id: str
    title: str
    certificate: CertificateRecord
    status: str
    as_of: datetime
