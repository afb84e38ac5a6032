"""Time zones, sweep facts and obligation kinds on real workflows (time-skipping server).

* Reminders land at 09:00 in the person's zone on every stage, across DST changes (New York,
  Sydney), after an extension, and after the person moves zone (a people import re-plans the
  stages not sent yet); an exemption lapses at local midnight.
* The nightly sweep leaves every state a workflow holds (exempt, started, CE shortfall,
  suspended) as the workflow decided it.
* An apprenticeship runs as an apprenticeship: the pack's apprenticeship rules decide and the
  apprenticeship wording is sent.

Every test runs on a time-skipping server of its own (a failing test leaves no pending timer
behind to stall the next one) and first skips its clock to a fixed calendar instant (the next
one after the clock's current time), so it passes whatever the hour and date the suite starts.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.client import WorkflowHandle
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.rules import RulesActivities
from api.app import create_app
from domain.calendar import add_months
from domain.contracts.assignment import AssignmentState, ExemptSignal, ExtendDueDate, StartSignal
from domain.contracts.certification import (
    CertificateRecord,
    CertificationInput,
    SuspendCertification,
)
from domain.contracts.sweep import SweepRequest
from domain.roles import Role
from duly.settings import Settings
from duly.worker import build_worker
from rules.loader import load_pack
from rules.model import Pack
from services.assignments import assignment_input, utc_offset_minutes
from store.db import Database
from store.models import Notification, Obligation, Person
from store.packs import Migration, deploy
from tests.conftest import bearer, time_skipping
from workflows.assignment import AssignmentWorkflow
from workflows.certification import CertificationWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server for this test alone."""
    async for environment in time_skipping():
        yield environment


PACKS = Path(__file__).parents[2] / "rules" / "packs"
PROBE = Path(__file__).parents[1] / "rules" / "packs" / "fact-probe"
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
TOKYO = ZoneInfo("Asia/Tokyo")
LADDER = (90, 60, 30, 14, 7, 0)


# --- the clock ---------------------------------------------------------------------------


async def skip_to(env: WorkflowEnvironment, target: datetime) -> None:
    """Move the server's clock to ``target`` (in chunks: one long skip can outlast an RPC)."""
    while (remaining := target - await env.get_current_time()) > timedelta(0):
        await env.sleep(min(remaining, timedelta(days=20)))


async def anchor(env: WorkflowEnvironment, month: int, day: int, hour: int = 12) -> datetime:
    """Skip to the next ``month``/``day`` at ``hour``:00 UTC (at least a day from now)."""
    now = await env.get_current_time()
    year = now.year
    while (at := datetime(year, month, day, hour, tzinfo=UTC)) <= now + timedelta(days=1):
        year += 1
    await skip_to(env, at)
    return at


async def finish(env: WorkflowEnvironment, *handles: WorkflowHandle[object, object]) -> None:
    """End a test's workflows while its worker still runs.

    Early reminders wait in a per-person digest workflow for a few minutes: let them go out
    (a timer left pending without a worker stops the server skipping time), then terminate.
    """
    await env.sleep(timedelta(minutes=15))
    for handle in handles:
        await handle.terminate("test done")


async def record_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """Refresh a replay fixture (see test_recorded_histories_replay_against_todays_code)."""
    if os.environ.get("DULY_RECORD_HISTORIES"):
        history = await handle.fetch_history()
        (Path(__file__).parent / "histories" / name).write_text(history.to_json())


def local(at: datetime, zone: ZoneInfo) -> datetime:
    return at.astimezone(zone)


def at_nine(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(9), tzinfo=zone)


# --- the directory -------------------------------------------------------------------------


def add_person(db: Database, zone: str, **attributes: object) -> Person:
    tag = uuid.uuid4().hex[:6]
    with db.session() as session:
        person = Person(
            external_id=f"p-{tag}",
            name="Ada Lovelace",
            email=f"ada-{tag}@example.com",
            time_zone=zone,
            **attributes,
        )
        session.add(person)
    return person


def deploy_pack(db: Database, path: Path) -> Pack:
    pack = load_pack(path)
    with db.session() as session:
        deploy(session, pack, author="hr", message=None, migration=Migration.GRANDFATHER)
    return pack


def ledger(db: Database, workflow_id: str) -> list[Notification]:
    with db.session() as session:
        return list(
            session.scalars(
                select(Notification)
                .where(Notification.workflow_id == workflow_id)
                .order_by(Notification.fired_at, Notification.id)
            )
        )


