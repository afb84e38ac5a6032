"""Joiners, movers, leavers, rehires, leave and the reconciliation (time-skipping server).

Every directory write goes through :mod:`services.directory` and its change through
:func:`services.directory.automate`, as the API, SCIM and the CLI do; the assertions read the
obligations' own workflows, the read model, the ledger and the token store.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from domain.contracts.assignment import AssignmentState
from domain.contracts.directory import DirectoryChange, DirectoryOutcome, ReconcileRequest
from domain.ids import directory_change_workflow_id
from domain.roles import Role
from duly.worker import build_worker
from rules.loader import load_pack
from rules.model import Pack
from services import certifications, directory, tracks
from services.assignments import assignment_input, start_assignment
from store.db import Database
from store.models import AuditEntry, Notification, Obligation, Person, TrackEnrolment
from store.packs import Migration, deploy
from store.tokens import Principal, TokenRejected, check_token, create_token
from workflows.assignment import AssignmentWorkflow
from workflows.directory import DirectoryReconcileWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
HR = Principal(token_id=0, role=Role.HR_ADMIN, person_id=None, person_external_id=None, label="t")
#: The medical pack's trainings a nurse owes.
NURSE_TRAININGS = {"hipaa-privacy-security", "fire-safety", "osha-bloodborne-pathogens"}
#: The certifications a nurse must hold: until registered, an obligation to obtain each.
NURSE_CERTS = {"bls-certification", "acls-certification"}
NURSE_OWES = NURSE_TRAININGS | NURSE_CERTS
EVERYONE = {"hipaa-privacy-security", "fire-safety"}


def _pack(tmp_path: Path, *, keep: bool = False, extend: bool = True) -> Pack:
    """The medical pack; ``keep``: OSHA stays open for movers; ``extend``: leave extends."""
    target = tmp_path / f"medical-{keep}-{extend}-{uuid.uuid4().hex[:6]}"
    shutil.copytree(MEDICAL, target)
    requirements = target / "requirements.yaml"
    text = requirements.read_text()
    extra = ""
    if keep:
        extra += "    on_no_longer_applicable: keep\n"
    if not extend:
        extra += "    extend_due_on_leave: false\n"
    anchor = "  - id: osha-bloodborne-pathogens\n"
    assert anchor in text
    text = text.replace(anchor, anchor + extra, 1)
    if not extend:
        hipaa = "  - id: hipaa-privacy-security\n"
        text = text.replace(hipaa, hipaa + "    extend_due_on_leave: false\n", 1)
    requirements.write_text(text)
    return load_pack(target)


@dataclass
class Org:
    env: WorkflowEnvironment
    db: Database
    queue: str
    pack: Pack

    async def change(self, change: DirectoryChange | None) -> DirectoryOutcome:
        """Automate the change and wait for its workflow."""
        assert change is not None
        outcome = await directory.automate([change], temporal=self._client, task_queue=self.queue)
        assert outcome.started == 1
        handle = self.env.client.get_workflow_handle(
            directory_change_workflow_id(change.external_id, change.change_id),
            result_type=DirectoryOutcome,
        )
        result: DirectoryOutcome = await handle.result()
        await self.env.sleep(timedelta(minutes=5))  # the obligations record themselves
        return result

    async def _client(self) -> Any:
        return self.env.client

    def hire(self, ext: str, **fields: Any) -> DirectoryChange:
        with self.db.session() as session:
            _, change = directory.create_person(
                session,
                fields={"external_id": ext, "name": "Test Person", **fields},
                principal=HR,
                source="api",
            )
        return change

    def patch(self, ext: str, **fields: Any) -> DirectoryChange | None:
        with self.db.session() as session:
            _, change = directory.patch_person(
                session, external_id=ext, fields=fields, principal=HR, source="scim"
            )
        return change

    def obligations(self, ext: str) -> dict[str, tuple[str, int, str]]:
        """requirement -> (status, cycle, workflow id) of the latest cycle."""
        with self.db.session() as session:
            rows = session.execute(
                select(
                    Obligation.requirement_id,
                    Obligation.status,
                    Obligation.cycle,
                    Obligation.workflow_id,
                )
                .join(Person, Obligation.person_id == Person.id)
                .where(Person.external_id == ext)
                .order_by(Obligation.cycle)
            )
            return {req: (status, cycle, wid) for req, status, cycle, wid in rows}

    async def state(self, workflow_id: str) -> AssignmentState:
        handle = self.env.client.get_workflow_handle(workflow_id)
        state: AssignmentState = await handle.query(AssignmentWorkflow.state)
        return state

    def notifications(self, ext: str) -> int:
        with self.db.session() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(Notification)
                    .where(Notification.workflow_id.like(f"assignment/{ext}/%"))
                )
                or 0
            )

    def workflow_ids(self) -> list[str]:
        """The workflows this organisation's changes may have started."""
        with self.db.session() as session:
            return list(session.scalars(select(Obligation.workflow_id)))

    async def cleanup(self) -> None:
        """Terminate every workflow still running (the shared server must end clean)."""
        for workflow_id in self.workflow_ids():
            handle = self.env.client.get_workflow_handle(workflow_id)
            try:
                description = await handle.describe()
                if description.status is WorkflowExecutionStatus.RUNNING:
                    await handle.terminate("test done")
            except RPCError:
                pass


