"""The nightly sweep's read phase: read model rows in, decisions of their pinned packs out.

An adapter: rows come from the store (:func:`store.sweep.open_pinned_rows`, the columns the
facts need as tuples), become plain facts through the one fact builder and are decided by the
rules engine; the write phase is :func:`store.sweep.apply_sweep`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from activities.packs import load_version, person_attributes
from domain.kinds import ObligationKind
from rules.engine import engine_for
from rules.model import Pack
from rules.obligation_facts import build_facts, local_today
from store.sweep import SweepChange, SweepRow, open_pinned_rows


@dataclass
class SweepPlan:
    """The read phase of a sweep: how many rows were decided, skipped, and what changes."""

    evaluated: int = 0
    skipped: int = 0
    changes: list[SweepChange] = field(default_factory=list)


@dataclass
class PackFacts:
    """One pack's rows in a sweep: those to decide, with their facts, and those skipped.

    ``rows`` and ``facts`` are in the same order; ``skipped`` counts the rows not decided (the
    pack is not stored, or lacks the requirement).
    """

    pack_hash: str
    pack: Pack | None
    rows: list[SweepRow] = field(default_factory=list)
    facts: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0


def sweep_facts(session: Session, as_of: datetime) -> Iterator[PackFacts]:
    """Every open pinned obligation's facts as of ``as_of``, one pack at a time.

    Rows come as tuples of the columns the facts need (:func:`store.sweep.open_pinned_rows`)
    and go through the one fact builder, :func:`rules.obligation_facts.build_facts`, exactly
    as ``Obligation.facts()`` and ``person_attributes`` would feed it (a test holds the two
    paths equal); statuses a workflow holds itself are not read at all.

    Args:
        session: A session (only read).
        as_of: The sweep's instant; "today" is each person's local date at it.

    Raises:
        ValueError: A row's kind is not an obligation kind.
    """
    by_pack: dict[str, list[SweepRow]] = {}
    for row in open_pinned_rows(session):
        by_pack.setdefault(row.pack_hash, []).append(row)
    # Many obligations per person, few time zones and kinds: each is built (or checked) once
    # per sweep, not per row. A person's attributes are dumped once too (build_facts only
    # reads them).
    people: dict[int, dict[str, Any]] = {}
    todays: dict[str, date] = {}
    kinds: set[str] = set()
    for pack_hash, rows in by_pack.items():
        pack = load_version(session, pack_hash)
        group = PackFacts(pack_hash, pack)
        if pack is None:
            group.skipped = len(rows)
            yield group
            continue
        # requirement id -> its grace days (None: not in this pack, the row is skipped).
        grace: dict[str, int | None] = {}
        for row in rows:
            if row.requirement_id not in grace:
                requirement = pack.requirement(row.requirement_id)
                grace[row.requirement_id] = None if requirement is None else requirement.grace_days
            grace_days = grace[row.requirement_id]
            if grace_days is None:
                group.skipped += 1
                continue
            if row.kind not in kinds:
                ObligationKind(row.kind)  # an unknown kind fails as Obligation.facts() does
                kinds.add(row.kind)
            attributes = people.get(row.person_id)
            if attributes is None:
                attributes = people[row.person_id] = person_attributes(row).model_dump()
            today = todays.get(row.time_zone)
            if today is None:
                today = todays[row.time_zone] = local_today(row.time_zone, as_of)
            group.rows.append(row)
            group.facts.append(build_facts(row, attributes, today=today, grace_days=grace_days))
        yield group


def plan_sweep(
    session: Session, as_of: datetime, *, progress: Callable[[int], None] | None = None
) -> SweepPlan:
    """Read every open pinned obligation and decide it with its pack as of ``as_of``.

    Facts come from the read model through the one fact builder (:func:`sweep_facts`), so a
    row decided by its workflow at ``as_of`` gets the same status here. Rows whose pack is not
    stored, or lacks the requirement, are skipped; statuses a workflow holds itself are not
    read at all.

    Args:
        session: A session (only read).
        as_of: The sweep's instant; "today" is each person's local date at it.
        progress: Called with the number decided so far after each pack (heartbeats).

    Raises:
        NoRuleMatched, FactsError: A pack cannot decide some facts (lint prevents it).
    """
    plan = SweepPlan()
    for group in sweep_facts(session, as_of):
        plan.skipped += group.skipped
        if group.pack is None:
            continue
        decisions = engine_for(group.pack).evaluate_many(group.facts)
        plan.evaluated += len(group.rows)
        for row, decision in zip(group.rows, decisions, strict=True):
            # A row its workflow wrote after ``as_of`` is fresher than this decision.
            if row.status != decision.status and row.as_of <= as_of:
                plan.changes.append(
                    SweepChange(row.id, row.version, row.status, decision.status, decision.rule)
                )
        if progress is not None:
            progress(plan.evaluated)
    return plan
