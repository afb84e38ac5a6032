"""API roles."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """API roles; a token carries exactly one."""

    HR_ADMIN = "hr_admin"
    MANAGER = "manager"
    LEARNER = "learner"
    AUDITOR = "auditor"
    INTEGRATION = "integration"