@pytest_asyncio.fixture(loop_scope="module")
async def org(env: WorkflowEnvironment, sqlite_db: Database, tmp_path: Path) -> AsyncIterator[Org]:
    pack = _pack(tmp_path)
    with sqlite_db.session() as session:
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
    queue = f"dir-{uuid.uuid4().hex[:8]}"
    found = Org(env, sqlite_db, queue, pack)
    async with build_worker(env.client, task_queue=queue, db=sqlite_db):
        try:
            yield found
        finally:
            await found.cleanup()


def _ext() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"  # the server outlives each test: fresh business keys


async def test_joiner_gets_what_applies_due_from_start_date_pinned_to_the_pack(org: Org) -> None:
    today = (await org.env.get_current_time()).date()
    start = today + timedelta(days=14)  # pre-boarding: due dates count from the first day
    ext = _ext()
    change = org.hire(ext, roles="nurse", department="Nursing", start_date=start.isoformat())
    outcome = await org.change(change)
    assert outcome.kind == "joiner"
    assert {w.split("/")[2] for w in outcome.started} == NURSE_OWES
    assert set(outcome.certificates_needed) == NURSE_CERTS
    held = org.obligations(ext)
    assert set(held) == NURSE_OWES
    hipaa = await org.state(held["hipaa-privacy-security"][2])
    osha = await org.state(held["osha-bloodborne-pathogens"][2])
    assert hipaa.due_date == start + timedelta(days=30)
    assert osha.due_date == start + timedelta(days=10)
    # A certification is owed too: obtain it within the pack's due_in_days (BLS: 60).
    bls = await org.state(held["bls-certification"][2])
    assert bls.due_date == start + timedelta(days=60)
    assert bls.requirement_title.startswith("Obtain ")
    assert hipaa.pack_hash == org.pack.content_hash
    # Idempotent: the same change started again is refused by its business key.
    again = await directory.automate([change], temporal=org._client, task_queue=org.queue)
    assert again.started == 0 and again.existing == 1
    with org.db.session() as session:
        audited = session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(
                AuditEntry.action == "directory.automation", AuditEntry.target == f"person/{ext}"
            )
        )
    assert audited == 1


async def test_mover_closes_what_no_longer_applies_with_why(org: Org) -> None:
    ext = _ext()
    await org.change(org.hire(ext, roles="nurse", department="Nursing"))
    outcome = await org.change(org.patch(ext, roles=["receptionist"], department="Front Office"))
    assert outcome.kind == "mover"
    assert {c.requirement_id for c in outcome.closed} == {"osha-bloodborne-pathogens"} | NURSE_CERTS
    assert {c.status for c in outcome.closed} == {"not_applicable"}
    held = org.obligations(ext)
    assert held["osha-bloodborne-pathogens"][0] == "not_applicable"
    assert held["hipaa-privacy-security"][0] != "not_applicable"
    osha = await org.state(held["osha-bloodborne-pathogens"][2])
    cancelled = [e for e in osha.events if e.kind == "cancelled"]
    assert cancelled and "no longer applies" in cancelled[0].detail
    assert "Front Office" in cancelled[0].detail
    # Moving back assigns OSHA again, as a new cycle (the closed one keeps its id).
    back = await org.change(org.patch(ext, roles=["nurse"], department="Nursing"))
    assert set(back.started) == {
        f"assignment/{ext}/{r}/2" for r in {"osha-bloodborne-pathogens"} | NURSE_CERTS
    }


