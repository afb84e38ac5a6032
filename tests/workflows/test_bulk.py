"""BulkAssignWorkflow on a real dev server: selectors, skipping existing obligations, progress."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.bulk import BulkActivities
from api.app import create_app
from api.routers import bulk as bulk_api
from domain.ids import assignment_workflow_id
from domain.roles import Role
from duly.demo import load_demo_people
from duly.settings import Settings
from duly.worker import build_worker
from rules.loader import load_pack
from services.assignments import start_assignment
from store.db import Database
from store.packs import Migration, deploy
from tests.conftest import bearer, wheel_binary
from workflows.bulk import (
    BulkAssignInput,
    BulkAssignRequest,
    BulkAssignWorkflow,
    BulkProgress,
    BulkSelector,
    bulk_workflow_id,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
#: Active nurses of the demo org (p-1027 is on leave).
NURSES = [
    "p-1002",
    "p-1010",
    "p-1011",
    "p-1020",
    "p-1021",
    "p-1022",
    "p-1023",
    "p-1024",
    "p-1025",
    "p-1026",
    "p-1028",
    "p-1029",
]
#: Everyone under p-1002 (Nursing director), transitively, active only, not p-1002 themself.
NURSING_TEAM = [p for p in NURSES if p != "p-1002"]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=wheel_binary("temporal"),
        ui=False,
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


@dataclass
class Setup:
    client: Client
    db: Database
    bulk_queue: str


@pytest.fixture
def demo_db(sqlite_db: Database) -> Database:
    with sqlite_db.session() as session:
        load_demo_people(session)
    return sqlite_db


@pytest_asyncio.fixture(loop_scope="module")
async def setup(server: WorkflowEnvironment, demo_db: Database) -> AsyncIterator[Setup]:
    client = server.client
    queue = f"bulk-test-{uuid.uuid4().hex[:8]}"
    bulk_queue = f"{queue}-bulk"
    executor = ThreadPoolExecutor(max_workers=4)
    bulk_worker = Worker(
        client,
        task_queue=bulk_queue,
        workflows=[BulkAssignWorkflow],
        activities=BulkActivities(
            demo_db, client, task_queue=queue, start_assignment=start_assignment
        ).all(),
        activity_executor=executor,
    )
    async with build_worker(client, task_queue=queue, db=demo_db), bulk_worker:
        yield Setup(client, demo_db, bulk_queue)
    executor.shutdown()


def _request(requirement: str, selector: BulkSelector) -> BulkAssignRequest:
    return BulkAssignRequest(
        bulk_id=uuid.uuid4().hex,
        requirement_id=requirement,
        requirement_title="Bulk test training",
        due_date=datetime.now(UTC).date() + timedelta(days=120),
        selector=selector,
        assigned_by="test",
    )


async def _run(s: Setup, request: BulkAssignRequest, window: int = 500) -> BulkProgress:
    handle = await s.client.start_workflow(
        BulkAssignWorkflow.run,
        BulkAssignInput(request=request, window=window),
        id=bulk_workflow_id(request.bulk_id),
        task_queue=s.bulk_queue,
    )
    result = await handle.result()
    assert await handle.query(BulkAssignWorkflow.progress) == result
    return result


async def _assigned(client: Client, people: list[str], requirement: str) -> set[str]:
    """Who of ``people`` has an assignment workflow for ``requirement``."""
    found = set()
    for person in people:
        try:
            await client.get_workflow_handle(
                assignment_workflow_id(person, requirement, 1)
            ).describe()
        except RPCError:
            continue
        found.add(person)
    return found


async def test_by_role_then_rerun_skips_everyone(setup: Setup) -> None:
    requirement = f"bulk-{uuid.uuid4().hex[:8]}"
    first = await _run(setup, _request(requirement, BulkSelector(roles=["nurse"])), window=5)
    assert first == BulkProgress(
        bulk_id=first.bulk_id, total=len(NURSES), started=len(NURSES), done=True
    )
    assert await _assigned(setup.client, [*NURSES, "p-1027", "p-1030"], requirement) == set(NURSES)
    again = await _run(setup, _request(requirement, BulkSelector(roles=["nurse"])))
    assert (again.total, again.started, again.skipped, again.failed) == (len(NURSES), 0, 12, 0)
    assert again.done


async def test_manager_selector_is_transitive_and_anded(setup: Setup) -> None:
    requirement = f"bulk-{uuid.uuid4().hex[:8]}"
    team = await _run(setup, _request(requirement, BulkSelector(manager="p-1002")))
    assert (team.total, team.started, team.skipped) == (len(NURSING_TEAM), 11, 0)
    assert await _assigned(setup.client, NURSES, requirement) == set(NURSING_TEAM)
    other = f"bulk-{uuid.uuid4().hex[:8]}"
    chicago = BulkSelector(manager="p-1002", locations=["Chicago"], people=["p-1011", "p-1025"])
    narrowed = await _run(setup, _request(other, chicago))
    assert (narrowed.total, narrowed.started) == (2, 2)
    assert await _assigned(setup.client, NURSES, other) == {"p-1011", "p-1025"}


async def test_pack_due_date_and_unknown_manager(setup: Setup) -> None:
    with setup.db.session() as session:
        deploy(
            session, load_pack(MEDICAL), author="hr", message="v1", migration=Migration.GRANDFATHER
        )
    request = BulkAssignRequest(
        bulk_id=uuid.uuid4().hex,
        requirement_id="fire-safety",
        selector=BulkSelector(people=["p-1030", "p-1031"]),
        assigned_by="test",
    )
    before = datetime.now(UTC).date()
    progress = await _run(setup, request)
    after = datetime.now(UTC).date()
    assert (progress.total, progress.started) == (2, 2)
    handle = setup.client.get_workflow_handle(assignment_workflow_id("p-1030", "fire-safety", 1))
    state = await handle.query("state")
    # Due 30 days from the (UTC) day the job ran: either side of midnight if it ran across it.
    assert state["due_date"] in {str(day + timedelta(days=30)) for day in (before, after)}

    bad = _request(f"bulk-{uuid.uuid4().hex[:8]}", BulkSelector(manager="nobody"))
    with pytest.raises(WorkflowFailureError) as failure:
        await _run(setup, bad)
    activity_error = failure.value.cause
    assert activity_error is not None
    assert "'nobody' is not an active person" in str(activity_error.__cause__)


async def _poll(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> dict[str, Any]:
    for _ in range(100):
        response = await http.get(url, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        # Done and closed: the progress can read done while the run is still RUNNING (it
        # returns right after), and this test asserts the run's status too.
        if body["done"] and body["status"] != "RUNNING":
            return body
        await asyncio.sleep(0.1)
    pytest.fail(f"{url} never finished")


async def test_api_scopes_managers_to_their_team(setup: Setup) -> None:
    settings = Settings(env="test", temporal_task_queue=setup.bulk_queue)
    app = create_app(settings, database=setup.db, temporal_client=setup.client)
    app.include_router(bulk_api.router)
    # Ahead of the assignments router's catch-all GET, as when it is registered for real.
    ours = len(bulk_api.router.routes)
    app.router.routes[:0] = app.router.routes[-ours:]
    del app.router.routes[-ours:]
    hr = bearer(setup.db, Role.HR_ADMIN)
    manager = bearer(setup.db, Role.MANAGER, "p-1010")
    requirement = f"bulk-{uuid.uuid4().hex[:8]}"
    body = {
        "requirement_id": requirement,
        "requirement_title": "API bulk",
        "due_date": str(datetime.now(UTC).date() + timedelta(days=90)),
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://duly") as http:
        response = await http.post(
            "/assignments/bulk", json={**body, "selector": {"roles": ["pharmacist"]}}, headers=hr
        )
        assert response.status_code == 202, response.text
        hr_job = await _poll(http, response.json()["status_url"], hr)
        assert (hr_job["total"], hr_job["started"], hr_job["status"]) == (4, 4, "COMPLETED")

        response = await http.post("/assignments/bulk", json=body, headers=manager)
        assert response.status_code == 202, response.text
        team = await _poll(http, response.json()["status_url"], manager)
        assert (team["total"], team["started"]) == (5, 5)  # p-1020..p-1024, not the rest
        assert await _assigned(setup.client, NURSES, requirement) == {
            f"p-10{n}" for n in range(20, 25)
        }

        other_team = {**body, "selector": {"manager": "p-1011"}}
        response = await http.post("/assignments/bulk", json=other_team, headers=manager)
        assert response.status_code == 404
        response = await http.get(f"/assignments/bulk/{hr_job['bulk_id']}", headers=manager)
        assert response.status_code == 404
        learner = bearer(setup.db, Role.LEARNER, "p-1020")
        response = await http.post("/assignments/bulk", json=body, headers=learner)
        assert response.status_code == 403
