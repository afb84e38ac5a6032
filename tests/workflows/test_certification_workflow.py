"""CertificationWorkflow on the time-skipping server: expiry ladder, grace, renewals, CE credits."""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from domain.calendar import add_months
from domain.contracts.certification import (
    CeCredit,
    CertificateRecord,
    CertificationInput,
    CertificationState,
    ReinstateCertification,
    RenewCertification,
    RevokeCertification,
    SuspendCertification,
)
from duly.worker import build_worker
from rules.loader import load_pack
from store.db import Database
from store.models import Certificate, Notification, Obligation, Person
from store.packs import Migration, deploy
from tests.timeskip import skip_to
from workflows.certification import CertificationWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
AGENCY_DESK = "clinical-credentialing@acme-staffing.example.com"
HR = "compliance@demo.duly.example"


def _org(db: Database) -> tuple[str, str, str]:
    """An agency nurse and her manager (UTC, so stage times are exact); (person, manager, hash)."""
    pack = load_pack(MEDICAL)
    tag = uuid.uuid4().hex[:6]
    person, manager = f"n-{tag}", f"m-{tag}"
    with db.session() as session:
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
        boss = Person(
            external_id=manager,
            name="Grace Hopper",
            email=f"{manager}@example.com",
            slack_user_id=f"U{tag}M",
            time_zone="UTC",
        )
        session.add(boss)
        session.flush()
        session.add(
            Person(
                external_id=person,
                name="Ada Lovelace",
                email=f"{person}@example.com",
                phone="+15550100100",
                slack_user_id=f"U{tag}L",
                roles=["nurse", "pharmacist"],
                department="Pharmacy",
                employer="Acme Staffing",
                time_zone="UTC",
                manager_id=boss.id,
            )
        )
    return person, manager, pack.content_hash


async def _register(
    env: WorkflowEnvironment,
    tq: str,
    person: str,
    pack_hash: str,
    *,
    certification: str = "bls-certification",
    expires_in_days: int,
) -> tuple[WorkflowHandle[CertificationWorkflow, CertificationState], date]:
    today = (await env.get_current_time()).date()
    expires = today + timedelta(days=expires_in_days)
    inp = CertificationInput(
        person=person,
        certification_id=certification,
        title="Basic Life Support (BLS) Provider",
        certificate=CertificateRecord(
            cycle=1,
            certificate_number="AHA-1",
            verification_code=f"T-{uuid.uuid4().hex[:10].upper()}",
            issued_on=add_months(expires, -24),
            expires_on=expires,
        ),
        pack_hash=pack_hash,
        registered_by="hr",
    )
    handle = await env.client.start_workflow(
        CertificationWorkflow.run, inp, id=inp.workflow_id, task_queue=tq
    )
    return handle, expires


async def _sleep(env: WorkflowEnvironment, days: float) -> None:
    """Skip time in chunks (one long skip can outlast an RPC deadline)."""
    while days > 0:
        step = min(days, 20)
        await env.sleep(timedelta(days=step))
        days -= step


def _ledger(db: Database, person: str) -> list[Notification]:
    """Every message about ``person``'s certifications (to them, their manager, HR, agency)."""
    with db.session() as session:
        return list(
            session.scalars(
                select(Notification)
                .where(Notification.workflow_id.like(f"certification/{person}/%"))
                .order_by(Notification.fired_at, Notification.id)
            )
        )


def _status(db: Database, workflow_id: str) -> str:
    with db.session() as session:
        row = session.scalar(select(Obligation).where(Obligation.workflow_id == workflow_id))
        assert row is not None
        return row.status


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


def _near(at: datetime, expected: datetime) -> bool:
    """At ``expected`` or just after: the workflow acts on its timer, and what it records after an
    activity carries the server's clock then (which runs in real time while the activity does, a
    second or more on a loaded machine). A wrong hour or day is still hours or days off.
    """
    return expected <= at < expected + timedelta(minutes=1)


def _by_stage(rows: list[Notification]) -> dict[str, set[tuple[str | None, str]]]:
    stages: dict[str, set[tuple[str | None, str]]] = defaultdict(set)
    for row in rows:
        stages[row.stage].add((row.recipient_role, row.channel))
    return stages