async def test_mover_keeps_when_the_pack_says_keep(org: Org, tmp_path: Path) -> None:
    kept = _pack(tmp_path, keep=True)
    with org.db.session() as session:
        deploy(session, kept, author="hr", message="keep", migration=Migration.GRANDFATHER)
    ext = _ext()
    await org.change(org.hire(ext, roles="nurse", department="Nursing"))
    outcome = await org.change(org.patch(ext, roles=["receptionist"], department="Front Office"))
    assert {c.requirement_id for c in outcome.closed} == NURSE_CERTS  # no keep for them
    assert outcome.kept == ["osha-bloodborne-pathogens"]
    held = org.obligations(ext)
    assert held["osha-bloodborne-pathogens"][0] not in ("not_applicable", "cancelled")


async def test_leaver_closes_everything_stops_reminders_and_tokens_then_rehire(
    org: Org,
) -> None:
    ext = _ext()
    await org.change(org.hire(ext, roles="nurse", department="Nursing"))
    with org.db.session() as session:
        token = create_token(session, role=Role.LEARNER, person_external_id=ext)
    with org.db.session() as session:
        assert check_token(session, token).person_external_id == ext
    await org.env.sleep(timedelta(days=3))
    outcome = await org.change(org.patch(ext, employment_status="terminated"))
    assert outcome.kind == "leaver"
    assert {c.requirement_id for c in outcome.closed} == NURSE_OWES
    assert {(c.status, c.reason) for c in outcome.closed} == {("cancelled", "left")}
    assert outcome.tokens_revoked == 1
    held = org.obligations(ext)
    assert {status for status, _, _ in held.values()} == {"cancelled"}
    for _, _, workflow_id in held.values():
        handle = org.env.client.get_workflow_handle(workflow_id)
        await handle.result()  # the run ends just after recording its last status
        description = await handle.describe()
        assert description.status is WorkflowExecutionStatus.COMPLETED
    sent = org.notifications(ext)
    await org.env.sleep(timedelta(days=60))  # every stage of the ladder would have fired
    assert org.notifications(ext) == sent
    with org.db.session() as session, pytest.raises(TokenRejected):
        check_token(session, token)

    rehired = await org.change(org.patch(ext, employment_status="active"))
    assert rehired.kind == "rehire"
    assert {w.split("/")[2] for w in rehired.started} == NURSE_OWES
    assert {int(w.split("/")[3]) for w in rehired.started} == {2}
    with org.db.session() as session, pytest.raises(TokenRejected):
        check_token(session, token)  # revoked: a rehire gets a new token


@pytest.mark.parametrize("extend", [True, False])
async def test_leave_pauses_reminders_and_extends_the_due_date(
    org: Org, tmp_path: Path, extend: bool
) -> None:
    if not extend:
        pack = _pack(tmp_path, extend=False)
        with org.db.session() as session:
            deploy(session, pack, author="hr", message="no extend", migration=Migration.GRANDFATHER)
    ext = _ext()
    await org.change(org.hire(ext, roles="nurse", department="Nursing"))
    workflow_id = org.obligations(ext)["hipaa-privacy-security"][2]
    due = (await org.state(workflow_id)).due_date
    await org.env.sleep(timedelta(days=2))
    left = await org.change(org.patch(ext, employment_status="leave"))
    assert left.kind == "leave" and left.paused == len(NURSE_OWES)
    sent = org.notifications(ext)
    await org.env.sleep(timedelta(days=40))  # past the due date: nothing sent, not overdue
    assert org.notifications(ext) == sent
    paused = await org.state(workflow_id)
    assert paused.status != "overdue" and paused.events[-1].kind == "paused"
    back = await org.change(org.patch(ext, employment_status="active"))
    assert back.kind == "return" and back.resumed == len(NURSE_OWES)
    resumed = await org.state(workflow_id)
    leave_days = 40  # five minutes of settling on each side do not make a day
    assert resumed.due_date == (due + timedelta(days=leave_days) if extend else due)
    assert "resumed" in [e.kind for e in resumed.events]
    if not extend:
        assert resumed.status == "overdue"  # the leave did not move it: due while away
    await org.env.sleep(timedelta(days=leave_days + 40))
    assert org.notifications(ext) > sent  # reminders resumed


