"""The status sweep: batch re-decisions with each obligation's pinned pack, read model updated."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.rules import RulesActivities
from domain.contracts.sweep import SweepRequest
from duly.worker import build_worker
from rules.loader import load_pack
from store.db import Database
from store.models import DecisionSnapshot, Obligation, Person
from store.packs import Migration, deploy
from tests.conftest import wheel_binary
from workflows.sweep import StatusSweepWorkflow

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def _seed(db: Database) -> str:
    pack = load_pack(MEDICAL)
    with db.session() as session:
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
        person = Person(external_id="p-1", name="Ada", roles=["nurse"], time_zone="UTC")
        session.add(person)
        session.flush()
        rows = [
            # (requirement, days until due, stored status, pack)
            ("fire-safety", 10, "compliant", pack.content_hash),  # -> due_soon
            ("hipaa-privacy-security", -3, "due_soon", pack.content_hash),  # -> overdue
            ("osha-bloodborne-pathogens", 200, "compliant", pack.content_hash),  # unchanged
            ("not-in-pack", 5, "assigned", pack.content_hash),  # skipped
            ("adhoc", -3, "due_soon", "builtin"),  # left to its workflow
        ]
        for requirement, days, status, pinned in rows:
            session.add(
                Obligation(
                    workflow_id=f"assignment/p-1/{requirement}/1",
                    person_id=person.id,
                    kind="training",
                    requirement_id=requirement,
                    requirement_title=requirement,
                    due_date=(NOW + timedelta(days=days)).date(),
                    status=status,
                    pack_hash=pinned,
                    as_of=NOW - timedelta(days=1),
                )
            )
    return pack.content_hash


def _statuses(db: Database) -> dict[str, str]:
    with db.session() as session:
        return {o.requirement_id: o.status for o in session.scalars(select(Obligation))}


@pytest.mark.parametrize("rounds", [1, 2])
def test_sweep_updates_changed_statuses_only(db: Database, rounds: int) -> None:
    _seed(db)
    activities = RulesActivities(db)
    for _ in range(rounds):  # a second sweep finds nothing left to change
        result = ActivityEnvironment().run(activities.sweep_statuses, SweepRequest(as_of=NOW))
    if rounds == 1:
        assert (result.evaluated, result.changed, result.skipped) == (3, 2, 1)
        assert result.transitions == {"compliant -> due_soon": 1, "due_soon -> overdue": 1}
    else:
        assert (result.evaluated, result.changed) == (3, 0)
    assert _statuses(db) == {
        "fire-safety": "due_soon",
        "hipaa-privacy-security": "overdue",
        "osha-bloodborne-pathogens": "compliant",
        "not-in-pack": "assigned",
        "adhoc": "due_soon",
    }
    with db.session() as session:
        # The sweep rebuilt the last 13 month-end snapshots the dashboards start from.
        months = set(session.scalars(select(DecisionSnapshot.month).distinct()))
    assert len(months) == 13 and max(months) == "2026-10", months


@pytest.mark.asyncio
async def test_sweep_workflow_and_its_schedule(sqlite_db: Database) -> None:
    _seed(sqlite_db)
    async with await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=wheel_binary("temporal-test-server"),
    ) as env:
        task_queue = f"tq-{uuid.uuid4()}"
        async with build_worker(env.client, task_queue=task_queue, db=sqlite_db):
            result = await env.client.execute_workflow(
                StatusSweepWorkflow.run, id=f"sweep-{uuid.uuid4()}", task_queue=task_queue
            )
    # The test server's clock is "now", not NOW: only the counts are fixed.
    assert (result.evaluated, result.skipped) == (3, 1)
    assert sum(result.transitions.values()) == result.changed


@pytest.mark.asyncio
async def test_the_sweep_catches_up_replans_an_import_could_not_signal(db: Database) -> None:
    """An obligation still planned in a zone its person left is signalled by the sweep."""
    from domain.contracts.sweep import ReplanRequest
    from tests.fakes.temporal import FakeTemporal, not_found

    with db.session() as session:
        person = Person(external_id="p-2", name="Bo", time_zone="Asia/Tokyo")
        session.add(person)
        session.flush()
        for requirement in ("moved", "gone"):
            session.add(
                Obligation(
                    workflow_id=f"assignment/p-2/{requirement}/1",
                    person_id=person.id,
                    kind="training",
                    requirement_id=requirement,
                    requirement_title=requirement,
                    due_date=NOW.date(),
                    status="assigned",
                    pack_hash="builtin",
                    time_zone="America/New_York",
                    as_of=NOW,
                )
            )
    temporal = FakeTemporal()
    activities = RulesActivities(db, temporal)  # type: ignore[arg-type]
    result = await ActivityEnvironment().run(activities.replan_moved, ReplanRequest())
    assert (result.signalled, result.finished) == (2, 0)
    assert {(wid, name) for wid, name, _ in temporal.signals} == {
        ("assignment/p-2/moved/1", "replan"),
        ("assignment/p-2/gone/1", "replan"),
    }
    temporal.error = not_found()  # both finished since: counted, not an error
    result = await ActivityEnvironment().run(activities.replan_moved, ReplanRequest())
    assert (result.signalled, result.finished) == (0, 2)
