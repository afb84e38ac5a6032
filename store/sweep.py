"""The nightly status sweep's reads and compare-and-set writes on the obligation read model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import Result, SQLColumnExpression, false, func, select, tuple_, update
from sqlalchemy.orm import Session

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


class SweepRow(NamedTuple):
    """One open pinned obligation as the sweep reads it: only the columns it uses.

    The obligation facts carry the names of ``ObligationFacts`` (so the row is what the one
    fact builder, :func:`rules.obligation_facts.build_facts`, reads), derived in SQL exactly as
    :meth:`store.models.Obligation.facts` derives them; the person's directory attributes are
    the names :class:`store.models.Person` has (``activities.packs.person_attributes``).
    """

    id: int
    version: int
    status: str
    as_of: datetime
    pack_hash: str
    # The obligation's facts (ObligationFacts' names).
    kind: str
    requirement_id: str
    due_date: date | None
    expiry_date: date | None
    completed: bool
    acknowledged: bool
    started: bool
    exempt: bool
    exempt_until: date | None
    ce_credits_short: int
    # The person's (the directory's names).
    person_id: int
    time_zone: str
    roles: list[str] | None
    department: str | None
    location: str | None
    employer: str | None
    employment_status: str


def open_pinned_rows(session: Session) -> list[SweepRow]:
    """Every open obligation pinned to a deployed pack whose status the calendar moves.

    Completed rows, rows pinned to the built-in rules, suspended rows and statuses a workflow
    holds itself are not read. Ordered by pack, then id (one pack loaded per group).

    One SELECT of the columns the sweep uses, joined with the person, read as tuples:
    loading full ``Obligation`` and ``Person`` objects (identity map, every column, then a
    validated ``ObligationFacts`` each) was most of the sweep's read phase (bench/README.md).
    """
    o, p = Obligation, Person
    columns: dict[str, SQLColumnExpression[Any]] = {
        "id": o.id,
        "version": o.version,
        "status": o.status,
        "as_of": o.as_of,
        "pack_hash": o.pack_hash,
        "kind": o.kind,
        "requirement_id": o.requirement_id,
        "due_date": o.due_date,
        "expiry_date": o.expiry_date,
        # As Obligation.facts() derives them: a fact holds when its instant is recorded (the
        # expressions are typed Boolean, so SQLite's 0/1 come back as bool).
        "completed": o.completed_at.is_not(None),
        "acknowledged": o.acknowledged_at.is_not(None),
        "started": o.started_at.is_not(None),
        "exempt": func.coalesce(o.exempt, false()),
        "exempt_until": o.exempt_until,
        "ce_credits_short": func.coalesce(o.ce_credits_short, 0),
        "person_id": o.person_id,
        "time_zone": p.time_zone,
        "roles": p.roles,
        "department": p.department,
        "location": p.location,
        "employer": p.employer,
        "employment_status": p.employment_status,
    }
    result: Result[Any] = session.execute(
        # In SweepRow's order, so each tuple is one.
        select(*(columns[name].label(name) for name in SweepRow._fields))
        .select_from(o)
        .join(p, p.id == o.person_id)
        .where(o.completed_at.is_(None))
        .where(o.status.notin_(WORKFLOW_HELD_STATUSES))
        .where(o.suspended.is_(False))
        .where(o.pack_hash != BUILTIN_PACK)
        .order_by(o.pack_hash, o.id)
    )
    make = SweepRow._make
    return [make(row) for row in result]


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
