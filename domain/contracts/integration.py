"""Learning-system integration syncs: what the schedule's workflow asks and what a sync did."""

from __future__ import annotations

from pydantic import Field

from domain.base import Contract

#: The connectors Duly has.
INTEGRATION_KINDS = ("moodle", "xapi_lrs", "csv_drop")


def integration_schedule_id(integration_id: int) -> str:
    """The Temporal Schedule that syncs one integration (business key: the integration)."""
    return f"duly-integration-{integration_id}"


def integration_workflow_id(integration_id: int) -> str:
    """The sync workflow's id (a schedule appends its start time to it)."""
    return f"integration-sync/{integration_id}"


class SyncRequest(Contract):
    """Sync one integration now."""

    integration_id: int = Field(ge=1)
    #: ``schedule``, ``api`` or ``cli``: who asked (kept in the sync's result and log).
    trigger: str = Field(default="schedule", max_length=32)


class SyncResult(Contract):
    """What one sync did (the integration row keeps the cursor, time and error count)."""

    integration_id: int
    ok: bool
    #: Items pulled from the source and handed to the intake (statements, completions, rows).
    pulled: int = 0
    recorded: int = 0
    #: Duplicates, ignored statements and items whose cycle was already complete.
    skipped: int = 0
    dead_lettered: int = 0
    #: Enrolments pushed to the learning system (Moodle).
    pushed: int = 0
    error: str | None = Field(default=None, max_length=500)
