"""Sweep contract (``workflows.sweep``): re-decide open obligations, re-plan moved people."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from domain.base import Contract


class SweepRequest(Contract):
    """Activity input: re-decide every open obligation's status with its pinned pack."""

    #: The instant to decide as of; "today" is each person's local date at this instant.
    as_of: datetime


class SweepResult(Contract):
    """Activity output: how many obligations were re-decided and how many changed status."""

    evaluated: int
    changed: int
    #: "old -> new" status transitions and their counts.
    transitions: dict[str, int] = Field(default_factory=dict)
    #: Obligations skipped because their pack is not stored or lacks the requirement.
    skipped: int = 0
    #: Rows their workflow wrote after the sweep read them (compare-and-set lost): left as the
    #: workflow wrote them; the next sweep decides them again.
    conflicts: int = 0
    #: Open obligations signalled to re-plan because their person moved time zone.
    replanned: int = 0


class ReplanRequest(Contract):
    """Activity input: signal every open obligation planned in a zone its person has left."""

    actor: str = Field(default="directory", max_length=128)


class ReplanResult(Contract):
    """Activity output: workflows signalled to re-plan, and those that had finished since."""

    signalled: int = 0
    finished: int = 0
