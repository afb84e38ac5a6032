"""A pack's ``kind: mentorship`` requirements, end to end through the API: pack conditions on
the mentorship decide which ones it satisfies, and ending it early re-opens them — whatever
ends it (the API, or the workflow's updates straight, as the directory automation sends)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from activities.assigning import assignment_input
from api.app import create_app
from domain import Role
from domain.contracts.mentorship import AcceptRequest, CancelMentorship
from duly.demo import load_demo_people
from duly.settings import Settings
from duly.worker import build_worker
from rules.loader import load_pack, pack_from_files
from rules.model import Pack
from store import mentorship as store
from store.db import Database
from store.models import AuditEntry, Mentorship, Obligation
from store.packs import Migration, deploy
from tests.api.test_certifications_api import _terminate, eventually
from tests.api.test_mentorship_api import MENTEE_PROFILE, _mentor
from tests.conftest import bearer
from workflows.assignment import AssignmentWorkflow
from workflows.mentorship import MentorshipWorkflow

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.wall_clock]

MENTEE, MENTOR = "p-1024", "p-1022"
REQUIREMENTS = """\
requirements:
  - id: apprentice-mentor
    title: An active mentor in the first period
    kind: mentorship
    applies_to: {roles: [apprentice]}
    due_in_days: 30
  - id: prep-mentor
    title: A certification-prep mentor holding Otis Gen2
    kind: mentorship
    applies_to: {roles: [apprentice]}
    due_in_days: 45
    mentorship:
      types: [certification_prep]
      mentor_certifications: [otis-gen2-service]
