"""Classroom hours from the LMS: xAPI statements → hours entries of the real ApprenticeshipWorkflow.

The field-technicians program lists NEIEP units (8 hours each, credited when completed)
and a lab counted by ``result.duration``; its entries wait for the supervisor. A variant pack
with ``approval: auto`` approves them as they arrive. Idempotent by statement id; a statement
that cannot be hours is answered 422 with why and kept as a dead letter.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from domain import Role
from rules.loader import load_pack
from store.apprenticeships import ApprenticeshipHours
from store.db import Database
from store.models import AuditEntry, DeadLetter, Person
from store.packs import Migration, deploy
from tests.api.test_apprenticeship_api import running
from tests.conftest import bearer

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.wall_clock]

FIELD = Path(__file__).parents[2] / "rules" / "packs" / "field-technicians"
LMS = "https://lms.summit-vcs.example.com/xapi/activities"
COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
ATTENDED = "http://adlnet.gov/expapi/verbs/attended"
FAILED = "http://adlnet.gov/expapi/verbs/failed"


def _org(db: Database, pack_dir: Path) -> None:
    with db.session() as session:
        deploy(
            session, load_pack(pack_dir), author="t", message=None, migration=Migration.GRANDFATHER
        )
        jw = Person(external_id="jw-1", name="Mechanic", email="jw-1@example.com")
        session.add(jw)
        session.flush()
        session.add(
            Person(
                external_id="ap-1", name="Apprentice", email="ap-1@example.com", manager_id=jw.id
            )
        )


def _statement(verb: str, activity: str, at: datetime, **result: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "actor": {"mbox": "mailto:ap-1@example.com"},
        "verb": {"id": verb},
        "object": {"id": f"{LMS}/{activity}"},
        "timestamp": at.isoformat().replace("+00:00", "Z"),
    }
    if result:
        body["result"] = result
    return body


def _void(target: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "actor": {"mbox": "mailto:ap-1@example.com"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
        "object": {"objectType": "StatementRef", "id": target},
    }


async def _enrol(env: WorkflowEnvironment, http: httpx.AsyncClient, hr: dict[str, str]) -> str:
    today = (await env.get_current_time()).date()
    body = {
        "person": "ap-1",
        "program_id": "elevator-mechanic",
        "supervisor": "jw-1",
        "enrolled_on": (today - timedelta(days=10)).isoformat(),
    }
    response = await http.post("/apprenticeship/enroll", json=body, headers=hr)
    assert response.status_code == 201, response.text
    wid: str = response.json()["id"]
    for _ in range(50):
        if (await http.get("/apprenticeship", headers=hr)).json():
            return wid
        await env.sleep(timedelta(seconds=1))
    raise AssertionError("the apprenticeship never recorded itself")


async def _progress(http: httpx.AsyncClient, apprentice: dict[str, str]) -> dict[str, Any]:
    response = await http.get("/me/apprenticeship/progress", headers=apprentice)
    assert response.status_code == 200, response.text
    [state] = response.json()
    assert isinstance(state, dict)
    return state


async def test_lms_statements_become_classroom_hours_pending_the_supervisor(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    db = sqlite_db
    _org(db, FIELD)
    hr = bearer(db, Role.HR_ADMIN)
    lms = bearer(db, Role.INTEGRATION)
    apprentice = bearer(db, Role.LEARNER, "ap-1")
    supervisor = bearer(db, Role.LEARNER, "jw-1")
    async with running(env, db) as http:
        wid = await _enrol(env, http, hr)
        yesterday = await env.get_current_time() - timedelta(days=1)

        unit = _statement(COMPLETED, "neiep-y1-unit-1", yesterday)
        lab = _statement(ATTENDED, "neiep-lab", yesterday, duration="PT3H30M")
        posted = await http.post("/xapi/statements", json=[unit, lab], headers=lms)
        assert posted.status_code == 200, posted.text
        first, second = posted.json()["results"]
        assert first["outcome"] == "recorded" and first["workflow_id"] == wid
        assert "8 classroom hours" in first["detail"] and "pending" in first["detail"]
        assert "3.5 classroom hours" in second["detail"]
        state = await _progress(http, apprentice)
        assert state["classroom_pending"] == 11.5 and state["classroom_approved"] == 0

        # The same statement again: a duplicate, nothing more is logged.
        again = await http.post("/xapi/statements", json=unit, headers=lms)
        assert again.status_code == 200 and again.json()["results"][0]["outcome"] == "duplicate"
        assert (await _progress(http, apprentice))["classroom_pending"] == 11.5

        # A lab statement without a duration cannot be hours: 422 with why, a dead letter.
        bare = _statement(ATTENDED, "neiep-lab", yesterday)
        refused = await http.post("/xapi/statements", json=bare, headers=lms)
        assert refused.status_code == 422, refused.text
        [item] = refused.json()["results"]
        assert item["outcome"] == "dead_letter" and "result.duration" in item["detail"]
        # A failed attempt is not instruction completed: not hours (the course is no
        # requirement either, so it is an unknown activity for the completion path).
        failed = await http.post(
            "/xapi/statements", json=_statement(FAILED, "neiep-y1-unit-2", yesterday), headers=lms
        )
        assert failed.status_code == 422 and "unknown activity" in failed.text

        # The supervisor approves the unit: only approved hours count.
        entry = f"xapi-{unit['id']}"
        approved = await http.post(
            f"/apprenticeship/{wid}/hours/{entry}/approve", headers=supervisor
        )
        assert approved.status_code == 200, approved.text
        state = await _progress(http, apprentice)
        assert state["classroom_approved"] == 8 and state["classroom_pending"] == 3.5

        # The LMS voids both statements (xAPI 1.0.3 voiding): the pending lab entry is
        # rejected, the approved unit withdrawn (its hours stop counting, the timeline says so).
        voids = [_void(unit["id"]), _void(lab["id"])]
        voided = await http.post("/xapi/statements", json=voids, headers=lms)
        assert voided.status_code == 200, voided.text
        withdrawn, rejected = voided.json()["results"]
        assert withdrawn["outcome"] == "recorded" and "withdrawn" in withdrawn["detail"]
        assert rejected["outcome"] == "recorded" and "before approval" in rejected["detail"]
        again = await http.post("/xapi/statements", json=voids[0], headers=lms)
        assert again.json()["results"][0]["outcome"] == "duplicate"
        state = await _progress(http, apprentice)
        assert state["classroom_approved"] == 0 and state["classroom_pending"] == 0
        reason = f"xAPI statement {unit['id']} voided"
        assert any(
            e["kind"] == "hours_withdrawn" and reason in e["detail"] for e in state["events"]
        )

    with db.session() as session:
        rows = session.scalars(
            select(ApprenticeshipHours).where(ApprenticeshipHours.workflow_id == wid)
        ).all()
        assert sorted((r.entry_id, r.kind, r.hours, r.status, r.source) for r in rows) == sorted(
            [
                (entry, "classroom", 8.0, "rejected", "xapi"),
                (f"xapi-{lab['id']}", "classroom", 3.5, "rejected", "xapi"),
            ]
        )
        assert {r.review_reason for r in rows} == {
            f"xAPI statement {unit['id']} voided",
            f"xAPI statement {lab['id']} voided",
        }
        audited = session.scalars(
            select(AuditEntry.target).where(AuditEntry.action == "xapi.statement")
        ).all()
        assert sorted(audited) == [wid, wid]  # once per statement, not per post
        voids_audited = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "xapi.void")
        ).all()
        assert sorted((a.before or {})["entry_status"] for a in voids_audited) == [
            "approved",
            "pending",
        ]
        letters = session.scalars(select(DeadLetter.reason)).all()
        assert any("result.duration" in reason for reason in letters)


async def test_a_program_with_auto_approval_counts_lms_hours_at_once(
    env: WorkflowEnvironment, sqlite_db: Database, tmp_path: Path
) -> None:
    db = sqlite_db
    auto = tmp_path / "auto"
    shutil.copytree(FIELD, auto)
    programs = auto / "programs.yaml"
    text = programs.read_text(encoding="utf-8")
    assert "approval: supervisor" in text
    programs.write_text(text.replace("approval: supervisor", "approval: auto"), encoding="utf-8")
    _org(db, auto)
    hr = bearer(db, Role.HR_ADMIN)
    lms = bearer(db, Role.INTEGRATION)
    apprentice = bearer(db, Role.LEARNER, "ap-1")
    async with running(env, db) as http:
        wid = await _enrol(env, http, hr)
        now = await env.get_current_time()
        lab = _statement(ATTENDED, "neiep-lab", now - timedelta(days=2), duration="PT2H15M")
        posted = await http.post("/xapi/statements", json=lab, headers=lms)
        assert posted.status_code == 200, posted.text
        assert posted.json()["results"][0]["detail"].endswith("approved")
        state = await _progress(http, apprentice)
        assert state["classroom_approved"] == 2.25 and state["classroom_pending"] == 0
        # 24 hours in one day is the most a day holds, LMS or not: refused with why.
        day = _statement(ATTENDED, "neiep-lab", now - timedelta(days=2), duration="PT22H")
        refused = await http.post("/xapi/statements", json=day, headers=lms)
        assert refused.status_code == 422, refused.text
        assert "at most 24" in refused.text
    with db.session() as session:
        [row] = session.scalars(
            select(ApprenticeshipHours).where(ApprenticeshipHours.workflow_id == wid)
        ).all()
        assert (row.status, row.reviewed_by) == ("approved", "integration:test integration")
