"""The demo's assessment failure (``make run``): three failed attempts make the course failed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from domain.contracts.assignment import AssignmentState
from domain.roles import Role
from duly.demo import load_demo_people
from duly.devstack import DEMO_FAILED_EXAM, _demo_failed_exam
from duly.settings import Settings
from duly.worker import build_worker
from rules.loader import load_pack
from services import tracks
from services.assignments import person as find_person
from store.db import Database
from store.packs import Migration, deploy
from store.tokens import Principal
from workflows.assignment import AssignmentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
TRACK = "site-administrator"


async def test_the_demo_fails_an_exam_then_exhausts_the_attempts(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    member, requirement, scores = DEMO_FAILED_EXAM
    with sqlite_db.session() as session:
        assert load_demo_people(session).errors == []
        deploy(
            session,
            load_pack(MEDICAL),
            author="demo",
            message="v1",
            migration=Migration.GRANDFATHER,
        )
    task_queue = f"tq-{uuid.uuid4()}"
    settings = Settings(env="test", temporal_task_queue=task_queue)
    principal = Principal(
        token_id=0, role=Role.HR_ADMIN, person_id=None, person_external_id=None, label="demo"
    )
    # As in `make run`: the attempts are signalled before any worker runs.
    with sqlite_db.session() as session:
        await _demo_failed_exam(session, env.client, settings, principal, TRACK)
    workflow_id = f"assignment/{member}/{requirement}/1"
    handle = env.client.get_workflow_handle(workflow_id)
    async with build_worker(env.client, task_queue=task_queue, db=sqlite_db):
        await env.sleep(timedelta(hours=1))
        state: AssignmentState = await handle.query(AssignmentWorkflow.state)
        kinds = [e.kind for e in state.events]
        # A failed attempt first (not the end), then the last allowed one: failed.
        assert kinds.count("attempt_failed") >= 1 and kinds.count("failed") == 1
        assert state.status == "failed" and state.failed_attempts == len(scores)
        assert state.completed_at is None and state.attempts_allowed == 3
        with sqlite_db.session() as session:
            person = find_person(session, external_id=member)
            later = datetime.now(UTC) + timedelta(days=3650)
            [(_, progress)] = tracks.person_tracks(session, person_id=person.id, as_of=later)
        assert progress.status.value == "failed"
        course = next(c for c in progress.courses if c.requirement_id == requirement)
        assert course.status.value == "failed"
        for other in (workflow_id, f"assignment/{member}/hipaa-privacy-security/1"):
            await env.client.get_workflow_handle(other).terminate("demo checked")
