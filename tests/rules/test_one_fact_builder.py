"""One fact builder: the nightly sweep decides from what the workflow decided with.

The issue: an exempt obligation swept at night became ``due_soon`` (the sweep's facts had no
``exempt``, ``started``, ``ce_credits_short``...). Here every state a workflow can be in is
decided through ``decide_status`` and recorded through ``record_obligation`` exactly as the
workflows do, and a sweep at the same instant, with the same pack, must change nothing.
Then the sweep's compare-and-set: a row its workflow wrote after the sweep read it is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from activities.assignment import AssignmentActivities
from activities.rules import RulesActivities
from domain.contracts.obligation import DecideRequest, ObligationFacts, ObligationUpdate
from domain.contracts.sweep import SweepRequest
from domain.kinds import ObligationKind
from rules.loader import load_pack
from rules.model import Pack
from rules.obligation_facts import local_today
from store.db import Database
from store.migrate import upgrade
from store.models import Obligation, Person
from store.packs import Migration, deploy

PACKS = Path(__file__).parents[2] / "rules" / "packs"
PROBE = Path(__file__).parent / "packs" / "fact-probe"
ZONES = ["UTC", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "Pacific/Kiritimati"]
EMPLOYERS = ["", "Keystone Lift Contractors", "Acme Staffing", "Summit Vertical & Climate Services"]
ROLES = ["nurse", "pharmacist", "elevator_mechanic", "apprentice", "supervisor", "hvac_technician"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, list[Pack]]]:
    """One SQLite database with the two example packs and the fact probe deployed."""
    url = f"sqlite:///{tmp_path_factory.mktemp('facts') / 'duly.db'}"
    upgrade(url)
    db = Database(url)
    packs = [load_pack(PACKS / "medical-practice"), load_pack(PACKS / "field-technicians")]
    packs.append(load_pack(PROBE))
    with db.session() as session:
        for pack in packs:
            deploy(session, pack, author="test", message=None, migration=Migration.GRANDFATHER)
        session.add(Person(external_id="p-1", name="Ada Lovelace", time_zone="UTC"))
    try:
        yield db, packs
    finally:
        db.dispose()


@st.composite
def workflow_states(draw: st.DrawFn, packs: list[Pack]) -> dict[str, Any]:
    """A state some workflow can be in, as the facts it decides with and what it records."""
    pack = draw(st.sampled_from(packs))
    requirement = draw(st.sampled_from(pack.requirements))
    as_of = datetime(2027, 1, 1, tzinfo=UTC) + timedelta(
        minutes=draw(st.integers(0, 2 * 365 * 24 * 60))
    )
    zone = draw(st.sampled_from(ZONES))
    today = local_today(zone, as_of)
    certification = requirement.kind is ObligationKind.CERTIFICATION
    days = draw(st.integers(-60, 400))
    acknowledged = draw(st.booleans())
    # An exemption in force: until revoked, or through a day not yet past (the workflow lifts
    # it at the end of that day, so a lapsed one is never recorded as exempt).
    exempt = not certification and draw(st.booleans())
    exempt_until = (
        today + timedelta(days=draw(st.integers(0, 90))) if exempt and draw(st.booleans()) else None
    )
    if certification:
        facts = ObligationFacts(
            kind=requirement.kind,
            requirement_id=requirement.id,
            expiry_date=today + timedelta(days=days),
            acknowledged=acknowledged,
            ce_credits_short=draw(st.integers(0, 8)),
        )
    else:
        facts = ObligationFacts(
            kind=requirement.kind,
            requirement_id=requirement.id,
            due_date=today + timedelta(days=days),
            completed=draw(st.booleans()),
            acknowledged=acknowledged,
            started=draw(st.booleans()),
            exempt=exempt,
            exempt_until=exempt_until,
        )
    return {
        "pack": pack,
        "facts": facts,
        "as_of": as_of,
        "zone": zone,
        # Statuses the workflow holds itself instead of asking the rules.
        "held": draw(st.sampled_from([None, None, None, "cancelled", "suspended", "revoked"])),
        "employer": draw(st.sampled_from(EMPLOYERS)),
        "roles": draw(st.lists(st.sampled_from(ROLES), max_size=2, unique=True)),
        "department": draw(st.sampled_from(["", "Elevator Service", "HVAC Service", "Pharmacy"])),
        "employment_status": draw(st.sampled_from(["active", "leave"])),
    }


def _record_as_the_workflow_does(db: Database, state: dict[str, Any]) -> str:
    """Decide with ``decide_status`` and write the read model with ``record_obligation``."""
    facts: ObligationFacts = state["facts"]
    as_of: datetime = state["as_of"]
    pack: Pack = state["pack"]
    workflow_id = f"wf/{facts.requirement_id}"
    decision = RulesActivities(db).decide_status(
        DecideRequest.of(
            facts, workflow_id=workflow_id, pack_hash=pack.content_hash, person="p-1", as_of=as_of
        )
    )
    held = state["held"]
    certification = facts.kind is ObligationKind.CERTIFICATION
    if held == "suspended" and not certification:
        held = None  # only certifications are suspended
    update = ObligationUpdate(
        workflow_id=workflow_id,
        person="p-1",
        kind=facts.kind,
        requirement_id=facts.requirement_id,
        requirement_title=facts.requirement_id,
        cycle=1,
        # The certification workflow records its expiry date as the due date too.
        due_date=facts.expiry_date if certification else facts.due_date,
        expiry_date=facts.expiry_date,
        stage=None,
        status=held or decision.status,
        pack_hash=pack.content_hash,
        acknowledged_at=as_of - timedelta(days=1) if facts.acknowledged else None,
        completed_at=as_of - timedelta(hours=1) if facts.completed else None,
        started_at=as_of - timedelta(days=2) if facts.started else None,
        exempt=facts.exempt,
        exempt_until=facts.exempt_until,
        ce_credits_short=facts.ce_credits_short,
        suspended=held == "suspended",
        as_of=as_of,
    )
    # What the read model records is what was decided with.
    assert update.facts().model_copy(update={"due_date": facts.due_date}) == facts
    AssignmentActivities(db).record_obligation(update)
    return update.status


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_sweep_at_the_same_instant_changes_nothing(
    world: tuple[Database, list[Pack]], data: st.DataObject
) -> None:
    db, packs = world
    state = data.draw(workflow_states(packs))
    with db.session() as session:
        for row in session.scalars(select(Obligation)):
            session.delete(row)
        person = session.scalar(select(Person).where(Person.external_id == "p-1"))
        assert person is not None
        person.time_zone = state["zone"]
        person.employer = state["employer"]
        person.roles = state["roles"]
        person.department = state["department"]
        person.employment_status = state["employment_status"]
    recorded = _record_as_the_workflow_does(db, state)

    result = ActivityEnvironment().run(
        RulesActivities(db).sweep_statuses, SweepRequest(as_of=state["as_of"])
    )

    assert (result.changed, result.transitions, result.conflicts) == (0, {}, 0), state
    with db.session() as session:
        assert session.scalar(select(Obligation.status)) == recorded


def test_the_issue_exempt_is_not_rewritten_to_due_soon(world: tuple[Database, list[Pack]]) -> None:
    """The reproduction from the issue, on the medical pack: exempt stays exempt."""
    db, packs = world
    medical = packs[0]
    as_of = datetime(2027, 3, 1, 8, tzinfo=UTC)
    with db.session() as session:
        for row in session.scalars(select(Obligation)):
            session.delete(row)
    facts = ObligationFacts(
        kind=ObligationKind.TRAINING,
        requirement_id="hipaa-privacy-security",
        due_date=date(2027, 3, 10),
        exempt=True,
    )
    state = {
        "pack": medical,
        "facts": facts,
        "as_of": as_of,
        "held": None,
    }
    assert _record_as_the_workflow_does(db, state) == "exempt"
    result = ActivityEnvironment().run(
        RulesActivities(db).sweep_statuses, SweepRequest(as_of=as_of + timedelta(days=1))
    )
    assert result.transitions == {}
    with db.session() as session:
        assert session.scalar(select(Obligation.status)) == "exempt"


# --- compare-and-set ---------------------------------------------------------------------

NOW = datetime(2027, 5, 3, 12, tzinfo=UTC)


def _seed_two(db: Database) -> tuple[str, str]:
    """Two pinned trainings the calendar has moved on (both compliant -> due_soon)."""
    pack = load_pack(PACKS / "medical-practice")
    with db.session() as session:
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
        person = Person(external_id="p-cas", name="Ada", time_zone="UTC")
        session.add(person)
        session.flush()
        for requirement in ("fire-safety", "hipaa-privacy-security"):
            session.add(
                Obligation(
                    workflow_id=f"assignment/p-cas/{requirement}/1",
                    person_id=person.id,
                    kind="training",
                    requirement_id=requirement,
                    requirement_title=requirement,
                    due_date=(NOW + timedelta(days=10)).date(),
                    status="compliant",
                    pack_hash=pack.content_hash,
                    as_of=NOW - timedelta(days=1),
                )
            )
    return pack.content_hash, "assignment/p-cas/fire-safety/1"


def _row(db: Database, workflow_id: str) -> Obligation:
    with db.session() as session:
        row = session.scalar(select(Obligation).where(Obligation.workflow_id == workflow_id))
        assert row is not None
        return row


def test_the_sweep_never_overwrites_a_row_written_after_it_read_it(db: Database) -> None:
    """A completion lands between the sweep's read and its write: the completion stays."""
    from activities.sweep import plan_sweep
    from store.sweep import apply_sweep

    pack_hash, fire = _seed_two(db)
    with db.session() as session:
        plan = plan_sweep(session, NOW)
    assert sorted((c.status_before, c.status_after) for c in plan.changes) == [
        ("compliant", "due_soon"),
        ("compliant", "due_soon"),
    ]
    version_read = _row(db, fire).version

    # Mid-sweep: the fire-safety workflow records its completion (workflow time a little
    # *before* the sweep's instant, as when its activity was delayed).
    AssignmentActivities(db).record_obligation(
        ObligationUpdate(
            workflow_id=fire,
            person="p-cas",
            kind=ObligationKind.TRAINING,
            requirement_id="fire-safety",
            requirement_title="fire-safety",
            cycle=1,
            due_date=(NOW + timedelta(days=10)).date(),
            stage="-14d",
            status="compliant",
            pack_hash=pack_hash,
            completed_at=NOW - timedelta(minutes=5),
            as_of=NOW - timedelta(minutes=5),
        )
    )
    assert _row(db, fire).version == version_read + 1

    with db.session() as session:
        outcome = apply_sweep(session, plan.changes)
    assert (outcome.applied, outcome.conflicts) == (1, 1)
    assert outcome.transitions == {"compliant -> due_soon": 1}
    completed = _row(db, fire)
    assert completed.status == "compliant" and completed.completed_at is not None
    other = _row(db, "assignment/p-cas/hipaa-privacy-security/1")
    assert other.status == "due_soon" and other.version == 2

    # A later workflow write still lands: the sweep did not move the workflow's clock.
    AssignmentActivities(db).record_obligation(
        ObligationUpdate(
            workflow_id=other.workflow_id,
            person="p-cas",
            kind=ObligationKind.TRAINING,
            requirement_id="hipaa-privacy-security",
            requirement_title="hipaa-privacy-security",
            cycle=1,
            due_date=other.due_date,
            stage="-14d",
            status="compliant",
            pack_hash=pack_hash,
            completed_at=NOW - timedelta(minutes=1),
            as_of=NOW - timedelta(minutes=1),
        )
    )
    assert _row(db, other.workflow_id).completed_at is not None
    assert _row(db, other.workflow_id).version == 3

    # The next sweep has nothing left to decide (both completed).
    result = ActivityEnvironment().run(
        RulesActivities(db).sweep_statuses, SweepRequest(as_of=NOW + timedelta(hours=1))
    )
    assert (result.evaluated, result.changed, result.conflicts) == (0, 0, 0)
