"""The nightly status sweep's reads and compare-and-set writes on the obligation read model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from domain.ids import BUILTIN_PACK
from store.models import Obligation

#: Statuses a workflow sets itself, not the calendar: a sweep never re-decides them.
WORKFLOW_HELD_STATUSES = ("cancelled", "not_applicable", "suspended", "revoked")


@dataclass(frozen=True)
class SweepChange:
    """A status the sweep would write: the row as read (id, version) and the new decision."""

    obligation_id: int
    version: int
    status_before: str
    status_after: str
    rule: str


@dataclass
class SweepConflicts:
    """The write phase of (part of) a sweep: rows updated, rows changed since the read."""

    applied: int = 0
    conflicts: int = 0
    transitions: dict[str, int] = field(default_factory=dict)


def open_pinned_obligations(session: Session) -> list[Obligation]:
    """Every open obligation pinned to a deployed pack whose status the calendar moves.

    Completed rows, rows pinned to the built-in rules, suspended rows and statuses a workflow
    holds itself are not read. Ordered by pack, then id (one pack loaded per group).
    """
    return list(
        session.scalars(
            select(Obligation)
            .where(Obligation.completed_at.is_(None))
            .where(Obligation.status.notin_(WORKFLOW_HELD_STATUSES))
            .where(Obligation.suspended.is_(False))
            .where(Obligation.pack_hash != BUILTIN_PACK)
            .order_by(Obligation.pack_hash, Obligation.id)
        )
    )


def apply_sweep(session: Session, changes: Sequence[SweepChange]) -> SweepConflicts:
    """Write the sweep's decisions, each only if its row is still at the version read.

    Compare-and-set (``UPDATE … WHERE id = … AND version = …``): a row its workflow wrote in
    between (a completion, an exemption, a new due date) keeps what the workflow wrote. The
    sweep does not move ``as_of`` (the workflow's clock): a workflow update is never refused
    because a sweep ran.
    """
    outcome = SweepConflicts()
    for change in changes:
        result = session.execute(
            update(Obligation)
            .where(Obligation.id == change.obligation_id)
            .where(Obligation.version == change.version)
            .values(status=change.status_after, version=Obligation.version + 1),
            execution_options={"synchronize_session": False},
        )
        if getattr(result, "rowcount", 0) == 1:
            outcome.applied += 1
            key = f"{change.status_before} -> {change.status_after}"
            outcome.transitions[key] = outcome.transitions.get(key, 0) + 1
        else:
            outcome.conflicts += 1
    return outcome
