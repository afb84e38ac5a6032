"""Certifications end to end: API → real CertificationWorkflow on the time-skipping server.

The API app gets the test server's client and the worker's task queue; requests go through
httpx's ASGI transport on this event loop (the Temporal client is bound to it), never TestClient.
Every workflow a test starts is terminated when it ends, so later tests never wait on it.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from domain.calendar import add_months
from domain.roles import Role
from duly.demo import load_demo_people
from duly.settings import Settings
from duly.worker import build_worker
from rules.loader import load_pack
from rules.model import RenewalBasis
from services.certifications import new_verification_code, renewed_expiry
from store.db import Database
from store.models import AuditEntry, Certificate, Obligation
from store.packs import Migration, deploy
from tests.conftest import bearer

# The API reads the system clock: anchor the test server by the time of day only.
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.wall_clock]

PACK = "rules/packs/medical-practice"
BLS = "bls-certification"
PHARMACIST = "pharmacist-license"
CODE = re.compile(r"^DULY-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}$")
VERIFY_KEYS = {"holder", "certification", "status", "valid_until"}
REASON = {"reason": "board inquiry pending"}

T = TypeVar("T")


@dataclass
class Api:
    """A running API + worker pair for one test."""

    http: httpx.AsyncClient
    db: Database
    env: WorkflowEnvironment
    hr: dict[str, str]
    started: list[str] = field(default_factory=list)

    def token(self, role: Role, person: str | None = None) -> dict[str, str]:
        """Headers with a fresh token for ``role`` (bound to ``person``)."""
        return bearer(self.db, role, person)

    async def today(self) -> date:
        """The test server's current (UTC) date."""
        return (await self.env.get_current_time()).date()

    async def register(
        self,
        person: str,
        certification: str,
        *,
        issued_on: date,
        expires_on: date | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST /certifications; must answer 201. Returns the body."""
        body: dict[str, Any] = {
            "person": person,
            "certification_id": certification,
            "issued_on": issued_on.isoformat(),
            "certificate_number": f"N-{person}",
        }
        if expires_on is not None:
            body["expires_on"] = expires_on.isoformat()
        response = await self.http.post("/certifications", json=body, headers=headers or self.hr)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        self.started.append(created["id"])
        return created

    async def get(self, workflow_id: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """GET /certifications/{id}."""
        return await self.http.get(f"/certifications/{workflow_id}", headers=headers or self.hr)

    async def live(self, workflow_id: str, until: Callable[[dict[str, Any]], bool]) -> Any:
        """Poll GET /certifications/{id} until the workflow answers and ``until`` holds."""

        async def probe() -> dict[str, Any] | None:
            response = await self.get(workflow_id)
            body: dict[str, Any] = response.json()
            return body if response.status_code == 200 and until(body) else None

        return await eventually(probe)

    async def post(
        self, workflow_id: str, action: str, body: dict[str, Any], headers: dict[str, str]
    ) -> httpx.Response:
        """POST /certifications/{id}/{action}."""
        return await self.http.post(
            f"/certifications/{workflow_id}/{action}", json=body, headers=headers
        )

    async def workflow_status(self, workflow_id: str) -> WorkflowExecutionStatus | None:
        """The latest run's execution status."""
        return (await self.env.client.get_workflow_handle(workflow_id).describe()).status


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 15.0) -> T:
    """Poll ``probe`` until it answers something other than None."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if result is not None:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(
    env: WorkflowEnvironment, db: Database, verify_limit: int = 1000
) -> AsyncIterator[Api]:
    """Demo directory + medical-practice pack, a worker on its own queue, the API on it."""
    with db.session() as session:
        load_demo_people(session)
        deploy(
            session, load_pack(PACK), author="test", message=None, migration=Migration.GRANDFATHER
        )
    task_queue = f"tq-{uuid.uuid4()}"
    settings = Settings(
        env="test",
        temporal_task_queue=task_queue,
        verify_rate_limit_per_minute=verify_limit,
        digest_window_seconds=0,
    )
    # The API's "now" is the server's simulated time, as the workflows' is.
    app = create_app(settings, database=db, temporal_client=env.client, clock=env.get_current_time)
    transport = httpx.ASGITransport(app=app)
    async with (
        build_worker(env.client, task_queue=task_queue, db=db, settings=settings),
        httpx.AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        api = Api(http, db, env, bearer(db, Role.HR_ADMIN))
        try:
            yield api
        finally:
            for workflow_id in api.started:
                await _terminate(env, workflow_id)


async def _terminate(env: WorkflowEnvironment, workflow_id: str) -> None:
    """Terminate a workflow that is still running, once no activity of it is in flight.

    The time-skipping server keeps time locked for an activity that was running when its
    workflow was terminated, which would stall every later ``env.sleep`` of the module.
    """
    handle = env.client.get_workflow_handle(workflow_id)

    async def idle() -> bool | None:
        description = await handle.describe()
        return None if description.raw_description.pending_activities else True

    try:
        await eventually(idle, timeout=10)
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test done")
    except RPCError:
        pass


def _certificate_row(db: Database, code: str) -> Certificate | None:
    with db.session() as session:
        row = session.scalar(select(Certificate).where(Certificate.verification_code == code))
        if row is not None:
            session.expunge(row)
        return row


async def _recorded(db: Database, code: str, status: str | None = None) -> Certificate:
    """Wait until the workflow wrote this certificate (with ``status`` when given)."""

    async def probe() -> Certificate | None:
        row = _certificate_row(db, code)
        return row if row is not None and (status is None or row.status == status) else None

    return await eventually(probe)


async def test_types_register_and_public_verification(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    async with running(env, sqlite_db, verify_limit=6) as api:
        learner = api.token(Role.LEARNER, "p-1020")
        types = await api.http.get("/certifications/types", headers=learner)
        assert types.status_code == 200, types.text
        registry = {t["id"]: t for t in types.json()}
        assert {BLS, PHARMACIST} <= set(registry)
        assert "hipaa-privacy-security" not in registry  # a training, not a certification
        assert registry[PHARMACIST] == {
            "id": PHARMACIST,
            "title": "Pharmacist License Renewal",
            "code": "RPH",
            "issuing_body": "Washington Pharmacy Quality Assurance Commission",
            "validity_months": 24,
            "renewal_window_days": 90,
            "grace_days": 0,
            "ce_credits": 30,
            "renewal_basis": "from_renewal",
        }
        assert (await api.http.get("/certifications/types")).status_code == 401

        today = await api.today()
        issued = today - timedelta(days=30)
        created = await api.register("p-1020", BLS, issued_on=issued)
        workflow_id = f"certification/p-1020/{BLS}"
        assert created["id"] == workflow_id
        assert created["cycle"] == 1
        assert created["expires_on"] == add_months(issued, 24).isoformat()
        code = created["verification_code"]
        assert CODE.match(code), code
        assert created["verify_url"] == f"/verify/{code}"
        assert created["status_url"] == f"/certifications/{workflow_id}"

        # Registered twice: 409 with the existing id, nothing new started.
        again = await api.http.post(
            "/certifications",
            json={"person": "p-1020", "certification_id": BLS, "issued_on": issued.isoformat()},
            headers=api.hr,
        )
        assert again.status_code == 409, again.text
        assert again.json()["detail"]["id"] == workflow_id

        # Bad input says what is wrong and how to fix it.
        unknown_cert = await api.http.post(
            "/certifications",
            json={
                "person": "p-1020",
                "certification_id": "hipaa-privacy-security",
                "issued_on": issued.isoformat(),
            },
            headers=api.hr,
        )
        assert unknown_cert.status_code == 422
        assert BLS in unknown_cert.json()["detail"] and PHARMACIST in unknown_cert.json()["detail"]
        unknown_person = await api.http.post(
            "/certifications",
            json={"person": "p-9999", "certification_id": BLS, "issued_on": issued.isoformat()},
            headers=api.hr,
        )
        assert unknown_person.status_code == 404
        backwards = await api.http.post(
            "/certifications",
            json={
                "person": "p-1021",
                "certification_id": BLS,
                "issued_on": issued.isoformat(),
                "expires_on": issued.isoformat(),
            },
            headers=api.hr,
        )
        assert backwards.status_code == 422
        assert "must be after issued_on" in backwards.json()["detail"]
        assert (
            await api.http.post(
                "/certifications",
                json={"person": "p-1021", "certification_id": BLS, "issued_on": issued.isoformat()},
                headers=learner,
            )
        ).status_code == 403

        body = await api.live(
            workflow_id,  # the read model is written just after the workflow decides
            lambda b: b["live"] and (b["read_model"] or {}).get("status") == "compliant",
        )
        assert body["status"] == "compliant"
        assert body["certificate"]["verification_code"] == code
        assert body["certificate"]["issuer"] == "American Heart Association"
        assert body["cycle"] == 1 and body["history"] == []
        assert body["read_model"]["status"] == "compliant"
        assert body["events"][0]["kind"] == "issued"
        # The holder sees their own; another learner does not even learn it exists.
        assert (await api.get(workflow_id, learner)).status_code == 200
        assert (await api.get(workflow_id, api.token(Role.LEARNER, "p-1021"))).status_code == 404

        # The public page: no token, exactly four fields.
        await _recorded(api.db, code)
        verified = await api.http.get(f"/verify/{code}")
        assert verified.status_code == 200, verified.text
        assert set(verified.json()) == VERIFY_KEYS
        assert verified.json() == {
            "holder": "Ava Fakeworth",
            "certification": "Basic Life Support (BLS) Provider",
            "status": "compliant",
            "valid_until": add_months(issued, 24).isoformat(),
        }
        assert (await api.http.get(f"/verify/{code.lower()}")).status_code == 200
        missing = await api.http.get("/verify/DULY-AAAA-AAAA-AAAA")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "unknown verification code"}
        assert (await api.http.get("/verify/not a code")).status_code == 404
        # Four requests so far; the limit is six a minute, unknown codes included.
        assert (await api.http.get(f"/verify/{code}")).status_code == 200
        assert (await api.http.get("/verify/DULY-BBBB-BBBB-BBBB")).status_code == 404
        limited = await api.http.get(f"/verify/{code}")
        assert limited.status_code == 429, limited.text
        assert 1 <= int(limited.headers["Retry-After"]) <= 60

        # A learner may not revoke their own certification.
        denied = await api.post(workflow_id, "revoke", REASON, learner)
        assert denied.status_code == 403
        with api.db.session() as session:
            actions = set(session.scalars(select(AuditEntry.action)))
        assert "certification.register" in actions and "certification.revoke" not in actions


async def test_renewal_waits_for_ce_credits(env: WorkflowEnvironment, sqlite_db: Database) -> None:
    async with running(env, sqlite_db) as api:
        today = await api.today()
        issued = today - timedelta(days=60)
        created = await api.register("p-1036", PHARMACIST, issued_on=issued)
        workflow_id, old_code = created["id"], created["verification_code"]
        await api.live(workflow_id, lambda b: b["live"] and b["ce_credits_required"] == 30)
        holder = api.token(Role.LEARNER, "p-1036")
        manager = api.token(Role.MANAGER, "p-1013")

        blocked = await api.post(workflow_id, "renew", {}, api.hr)
        assert blocked.status_code == 409, blocked.text
        detail = blocked.json()["detail"]
        assert detail["ce_credits_required"] == 30
        assert detail["ce_credits_logged"] == 0
        assert detail["ce_credits_short"] == 30
        assert "30 CE credits short" in detail["message"]

        credit = {
            "credits": 10,
            "activity": "ACPE immunization update",
            "earned_on": (today - timedelta(days=10)).isoformat(),
        }
        logged = await api.post(workflow_id, "ce-credits", credit, holder)
        assert logged.status_code == 200, logged.text
        assert logged.json()["ce_credits_logged"] == 10
        assert logged.json()["ce_credits_short"] == 20

        stale = {**credit, "earned_on": (issued - timedelta(days=1)).isoformat()}
        refused = await api.post(workflow_id, "ce-credits", stale, holder)
        assert refused.status_code == 422, refused.text
        assert "before this cycle began" in refused.json()["detail"]
        # Another learner cannot log credits on it (they cannot see it).
        other = api.token(Role.LEARNER, "p-1035")
        assert (await api.post(workflow_id, "ce-credits", credit, other)).status_code == 404

        still = await api.post(workflow_id, "renew", {}, api.hr)
        assert still.status_code == 409
        assert still.json()["detail"]["ce_credits_short"] == 20

        more = {**credit, "credits": 20, "activity": "ACPE opioid stewardship"}
        logged = await api.post(workflow_id, "ce-credits", more, manager)
        assert logged.status_code == 200, logged.text
        assert logged.json()["ce_credits_short"] == 0

        # The holder cannot renew themself; their manager can.
        assert (await api.post(workflow_id, "renew", {}, holder)).status_code == 403
        renewed = await api.post(
            workflow_id,
            "renew",
            {"certificate_number": "RPH-2", "evidence_ref": "dms://42"},
            manager,
        )
        assert renewed.status_code == 200, renewed.text
        result = renewed.json()
        assert result["cycle"] == 2
        assert result["outcome"] == "renewed_early"
        new_code = result["verification_code"]
        assert CODE.match(new_code) and new_code != old_code
        issued_2 = date.fromisoformat(result["issued_on"])
        assert result["expires_on"] == add_months(issued_2, 24).isoformat()  # from_renewal
        assert result["previous"]["certificate"]["verification_code"] == old_code
        assert result["previous"]["ce_credits_logged"] == 30

        # The old certificate verifies as superseded, the new one as valid until its expiry.
        await _recorded(api.db, old_code, "superseded")
        await _recorded(api.db, new_code)
        old = (await api.http.get(f"/verify/{old_code}")).json()
        assert old["status"] == "superseded"
        new = (await api.http.get(f"/verify/{new_code}")).json()
        assert new["status"] != "superseded"
        assert new["valid_until"] == result["expires_on"]

        body = await api.live(workflow_id, lambda b: b["cycle"] == 2)
        assert body["certificate"]["verification_code"] == new_code
        assert body["ce_credits_logged"] == 0  # a new cycle counts afresh
        [closed] = body["history"]
        assert closed["certificate"]["cycle"] == 1 and closed["outcome"] == "renewed_early"

        # Cycle 2 may not be renewed with dates that go backwards.
        backwards = await api.post(workflow_id, "renew", {"issued_on": issued.isoformat()}, api.hr)
        assert backwards.status_code == 422, backwards.text
        with api.db.session() as session:
            actions = list(session.scalars(select(AuditEntry.action)))
        assert actions.count("certification.ce_credits") == 2
        assert "certification.renew" in actions


async def test_expiring_and_manager_scope(env: WorkflowEnvironment, sqlite_db: Database) -> None:
    async with running(env, sqlite_db) as api:
        today = await api.today()

        def cycle_ending(days: int) -> dict[str, date]:
            expires = today + timedelta(days=days)
            return {"issued_on": add_months(expires, -24), "expires_on": expires}

        soon = await api.register("p-1021", BLS, **cycle_ending(100))  # reports to p-1010
        later = await api.register("p-1025", BLS, **cycle_ending(200))  # reports to p-1011
        lapsed = await api.register("p-1035", PHARMACIST, **cycle_ending(-5))  # Pharmacy
        nora = api.token(Role.MANAGER, "p-1010")
        mine = await api.register(  # a manager registers for a report
            "p-1023", BLS, issued_on=today - timedelta(days=1), headers=nora
        )

        async def rows(count: int) -> int | None:
            with api.db.session() as session:
                found = len(
                    list(
                        session.scalars(
                            select(Obligation.id).where(Obligation.kind == "certification")
                        )
                    )
                )
            return found if found >= count else None

        await eventually(lambda: rows(4))

        async def expiring(headers: dict[str, str], **params: Any) -> list[str]:
            response = await api.http.get(
                "/certifications/expiring", params=params, headers=headers
            )
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()]

        assert await expiring(api.hr, within=150) == [lapsed["id"], soon["id"]]
        assert await expiring(api.hr, within=250) == [lapsed["id"], soon["id"], later["id"]]
        assert await expiring(api.hr, within=0) == [lapsed["id"]]  # expired, not renewed
        assert await expiring(api.hr, within=365, department="Pharmacy") == [lapsed["id"]]
        assert await expiring(api.hr, within=365, location="Chicago") == [later["id"]]
        assert await expiring(api.hr, within=365, manager="p-1011") == [later["id"]]
        assert await expiring(api.token(Role.AUDITOR), within=250) == [
            lapsed["id"],
            soon["id"],
            later["id"],
        ]
        # A manager sees only their reports.
        assert await expiring(nora, within=365) == [soon["id"]]
        assert await expiring(api.token(Role.MANAGER, "p-1011"), within=365) == [later["id"]]
        learner = api.token(Role.LEARNER, "p-1021")
        assert (await api.http.get("/certifications/expiring", headers=learner)).status_code == 403

        item = (
            await api.http.get("/certifications/expiring", params={"within": 0}, headers=api.hr)
        ).json()[0]
        assert item["person"] == "p-1035" and item["name"] == "Tomas Quuxley"
        assert item["certification_id"] == PHARMACIST
        assert item["days_left"] < 0
        assert item["status"] == "non_compliant"

        listed = await api.http.get("/certifications", headers=nora)
        assert {i["id"] for i in listed.json()} == {soon["id"], mine["id"]}
        own = await api.http.get("/certifications", headers=learner)
        assert [i["id"] for i in own.json()] == [soon["id"]]
        by_person = await api.http.get(
            "/certifications", params={"person": "p-1025"}, headers=api.hr
        )
        assert [i["id"] for i in by_person.json()] == [later["id"]]
        assert (await api.get(later["id"], nora)).status_code == 404
        refused = await api.http.post(
            "/certifications",
            json={"person": "p-1025", "certification_id": BLS, "issued_on": today.isoformat()},
            headers=nora,
        )
        assert refused.status_code == 404  # not her report: not even visible

        # A revoked certification no longer shows as expiring.
        assert (await api.post(lapsed["id"], "revoke", REASON, api.hr)).status_code == 202

        async def gone() -> bool | None:
            return True if lapsed["id"] not in await expiring(api.hr, within=0) else None

        await eventually(gone)

        async def ended() -> WorkflowExecutionStatus | None:
            state = await api.workflow_status(lapsed["id"])
            return state if state != WorkflowExecutionStatus.RUNNING else None

        assert await eventually(ended) == WorkflowExecutionStatus.COMPLETED


async def test_suspend_reinstate_revoke(env: WorkflowEnvironment, sqlite_db: Database) -> None:
    async with running(env, sqlite_db) as api:
        today = await api.today()
        created = await api.register("p-1022", BLS, issued_on=today - timedelta(days=10))
        workflow_id, code = created["id"], created["verification_code"]
        await api.live(workflow_id, lambda b: b["live"] and b["status"] == "compliant")
        learner = api.token(Role.LEARNER, "p-1022")
        manager = api.token(Role.MANAGER, "p-1010")
        assert (await api.post(workflow_id, "revoke", REASON, learner)).status_code == 403
        assert (await api.post(workflow_id, "suspend", REASON, manager)).status_code == 403

        suspended = await api.post(workflow_id, "suspend", REASON, api.hr)
        assert suspended.status_code == 202, suspended.text
        # The status and its timeline event may be answered one poll apart: wait for both.
        body = await api.live(
            workflow_id,
            lambda b: (
                b["status"] == "suspended"
                and "suspended" in [e["kind"] for e in b.get("events") or []]
            ),
        )
        assert "suspended" in [e["kind"] for e in body["events"]]
        await api.live(workflow_id, lambda b: (b["read_model"] or {}).get("status") == "suspended")
        await env.sleep(timedelta(days=1))

        reinstated = await api.post(workflow_id, "reinstate", REASON, api.hr)
        assert reinstated.status_code == 202
        await api.live(workflow_id, lambda b: b["status"] == "compliant")

        revoked = await api.post(workflow_id, "revoke", REASON, api.hr)
        assert revoked.status_code == 202

        async def ended() -> WorkflowExecutionStatus | None:
            state = await api.workflow_status(workflow_id)
            return state if state != WorkflowExecutionStatus.RUNNING else None

        assert await eventually(ended) == WorkflowExecutionStatus.COMPLETED
        body = (await api.get(workflow_id)).json()
        assert body["status"] == "revoked"
        assert body["read_model"]["status"] == "revoked"
        await _recorded(api.db, code, "revoked")
        assert (await api.http.get(f"/verify/{code}")).json()["status"] == "revoked"

        # A revoked certification takes no credits, renewal or signals.
        credit = {"credits": 1, "activity": "CPR refresher", "earned_on": today.isoformat()}
        assert (await api.post(workflow_id, "ce-credits", credit, api.hr)).status_code == 409
        assert (await api.post(workflow_id, "renew", {}, api.hr)).status_code == 409
        closed = await api.post(workflow_id, "suspend", REASON, api.hr)
        assert closed.status_code == 409
        assert "already closed" in closed.json()["detail"]
        # Only HR may register a revoked certification again.
        again = {"person": "p-1022", "certification_id": BLS, "issued_on": today.isoformat()}
        refused = await api.http.post("/certifications", json=again, headers=manager)
        assert refused.status_code == 409
        assert "only HR" in refused.json()["detail"]["message"]
        with api.db.session() as session:
            actions = list(session.scalars(select(AuditEntry.action)))
        assert {"certification.suspend", "certification.reinstate", "certification.revoke"} <= set(
            actions
        )


async def test_renewed_expiry_follows_the_renewal_basis() -> None:
    pack = load_pack(PACK)
    license_ = pack.requirement(PHARMACIST)
    assert license_ is not None
    current = date(2026, 6, 30)
    early = date(2026, 5, 1)
    assert renewed_expiry(license_, issued_on=early, current_expiry=current) == date(2028, 5, 1)
    kept = license_.model_copy(update={"renewal_basis": RenewalBasis.FROM_PREVIOUS_EXPIRY})
    # Renewed before expiry: no validity is lost; after expiry: counted from the renewal.
    assert renewed_expiry(kept, issued_on=early, current_expiry=current) == date(2028, 6, 30)
    late = date(2026, 7, 10)
    assert renewed_expiry(kept, issued_on=late, current_expiry=current) == date(2028, 7, 10)


async def test_verification_codes_are_random_and_well_formed() -> None:
    codes = {new_verification_code() for _ in range(200)}
    assert len(codes) == 200 and all(CODE.match(c) for c in codes)
