"""The sweep's light read path feeds the one fact builder exactly as the ORM path did.

The sweep reads tuples of the columns it needs (``store.sweep.open_pinned_rows``) instead of
full ``Obligation``/``Person`` objects and ``ObligationFacts`` models. Here a varied seeded set
of obligations (kinds, dates, flags, held and suspended statuses, built-in and unknown packs,
requirements a pack lacks, people in several zones with missing attributes) is read both
ways: the rows read, the facts built and the decisions must be the same.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from activities.packs import load_version, person_attributes
from activities.sweep import plan_sweep, sweep_facts
from rules.engine import engine_for
from rules.loader import load_pack
from rules.obligation_facts import build_facts, local_today
from store.db import Database
from store.models import Obligation, Person
from store.packs import Migration, deploy

PACKS = Path(__file__).parents[2] / "rules" / "packs"
AS_OF = datetime(2027, 2, 14, 23, 30, tzinfo=UTC)  # a date line apart: zones disagree on today
ZONES = ["UTC", "Pacific/Kiritimati", "America/Los_Angeles", "Asia/Kolkata", "Not/AZone"]
STATUSES = ["assigned", "compliant", "due_soon", "overdue", "grace_period", "expired", "exempt"]
HELD = ["cancelled", "not_applicable", "suspended", "revoked"]


def _seed(db: Database, n: int = 400) -> None:
    rng = random.Random(19)
    packs = [load_pack(PACKS / "medical-practice"), load_pack(PACKS / "field-technicians")]
    with db.session() as session:
        for pack in packs:
            deploy(session, pack, author="test", message=None, migration=Migration.GRANDFATHER)
        people = [
            Person(
                external_id=f"p-{i}",
                name=f"Person {i}",
                roles=rng.sample(["nurse", "pharmacist", "apprentice", "supervisor"], i % 3),
                department=rng.choice([None, "", "Pharmacy", "HVAC Service"]),
                location=rng.choice([None, "North"]),
                employer=rng.choice([None, "Acme Staffing"]),
                employment_status=rng.choice(["active", "leave", "terminated"]),
                time_zone=ZONES[i % len(ZONES)],
            )
            for i in range(37)
        ]
        session.add_all(people)
        session.flush()
        today = AS_OF.date()
        for i in range(n):
            pack = rng.choice(packs)
            requirement = rng.choice(pack.requirements)
            pinned = rng.choices(
                [pack.content_hash, "builtin", "f" * 64], weights=[0.9, 0.05, 0.05]
            )[0]
            certification = requirement.kind.value == "certification"
            due = today + timedelta(days=rng.randint(-90, 120))
            expiry = today + timedelta(days=rng.randint(-60, 400)) if certification else None
            session.add(
                Obligation(
                    workflow_id=f"wf/{i}",
                    person_id=people[i % len(people)].id,
                    kind=requirement.kind.value,
                    requirement_id=requirement.id if rng.random() > 0.05 else "not-in-pack",
                    requirement_title="t",
                    # A certification records its expiry as its due date, or none at all.
                    due_date=rng.choice([expiry, None]) if certification else due,
                    expiry_date=expiry,
                    status=rng.choice(STATUSES + HELD if rng.random() < 0.1 else STATUSES),
                    pack_hash=pinned,
                    acknowledged_at=AS_OF - timedelta(days=3) if rng.random() < 0.3 else None,
                    completed_at=AS_OF - timedelta(days=1) if rng.random() < 0.1 else None,
                    started_at=AS_OF - timedelta(days=5) if rng.random() < 0.3 else None,
                    exempt=rng.random() < 0.15,
                    exempt_until=today + timedelta(days=rng.randint(-5, 5))
                    if rng.random() < 0.5
                    else None,
                    ce_credits_short=rng.choice([0, 0, 3]) if certification else 0,
                    suspended=rng.random() < 0.05,
                    # A few rows their workflow wrote after the sweep's instant.
                    as_of=AS_OF + timedelta(minutes=rng.choice([-1440, -1440, -1440, 5])),
                )
            )


def _orm_path(session: Session) -> dict[int, tuple[str, dict[str, Any], str, bool]]:
    """The sweep's read path before: ORM objects, ``Obligation.facts()``, ``person_attributes``.

    {id: (pack hash, facts, status, written after the sweep's instant)} for every row decided.
    """
    rows = session.scalars(
        select(Obligation)
        .where(Obligation.completed_at.is_(None))
        .where(Obligation.status.notin_(HELD))
        .where(Obligation.suspended.is_(False))
        .where(Obligation.pack_hash != "builtin")
        .order_by(Obligation.pack_hash, Obligation.id)
        .options(joinedload(Obligation.person).lazyload(Person.manager))
    )
    out: dict[int, tuple[str, dict[str, Any], str, bool]] = {}
    for row in rows:
        pack = load_version(session, row.pack_hash)
        requirement = pack.requirement(row.requirement_id) if pack else None
        if requirement is None:
            continue
        facts = build_facts(
            row.facts(),
            person_attributes(row.person),
            today=local_today(row.person.time_zone, AS_OF),
            grace_days=requirement.grace_days,
        )
        out[row.id] = (row.pack_hash, facts, row.status, row.as_of > AS_OF)
    return out


def test_the_light_read_path_builds_the_facts_the_orm_path_built(db: Database) -> None:
    _seed(db)
    with db.session() as session:
        before = _orm_path(session)
        groups = list(sweep_facts(session, AS_OF))
        plan = plan_sweep(session, AS_OF)
    after = {
        row.id: (group.pack_hash, facts)
        for group in groups
        for row, facts in zip(group.rows, group.facts, strict=True)
    }
    # Same rows decided, same facts (values and exact types: the engine checks types).
    assert after.keys() == before.keys()
    assert 200 < len(after) < 400, len(after)  # the filters and skips did drop some rows
    for oid, (pack_hash, facts) in after.items():
        assert pack_hash == before[oid][0]
        assert facts == before[oid][1], oid
        assert {k: type(v) for k, v in facts.items()} == {
            k: type(v) for k, v in before[oid][1].items()
        }, oid
    # The set varies what the facts depend on.
    values = [f for _, f in after.values()]
    for name in ("kind", "acknowledged", "started", "exempt", "in_grace", "employment_status"):
        assert len({str(f[name]) for f in values}) > 1, name
    assert len({f["days_until_due"] for f in values}) > 50
    # Same skips (a pack never stored, a requirement the pack lacks) and the same changes as
    # the old path's facts decided by the same engine.
    assert plan.evaluated == len(before)
    assert plan.skipped == sum(group.skipped for group in groups) > 0
    expected: dict[int, str] = {}
    with db.session() as session:
        for oid, (pack_hash, facts, status, later) in before.items():
            pack = load_version(session, pack_hash)
            assert pack is not None
            decided = engine_for(pack).evaluate(facts).status
            if decided != status and not later:
                expected[oid] = decided
    assert {c.obligation_id: c.status_after for c in plan.changes} == expected
    assert len(expected) > 50
