"""The nightly sweep's read phase: read model rows in, decisions of their pinned packs out.

An adapter: rows come from the store (:func:`store.sweep.open_pinned_obligations`), become
plain facts through the one fact builder and are decided by the rules engine; the write phase
is :func:`store.sweep.apply_sweep`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from activities.packs import load_version, person_attributes
from rules.engine import engine_for
from rules.obligation_facts import PersonAttributes, build_facts, local_today
from store.models import Obligation
from store.sweep import SweepChange, open_pinned_obligations


@dataclass
class SweepPlan:
    """The read phase of a sweep: how many rows were decided, skipped, and what changes."""

    evaluated: int = 0
    skipped: int = 0
    changes: list[SweepChange] = field(default_factory=list)


def plan_sweep(
    session: Session, as_of: datetime, *, progress: Callable[[int], None] | None = None
) -> SweepPlan:
    """Read every open pinned obligation and decide it with its pack as of ``as_of``.

    Facts come from the read model through the one fact builder, so a row decided by its
    workflow at ``as_of`` gets the same status here. Rows whose pack is not stored, or lacks
    the requirement, are skipped; statuses a workflow holds itself are not read at all.

    Args:
        session: A session (only read).
        as_of: The sweep's instant; "today" is each person's local date at it.
        progress: Called with the number decided so far after each pack (heartbeats).

    Raises:
        NoRuleMatched, FactsError: A pack cannot decide some facts (lint prevents it).
    """
    by_pack: dict[str, list[Obligation]] = {}
    for row in open_pinned_obligations(session):
        by_pack.setdefault(row.pack_hash, []).append(row)
    plan = SweepPlan()
    # Many obligations per person, few time zones: each is built once per sweep, not per row.
    people: dict[int, PersonAttributes] = {}
    todays: dict[str, date] = {}
    for pack_hash, obligations in by_pack.items():
        pack = load_version(session, pack_hash)
        if pack is None:
            plan.skipped += len(obligations)
            continue
        batch: list[tuple[Obligation, dict[str, Any]]] = []
        for row in obligations:
            requirement = pack.requirement(row.requirement_id)
            if requirement is None:
                plan.skipped += 1
                continue
            person = row.person
            attributes = people.get(person.id)
            if attributes is None:
                attributes = people[person.id] = person_attributes(person)
            today = todays.get(person.time_zone)
            if today is None:
                today = todays[person.time_zone] = local_today(person.time_zone, as_of)
            facts = build_facts(
                row.facts(), attributes, today=today, grace_days=requirement.grace_days
            )
            batch.append((row, facts))
        decisions = engine_for(pack).evaluate_many([facts for _, facts in batch])
        plan.evaluated += len(batch)
        for (row, _), decision in zip(batch, decisions, strict=True):
            # A row its workflow wrote after ``as_of`` is fresher than this decision.
            if row.status != decision.status and row.as_of <= as_of:
                plan.changes.append(
                    SweepChange(row.id, row.version, row.status, decision.status, decision.rule)
                )
        if progress is not None:
            progress(plan.evaluated)
    return plan
