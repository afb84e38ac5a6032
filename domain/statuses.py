"""Obligation and employment statuses."""

from __future__ import annotations

from enum import StrEnum

#: The longest status name the read models hold (``obligations.status``, the decisions, an
#: apprenticeship's ``compliance_status``): a pack's status longer than this is refused when
#: the pack loads, not when a workflow first records it.
STATUS_MAX_CHARS = 32


class ObligationStatus(StrEnum):
    """An obligation's compliance status as shown to people."""

    ASSIGNED = "assigned"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    #: Closed because the requirement no longer applies to the person (a mover).
    NOT_APPLICABLE = "not_applicable"


class EmploymentStatus(StrEnum):
    """A person's employment status from the HRIS."""

    ACTIVE = "active"
    LEAVE = "leave"
    TERMINATED = "terminated"


# How dashboards count an obligation's status (built-in statuses and the packs' own ones).
#: Counts as compliant (done, or lawfully not required).
COMPLIANT_STATUSES = frozenset({"completed", "compliant", "exempt"})
#: Counts against compliance: past due, lapsed, failed or withdrawn.
OVERDUE_STATUSES = frozenset({"overdue", "non_compliant", "expired", "lapsed", "failed", "revoked"})
#: Not counted at all: the obligation no longer applies.
CLOSED_STATUSES = frozenset({"cancelled", "superseded"})
#: Certification statuses that mean the certificate is no longer valid.
EXPIRED_STATUSES = frozenset({"expired", "lapsed"})
