"""The built-in status decision used until a rules pack is deployed (issue 3 replaces it).

Pure: facts in, decision out, with the rule name, like every decision Duly records.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from domain.ids import BUILTIN_PACK
from domain.statuses import ObligationStatus

DUE_SOON_WINDOW = timedelta(days=30)


class StatusDecision(BaseModel):
    """A status with the rule that produced it and the pack it came from."""

    model_config = ConfigDict(frozen=True)

    status: ObligationStatus
    rule: str
    pack_hash: str = BUILTIN_PACK


def builtin_status(
    *,
    now: datetime,
    due_at: datetime,
    completed: bool,
    cancelled: bool = False,
    not_applicable: bool = False,
) -> StatusDecision:
    """Decide an assignment's status; the first matching rule wins.

    Args:
        now: The instant of evaluation (workflow time).
        due_at: The instant the obligation becomes overdue.
        completed: Whether completion evidence was accepted.
        cancelled: Whether the assignment was cancelled.
        not_applicable: Cancelled because the requirement no longer applies (a mover).
    """
    if cancelled and not_applicable:
        return StatusDecision(status=ObligationStatus.NOT_APPLICABLE, rule="not_applicable")
    if cancelled:
        return StatusDecision(status=ObligationStatus.CANCELLED, rule="cancelled")
    if completed:
        return StatusDecision(status=ObligationStatus.COMPLETED, rule="completed")
    if now >= due_at:
        return StatusDecision(status=ObligationStatus.OVERDUE, rule="past_due_not_completed")
    if due_at - now <= DUE_SOON_WINDOW:
        return StatusDecision(status=ObligationStatus.DUE_SOON, rule="due_within_30_days")
    return StatusDecision(status=ObligationStatus.ASSIGNED, rule="assigned")
