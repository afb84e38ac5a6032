"""Obligation and employment statuses."""

from __future__ import annotations

from enum import StrEnum


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
