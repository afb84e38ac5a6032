"""A leaver closes every family, a leave pauses every family with reminders (time-skipping).

The field-technicians pack: an elevator mechanic owes certifications (obligations to obtain
them, then the held certificates), an apprentice runs an ``ApprenticeshipWorkflow``, and
mentorships run on either side. Every directory write goes through :mod:`services.directory`
and :func:`services.directory.automate`, as the API, SCIM and the CLI do.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from activities import mentorship_profiles as profiles
from domain.contracts.apprenticeship import (
    ApprenticeshipState,
    EnrollmentStatus,
    EnrolmentAction,
    HoursEntry,
    HoursKind,
    LogHours,
)
from domain.contracts.certification import CertificationState
from domain.contracts.directory import ReconcileRequest
from domain.contracts.mentorship import (
    AcceptRequest,
    MentorshipInput,
    MentorshipState,
    MentorshipStatus,
    mentorship_workflow_id,
)
from duly.worker import build_worker
from rules.loader import load_pack
from rules.mentorship_model import (
    Availability,
    CommunicationStyle,
    MentorProfile,
)
from services import apprenticeships, certifications, directory, mentorships
from store.apprenticeships import Apprenticeship
from store.db import Database
from store.models import Mentorship, Notification, Obligation, Person
from store.packs import Migration, deploy
from tests.workflows.test_directory_workflow import HR
from tests.workflows.test_directory_workflow import Org as DirectoryOrg
from workflows.apprenticeship import ApprenticeshipWorkflow
from workflows.directory import DirectoryReconcileWorkflow
from workflows.mentorship import MentorshipWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")

FIELD = Path(__file__).parents[2] / "rules" / "packs" / "field-technicians"
MECHANIC = {"roles": "elevator_mechanic", "department": "Elevator Service"}
#: The certifications an elevator mechanic must hold (the pack's ``applies_to``).
MECHANIC_CERTS = {"otis-gen2-service", "kone-monospace-service", "elevator-mechanic-certificate"}


@dataclass
class Org(DirectoryOrg):
    """The directory workflow tests' organisation, with every family's records to read."""

    def person(self, ext: str) -> Person:
        with self.db.session() as session:
            person = session.scalar(select(Person).where(Person.external_id == ext))
            assert person is not None
            session.expunge(person)
            return person

    def obligations(self, ext: str) -> dict[str, list[tuple[str, str, int]]]:
        """requirement -> [(workflow id, status, cycle)] in cycle order."""
        found: dict[str, list[tuple[str, str, int]]] = {}
        with self.db.session() as session:
            for req, wid, status, cycle in session.execute(
                select(
                    Obligation.requirement_id,
                    Obligation.workflow_id,
                    Obligation.status,
                    Obligation.cycle,
                )
                .join(Person, Obligation.person_id == Person.id)
                .where(Person.external_id == ext)
                .order_by(Obligation.cycle, Obligation.id)
            ):
                found.setdefault(req, []).append((wid, status, cycle))
        return found

    def sent(self, workflow_id: str, person: str | None = None) -> list[str]:
        """Stages sent (not skipped) for a workflow, optionally to one person."""
        with self.db.session() as session:
            stmt = select(Notification.stage).where(
                Notification.workflow_id == workflow_id, Notification.status != "skipped"
            )
            if person is not None:
                stmt = stmt.join(Person, Notification.person_id == Person.id).where(
                    Person.external_id == person
                )
            return list(session.scalars(stmt))

    async def mentorship(self, mentee: str, mentor: str, *, accept: bool) -> str:
        """Start a mentorship (pending; ``accept``: active) between two people."""
        inp = MentorshipInput(
            workflow_id=mentorship_workflow_id(mentee, mentor, 1),
            mentee=mentee,
            mentor=mentor,
            pack_hash=self.pack.content_hash,
            terms=mentorships.terms_of(self.pack.mentorship),  # type: ignore[arg-type]
            duration_months=6,
        )
        handle = await self.env.client.start_workflow(
            MentorshipWorkflow.run, inp, id=inp.workflow_id, task_queue=self.queue
        )
        if accept:
            await handle.execute_update(MentorshipWorkflow.accept, AcceptRequest(by=mentor))
        await self._settle(
            lambda s: s.scalar(
                select(Mentorship.id).where(
                    Mentorship.workflow_id == inp.workflow_id,
                    Mentorship.status == ("active" if accept else "pending"),
                )
            )
        )
        return inp.workflow_id

    async def _settle(self, probe: Any) -> None:
        """Wait (real time, bounded) until an activity has written what ``probe`` reads."""
        for _ in range(400):
            with self.db.session() as session:
                if probe(session):
                    return
            await asyncio.sleep(0.05)
        raise AssertionError("the read model never caught up")

    def mentor_profile(self, ext: str) -> None:
        with self.db.session() as session:
            person = session.scalar(select(Person).where(Person.external_id == ext))
            assert person is not None
            profiles.save_mentor(
                session,
                person,
                MentorProfile(
                    person_id=ext,
                    years_experience=12,
                    specializations=["hydraulic elevators"],
                    max_mentees=3,
                    communication_preferences=[CommunicationStyle.VIDEO],
                    availability=Availability(hours_per_month=4),
                    city="Denver",
                    region="CO",
                ),
            )
            session.commit()

    def workflow_ids(self) -> list[str]:
        """Obligations, apprenticeships and mentorships: every family a change may start."""
        with self.db.session() as session:
            ids = list(session.scalars(select(Obligation.workflow_id)))
            ids += list(session.scalars(select(Apprenticeship.workflow_id)))
            ids += list(session.scalars(select(Mentorship.workflow_id)))
        return ids


@pytest_asyncio.fixture(loop_scope="module")
async def org(env: WorkflowEnvironment, sqlite_db: Database) -> AsyncIterator[Org]:
    pack = load_pack(FIELD)
    with sqlite_db.session() as session:
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
    queue = f"fam-{uuid.uuid4().hex[:8]}"
    found = Org(env, sqlite_db, queue, pack)
    async with build_worker(env.client, task_queue=queue, db=sqlite_db):
        try:
            yield found
        finally:
            await found.cleanup()


def _ext(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"  # the server outlives each test


async def test_leaver_closes_every_family_once_and_a_rehire_owes_what_applies(org: Org) -> None:
    ext, mentor, mentee, supervisor = _ext(), _ext("m"), _ext("e"), _ext("s")
    asker = _ext("a")  # a request to ext still waiting for an answer when they leave
    await org.change(org.hire(supervisor, **MECHANIC))
    for other in (mentor, mentee, asker):
        await org.change(org.hire(other, roles="apprentice", department="Elevator Service"))
    joined = await org.change(org.hire(ext, **MECHANIC))
    # A joiner owes the certifications that apply: an obligation to obtain each.
    obtain = {w.split("/")[2] for w in joined.started if w.split("/")[2] in MECHANIC_CERTS}
    assert obtain == MECHANIC_CERTS
    assert set(joined.certificates_needed) == MECHANIC_CERTS
    # HR registers one held certificate: its obligation to obtain it completes.
    now = await org.env.get_current_time()
    with org.db.session() as session:
        registered = await certifications.register(
            session,
            org.env.client,
            task_queue=org.queue,
            person=org.person(ext),
            certification_id="otis-gen2-service",
            issued_on=now.date() - timedelta(days=30),
            expires_on=None,
            certificate_number=None,
            issuer=None,
            evidence_ref=None,
            principal=HR,
            now=now,
        )
    await org.env.sleep(timedelta(minutes=5))
    held = org.obligations(ext)["otis-gen2-service"]
    assert [w.split("/")[0] for w, _, _ in held] == ["assignment", "certification"]
    assert held[1][1] not in ("cancelled", "revoked")
    with org.db.session() as session:
        done = session.scalar(
            select(Obligation.completed_at).where(Obligation.workflow_id == held[0][0])
        )
    assert done is not None  # completed by the registration
    # An apprenticeship (as the apprentice) and mentorships on both sides.
    with org.db.session() as session:
        enrolled = await apprenticeships.enroll(
            session,
            org.env.client,
            task_queue=org.queue,
            person=ext,
            program_id="elevator-mechanic",
            supervisor=supervisor,
            enrolled_on=None,
            principal=HR,
        )
    org.mentor_profile(ext)
    org.mentor_profile(mentor)  # the next best match of ext's mentees
    as_mentee = await org.mentorship(ext, mentor, accept=False)
    as_mentor = await org.mentorship(mentee, ext, accept=True)
    asked = await org.mentorship(asker, ext, accept=False)
    # ext also supervises someone else's apprenticeship, with hours waiting for approval.
    with org.db.session() as session:
        supervised = await apprenticeships.enroll(
            session,
            org.env.client,
            task_queue=org.queue,
            person=mentee,
            program_id="elevator-mechanic",
            supervisor=ext,
            enrolled_on=None,
            principal=HR,
        )
    other_app = org.env.client.get_workflow_handle(supervised.workflow_id)
    entry = HoursEntry(
        id="w-1", day=now.date(), kind=HoursKind.WORK, hours=8.0, description="on the job"
    )
    await other_app.execute_update(
        ApprenticeshipWorkflow.log_hours, LogHours(entry=entry, actor=mentee)
    )

    change = org.patch(ext, employment_status="terminated")
    left = await org.change(change)
    closed = {(c.family, c.status, c.reason) for c in left.closed}
    assert {f for f, _, _ in closed} == {
        "assignment",
        "certification",
        "apprenticeship",
        "mentorship",
    }
    # Their own obligations are cancelled; the mentorships they mentored ended for the mentee.
    assert {(s, r) for _, s, r in closed} == {("cancelled", "left"), ("ended", "mentor_left")}
    assert {c.workflow_id for c in left.closed} >= {
        registered.workflow_id,
        enrolled.workflow_id,
        as_mentee,
        as_mentor,
        asked,
    }
    assert enrolled.workflow_id != supervised.workflow_id
    assert supervised.workflow_id not in {c.workflow_id for c in left.closed}
    cert = org.env.client.get_workflow_handle(
        registered.workflow_id, result_type=CertificationState
    )
    cert_state: CertificationState = await cert.result()
    assert cert_state.status == "cancelled"
    assert any(e.kind == "cancelled" and "left" in e.detail for e in cert_state.events)
    app = org.env.client.get_workflow_handle(enrolled.workflow_id, result_type=ApprenticeshipState)
    app_state: ApprenticeshipState = await app.result()
    assert app_state.status is EnrollmentStatus.WITHDRAWN
    # ext as the mentee: their own, cancelled; the mentor is told, the leaver is not.
    handle = org.env.client.get_workflow_handle(as_mentee, result_type=MentorshipState)
    state: MentorshipState = await handle.result()
    assert state.status is MentorshipStatus.CANCELLED and state.reason == "left"
    assert "cancelled" in org.sent(as_mentee, mentor)
    assert "cancelled" not in org.sent(as_mentee, ext)
    # ext as the mentor: the active mentorship ended, the pending request expired at once;
    # each mentee is told once why and shown the next best mentors (ext left out).
    for workflow_id, other, status in (
        (as_mentor, mentee, MentorshipStatus.ENDED),
        (asked, asker, MentorshipStatus.EXPIRED),
    ):
        handle = org.env.client.get_workflow_handle(workflow_id, result_type=MentorshipState)
        state = await handle.result()
        assert state.status is status and state.reason == "mentor_left"
        assert ext not in state.next_matches and any(e.kind == "next_matches" for e in state.events)
        assert org.sent(workflow_id, other).count("mentor-left") == 1  # once (the ledger)
        assert not [s for s in org.sent(workflow_id, ext) if s in ("mentor-left", "cancelled")]
    # The apprenticeship ext supervised is flagged, not closed: its hours stay pending and HR
    # and the sponsor's contact hear once that it needs a new supervisor.
    flagged = await other_app.query(ApprenticeshipWorkflow.state)
    assert flagged.status is EnrollmentStatus.ACTIVE and flagged.supervisor_left == ext
    assert flagged.work_pending == 8.0
    assert [(f.workflow_id, f.flag) for f in left.flagged] == [
        (supervised.workflow_id, "supervisor_left")
    ]
    told = [s for s in org.sent(supervised.workflow_id) if s.startswith("sl")]
    assert len(told) == 2 and len(set(told)) == 1  # HR's mailbox and the sponsor's contact
    with org.db.session() as session:
        summary = session.scalar(
            select(Apprenticeship.summary).where(
                Apprenticeship.workflow_id == supervised.workflow_id
            )
        )
    assert summary is not None and summary["supervisor_left"] == ext  # HR's read model
    # The same change again is refused by its business key: nothing is sent twice.
    again_started = await directory.automate([change], temporal=org._client, task_queue=org.queue)
    assert again_started.started == 0
    everything = org.obligations(ext)
    # Every row is closed but the completed obligation to obtain (it stays completed).
    assert {
        status for rows in everything.values() for wid, status, _ in rows if wid != held[0][0]
    } <= {"cancelled", "withdrawn"}  # the apprenticeship records itself too

    # Idempotent: the reconciliation finds nothing left to close for them.
    again = await org.env.client.execute_workflow(
        DirectoryReconcileWorkflow.run,
        ReconcileRequest(),
        id=f"reconcile-{uuid.uuid4().hex[:8]}",
        task_queue=org.queue,
    )
    assert not [fix for fix in again.fixes if ext in fix]
    assert [s for s in org.sent(supervised.workflow_id) if s.startswith("sl")] == told
    # HR transfers the supervisor: the flag clears and the new one can approve the hours.
    with org.db.session() as session:
        moved = await apprenticeships.transfer(
            session,
            org.env.client,
            workflow_id=supervised.workflow_id,
            supervisor=supervisor,
            reason="ext left",
            principal=HR,
        )
    assert moved.supervisor == supervisor and moved.supervisor_left is None

    # A rehire owes what applies again: trainings and certifications (the cancelled
    # certificate is not held any more), as new cycles. The apprenticeship is not restored.
    back = await org.change(org.patch(ext, employment_status="active"))
    assert back.kind == "rehire"
    restarted = {w.split("/")[2]: int(w.split("/")[3]) for w in back.started}
    assert set(restarted) >= MECHANIC_CERTS
    assert restarted["otis-gen2-service"] == 2  # cycle 1 was completed by the registration
    with org.db.session() as session:
        status = session.scalar(
            select(Apprenticeship.status).where(Apprenticeship.workflow_id == enrolled.workflow_id)
        )
    assert status == "withdrawn"
    with org.db.session() as session:
        ended = dict(
            session.execute(
                select(Mentorship.workflow_id, Mentorship.status).where(
                    Mentorship.workflow_id.in_([as_mentor, asked])
                )
            ).all()
        )
    assert ended == {as_mentor: "ended", asked: "expired"}  # a rehire resurrects neither


async def test_leave_pauses_apprenticeship_and_mentorship_nudges_and_return_resumes(
    org: Org,
) -> None:
    ext, mentor, supervisor, other, hr_held = _ext(), _ext("m"), _ext("s"), _ext("o"), _ext("h")
    await org.change(org.hire(supervisor, **MECHANIC))
    await org.change(org.hire(mentor, **MECHANIC))
    for who in (ext, other, hr_held):
        await org.change(org.hire(who, roles="apprentice", department="Elevator Service"))
    workflows = {}
    for who in (ext, hr_held):
        with org.db.session() as session:
            inp = await apprenticeships.enroll(
                session,
                org.env.client,
                task_queue=org.queue,
                person=who,
                program_id="elevator-mechanic",
                supervisor=supervisor,
                enrolled_on=None,
                principal=HR,
            )
        workflows[who] = inp.workflow_id
    org.mentor_profile(mentor)
    mentoring = await org.mentorship(ext, mentor, accept=True)

    left = await org.change(org.patch(ext, employment_status="leave"))
    assert left.kind == "leave"
    app = org.env.client.get_workflow_handle(workflows[ext])
    state = await app.query(ApprenticeshipWorkflow.state)
    assert state.status is EnrollmentStatus.SUSPENDED
    suspended = [e for e in state.events if e.kind == "suspended"]
    assert suspended and suspended[-1].detail.endswith("leave of absence")
    ment = org.env.client.get_workflow_handle(mentoring)
    assert "paused" in [e.kind for e in (await ment.query(MentorshipWorkflow.state)).events]
    nudges_before = [s for s in org.sent(mentoring) if s.startswith("s")]
    await org.env.sleep(timedelta(days=30))  # two cadence periods: nudges would have gone out
    assert [s for s in org.sent(mentoring) if s.startswith("s")] == nudges_before

    # HR suspends another apprentice on its own, who then takes a leave and comes back: the
    # return does not lift HR's suspension.
    with org.db.session() as session:
        await apprenticeships.change(
            session,
            org.env.client,
            workflow_id=workflows[hr_held],
            action=EnrolmentAction.SUSPEND,
            reason="safety review",
            principal=HR,
        )
    await org.change(org.patch(hr_held, employment_status="leave"))
    back_other = await org.change(org.patch(hr_held, employment_status="active"))
    assert back_other.kind == "return"
    held = await org.env.client.get_workflow_handle(workflows[hr_held]).query(
        ApprenticeshipWorkflow.state
    )
    assert held.status is EnrollmentStatus.SUSPENDED

    back = await org.change(org.patch(ext, employment_status="active"))
    assert back.kind == "return" and back.resumed >= 2
    state = await app.query(ApprenticeshipWorkflow.state)
    assert state.status is EnrollmentStatus.ACTIVE
    resumed = await ment.query(MentorshipWorkflow.state)
    assert "resumed" in [e.kind for e in resumed.events]
    assert resumed.next_session_due is not None
    assert resumed.next_session_due > await org.env.get_current_time()
    await org.env.sleep(timedelta(days=15))  # one cadence after the return
    assert [s for s in org.sent(mentoring) if s.startswith("s")] != nudges_before
    with org.db.session() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(Mentorship)
                .where(Mentorship.workflow_id == mentoring, Mentorship.status == "active")
            )
            == 1
        )
