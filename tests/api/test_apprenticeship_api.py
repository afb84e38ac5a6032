"""Apprenticeships end to end: API → real ApprenticeshipWorkflow on the time-skipping server.

HR enrols, the apprentice logs hours (bad entries: 422 with why, nothing lost), the supervisor
approves and evaluates, progress reads back; strangers see nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from domain import Role
from duly.settings import Settings
from duly.worker import build_worker
from rules.loader import load_pack
from store.apprenticeships import ApprenticeshipHours
from store.db import Database
from store.models import Person
from store.packs import Migration, deploy
from tests.conftest import bearer

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.wall_clock]

FIELD = Path(__file__).parents[2] / "rules" / "packs" / "field-technicians"


def _org(db: Database) -> None:
    with db.session() as session:
        deploy(session, load_pack(FIELD), author="t", message=None, migration=Migration.GRANDFATHER)
        boss = Person(external_id="mg-1", name="Manager", email="mg-1@example.com")
        session.add(boss)
        session.flush()
        jw = Person(
            external_id="jw-1", name="Mechanic", email="jw-1@example.com", manager_id=boss.id
        )
        session.add(jw)
        session.flush()
        session.add(
            Person(
                external_id="ap-1", name="Apprentice", email="ap-1@example.com", manager_id=jw.id
            )
        )
        session.add(Person(external_id="zz-1", name="Stranger", email="zz-1@example.com"))


@asynccontextmanager
async def running(env: WorkflowEnvironment, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    task_queue = f"tq-{uuid.uuid4()}"
    settings = Settings(env="test", temporal_task_queue=task_queue)
    app = create_app(settings, database=db, temporal_client=env.client, clock=env.get_current_time)
    async with (
        build_worker(env.client, task_queue=task_queue, db=db, settings=settings),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield http


async def test_enrol_log_approve_evaluate_and_read_progress(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    db = sqlite_db
    _org(db)
    hr = bearer(db, Role.HR_ADMIN)
    apprentice = bearer(db, Role.LEARNER, "ap-1")
    supervisor = bearer(db, Role.LEARNER, "jw-1")
    stranger = bearer(db, Role.LEARNER, "zz-1")
    auditor = bearer(db, Role.AUDITOR)
    async with running(env, db) as http:
        programs = (await http.get("/apprenticeship/programs", headers=apprentice)).json()
        assert [p["id"] for p in programs] == ["elevator-mechanic"]
        one = await http.get("/apprenticeship/programs/elevator-mechanic", headers=apprentice)
        assert one.json()["periods"][0]["wage_percentage"] == 50
        assert (await http.get("/apprenticeship/programs/nope", headers=hr)).status_code == 404

        today = date.today()
        enrolled_on = (today - timedelta(days=10)).isoformat()
        body = {
            "person": "ap-1",
            "program_id": "elevator-mechanic",
            "supervisor": "jw-1",
            "enrolled_on": enrolled_on,
        }
        assert (
            await http.post("/apprenticeship/enroll", json=body, headers=apprentice)
        ).status_code == 403
        response = await http.post("/apprenticeship/enroll", json=body, headers=hr)
        assert response.status_code == 201, response.text
        wid = response.json()["id"]
        assert wid == "apprenticeship/ap-1/elevator-mechanic"
        again = await http.post("/apprenticeship/enroll", json=body, headers=hr)
        assert again.status_code == 409, again.text

        # The read model appears once the workflow recorded itself.
        for _ in range(50):
            mine = (await http.get("/me/apprenticeship", headers=apprentice)).json()
            if mine:
                break
            await env.sleep(timedelta(seconds=1))
        assert mine[0]["id"] == wid and mine[0]["period"] == 1

        day = (today - timedelta(days=2)).isoformat()
        entry = {
            "id": "e-1",
            "day": day,
            "kind": "work",
            "hours": 8,
            "skills": ["Rigging"],
            "description": "rigging",
        }
        logged = await http.post("/me/apprenticeship/log-hours", json=entry, headers=apprentice)
        assert logged.status_code == 200, logged.text
        assert logged.json()["work_pending"] == 8
        # Idempotent: the same entry again records nothing new.
        again = await http.post("/me/apprenticeship/log-hours", json=entry, headers=apprentice)
        assert again.status_code == 200 and again.json()["work_pending"] == 8
        # Refused with why, nothing lost: 20 more hours that day, a future day, negative hours,
        # the same id with other content.
        for bad, why in (
            ({**entry, "id": "e-2", "hours": 20}, "a day holds at most 24"),
            (
                {**entry, "id": "e-3", "day": (today + timedelta(days=3)).isoformat()},
                "in the future",
            ),
            ({**entry, "id": "e-4", "hours": -2}, "more than 0"),
            ({**entry, "hours": 9}, "different content"),
        ):
            refused = await http.post("/me/apprenticeship/log-hours", json=bad, headers=apprentice)
            assert refused.status_code == 422, refused.text
            assert why in refused.text, refused.text

        base = f"/apprenticeship/{wid}"
        assert (await http.post(f"{base}/hours/e-1/approve", headers=stranger)).status_code == 404
        assert (await http.post(f"{base}/hours/e-1/approve", headers=apprentice)).status_code == 403
        approved = await http.post(f"{base}/hours/e-1/approve", headers=supervisor)
        assert approved.status_code == 200, approved.text
        assert approved.json()["work_approved"] == 8 and approved.json()["work_pending"] == 0
        evaluation = {
            "id": "ev-1",
            "day": today.isoformat(),
            "score": 88,
            "skills_signed_off": ["Rigging and hoisting of machinery"],
        }
        evaluated = await http.post(f"{base}/evaluate", json=evaluation, headers=supervisor)
        assert evaluated.status_code == 200, evaluated.text
        assert "Rigging and hoisting of machinery" in evaluated.json()["skills_signed_off"]

        progress = await http.get("/me/apprenticeship/progress", headers=apprentice)
        assert progress.status_code == 200, progress.text
        [state] = progress.json()
        assert state["work_approved"] == 8 and state["evaluations_done"] == 1
        assert [e["id"] for e in state["entries"]] == ["e-1"]
        assert state["compliance_status"] in ("on_track", "behind")

        # Supervisor sees their apprentice; the auditor all; a stranger nothing.
        assert [
            r["id"] for r in (await http.get("/apprenticeship", headers=supervisor)).json()
        ] == [wid]
        assert [r["id"] for r in (await http.get("/apprenticeship", headers=auditor)).json()] == [
            wid
        ]
        assert (await http.get("/apprenticeship", headers=stranger)).json() == []

        # HR suspends: hours are refused with why; withdraw ends it.
        assert (
            await http.post(f"{base}/suspend", json={"reason": "leave"}, headers=hr)
        ).status_code == 200
        paused = await http.post(
            "/me/apprenticeship/log-hours",
            json={**entry, "id": "e-5", "hours": 2},
            headers=apprentice,
        )
        # Refused either way: no active apprenticeship on record, or the workflow says why.
        assert paused.status_code in (404, 422), paused.text
        assert (await http.post(f"{base}/withdraw", headers=hr)).status_code == 200

    with db.session() as session:
        rows = session.scalars(
            select(ApprenticeshipHours).where(ApprenticeshipHours.workflow_id == wid)
        ).all()
        assert [(r.entry_id, r.status, r.reviewed_by) for r in rows] == [
            ("e-1", "approved", "learner:jw-1")
        ]