def learner_rows(db: Database, workflow_id: str) -> list[Notification]:
    return [n for n in ledger(db, workflow_id) if n.recipient_role in (None, "learner")]


def obligation(db: Database, workflow_id: str) -> Obligation:
    with db.session() as session:
        row = session.scalar(select(Obligation).where(Obligation.workflow_id == workflow_id))
        assert row is not None
        return row


def assert_at_nine(stages: list[tuple[str, datetime]], zone: ZoneInfo) -> None:
    for label, at in stages:
        assert local(at, zone).time() == time(9), (label, at, local(at, zone))


# --- item 3: every stage at 09:00 local, across DST ----------------------------------------


async def test_new_york_ladder_across_dst_and_an_extension_lands_at_nine_local(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    """January to April in New York: EST stages and EDT stages both at 09:00 local.

    The built-in ladder (no pack deployed): the workflow asks the planning activity too.
    """
    start = await anchor(env, 1, 2)
    person = add_person(sqlite_db, "America/New_York")
    due = date(start.year, 4, 10)  # -90d in January (EST), 0d in April (EDT)
    inp = assignment_input(person, title="Fire Drill", due_date=due, assigned_by="hr")
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await env.client.start_workflow(
            AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=tq
        )
        await env.sleep(timedelta(minutes=1))
        state = await handle.query(AssignmentWorkflow.state)
        assert [s.label for s in state.stages] == ["-90d", "-60d", "-30d", "-14d", "-7d", "0d"]
        for stage, days in zip(state.stages, LADDER, strict=True):
            assert stage.fire_at == at_nine(due - timedelta(days=days), NEW_YORK), stage
        # The two offsets really differ: the ladder straddles the DST change.
        assert {local(s.fire_at, NEW_YORK).utcoffset() for s in state.stages} == {
            timedelta(hours=-5),
            timedelta(hours=-4),
        }

        await env.sleep(at_nine(due - timedelta(days=90), NEW_YORK) - start + timedelta(hours=1))
        # Extended by three weeks: the remaining stages move, still at 09:00 local.
        new_due = due + timedelta(days=21)
        extended = await handle.execute_update(
            AssignmentWorkflow.extend_due_date,
            ExtendDueDate(new_due_date=new_due, reason="clinic move", actor="hr"),
        )
        for stage, days in zip(extended.stages, LADDER, strict=True):
            assert stage.fire_at == at_nine(new_due - timedelta(days=days), NEW_YORK), stage

        await skip_to(env, datetime.combine(new_due + timedelta(days=2), time(12), UTC))
        rows = learner_rows(sqlite_db, inp.workflow_id)
        assert [n.stage for n in rows] == ["-90d", "-60d", "-30d", "-14d", "-7d", "0d"]
        fired = {n.stage: n.fired_at for n in rows}
        assert abs(fired["-90d"] - at_nine(due - timedelta(days=90), NEW_YORK)) < timedelta(
            minutes=1
        )
        for label, days in zip(("-60d", "-30d", "-14d", "-7d", "0d"), LADDER[1:], strict=True):
            expected = at_nine(new_due - timedelta(days=days), NEW_YORK)
            assert abs(fired[label] - expected) < timedelta(minutes=1), (label, fired[label])
        assert obligation(sqlite_db, inp.workflow_id).time_zone == "America/New_York"
        await record_history(handle, "assignment_zone_ladder.json")
        await finish(env, handle)


async def test_sydney_ladders_across_dst_land_at_nine_local(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    """Sydney leaves DST in April: a pinned-pack training and a certification, both in zone."""
    start = await anchor(env, 1, 5)
    pack = deploy_pack(sqlite_db, PACKS / "medical-practice")
    person = add_person(sqlite_db, "Australia/Sydney", roles=["nurse"])
    # DST ends on the first Sunday of April: the training's -30d (March) is at +11, its -7d
    # and 0d at +10; the certificate's ladder starts at -90d in January.
    due = date(start.year, 4, 20)
    inp = assignment_input(
        person,
        title="HIPAA Privacy & Security",
        requirement_id="hipaa-privacy-security",
        due_date=due,
        assigned_by="hr",
        pack=pack,
    )
    certification = CertificationInput(
        person=person.external_id,
        certification_id="bls-certification",
        title="Basic Life Support (BLS) Provider",
        certificate=CertificateRecord(
            cycle=1,
            verification_code=f"T-{uuid.uuid4().hex[:10].upper()}",
            issued_on=add_months(due, -24),
            expires_on=due,
        ),
        pack_hash=pack.content_hash,
        # What the API computes: the offset on the expiry date (the fallback only).
        utc_offset_minutes=utc_offset_minutes("Australia/Sydney", due),
    )
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await env.client.start_workflow(
            AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=tq
        )
        cert = await env.client.start_workflow(
            CertificationWorkflow.run, certification, id=certification.workflow_id, task_queue=tq
        )
        await env.sleep(timedelta(minutes=1))
        state = await handle.query(AssignmentWorkflow.state)
        assert len(state.stages) >= 3
        assert_at_nine([(s.label, s.fire_at) for s in state.stages], SYDNEY)
        offsets = {local(s.fire_at, SYDNEY).utcoffset() for s in state.stages}
        assert offsets == {timedelta(hours=11), timedelta(hours=10)}, offsets
        cert_state = await cert.query(CertificationWorkflow.state)
        assert_at_nine([(s.label, s.fire_at) for s in cert_state.stages], SYDNEY)
        assert {local(s.fire_at, SYDNEY).utcoffset() for s in cert_state.stages} == {
            timedelta(hours=11),
            timedelta(hours=10),
        }

        await skip_to(env, datetime.combine(due + timedelta(days=1), time(12), UTC))
        rows = [n for n in learner_rows(sqlite_db, inp.workflow_id) if n.channel == "email"]
        assert [n.stage for n in rows] == ["-30d", "-7d", "0d"]
        for row in rows:
            stage = next(s for s in state.stages if s.label == row.stage)
            assert abs(row.fired_at - stage.fire_at) < timedelta(minutes=1), row.stage
        sent = {r.stage.split(":", 1)[-1] for r in learner_rows(sqlite_db, cert.id)}
        assert {"-90d", "-60d", "-30d"} <= sent
        for row in learner_rows(sqlite_db, cert.id):
            assert local(row.fired_at, SYDNEY).replace(second=0, microsecond=0).time() == time(9), (
                row.stage
            )
        await finish(env, handle, cert)


async def test_an_exemption_lapses_at_local_midnight_in_summer_time(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    """Due in winter (EST), exempt through a July day: it lapses at 00:00 EDT, not 01:00."""
    start = await anchor(env, 6, 1)
    person = add_person(sqlite_db, "America/New_York")
    due = date(start.year + 1, 1, 20)
    last_day = date(start.year, 7, 10)
    inp = assignment_input(person, title="Ethics", due_date=due, assigned_by="hr")
    assert inp.utc_offset_minutes == -300  # the input's fallback: winter
    lapse = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=NEW_YORK)
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await env.client.start_workflow(
            AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=tq
        )
        await env.sleep(timedelta(minutes=1))
        await handle.signal(
            AssignmentWorkflow.exempt,
            ExemptSignal(reason="on secondment", approver="hr", actor="hr", expires_on=last_day),
        )
        await skip_to(env, lapse - timedelta(minutes=30))
        state = await handle.query(AssignmentWorkflow.state)
        assert "exemption_lapsed" not in [e.kind for e in state.events]
        await skip_to(env, lapse + timedelta(minutes=30))
        state = await handle.query(AssignmentWorkflow.state)
        lapsed = [e for e in state.events if e.kind == "exemption_lapsed"]
        assert len(lapsed) == 1 and abs(lapsed[0].at - lapse) < timedelta(seconds=5), lapsed
        # The read model follows: exempt through the last day, then not.
        row = obligation(sqlite_db, inp.workflow_id)
        assert (row.exempt, row.exempt_until) == (False, None)
        await finish(env, handle)


async def test_a_person_who_moves_zone_gets_the_remaining_stages_replanned(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    """New York to Tokyo through a people import: unsent stages move to 09:00 Tokyo.

    An assignment and a certification (both on the built-in ladder) of the same person.
    """
    start = await anchor(env, 9, 1)
    person = add_person(sqlite_db, "America/New_York")
    due = start.date() + timedelta(days=100)
    inp = assignment_input(person, title="Export Control", due_date=due, assigned_by="hr")
    expires = due + timedelta(days=30)
    certification = CertificationInput(
        person=person.external_id,
        certification_id="forklift-licence",
        title="Forklift licence",
        certificate=CertificateRecord(
            cycle=1,
            verification_code=f"T-{uuid.uuid4().hex[:10].upper()}",
            issued_on=add_months(expires, -12),
            expires_on=expires,
        ),
        utc_offset_minutes=utc_offset_minutes("America/New_York", expires),
    )
    # The import's zone re-plan is under test, not the directory automation: this worker runs
    # no DirectoryChangeWorkflow, and one started with nobody to run it stalls the test server.
    app = create_app(
        Settings(env="test", directory_automation=False),
        database=sqlite_db,
        temporal_client=env.client,
    )
    hr = bearer(sqlite_db, Role.HR_ADMIN)
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle: WorkflowHandle[
            AssignmentWorkflow, AssignmentState
        ] = await env.client.start_workflow(
            AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=tq
        )
        cert = await env.client.start_workflow(
            CertificationWorkflow.run, certification, id=certification.workflow_id, task_queue=tq
        )
        await skip_to(env, at_nine(due - timedelta(days=90), NEW_YORK) + timedelta(days=2))
        assert [n.stage for n in learner_rows(sqlite_db, inp.workflow_id)] == ["-90d"]

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://duly"
        ) as http:
            response = await http.post(
                "/people/import",
                json=[
                    {"external_id": person.external_id, "name": "Ada", "time_zone": "Asia/Tokyo"}
                ],
                headers=hr,
            )
        assert response.status_code == 200, response.text
        assert response.json()["updated"] == 1
        assert response.json()["replanned"] == 2, response.json()
        await env.sleep(timedelta(minutes=1))

        state = await handle.query(AssignmentWorkflow.state)
        assert "replanned" in [e.kind for e in state.events]
        for stage in state.stages:
            if stage.label == "-90d":
                continue  # already sent, in New York
            assert stage.fire_at == at_nine(due - timedelta(days=stage.days_before_due), TOKYO)
        cert_state = await cert.query(CertificationWorkflow.state)
        assert "replanned" in [e.kind for e in cert_state.events]
        assert cert_state.stages_sent == []
        for stage in cert_state.stages:
            expected = at_nine(expires - timedelta(days=stage.days_before_due), TOKYO)
            assert stage.fire_at == expected, stage
        from store.obligations import moved_zone_targets

        with sqlite_db.session() as session:
            assert moved_zone_targets(session) == []  # recorded in the new zone
        assert obligation(sqlite_db, inp.workflow_id).time_zone == "Asia/Tokyo"

        await skip_to(env, datetime.combine(due + timedelta(days=1), time(12), UTC))
        rows = learner_rows(sqlite_db, inp.workflow_id)
        assert [n.stage for n in rows] == ["-90d", "-60d", "-30d", "-14d", "-7d", "0d"]
        assert abs(rows[0].fired_at - at_nine(due - timedelta(days=90), NEW_YORK)) < timedelta(
            minutes=1
        )
        for row in rows[1:]:
            assert local(row.fired_at, TOKYO).replace(second=0, microsecond=0).time() == time(9), (
                row.stage,
                row.fired_at,
            )
        cert_rows = learner_rows(sqlite_db, cert.id)
        assert {r.stage for r in cert_rows} == {"c1:-90d", "c1:-60d", "c1:-30d"}
        for row in cert_rows:
            assert local(row.fired_at, TOKYO).replace(second=0, microsecond=0).time() == time(9)
        await record_history(handle, "assignment_zone_move.json")
        await record_history(cert, "certification_zone_move.json")
        await finish(env, handle, cert)


# --- item 2: the sweep leaves every state a workflow holds as the workflow decided it --------


async def test_the_sweep_keeps_what_running_workflows_decided(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    """Exempt, started, a CE shortfall and a suspension, each on a live workflow, then a sweep.

    The fact-probe pack gives each of those facts a status of its own, so a sweep that did
    not see one would rewrite it.
    """
    start = await anchor(env, 3, 1)
    pack = deploy_pack(sqlite_db, PROBE)
    person = add_person(sqlite_db, "Europe/Berlin")
    due = start.date() + timedelta(days=20)
    tq = f"tq-{uuid.uuid4()}"
    started = assignment_input(
        person,
        title="x",
        requirement_id="probe-training",
        due_date=due,
        assigned_by="hr",
        pack=pack,
    )
    exempt = started.model_copy(update={"cycle": 2})
    apprentice = assignment_input(
        person,
        title="x",
        requirement_id="probe-apprenticeship",
        due_date=due,
        assigned_by="hr",
        pack=pack,
    )

    def cert(certification_id: str, code: str) -> CertificationInput:
        expires = start.date() + timedelta(days=200)
        return CertificationInput(
            person=person.external_id,
            certification_id=certification_id,
            title="Probe certification",
            certificate=CertificateRecord(
                cycle=1,
                verification_code=f"{code}-{uuid.uuid4().hex[:8].upper()}",
                issued_on=add_months(expires, -24),
                expires_on=expires,
            ),
            pack_hash=pack.content_hash,
        )

    short = cert("probe-certification", "S")
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handles = {}
        for inp in (started, exempt, apprentice):
            handles[inp.workflow_id] = await env.client.start_workflow(
                AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=tq
            )
        cert_handle = await env.client.start_workflow(
            CertificationWorkflow.run, short, id=short.workflow_id, task_queue=tq
        )
        await env.sleep(timedelta(minutes=1))
        now = await env.get_current_time()
        await handles[started.workflow_id].signal(
            AssignmentWorkflow.start, StartSignal(started_at=now, actor="lms")
        )
        await handles[exempt.workflow_id].signal(
            AssignmentWorkflow.exempt,
            ExemptSignal(reason="role change", approver="hr", actor="hr"),
        )
        await env.sleep(timedelta(minutes=1))
        statuses = {
            wid: obligation(sqlite_db, wid).status
            for wid in (started.workflow_id, exempt.workflow_id, apprentice.workflow_id)
        }
        statuses[short.workflow_id] = obligation(sqlite_db, short.workflow_id).status
        assert statuses == {
            started.workflow_id: "in_progress",
            exempt.workflow_id: "exempt",
            apprentice.workflow_id: "due_soon",
            short.workflow_id: "ce_short",
        }

        sweep = RulesActivities(sqlite_db)
        as_of = await env.get_current_time()
        result = ActivityEnvironment().run(sweep.sweep_statuses, SweepRequest(as_of=as_of))
        assert result.evaluated == 4
        assert (result.changed, result.transitions) == (0, {})

        # Suspended: the workflow holds the status; the sweep does not re-decide it.
        await cert_handle.signal(
            CertificationWorkflow.suspend, SuspendCertification(reason="audit", actor="hr")
        )
        await env.sleep(timedelta(minutes=1))
        row = obligation(sqlite_db, short.workflow_id)
        assert (row.status, row.suspended, row.ce_credits_short) == ("suspended", True, 5)
        result = ActivityEnvironment().run(
            sweep.sweep_statuses, SweepRequest(as_of=await env.get_current_time())
        )
        assert (result.evaluated, result.changed) == (3, 0)
        assert obligation(sqlite_db, short.workflow_id).status == "suspended"
        await finish(env, *handles.values(), cert_handle)


# --- item 4: an apprenticeship runs as an apprenticeship ----------------------------------


async def test_an_apprenticeship_is_decided_and_worded_as_an_apprenticeship(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    """A subcontractor's apprentice behind on NEIEP module 1 through the field-technicians pack.

    The pack's own test says: overdue by ``apprenticeship_overdue``, not badged off site by
    ``subcontractor_training_overdue``; messages use the apprenticeship wording.
    """
    start = await anchor(env, 2, 1)
    pack = deploy_pack(sqlite_db, PACKS / "field-technicians")
    person = add_person(
        sqlite_db,
        "UTC",
        roles=["apprentice"],
        department="Elevator Service",
        employer="Keystone Lift Contractors",
    )
    due = start.date() + timedelta(days=100)
    inp = assignment_input(
        person,
        title="NEIEP",
        requirement_id="neiep-module-1",
        due_date=due,
        assigned_by="hr",
        pack=pack,
    )
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await env.client.start_workflow(
            AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=tq
        )
        await skip_to(env, datetime.combine(due - timedelta(days=89), time(12), UTC))
        first = learner_rows(sqlite_db, inp.workflow_id)
        assert [n.stage for n in first] == ["-90d"]
        assert first[0].kind == "apprenticeship"
        assert first[0].subject == (
            'Reminder: your apprenticeship requirement "NEIEP apprenticeship module 1 - year 1'
            ' related instruction" is due in 90 days'
        )
        assert "make sure your hours are recorded" in first[0].body

        await skip_to(env, datetime.combine(due + timedelta(days=3), time(12), UTC))
        state = await handle.query(AssignmentWorkflow.state)
        decisions = [e.detail for e in state.events if e.kind == "status"]
        assert decisions[-1] == "overdue (rule apprenticeship_overdue)", decisions
        assert not any("subcontractor_training_overdue" in d for d in decisions)
        row = obligation(sqlite_db, inp.workflow_id)
        assert (row.kind, row.status) == ("apprenticeship", "overdue")
        assert inp.kind == "apprenticeship"  # carried from the pack's requirement
        await finish(env, handle)