async def test_reconciliation_repairs_drift_and_is_safe_to_run_twice(org: Org) -> None:
    today = (await org.env.get_current_time()).date()
    drifted, stale, tech = _ext(), _ext(), _ext()
    # Joiners whose change workflow never ran (Temporal was down; the technician is also
    # missing from the Radiology learning path), and an obligation that was started by hand
    # for someone it does not apply to.
    org.hire(drifted, roles="nurse", department="Nursing")
    org.hire(tech, roles="technician", department="Radiology")
    await org.change(org.hire(stale, roles="receptionist", department="Front Office"))
    with org.db.session() as session:
        person = session.scalar(select(Person).where(Person.external_id == stale))
        assert person is not None
        inp = assignment_input(
            person,
            title="OSHA Bloodborne Pathogens",
            requirement_id="osha-bloodborne-pathogens",
            due_date=today + timedelta(days=20),
            assigned_by="hand",
            pack=org.pack,
        )
    assert await start_assignment(client=org.env.client, task_queue=org.queue, inp=inp)
    # A track that completed when its progress was read (no course workflow told anyone).
    now = await org.env.get_current_time()
    with org.db.session() as session:
        person = session.scalar(select(Person).where(Person.external_id == stale))
        assert person is not None
        session.add(
            TrackEnrolment(
                person_id=person.id,
                track_id="site-administrator",
                pack_hash=org.pack.content_hash,
                enrolled_on=today,
                enrolled_at=now - timedelta(days=3),
                source="hr",
                enrolled_by="hr",
                completed_at=now - timedelta(hours=2),
                certificate_code="DULY-TEST-0000-0001",
                certificate_title="Research site administrator",
                certificate_issued_on=today,
            )
        )
    await org.env.sleep(timedelta(minutes=5))
    assert org.obligations(drifted) == {}

    first = await org.env.client.execute_workflow(
        DirectoryReconcileWorkflow.run,
        ReconcileRequest(),
        id=f"reconcile-{uuid.uuid4().hex[:8]}",
        task_queue=org.queue,
    )
    await org.env.sleep(timedelta(minutes=5))
    owed_by_tech = set(org.obligations(tech))
    # The path's courses are among what the technician now owes (one assignment each).
    assert {"human-subjects-protection", "ich-gcp"} <= owed_by_tech
    assert first.started == len(NURSE_OWES) + len(owed_by_tech) and first.closed == 1
    assert first.enrolled == 1
    assert first.track_notices == 1
    with org.db.session() as session:
        told = session.scalars(
            select(Notification.channel).where(
                Notification.workflow_id == f"track/site-administrator/{stale}/completed"
            )
        ).all()
    assert told == ["in_app"]  # hired without an email address: in-app only
    assert f"{tech}: enrolled in learning path radiology-research-path (missing)" in first.fixes
    assert any(drifted in fix and "assigned" in fix for fix in first.fixes)
    assert any(stale in fix and "osha" in fix and "closed" in fix for fix in first.fixes)
    assert set(org.obligations(drifted)) == NURSE_OWES
    with org.db.session() as session:
        [source] = session.scalars(
            select(TrackEnrolment.source)
            .join(Person, Person.id == TrackEnrolment.person_id)
            .where(Person.external_id == tech)
        ).all()
        assert source == "auto"
        entry = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "directory.reconcile")
            .order_by(AuditEntry.id.desc())
        ).first()
        assert entry is not None and entry.after["enrolled"] == 1
    assert org.obligations(stale)["osha-bloodborne-pathogens"][0] == "not_applicable"

    second = await org.env.client.execute_workflow(
        DirectoryReconcileWorkflow.run,
        ReconcileRequest(),
        id=f"reconcile-{uuid.uuid4().hex[:8]}",
        task_queue=org.queue,
    )
    assert (second.started, second.closed, second.enrolled, second.fixes) == (0, 0, 0, [])
    assert second.track_notices == 0
    assert second.people == first.people == 3


