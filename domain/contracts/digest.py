"""Digest contract (``workflows.digest.DigestWorkflow``): reminders folded per person and day."""

from __future__ import annotations

from datetime import date

from pydantic import Field

from domain.base import Contract
from domain.bounds import BoundedDate


class DigestItem(Contract):
    """Signal: one queued (non-final) reminder to fold into the person's digest of the day."""

    notification_id: int


class DigestInput(Contract):
    """Starts a :class:`~workflows.digest.DigestWorkflow` for one person, day and channel."""

    person: str
    channel: str
    day: BoundedDate
    #: How long the first reminder waits for others (settings.digest_window_seconds).
    window_seconds: int = Field(default=600, ge=0, le=86_400)


class DigestRequest(Contract):
    """Activity input: send the queued reminders of one person/day/channel (one, or a digest)."""

    person: str
    channel: str
    day: date
    notification_ids: list[int]


class DigestResult(Contract):
    """Activity output: how the queued reminders went out."""

    sent: int
    folded: int
    status: str