async def test_full_expiry_schedule_grace_and_non_compliance(
    env: WorkflowEnvironment,
    ladder_start: datetime,
    sqlite_db: Database,
    request: pytest.FixtureRequest,
) -> None:
    """The pack's certification ladder to the instant and channel; employer cc from 14 days.

    Run from every start of ``LADDER_STARTS`` (times of day, a month's end, a ladder straddling
    February): the statuses flip at 00:00 UTC and each stage fires at 09:00 UTC on its day,
    whenever the certificate was registered.
    """
    person, _, pack_hash = _org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle, expires = await _register(env, tq, person, pack_hash, expires_in_days=100)
        wid = handle.id
        assert expires == ladder_start.date() + timedelta(days=100)
        opens = expires - timedelta(days=90)  # BLS: the renewal window is 90 days
        minute = timedelta(minutes=1)
        # Read the read model a minute either side of each boundary (00:00 UTC, UTC person).
        for at, status in (
            (ladder_start + minute, "compliant"),
            (_midnight(opens) - minute, "compliant"),
            (_midnight(opens) + minute, "renewal_due"),
            (_midnight(expires + timedelta(days=1)) - minute, "renewal_due"),  # expiry day
            (_midnight(expires + timedelta(days=1)) + minute, "grace_period"),
            (_midnight(expires + timedelta(days=31)) - minute, "grace_period"),  # 30 days grace
            (_midnight(expires + timedelta(days=31)) + minute, "non_compliant"),
        ):
            await skip_to(env, at)
            assert _status(sqlite_db, wid) == status, (at, status)
        state = await handle.query(CertificationWorkflow.state)
        if os.environ.get("DULY_RECORD_HISTORIES") and request.node.callspec.id == "11:59":
            # The replay fixture (see test_recorded_histories_replay_against_todays_code).
            history = await handle.fetch_history()
            (Path(__file__).parent / "histories" / "certification_full_ladder.json").write_text(
                history.to_json()
            )
        await handle.terminate("test done")

    rows = _ledger(sqlite_db, person)
    stages = _by_stage(rows)
    learner = "learner"
    assert stages == {
        "c1:-90d": {(learner, "email")},
        "c1:-60d": {(learner, "email"), (learner, "in_app")},
        "c1:-30d": {(learner, "email"), (learner, "in_app"), (learner, "slack")},
        "c1:-14d": {
            (learner, "email"),
            (learner, "in_app"),
            (learner, "slack"),
            ("employer_contact", "email"),  # the agency has a mailbox only
        },
        "c1:-7d": {(learner, "email"), (learner, "in_app"), (learner, "slack"), (learner, "sms")},
        "c1:0d": {(learner, "email"), (learner, "in_app"), ("employer_contact", "email")},
        "c1:+14d": {
            (learner, "email"),
            (learner, "slack"),
            ("manager", "email"),
            ("manager", "slack"),
        },
        "c1:+30d": {("manager", "email"), ("hr", "email")},
        "c1:lapsed": {
            (learner, "email"),
            (learner, "in_app"),
            ("manager", "email"),
            ("manager", "in_app"),
        },
    }
    # Each ladder stage fired at 09:00 on its day (every row of it); the lapse notice when grace
    # ended.
    for stage, days in (
        ("-90d", 90),
        ("-60d", 60),
        ("-30d", 30),
        ("-14d", 14),
        ("-7d", 7),
        ("0d", 0),
        ("+14d", -14),
        ("+30d", -30),
    ):
        expected = _midnight(expires - timedelta(days=days)) + timedelta(hours=9)
        for row in rows:
            if row.stage == f"c1:{stage}":
                assert _near(row.fired_at, expected), (stage, row.fired_at, expected)
    lapsed = _midnight(expires + timedelta(days=31))
    assert all(_near(r.fired_at, lapsed) for r in rows if r.stage == "c1:lapsed")
    agency = [r for r in rows if r.recipient_role == "employer_contact"]
    assert {r.recipient_address for r in agency} == {AGENCY_DESK}
    assert {r.recipient_address for r in rows if r.recipient_role == "hr"} == {HR}
    # The status changed at the exact instants, each decision in the workflow's timeline.
    statuses = [(e.at, e.detail.split()[0]) for e in state.events if e.kind == "status"]
    assert [s for _, s in statuses] == [
        "compliant",
        "renewal_due",
        "grace_period",
        "non_compliant",
    ]
    start_of = {s: at for at, s in statuses}
    assert ladder_start <= start_of["compliant"] < ladder_start + timedelta(minutes=1)
    assert _near(start_of["renewal_due"], _midnight(opens))
    assert _near(start_of["grace_period"], _midnight(expires + timedelta(days=1)))
    assert _near(start_of["non_compliant"], _midnight(expires + timedelta(days=31)))
    sms = next(r for r in rows if r.channel == "sms")
    assert sms.recipient_address == "+15550100100"