"""


def _pack() -> Pack:
    files = dict(load_pack("rules/packs/field-technicians").files)
    files["mentoring.yaml"] = REQUIREMENTS
    return pack_from_files(files)


@pytest_asyncio.fixture(loop_scope="module")
async def api(env: WorkflowEnvironment, sqlite_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    with sqlite_db.session() as session:
        load_demo_people(session)
        deploy(session, _pack(), author="t", message=None, migration=Migration.GRANDFATHER)
    task_queue = f"tq-{uuid.uuid4()}"
    settings = Settings(env="test", temporal_task_queue=task_queue, digest_window_seconds=0)
    app = create_app(
        settings, database=sqlite_db, temporal_client=env.client, clock=env.get_current_time
    )
    async with (
        build_worker(env.client, task_queue=task_queue, db=sqlite_db, settings=settings),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http
        with sqlite_db.session() as session:
            ids = [row.workflow_id for row in session.query(Mentorship)]
            ids += [
                row.workflow_id
                for row in session.query(Obligation).filter(Obligation.status != "completed")
            ]
        for workflow_id in ids:
            await _terminate(env, workflow_id)


def _obligations(db: Database) -> dict[str, tuple[str, str]]:
    """Each mentorship obligation: "completed" once completion is recorded (the pack's status
    rules then say ``compliant``), else its status; and its requirement."""
    with db.session() as session:
        rows = session.scalars(select(Obligation).where(Obligation.kind == "mentorship"))
        return {
            r.workflow_id: ("completed" if r.completed_at else r.status, r.requirement_id)
            for r in rows
        }


async def test_conditions_pick_the_requirements_and_an_early_end_reopens_them(
    api: httpx.AsyncClient, sqlite_db: Database, env: WorkflowEnvironment
) -> None:
    hr = bearer(sqlite_db, Role.HR_ADMIN)
    mentee = bearer(sqlite_db, Role.LEARNER, MENTEE)
    assert (
        await api.put("/mentorship/profile/mentee", json=MENTEE_PROFILE, headers=mentee)
    ).status_code == 200
    body: dict[str, Any] = {"person": MENTOR, **_mentor(7, "Boston")}
    assert (await api.put("/mentorship/profile/mentor", json=body, headers=hr)).status_code == 200
    settings = api._transport.app.state.settings  # type: ignore[attr-defined]
    today = (await env.get_current_time()).date()
    with sqlite_db.session() as session:
        pack = _pack()
        person = store.person(session, MENTEE)
        assert person is not None
        inputs = [
            assignment_input(
                person,
                title=requirement,
                due_date=today + timedelta(days=30),
                requirement_id=requirement,
                assigned_by="hr",
                pack=pack,
            )
            for requirement in ("apprentice-mentor", "prep-mentor")
        ]
    for inp in inputs:
        await env.client.start_workflow(
            AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=settings.temporal_task_queue
        )
    first, prep = (inp.workflow_id for inp in inputs)

    async def recorded() -> bool | None:
        return True if {first, prep} <= set(_obligations(sqlite_db)) else None

    await eventually(recorded)
    # A certification-prep mentorship whose mentor holds no Otis Gen2 certificate.
    response = await api.post(
        "/mentorship/request",
        json={"mentor": MENTOR, "type": "certification_prep", "duration_months": 6},
        headers=mentee,
    )
    assert response.status_code == 201, response.text
    workflow_id = response.json()["id"]
    path = workflow_id.removeprefix("mentorship/")
    mentor = bearer(sqlite_db, Role.LEARNER, MENTOR)
    accepted = await api.put(f"/mentorship/request/{path}/accept", headers=mentor)
    assert accepted.status_code == 200, accepted.text

    async def first_completed() -> bool | None:
        return True if _obligations(sqlite_db)[first][0] == "completed" else None

    await eventually(first_completed)
    # The conditioned requirement stays open, and the audit log says why.
    assert _obligations(sqlite_db)[prep][0] != "completed"
    with sqlite_db.session() as session:
        refused = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "mentorship.requirement_not_met")
        ).all()
        assert [(r.target, r.after["reason"]) for r in refused] == [
            (prep, "the mentor does not hold otis-gen2-service")
        ]
    read = (await api.get(f"/{workflow_id}", headers=hr)).json()
    assert [(r["obligation"], r["reopened_as"]) for r in read["requirements"]] == [(first, None)]

    # Cancelled months before its planned end: the requirement it satisfied re-opens.
    cancelled = await api.post(
        f"/{workflow_id}/cancel", json={"reason": "mentor moved away"}, headers=mentee
    )
    assert cancelled.status_code == 200, cancelled.text
    reopened = first.rsplit("/", 1)[0] + "/2"

    async def reopened_open() -> bool | None:
        found = _obligations(sqlite_db).get(reopened)
        return True if found is not None and found[0] != "completed" else None

    await eventually(reopened_open)
    assert _obligations(sqlite_db)[reopened][1] == "apprentice-mentor"
    (requirement,) = (await api.get(f"/{workflow_id}", headers=hr)).json()["requirements"]
    assert requirement["obligation"] == first and requirement["reopened_as"] == reopened
    assert requirement["reason"].startswith(f"mentorship {workflow_id} was cancelled on ")
    assert requirement["reason"].endswith(": mentor moved away")
    with sqlite_db.session() as session:
        audit = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "mentorship.requirement_reopened")
        ).all()
        assert [a.target for a in audit] == [reopened]
        obligation = session.scalar(select(Obligation).where(Obligation.workflow_id == reopened))
        assert obligation is not None
        assert obligation.due_date == today + timedelta(days=30)  # the pack's due_in_days
    handle = env.client.get_workflow_handle(reopened)
    state = await handle.query(AssignmentWorkflow.state)
    assert "ended early" in str(state.model_dump())

    # The requirement follows the workflow, not the API calls: a second mentorship accepted
    # and then cancelled straight through the workflow's updates (as the directory's leaver
    # automation does) completes the re-opened cycle and re-opens it again.
    response = await api.post(
        "/mentorship/request", json={"mentor": MENTOR, "duration_months": 6}, headers=mentee
    )
    assert response.status_code == 201, response.text
    second = env.client.get_workflow_handle(response.json()["id"])
    await second.execute_update(MentorshipWorkflow.accept, AcceptRequest(by=MENTOR))

    async def reopened_completed() -> bool | None:
        return True if _obligations(sqlite_db)[reopened][0] == "completed" else None

    await eventually(reopened_completed)
    await second.execute_update(
        MentorshipWorkflow.cancel, CancelMentorship(by="directory", reason="the mentor left")
    )
    third = first.rsplit("/", 1)[0] + "/3"

    async def third_open() -> bool | None:
        found = _obligations(sqlite_db).get(third)
        return True if found is not None and found[0] != "completed" else None

    await eventually(third_open)
    with sqlite_db.session() as session:
        row = store.relationship(session, second.id)
        assert row is not None
        [fulfilment] = store.fulfilments(session, row.id)
        assert (fulfilment.obligation_workflow_id, fulfilment.reopened_as) == (reopened, third)
        assert fulfilment.reopened_reason is not None
        assert fulfilment.reopened_reason.endswith(": the mentor left")