async def test_registering_the_certificate_completes_the_obligation_to_obtain_it(
    org: Org,
) -> None:
    ext = _ext()
    await org.change(org.hire(ext, roles="nurse", department="Nursing"))
    obtain = org.obligations(ext)["bls-certification"][2]
    assert obtain == f"assignment/{ext}/bls-certification/1"
    now = await org.env.get_current_time()
    with org.db.session() as session:
        person = session.scalar(select(Person).where(Person.external_id == ext))
        assert person is not None
        registered = await certifications.register(
            session,
            org.env.client,
            task_queue=org.queue,
            person=person,
            certification_id="bls-certification",
            issued_on=now.date(),
            expires_on=None,
            certificate_number="BLS-1",
            issuer=None,
            evidence_ref=None,
            principal=HR,
            now=now,
        )
    handle = org.env.client.get_workflow_handle(obtain, result_type=AssignmentState)
    state = await handle.result()
    assert state.completed_at is not None
    assert any(
        e.kind == "completed" and registered.certificate.verification_code in e.detail
        for e in state.events
    )
    await org.env.sleep(timedelta(minutes=5))
    # Held now: the reconciliation owes them nothing more for it.
    again = await org.env.client.execute_workflow(
        DirectoryReconcileWorkflow.run,
        ReconcileRequest(),
        id=f"reconcile-{uuid.uuid4().hex[:8]}",
        task_queue=org.queue,
    )
    assert not [fix for fix in again.fixes if ext in fix]


async def test_learning_paths_follow_joiners_leavers_and_rehires_and_hr_withdraws(
    org: Org,
) -> None:
    ext = _ext()
    joined = await org.change(org.hire(ext, roles="technician", department="Radiology"))
    assert joined.enrolled == ["radiology-research-path"]
    # HR enrols them in a track whose playbook course only the track requires, then
    # withdraws them: that course closes, the ones the pack requires anyway stay open.
    now = await org.env.get_current_time()
    with org.db.session() as session:
        person = session.scalar(select(Person).where(Person.external_id == ext))
        assert person is not None
        enrolled = await tracks.enrol(
            session,
            org.env.client,
            task_queue=org.queue,
            track_id="implementation-team",
            person=person,
            principal=HR,
            source="hr",
            now=now,
        )
    playbook = f"assignment/{ext}/research-implementation-playbook/1"
    assert playbook in enrolled.started
    await org.env.sleep(timedelta(minutes=5))
    with org.db.session() as session:
        person = session.scalar(select(Person).where(Person.external_id == ext))
        assert person is not None
        withdrawn = await tracks.withdraw(
            session,
            org.env.client,
            track_id="implementation-team",
            person=person,
            principal=HR,
            reason="moved to another project",
            now=now,
        )
        again = await tracks.withdraw(
            session,
            org.env.client,
            track_id="implementation-team",
            person=person,
            principal=HR,
            reason="moved to another project",
            now=now,
        )
    assert playbook in withdrawn.closed and withdrawn.withdrawn
    assert not again.withdrawn and again.closed == []  # idempotent
    await org.env.sleep(timedelta(minutes=5))
    held = org.obligations(ext)
    assert held["research-implementation-playbook"][0] == "cancelled"
    assert held["hipaa-privacy-security"][0] not in ("cancelled", "not_applicable")

    left = await org.change(org.patch(ext, employment_status="terminated"))
    tracks_closed = [c for c in left.closed if c.family == "track"]
    assert [c.workflow_id for c in tracks_closed] == [f"track/radiology-research-path/{ext}"]
    with org.db.session() as session:
        rows = {
            row.track_id: row
            for row in session.scalars(
                select(TrackEnrolment).join(Person).where(Person.external_id == ext)
            )
        }
    assert rows["radiology-research-path"].withdrawn_reason == "left"
    assert rows["implementation-team"].withdrawn_reason == "moved to another project"

    back = await org.change(org.patch(ext, employment_status="active"))
    assert back.enrolled == ["radiology-research-path"]  # HR's track is HR's to re-enrol
    with org.db.session() as session:
        reopened = session.scalar(
            select(TrackEnrolment)
            .join(Person)
            .where(Person.external_id == ext, TrackEnrolment.track_id == "radiology-research-path")
        )
        assert reopened is not None and reopened.withdrawn_at is None
