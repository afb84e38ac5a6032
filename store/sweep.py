"""The nightly status sweep's reads and compare-and-set writes on the obligation read model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session, joinedload

from domain.ids import BUILTIN_PACK
from store.models import Obligation, Person

#: Statuses a workflow sets itself, not the calendar: a sweep never re-decides them.
WORKFLOW_HELD_STATUSES = ("cancelled", "not_applicable", "suspended", "revoked")
#: Rows per UPDATE statement (well under SQLite's 32,766 bound parameters: two per row).
_CHUNK = 1_000


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
            # The person, but not their manager (the model joins both by default): the sweep
            # never reads managers, and at 100,000 rows the self-join was a large share.
            .options(joinedload(Obligation.person).lazyload(Person.manager))
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
    # One statement per target status (a handful), not one per row: at 100,000 changes the
    # per-row round trips were ~80 % of the sweep. RETURNING says which rows were still at the
    # version read (PostgreSQL, and SQLite >= 3.35); the rest are conflicts.
    by_status: dict[str, list[SweepChange]] = {}
    for change in changes:
        by_status.setdefault(change.status_after, []).append(change)
    for status, group in by_status.items():
        for first in range(0, len(group), _CHUNK):
            part = group[first : first + _CHUNK]
            applied = set(
                session.scalars(
                    update(Obligation)
                    .where(
                        tuple_(Obligation.id, Obligation.version).in_(
                            [(c.obligation_id, c.version) for c in part]
                        )
                    )
                    .values(status=status, version=Obligation.version + 1)
                    .returning(Obligation.id),
                    execution_options={"synchronize_session": False},
                )
            )
            for change in part:
                if change.obligation_id in applied:
                    outcome.applied += 1
                    key = f"{change.status_before} -> {change.status_after}"
                    outcome.transitions[key] = outcome.transitions.get(key, 0) + 1
                else:
                    outcome.conflicts += 1
    return outcome
