"""Recorded decisions: the decide activity and the read-model writer record each one once."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from activities.assignment import ObligationActivities
from activities.rules import RulesActivities
from domain.contracts.obligation import DecideRequest, ObligationUpdate
from domain.kinds import ObligationKind
from duly.demo import load_demo_people
from duly.settings import Settings
from rules.loader import load_pack
from store.db import Database
from store.decisions import (
    in_force,
    month_end,
    record_decision,
    refresh_snapshots,
    requirement_counts_at,
    status_counts_at,
)
from store.models import DecisionRecord, DecisionSnapshot, Person
from store.packs import Migration, deploy

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
AT = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


def _rows(db: Database) -> list[DecisionRecord]:
    with db.session() as session:
        rows = list(session.scalars(select(DecisionRecord).order_by(DecisionRecord.id)))
        session.expunge_all()
    return rows


def test_decide_status_records_its_decision_once(db: Database) -> None:
    with db.session() as session:
        assert load_demo_people(session).errors == []
        version = deploy(
            session, load_pack(MEDICAL), author="hr", message="v1", migration=Migration.GRANDFATHER
        )
        pack_hash = version.content_hash
    request = DecideRequest(
        workflow_id="assignment/p-1020/hipaa-privacy-security/1",
        pack_hash=pack_hash,
        person="p-1020",
        kind=ObligationKind.TRAINING,
        requirement_id="hipaa-privacy-security",
        due_date=date(2026, 3, 1),
        as_of=AT,
        trigger="signal: extend",
    )
    activities = RulesActivities(db)
    decision = activities.decide_status(request)
    again = activities.decide_status(request)  # a retried attempt
    assert again == decision
    (row,) = _rows(db)
    assert (row.status, row.rule, row.pack_hash) == (decision.status, decision.rule, pack_hash)
    assert row.facts == decision.facts
    assert row.decided_at == AT
    assert (row.source, row.trigger) == ("rules", "signal: extend")
    with db.session() as session:
        person_id = session.scalar(select(Person.id).where(Person.external_id == "p-1020"))
        assert person_id is not None
        found = in_force(
            session, person_id=person_id, requirement_id="hipaa-privacy-security", at=AT
        )
        assert found is not None and found.id == row.id
        assert (
            in_force(
                session,
                person_id=person_id,
                requirement_id="hipaa-privacy-security",
                at=AT - timedelta(seconds=1),
            )
            is None
        )


def _update(status: str, at: datetime, rule: str | None = None) -> ObligationUpdate:
    return ObligationUpdate(
        workflow_id="assignment/p-1021/fire/1",
        person="p-1021",
        kind=ObligationKind.TRAINING,
        requirement_id="fire",
        requirement_title="Fire safety",
        cycle=1,
        due_date=date(2026, 4, 1),
        stage=None,
        status=status,
        pack_hash="builtin",
        as_of=at,
        rule=rule,
        trigger="stage: -7d",
    )


def test_record_obligation_records_status_changes_decided_in_the_workflow(db: Database) -> None:
    with db.session() as session:
        assert load_demo_people(session).errors == []
    writer = ObligationActivities(db, Settings(env="test"))
    writer.record_obligation(_update("assigned", AT, "assigned"))
    writer.record_obligation(_update("assigned", AT + timedelta(hours=1), "assigned"))
    writer.record_obligation(_update("due_soon", AT + timedelta(days=2), "due_within_30_days"))
    writer.record_obligation(_update("due_soon", AT + timedelta(days=2), "due_within_30_days"))
    rows = _rows(db)
    assert [(r.status, r.rule, r.source) for r in rows] == [
        ("assigned", "assigned", "workflow"),
        ("due_soon", "due_within_30_days", "workflow"),
    ]
    assert rows[1].facts["due_date"] == "2026-04-01"
    with db.session() as session:
        counts = status_counts_at(
            session, instants=[AT - timedelta(days=1), AT, AT + timedelta(days=3)]
        )
        assert counts[AT - timedelta(days=1)] == {}
        assert counts[AT] == {"assigned": 1}
        assert counts[AT + timedelta(days=3)] == {"due_soon": 1}
        assert session.scalar(select(func.count()).select_from(DecisionRecord)) == 2


def _brute_force(rows: list[DecisionRecord], at: datetime) -> dict[str, int]:
    """The status in force per workflow at ``at``: its latest decision by (decided_at, id)."""
    latest: dict[str, DecisionRecord] = {}
    for row in sorted(rows, key=lambda r: (r.decided_at, r.id)):
        if row.decided_at <= at:
            latest[row.workflow_id] = row
    counts: dict[str, int] = {}
    for row in latest.values():
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts


def test_superseded_at_is_kept_when_decisions_arrive_out_of_order(db: Database) -> None:
    with db.session() as session:
        assert load_demo_people(session).errors == []
        person_id = session.scalar(select(Person.id).where(Person.external_id == "p-1020"))
        assert person_id is not None
        # (workflow, status, hours after AT), recorded in this (not chronological) order;
        # "b" has two decisions at the same instant: the later-recorded one wins.
        writes = [
            ("a", "overdue", 48),
            ("a", "assigned", 0),
            ("b", "assigned", 5),
            ("a", "due_soon", 24),
            ("b", "completed", 30),
            ("b", "exempt", 30),
            ("c", "assigned", 72),
        ]
        for workflow, status, hours in writes:
            assert record_decision(
                session,
                workflow_id=f"assignment/p-1020/{workflow}/1",
                person_id=person_id,
                kind="training",
                requirement_id=workflow,
                status=status,
                rule=status,
                pack_hash="builtin",
                facts={"status": status},
                decided_at=AT + timedelta(hours=hours),
                source="workflow",
            )
    rows = _rows(db)
    chain = {
        (r.workflow_id.split("/")[2], r.status): (
            None if r.superseded_at is None else (r.superseded_at - AT) / timedelta(hours=1)
        )
        for r in rows
    }
    assert chain == {
        ("a", "assigned"): 24,
        ("a", "due_soon"): 48,
        ("a", "overdue"): None,
        ("b", "assigned"): 30,
        ("b", "completed"): 30,
        ("b", "exempt"): None,
        ("c", "assigned"): None,
    }
    instants = [AT + timedelta(hours=h) for h in (-1, 0, 4, 5, 24, 29, 30, 47, 48, 72, 100)]
    with db.session() as session:
        counts = status_counts_at(session, instants=instants)
        for at in instants:
            assert counts[at] == _brute_force(rows, at), at
        assert requirement_counts_at(session, at=AT + timedelta(hours=30)) == {
            "a": {"due_soon": 1},
            "b": {"exempt": 1},
        }
        assert status_counts_at(session, instants=instants, person_ids=[person_id + 1]) == {
            at: {} for at in instants
        }


def test_month_snapshots_answer_what_a_recount_answers(db: Database) -> None:
    """Snapshot + what changed since == a recount from every decision == brute force.

    A seeded history over five months, recorded out of order in two rounds: the first round's
    queries build month snapshots; the second round's decisions land in those months (late
    ones that supersede a decision mid-month, or slot in before a later one), so a stale
    snapshot would show.
    """
    rng = random.Random(20)
    statuses = ["assigned", "due_soon", "overdue", "completed", "exempt", "cancelled"]
    with db.session() as session:
        assert load_demo_people(session).errors == []
        people = [
            session.scalar(select(Person.id).where(Person.external_id == ext))
            for ext in ("p-1020", "p-1021", "p-1022")
        ]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    writes = []
    for person_id in people:
        assert person_id is not None
        for requirement in ("fire", "hipaa", "bls", "osha"):
            for _ in range(rng.randint(1, 5)):
                # Some on a month's last microsecond: the snapshot instant itself.
                if rng.random() < 0.15:
                    at = month_end(f"2026-{rng.randint(1, 5):02d}")
                else:
                    at = start + timedelta(seconds=rng.randint(0, 150 * 86400))
                writes.append((person_id, requirement, rng.choice(statuses), at))
    rng.shuffle(writes)
    now = datetime(2026, 6, 12, 9, 30, tzinfo=UTC)
    instants = sorted(
        {month_end(f"2026-{m:02d}") for m in range(1, 6)}
        | {at for *_, at in writes}
        | {at - timedelta(microseconds=1) for *_, at in writes[:10]}
        | {datetime(2026, m, 15, tzinfo=UTC) for m in range(1, 7)}
        | {now, start - timedelta(days=1)}
    )

    def record(batch: list[tuple[int, str, str, datetime]]) -> None:
        with db.session() as session:
            for person_id, requirement, status, at in batch:
                record_decision(
                    session,
                    workflow_id=f"assignment/{person_id}/{requirement}/1",
                    person_id=person_id,
                    kind="training",
                    requirement_id=requirement,
                    status=status,
                    rule=status,
                    pack_hash="builtin",
                    facts={"status": status, "at": at.isoformat()},
                    decided_at=at,
                    source="workflow",
                )

    def check() -> None:
        rows = _rows(db)
        with db.session() as session:
            snapshot = status_counts_at(session, instants=instants)
            recount = status_counts_at(session, instants=instants, person_ids=people)
            assert session.scalar(select(func.count()).select_from(DecisionSnapshot)) > 0
            for at in instants:
                assert snapshot[at] == recount[at] == _brute_force(rows, at), at
                by_requirement = requirement_counts_at(session, at=at)
                assert by_requirement == requirement_counts_at(session, at=at, person_ids=people), (
                    at
                )
                assert sum(sum(c.values()) for c in by_requirement.values()) == sum(
                    snapshot[at].values()
                )

    half = len(writes) * 2 // 3
    record(writes[:half])
    check()
    with db.session() as session:
        built = set(session.scalars(select(DecisionSnapshot.month).distinct()))
    assert built >= {"2026-01", "2026-02", "2026-03", "2026-04", "2026-05"}
    record(writes[half:])
    check()
    with db.session() as session:
        assert refresh_snapshots(session, now=now, months=3) == ["2026-03", "2026-04", "2026-05"]
    check()


def test_a_missing_month_is_its_predecessor_plus_the_months_changes(db: Database) -> None:
    """The month that just ended (no sweep since) is built from the month before it.

    Its counts must be what a recount from every decision stores (``refresh_snapshots``), and
    what brute force says, whether one month or several in a row are missing.
    """
    rng = random.Random(22)
    statuses = ["assigned", "due_soon", "overdue", "completed", "exempt", "cancelled"]
    with db.session() as session:
        assert load_demo_people(session).errors == []
        people = [
            session.scalar(select(Person.id).where(Person.external_id == ext))
            for ext in ("p-1020", "p-1021", "p-1022", "p-1023")
        ]
        for person_id in people:
            assert person_id is not None
            for requirement in ("fire", "hipaa", "bls"):
                at = datetime(2026, 1, 1, tzinfo=UTC)
                for _ in range(rng.randint(1, 6)):
                    at += timedelta(seconds=rng.randint(3600, 60 * 86400))
                    record_decision(
                        session,
                        workflow_id=f"assignment/{person_id}/{requirement}/1",
                        person_id=person_id,
                        kind="training",
                        requirement_id=requirement,
                        status=rng.choice(statuses),
                        rule="r",
                        pack_hash="builtin",
                        facts={},
                        decided_at=at,
                        source="workflow",
                    )
    now = datetime(2026, 7, 20, tzinfo=UTC)
    months = [f"2026-{m:02d}" for m in range(1, 7)]

    def stored() -> dict[str, dict[tuple[str, str], int]]:
        with db.session() as session:
            rows = session.execute(
                select(
                    DecisionSnapshot.month,
                    DecisionSnapshot.requirement_id,
                    DecisionSnapshot.status,
                    DecisionSnapshot.obligations,
                )
            ).all()
        found: dict[str, dict[tuple[str, str], int]] = {}
        for month, requirement, status, n in rows:
            found.setdefault(month, {})[(requirement, status)] = n
        return found

    with db.session() as session:
        assert refresh_snapshots(session, now=now, months=6) == months
    recounted = stored()
    assert recounted["2026-06"] != recounted["2026-05"]  # the months differ: a real test
    rows = _rows(db)
    for missing in (["2026-06"], ["2026-04", "2026-05", "2026-06"]):
        with db.session() as session:
            session.execute(
                DecisionSnapshot.__table__.delete().where(DecisionSnapshot.month.in_(missing))
            )
        with db.session() as session:
            ends = [month_end(m) for m in months]
            counts = status_counts_at(session, instants=ends)
        assert stored() == recounted, missing
        for at in ends:
            assert counts[at] == _brute_force(rows, at), at
