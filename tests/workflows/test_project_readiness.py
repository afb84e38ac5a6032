"""ProjectReadinessWorkflow: the 30/14/7/1 countdown naming blocking tracks, a moved go-live,
readiness announced when the last required completion lands.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.common import WorkflowIDReusePolicy
from temporalio.testing import WorkflowEnvironment

from activities.tracks import completion_notices, start_completion_notices
from domain.contracts.tracks import (
    GoLiveChange,
    ProjectReadinessInput,
    ReadinessCheck,
    TrackCompletedNotice,
    project_workflow_id,
    track_completed_workflow_id,
)
from duly.worker import build_worker
from rules.loader import load_pack
from store.db import Database
from store.models import Notification, Obligation, Person, Project, ProjectTrack, TrackEnrolment
from store.packs import Migration, deploy
from workflows.project import ProjectReadinessWorkflow
from workflows.track_notice import TrackCompletedWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
#: site-administrator's required courses.
COURSES = ("hipaa-privacy-security", "research-systems-admin")


def _seed(db: Database, now: datetime) -> tuple[int, str, str]:
    """A PM with a manager, an administrator enrolled in site-administrator, a project."""
    tag = uuid.uuid4().hex[:8]
    pack = load_pack(MEDICAL)
    with db.session() as session:
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
        boss = Person(external_id=f"boss-{tag}", name="Grace", email="g@example.com", roles=[])
        session.add(boss)
        session.flush()
        pm = Person(
            external_id=f"pm-{tag}",
            name="Pat PM",
            email="pm@example.com",
            roles=["manager"],
            manager_id=boss.id,
        )
        admin = Person(
            external_id=f"adm-{tag}", name="Ada Admin", email="a@example.com", roles=["manager"]
        )
        session.add_all([pm, admin])
        session.flush()
        session.add(
            TrackEnrolment(
                person_id=admin.id,
                track_id="site-administrator",
                pack_hash=pack.content_hash,
                enrolled_on=now.date(),
                enrolled_at=now,
                source="hr",
                enrolled_by="hr",
            )
        )
        for requirement in COURSES:
            session.add(
                Obligation(
                    workflow_id=f"assignment/{admin.external_id}/{requirement}/1",
                    person_id=admin.id,
                    kind="training",
                    requirement_id=requirement,
                    requirement_title=requirement,
                    due_date=(now + timedelta(days=30)).date(),
                    status="assigned",
                    pack_hash=pack.content_hash,
                    as_of=now,
                )
            )
        project = Project(
            name=f"Imaging study {tag}",
            client="Riverside Clinic",
            go_live=(now + timedelta(days=40)).date(),
            manager_id=pm.id,
        )
        session.add(project)
        session.flush()
        session.add(
            ProjectTrack(
                project_id=project.id,
                track_id="site-administrator",
                target_role="manager",
                people_needed=1,
                due_date=project.go_live,
            )
        )
        return project.id, pm.external_id, admin.external_id


def _ledger(db: Database, workflow_id: str) -> list[tuple[str, str | None, str]]:
    with db.session() as session:
        rows = session.scalars(
            select(Notification)
            .where(Notification.workflow_id == workflow_id)
            .order_by(Notification.id)
        )
        return [(n.stage, n.recipient_role, n.subject) for n in rows]


def _attempts(db: Database, workflow_id: str) -> list[tuple[int, str]]:
    with db.session() as session:
        rows = session.scalars(
            select(Notification)
            .where(Notification.workflow_id == workflow_id)
            .order_by(Notification.id)
        )
        return [(n.attempts, n.status) for n in rows]


async def test_countdown_names_blockers_replans_and_announces_readiness(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    now = await env.get_current_time()
    project_id, pm, admin = _seed(sqlite_db, now)
    go_live = (now + timedelta(days=40)).date()
    workflow_id = project_workflow_id(project_id)
    task_queue = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=task_queue, db=sqlite_db):
        handle = await env.client.start_workflow(
            ProjectReadinessWorkflow.run,
            ProjectReadinessInput(
                project_id=project_id,
                name="Imaging",
                go_live=go_live,
                manager=pm,
                check_every_hours=24,  # a small history for the replay fixture
            ),
            id=workflow_id,
            task_queue=task_queue,
        )
        await env.sleep(timedelta(days=36))
        sent = _ledger(sqlite_db, workflow_id)
        assert list(dict.fromkeys(s for s, _, _ in sent)) == ["g1:-30d", "g1:-14d", "g1:-7d"]
        # The project manager and their manager, naming the blocking track.
        assert {role for s, role, _ in sent if s == "g1:-7d"} == {"learner", "manager"}
        assert all("Research site administrator" in subject for _, _, subject in sent)
        state = await handle.query(ProjectReadinessWorkflow.state)
        assert not state.ready and state.blocking_tracks == ["Research site administrator"]

        # Go-live moves 20 days later: a new countdown; its -30d has passed (sent once, late).
        await handle.signal(
            ProjectReadinessWorkflow.move_go_live,
            GoLiveChange(go_live=go_live + timedelta(days=20), actor="hr"),
        )
        await env.sleep(timedelta(days=11))  # the new -14d
        stages = list(dict.fromkeys(s for s, _, _ in _ledger(sqlite_db, workflow_id)))
        assert stages == ["g1:-30d", "g1:-14d", "g1:-7d", "g2:-30d", "g2:-14d"]

        # The last required completion lands: readiness is announced at once, and it ends.
        done = await env.get_current_time()
        with sqlite_db.session() as session:
            for row in session.scalars(
                select(Obligation).where(Obligation.workflow_id.like(f"assignment/{admin}/%"))
            ):
                row.completed_at = done
                row.status = "compliant"
        await handle.signal(ProjectReadinessWorkflow.check, ReadinessCheck())
        final = await handle.result()
        if os.environ.get("DULY_RECORD_HISTORIES"):
            history = await handle.fetch_history()
            (Path(__file__).parent / "histories" / "project_countdown.json").write_text(
                history.to_json()
            )
    assert final.ready and final.blocking_tracks == []
    ledger = _ledger(sqlite_db, workflow_id)
    assert list(dict.fromkeys(s for s, _, _ in ledger))[-1] == "g2:ready"
    assert "g1:-1d" not in {s for s, _, _ in ledger}
    ready = [subject for s, _, subject in ledger if s == "g2:ready"]
    assert ready and all(subject.startswith("Ready for go-live") for subject in ready)
    assert [e.kind for e in final.events].count("go_live_moved") == 1


async def test_a_project_ready_at_the_start_sends_no_countdown(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    now = await env.get_current_time()
    project_id, pm, admin = _seed(sqlite_db, now)
    with sqlite_db.session() as session:
        for row in session.scalars(
            select(Obligation).where(Obligation.workflow_id.like(f"assignment/{admin}/%"))
        ):
            row.completed_at = now
    task_queue = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=task_queue, db=sqlite_db):
        final = await env.client.execute_workflow(
            ProjectReadinessWorkflow.run,
            ProjectReadinessInput(
                project_id=project_id,
                name="Imaging",
                go_live=(now + timedelta(days=40)).date(),
                manager=pm,
            ),
            id=project_workflow_id(project_id),
            task_queue=task_queue,
        )
    assert final.ready
    stages = {s for s, _, _ in _ledger(sqlite_db, project_workflow_id(project_id))}
    assert stages == {"g1:ready"}


async def test_the_last_completion_announces_readiness_at_once(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    """A real assignment completing nudges the project (no periodic look needed)."""
    from domain.contracts.assignment import AssignmentInput, CompleteSignal
    from workflows.assignment import AssignmentWorkflow

    now = await env.get_current_time()
    project_id, pm, admin = _seed(sqlite_db, now)
    with sqlite_db.session() as session:
        hipaa = session.scalar(
            select(Obligation).where(
                Obligation.workflow_id == f"assignment/{admin}/hipaa-privacy-security/1"
            )
        )
        assert hipaa is not None
        hipaa.completed_at = now
        pack_hash = hipaa.pack_hash
    task_queue = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=task_queue, db=sqlite_db):
        project = await env.client.start_workflow(
            ProjectReadinessWorkflow.run,
            ProjectReadinessInput(
                project_id=project_id,
                name="Imaging",
                go_live=(now + timedelta(days=40)).date(),
                manager=pm,
                check_every_hours=24,
            ),
            id=project_workflow_id(project_id),
            task_queue=task_queue,
        )
        course = AssignmentInput(
            person=admin,
            requirement_id="research-systems-admin",
            requirement_title="Research Site Systems Administration",
            due_date=(now + timedelta(days=30)).date(),
            assigned_by="track site-administrator",
            pack_hash=pack_hash,
            track_id="site-administrator",
        )
        assignment = await env.client.start_workflow(
            AssignmentWorkflow.run, course, id=course.workflow_id, task_queue=task_queue
        )
        await env.sleep(timedelta(hours=1))
        assert not (await project.query(ProjectReadinessWorkflow.state)).ready
        await assignment.signal(
            AssignmentWorkflow.complete,
            CompleteSignal(
                completed_at=await env.get_current_time(), actor="lms", score_percent=95
            ),
        )
        await assignment.result()
        final = await project.result()
        # The learner is told their track is complete (the course's workflow started it).
        notice_id = track_completed_workflow_id("site-administrator", admin)
        await env.client.get_workflow_handle(notice_id).result()
        told = _ledger(sqlite_db, notice_id)
        first_attempts = _attempts(sqlite_db, notice_id)
        assert first_attempts == [(1, "sent"), (1, "sent")]
        # A retried course completion, or the nightly sweep, starts nothing more...
        with sqlite_db.session() as session:
            owed = completion_notices(
                session, base_url="https://duly.example", since=now - timedelta(days=7)
            )
        assert [n for n in owed if n.person == admin] == []
        # ...and even a second run of the notice (its key reused after Temporal forgot it)
        # finds the ledger's rows and sends nothing.
        with sqlite_db.session() as session:
            enrolment = session.scalar(
                select(TrackEnrolment).join(Person).where(Person.external_id == admin)
            )
            assert enrolment is not None and enrolment.certificate_code is not None
            again = TrackCompletedNotice(
                person=admin,
                track_id="site-administrator",
                track_name="Research site administrator",
                certificate_code=enrolment.certificate_code,
                issued_on=now.date(),
                verify_url="https://duly.example/verify/x",
            )
        assert await start_completion_notices(env.client, task_queue, [again]) == []
        rerun = await env.client.execute_workflow(
            TrackCompletedWorkflow.run,
            again,
            id=notice_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
        assert rerun == ["learner email sent", "learner in_app sent"]  # as the ledger has it
        assert _attempts(sqlite_db, notice_id) == first_attempts  # not called again
        assert _ledger(sqlite_db, notice_id) == told
    # Announced when the completion landed, well before the next daily look.
    ready_at = next(e.at for e in final.events if e.kind == "ready")
    assert final.ready and ready_at - now < timedelta(hours=12), final.events
    assert "g1:ready" in {s for s, _, _ in _ledger(sqlite_db, project_workflow_id(project_id))}
    # The track completed by itself (nobody read its progress) and issued its certificate,
    # which the public /verify answers like a certification's.
    from store.certificates import find

    with sqlite_db.session() as session:
        enrolment = session.scalar(
            select(TrackEnrolment).join(Person).where(Person.external_id == admin)
        )
        assert enrolment is not None and enrolment.completed_at is not None
        assert enrolment.certificate_code is not None
        assert enrolment.certificate_issued_on == enrolment.completed_at.date()
        code = enrolment.certificate_code
        rows = session.scalars(
            select(Notification).where(Notification.workflow_id == notice_id)
        ).all()
        # Exactly one message per channel, to the learner, naming the track and the code.
        assert sorted((n.channel, n.recipient_role, n.status) for n in rows) == [
            ("email", "learner", "sent"),
            ("in_app", "learner", "sent"),
        ]
        for row in rows:
            assert row.subject == 'Track complete: "Research site administrator"'
            assert code in row.body and f"/verify/{code}" in row.body
        verified = find(session, enrolment.certificate_code)
        assert verified is not None
        assert (verified.holder, verified.title, verified.status, verified.valid_until) == (
            "Ada Admin",
            "Research site administrator",
            "completed",
            None,
        )