async def test_no_grace_goes_straight_to_non_compliant_and_says_so(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    person, _, pack_hash = _org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle, _expires = await _register(
            env, tq, person, pack_hash, certification="acls-certification", expires_in_days=5
        )
        await _sleep(env, 1)
        assert _status(sqlite_db, handle.id) == "renewal_due"
        await _sleep(env, 5)
        assert _status(sqlite_db, handle.id) == "non_compliant"
        await handle.terminate("test done")
    stages = [r.stage for r in _ledger(sqlite_db, person) if r.recipient_role == "learner"]
    # Registered 5 days before expiry: one immediate notice (the -7d stage), then 0d, lapsed.
    assert list(dict.fromkeys(stages)) == ["c1:-7d", "c1:0d", "c1:lapsed"]


@pytest.mark.parametrize(
    ("days_before_expiry", "outcome"),
    [
        (120, "renewed_early"),
        (20, "renewed_in_window"),
        (-10, "renewed_in_grace"),
        (-45, "renewed_after_grace"),
    ],
)
async def test_renewal_closes_the_cycle_and_continues_as_new(
    env: WorkflowEnvironment, sqlite_db: Database, days_before_expiry: int, outcome: str
) -> None:
    person, _, pack_hash = _org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle, _expires = await _register(env, tq, person, pack_hash, expires_in_days=150)
        await _sleep(env, 150 - days_before_expiry)
        first_run = (await handle.describe()).run_id
        today = (await env.get_current_time()).date()
        new = CertificateRecord(
            cycle=2,
            certificate_number="AHA-2",
            verification_code=f"T-{uuid.uuid4().hex[:10].upper()}",
            issued_on=today,
            expires_on=add_months(today, 24),
        )
        closed = await handle.execute_update(
            CertificationWorkflow.renew, RenewCertification(certificate=new, actor="hr")
        )
        assert closed.outcome == outcome and closed.certificate.cycle == 1
        await _sleep(env, 1)
        fresh = env.client.get_workflow_handle_for(CertificationWorkflow.run, handle.id)
        state = await fresh.query(CertificationWorkflow.state)
        assert (await fresh.describe()).run_id != first_run  # continued as new
        assert state.cycle == 2 and state.certificate == new
        assert state.status == "compliant"
        assert [c.outcome for c in state.history] == [outcome]
        assert state.history[0].run_id == first_run
        sent_before = len(_ledger(sqlite_db, person))
        await _sleep(env, 20)
        # The new cycle's ladder is two years out: nothing more was sent.
        assert len(_ledger(sqlite_db, person)) == sent_before
        await fresh.terminate("test done")
    with sqlite_db.session() as session:
        certs = {
            c.cycle: c.status
            for c in session.scalars(select(Certificate))
            if c.workflow_id == handle.id
        }
    assert certs == {1: "superseded", 2: "compliant"}


async def test_ce_credit_shortfall_blocks_renewal_until_logged(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    """Pharmacist licence: 30 CE credits per cycle; messages say how many are missing."""
    person, _, pack_hash = _org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle, expires = await _register(
            env, tq, person, pack_hash, certification="pharmacist-license", expires_in_days=40
        )
        today = (await env.get_current_time()).date()
        state = await handle.execute_update(
            CertificationWorkflow.log_ce_credits,
            CeCredit(credits=12, activity="ACPE law update", earned_on=today, actor="ada"),
        )
        assert state.ce_credits_short == 18
        with pytest.raises(WorkflowUpdateFailedError) as before_cycle:
            await handle.execute_update(
                CertificationWorkflow.log_ce_credits,
                CeCredit(
                    credits=5,
                    activity="old course",
                    earned_on=add_months(expires, -25),
                    actor="ada",
                ),
            )
        assert "before this cycle began" in str(before_cycle.value.cause)
        renewal = RenewCertification(
            certificate=CertificateRecord(
                cycle=2,
                verification_code=f"T-{uuid.uuid4().hex[:10].upper()}",
                issued_on=today,
                expires_on=add_months(expires, 24),
            ),
            actor="hr",
        )
        with pytest.raises(WorkflowUpdateFailedError) as short:
            await handle.execute_update(CertificationWorkflow.renew, renewal)
        assert "18 CE credits short: 12 of 30" in str(short.value.cause)
        await _sleep(env, 15)  # the -30d stage (day 10) says how many are missing
        state = await handle.execute_update(
            CertificationWorkflow.log_ce_credits,
            CeCredit(credits=18, activity="Immunization CE", earned_on=today, actor="ada"),
        )
        assert state.ce_credits_short == 0
        closed = await handle.execute_update(CertificationWorkflow.renew, renewal)
        assert closed.ce_credits_logged == 30 and closed.outcome == "renewed_in_window"
        await _sleep(env, 1)
        nxt = await env.client.get_workflow_handle_for(CertificationWorkflow.run, handle.id).query(
            CertificationWorkflow.state
        )
        assert nxt.cycle == 2 and nxt.ce_credits_logged == 0 and nxt.ce_credits_short == 30
        await env.client.get_workflow_handle(handle.id).terminate("test done")
    minus30 = next(r for r in _ledger(sqlite_db, person) if r.stage == "c1:-30d")
    assert "18 continuing-education credits" in minus30.body


async def test_revoke_mid_ladder_stops_reminders(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    person, _, pack_hash = _org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle, _ = await _register(env, tq, person, pack_hash, expires_in_days=65)
        await _sleep(env, 10)  # -60d went out (day 5)
        await handle.signal(
            CertificationWorkflow.suspend, SuspendCertification(reason="audit", actor="hr")
        )
        await _sleep(env, 40)  # -30d (day 35) falls in the suspension
        assert _status(sqlite_db, handle.id) == "suspended"
        await handle.signal(
            CertificationWorkflow.reinstate, ReinstateCertification(reason="cleared", actor="hr")
        )
        await env.sleep(timedelta(hours=1))
        assert _status(sqlite_db, handle.id) == "renewal_due"
        await handle.signal(
            CertificationWorkflow.revoke, RevokeCertification(reason="fraud", actor="hr")
        )
        final = await handle.result()
        await _sleep(env, 40)
    assert final.status == "revoked"
    learner = [r.stage for r in _ledger(sqlite_db, person) if r.recipient_role == "learner"]
    # Registered after -90d: one immediate notice; -60d on time; -30d fell in the suspension.
    assert list(dict.fromkeys(learner)) == [
        "c1:-90d",
        "c1:-60d",
        "c1:suspended",
        "c1:reinstated",
        "c1:revoked",
    ]
    kinds = [e.kind for e in final.events]
    assert "stage_skipped" in kinds  # -30d fell in the suspension and is not replayed
    assert _status(sqlite_db, handle.id) == "revoked"


async def test_ten_annual_renewals_keep_each_run_small_and_every_cycle_answerable(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    person, _, pack_hash = _org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    lengths: list[int] = []
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle, expires = await _register(env, tq, person, pack_hash, expires_in_days=365)
        for cycle in range(2, 12):
            current = env.client.get_workflow_handle_for(CertificationWorkflow.run, handle.id)
            due = add_months(expires, 12 * (cycle - 2))
            today = (await env.get_current_time()).date()
            # A year of reminders each time; renewed a month before the expiry.
            await _sleep(env, (due - today).days - 30)
            today = (await env.get_current_time()).date()
            await current.execute_update(
                CertificationWorkflow.renew,
                RenewCertification(
                    certificate=CertificateRecord(
                        cycle=cycle,
                        verification_code=f"T-{uuid.uuid4().hex[:10].upper()}",
                        issued_on=today,
                        expires_on=add_months(expires, 12 * (cycle - 1)),
                    ),
                    actor="hr",
                ),
            )
        await _sleep(env, 1)
        latest = env.client.get_workflow_handle_for(CertificationWorkflow.run, handle.id)
        state = await latest.query(CertificationWorkflow.state)
        for closed in state.history:
            run = env.client.get_workflow_handle(handle.id, run_id=closed.run_id)
            history = await run.fetch_history()
            lengths.append(len(history.events))
        await latest.terminate("test done")
    print(f"history events per run over ten renewals: {lengths}")  # shown with pytest -s
    assert state.cycle == 11
    assert [c.certificate.cycle for c in state.history] == list(range(1, 11))
    assert {c.outcome for c in state.history} == {"renewed_in_window"}, state.history
    # Every run's history is about one year's ladder, not the sum of all years.
    assert len(lengths) == 10 and max(lengths) < 250, lengths
    assert max(lengths) - min(lengths) < 60, lengths
