"""Mentorship end to end: API → real MentorshipWorkflow on the time-skipping server.

Profiles (self and HR), find-mentor/find-mentee with explanations and certifications from
Duly's records, request → accept (capacity) → log a session (notes private) → complete, and who
may see what.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from domain import Role
from duly.demo import load_demo_people
from duly.settings import Settings
from duly.worker import build_worker
from rules.loader import load_pack
from store import mentorship as store
from store.db import Database
from store.models import Certificate
from store.packs import Migration, deploy
from tests.api.test_certifications_api import _terminate, eventually
from tests.conftest import bearer

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.wall_clock]

PACK = "rules/packs/field-technicians"
#: The demo org: p-1020 (Boston, reports to p-1010) is the mentee; p-1011 (Chicago) and
#: p-1021 (Boston, same region) are mentors; p-1025 reports to p-1011 elsewhere.
MENTEE, NEAR, FAR, MANAGER, STRANGER = "p-1020", "p-1021", "p-1011", "p-1010", "p-1025"


def _mentor(years: int, city: str, **extra: Any) -> dict[str, Any]:
    return {
        "years_experience": years,
        "specializations": ["Hydraulic Elevators"],
        "max_mentees": 1,
        "communication_preferences": ["video", "in_person"],
        "availability": {"hours_per_month": 6, "preferred_times": ["weekday_evenings"]},
        "city": city,
        "region": "MA" if city == "Boston" else "IL",
        "willing_remote": True,
        **extra,
    }


MENTEE_PROFILE = {
    "level": "apprentice",
    "years_experience": 1,
    "specialization_interests": ["hydraulic elevators"],
    "communication_preferences": ["in_person"],
    "availability": {"hours_per_month": 4, "preferred_times": ["weekday_evenings"]},
    "city": "Boston",
    "region": "MA",
    "open_to_remote": True,
}


@pytest_asyncio.fixture(loop_scope="module")
async def api(env: WorkflowEnvironment, sqlite_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    with sqlite_db.session() as session:
        load_demo_people(session)
        deploy(session, load_pack(PACK), author="t", message=None, migration=Migration.GRANDFATHER)
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
            ids = [row["id"] for row in store_rows(session)]
        for workflow_id in ids:
            await _terminate(env, workflow_id)


def store_rows(session: Any) -> list[dict[str, Any]]:
    from store.models import Mentorship

    return [{"id": row.workflow_id} for row in session.query(Mentorship)]


async def test_profiles_matching_request_accept_session_and_complete(
    api: httpx.AsyncClient, sqlite_db: Database, env: WorkflowEnvironment
) -> None:
    hr = bearer(sqlite_db, Role.HR_ADMIN)
    mentee = bearer(sqlite_db, Role.LEARNER, MENTEE)
    near = bearer(sqlite_db, Role.LEARNER, NEAR)
    far = bearer(sqlite_db, Role.MANAGER, FAR)
    manager = bearer(sqlite_db, Role.MANAGER, MANAGER)
    stranger = bearer(sqlite_db, Role.LEARNER, STRANGER)
    auditor = bearer(sqlite_db, Role.AUDITOR)

    # Profiles: the mentee writes their own; HR writes the mentors'; nobody else may.
    response = await api.put("/mentorship/profile/mentee", json=MENTEE_PROFILE, headers=mentee)
    assert response.status_code == 200, response.text
    response = await api.put(
        "/mentorship/profile/mentor", json={"person": NEAR, **_mentor(6, "Boston")}, headers=mentee
    )
    assert response.status_code == 404, response.text  # someone the learner cannot see
    response = await api.put(
        "/mentorship/profile/mentee", json={"person": MENTEE, **MENTEE_PROFILE}, headers=manager
    )
    assert response.status_code == 403, response.text  # a report's: visible, not theirs
    for person, profile in ((NEAR, _mentor(6, "Boston")), (FAR, _mentor(30, "Chicago"))):
        response = await api.put(
            "/mentorship/profile/mentor", json={"person": person, **profile}, headers=hr
        )
        assert response.status_code == 200, response.text
    bad = await api.put("/mentorship/profile/mentor", json={"years_experience": -1}, headers=near)
    assert bad.status_code == 422 and "years_experience" in bad.text
    # Certifications come from Duly's records, never from the request.
    with sqlite_db.session() as session:
        holder = store.person(session, NEAR)
        assert holder is not None
        session.add(
            Certificate(
                verification_code=f"T-{uuid.uuid4().hex[:8]}",
                workflow_id=f"certification/{NEAR}/qei",
                person_id=holder.id,
                certification_id="qei",
                title="QEI Inspector",
                cycle=1,
                issued_on=date(2025, 1, 1),
                expires_on=date(2030, 1, 1),
                status="compliant",
                as_of=datetime.now(UTC),
            )
        )
    profile = (await api.get("/mentorship/profile/mentor", headers=near)).json()["profile"]
    assert profile["certifications"] == ["qei inspector"]
    assert profile["track_record"] == {"mentees": 0, "completions": 0, "average_rating": None}

    # Matching: the Boston mentor 5 years ahead beats the Chicago one 29 years ahead.
    found = await api.get("/mentorship/find-mentor", headers=mentee)
    assert found.status_code == 200, found.text
    matches = found.json()["matches"]
    assert [m["person"] for m in matches] == [NEAR, FAR]
    top = {f["factor"]: f for f in matches[0]["factors"]}
    assert top["specialization"]["points"] == 30
    assert "hydraulic elevators (+30)" in top["specialization"]["explanation"]
    assert top["geographic"]["points"] == 20
    mentees = await api.get("/mentorship/find-mentee", headers=near)
    assert [m["person"] for m in mentees.json()["matches"]] == [MENTEE]
    # A manager reads a report's matches; a stranger's are invisible.
    assert (await api.get(f"/mentorship/find-mentor?person={MENTEE}", headers=manager)).json()[
        "matches"
    ]
    assert (
        await api.get(f"/mentorship/find-mentor?person={MENTEE}", headers=stranger)
    ).status_code == 404

    # Request → pending; only the mentor accepts.
    response = await api.post(
        "/mentorship/request",
        json={"mentor": NEAR, "type": "skill_specific", "goals": ["hydraulics"]},
        headers=mentee,
    )
    assert response.status_code == 201, response.text
    wid = response.json()["id"]
    assert wid == f"mentorship/{MENTEE}/{NEAR}/1"
    again = await api.post("/mentorship/request", json={"mentor": NEAR}, headers=mentee)
    assert again.status_code == 409 and "already have a pending" in again.text
    path = wid.removeprefix("mentorship/")
    refused = await api.put(f"/mentorship/request/{path}/accept", headers=mentee)
    assert refused.status_code == 403, refused.text
    accepted = await api.put(f"/mentorship/request/{path}/accept", headers=near)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "active"

    # The last slot is taken: a second mentee cannot ask the same mentor now.
    other = bearer(sqlite_db, Role.LEARNER, "p-1022")
    await api.put("/mentorship/profile/mentee", json=MENTEE_PROFILE, headers=other)
    full = await api.post("/mentorship/request", json={"mentor": NEAR}, headers=other)
    assert full.status_code == 409 and "1 of 1 slots taken" in full.text

    # A session: notes visible to their author and HR only.
    today = (await env.get_current_time()).date()
    logged = await api.post(
        f"/mentorship/{path}/log-session",
        json={
            "held_on": today.isoformat(),
            "duration_minutes": 90,
            "format": "in_person",
            "topics": ["valve block"],
            "notes": "nervous around the pit",
            "action_items": [
                {
                    "description": "read the manual",
                    "assignee": "mentee",
                    "due_on": (today + timedelta(days=3)).isoformat(),
                }
            ],
            "rating": 5,
        },
        headers=near,
    )
    assert logged.status_code == 200, logged.text
    assert logged.json()["sessions"] == 1
    future = await api.post(
        f"/mentorship/{path}/log-session",
        json={"held_on": (today + timedelta(days=2)).isoformat(), "duration_minutes": 30},
        headers=near,
    )
    assert future.status_code == 409 and "in the future" in future.text

    async def notes(headers: dict[str, str]) -> Any:
        response = await api.get(f"/mentorship/{path}", headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["sessions"][0]["notes"]

    assert await notes(near) == "nervous around the pit"
    assert await notes(hr) == "nervous around the pit"
    assert await notes(mentee) is None
    assert await notes(manager) is None
    assert await notes(auditor) is None
    assert (await api.get(f"/mentorship/{path}", headers=stranger)).status_code == 404
    timeline = (await api.get(f"/mentorship/{path}", headers=auditor)).json()["timeline"]
    kinds = [e["kind"] for e in timeline]
    assert kinds[0] == "requested" and "accepted" in kinds and "session_logged" in kinds

    # Lists: mine, the manager's reports', everything for the auditor; not a stranger's.
    assert [m["id"] for m in (await api.get("/me/mentorship", headers=near)).json()] == [wid]
    assert [m["id"] for m in (await api.get("/mentorship", headers=manager)).json()] == [wid]
    assert (await api.get("/mentorship", headers=stranger)).json() == []
    assert wid in [m["id"] for m in (await api.get("/mentorship", headers=auditor)).json()]

    # Feedback, then completion: the mentor's record counts it and the slot is free again.
    response = await api.post(
        f"/mentorship/{path}/feedback", json={"phase": "midpoint", "rating": 4}, headers=mentee
    )
    assert response.status_code == 200, response.text
    done = await api.post(f"/mentorship/{path}/complete", json={"note": "ready"}, headers=far)
    assert done.status_code == 404  # cannot see either side
    done = await api.post(f"/mentorship/{path}/complete", json={}, headers=manager)
    assert done.status_code == 403  # sees both (reports), but is not a party
    done = await api.post(f"/mentorship/{path}/complete", json={"note": "ready"}, headers=mentee)
    assert done.status_code == 200, done.text

    async def record() -> dict[str, Any] | None:
        body = (await api.get("/mentorship/profile/mentor", headers=near)).json()["profile"]
        return body if body["track_record"]["completions"] == 1 else None

    profile = await eventually(record)
    assert profile["track_record"] == {"mentees": 1, "completions": 1, "average_rating": 4.0}
    assert profile["active_mentees"] == 0


async def test_decline_with_reason_shows_the_next_matches(
    api: httpx.AsyncClient, sqlite_db: Database
) -> None:
    hr = bearer(sqlite_db, Role.HR_ADMIN)
    mentee = bearer(sqlite_db, Role.LEARNER, "p-1023")
    await api.put("/mentorship/profile/mentee", json=MENTEE_PROFILE, headers=mentee)
    for person, profile in (("p-1024", _mentor(6, "Boston")), ("p-1026", _mentor(9, "Chicago"))):
        response = await api.put(
            "/mentorship/profile/mentor", json={"person": person, **profile}, headers=hr
        )
        assert response.status_code == 200, response.text
    response = await api.post("/mentorship/request", json={"mentor": "p-1024"}, headers=mentee)
    assert response.status_code == 201, response.text
    path = response.json()["id"].removeprefix("mentorship/")
    declined = await api.put(
        f"/mentorship/request/{path}/decline",
        json={"reason": "on nights this quarter"},
        headers=bearer(sqlite_db, Role.LEARNER, "p-1024"),
    )
    assert declined.status_code == 200, declined.text

    async def finished() -> dict[str, Any] | None:
        body = (await api.get(f"/mentorship/{path}", headers=mentee)).json()
        return body if body["next_matches"] else None

    body = await eventually(finished)
    assert body["status"] == "declined"
    assert body["reason"] == "on nights this quarter"
    assert "p-1024" not in body["next_matches"]
    assert "p-1026" in body["next_matches"]


async def test_hr_imports_profiles_from_csv_row_by_row(
    api: httpx.AsyncClient, sqlite_db: Database
) -> None:
    hr = bearer(sqlite_db, Role.HR_ADMIN)
    csv_text = (
        "person,years_experience,specializations,communication_preferences,hours_per_month,"
        "preferred_times,city,region,willing_remote,max_mentees\n"
        "p-1021,6,IV therapy;wound care,in_person;text,6,weekday_evenings,Boston,MA,no,2\n"
        "p-1011,15,critical care,video,4,,Chicago,IL,yes,3\n"
        "p-9999,3,x,video,2,,,,no,1\n"
        "p-1012,-4,x,video,2,,,,maybe,1\n"
        "p-1013,4,x,carrier pigeon,2,,,,no,1\n"
    )
    response = await api.post(
        "/mentorship/profiles/import/mentor",
        content=csv_text,
        headers={**hr, "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["written"] == 2
    problems = {(e["row"], e["column"]) for e in report["errors"]}
    assert problems == {
        (4, "person"),  # unknown person
        (5, "willing_remote"),  # "maybe"
        (6, "communication_preferences.0"),  # not a style
    }
    profile = (await api.get("/mentorship/profile/mentor?person=p-1021", headers=hr)).json()[
        "profile"
    ]
    assert profile["specializations"] == ["iv therapy", "wound care"]
    assert profile["availability"] == {
        "hours_per_month": 6,
        "preferred_times": ["weekday_evenings"],
    }
    assert profile["willing_remote"] is False
    learner = bearer(sqlite_db, Role.LEARNER, "p-1020")
    refused = await api.post(
        "/mentorship/profiles/import/mentor",
        content=csv_text,
        headers={**learner, "Content-Type": "text/csv"},
    )
    assert refused.status_code == 403
    wrong = await api.post("/mentorship/profiles/import/mentee", json=[], headers=hr)
    assert wrong.status_code == 415


async def test_an_active_mentorship_meets_the_mentees_mentorship_requirement(
    api: httpx.AsyncClient, sqlite_db: Database, env: WorkflowEnvironment
) -> None:
    """A pack requirement of kind mentorship (assigned like any obligation) is completed when
    the mentee's mentorship becomes active."""
    from domain import ObligationKind
    from domain.contracts.assignment import AssignmentInput
    from store.models import Obligation
    from workflows.assignment import AssignmentWorkflow

    hr = bearer(sqlite_db, Role.HR_ADMIN)
    mentee = bearer(sqlite_db, Role.LEARNER, "p-1024")
    await api.put("/mentorship/profile/mentee", json=MENTEE_PROFILE, headers=mentee)
    response = await api.put(
        "/mentorship/profile/mentor", json={"person": "p-1022", **_mentor(7, "Boston")}, headers=hr
    )
    assert response.status_code == 200, response.text
    task_queue = api._transport.app.state.settings.temporal_task_queue  # type: ignore[attr-defined]
    today = (await env.get_current_time()).date()
    required = AssignmentInput(
        person="p-1024",
        requirement_id="apprentice-mentor",
        requirement_title="An active mentor in the first period",
        due_date=today + timedelta(days=30),
        kind=ObligationKind.MENTORSHIP,
    )
    await env.client.start_workflow(
        AssignmentWorkflow.run, required, id=required.workflow_id, task_queue=task_queue
    )

    def status() -> str | None:
        with sqlite_db.session() as session:
            row = session.query(Obligation).filter_by(workflow_id=required.workflow_id).first()
            return row.status if row is not None else None

    async def recorded() -> str | None:
        return status()

    assert await eventually(recorded) != "completed"
    response = await api.post("/mentorship/request", json={"mentor": "p-1022"}, headers=mentee)
    assert response.status_code == 201, response.text
    path = response.json()["id"].removeprefix("mentorship/")
    accepted = await api.put(
        f"/mentorship/request/{path}/accept", headers=bearer(sqlite_db, Role.LEARNER, "p-1022")
    )
    assert accepted.status_code == 200, accepted.text

    async def completed() -> bool | None:
        return True if status() == "completed" else None

    await eventually(completed)
    await _terminate(env, required.workflow_id)
