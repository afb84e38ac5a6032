"""The directory automation on a real Temporal dev server: joiner, mover, leaver, rehire,
leave, the reconciliation repairing a drifted row, and its schedule created idempotently."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select, update
from temporalio.client import WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from domain.contracts.assignment import AssignmentState
from domain.contracts.directory import DirectoryChange, DirectoryOutcome, ReconcileRequest
from domain.ids import directory_change_workflow_id
from domain.roles import Role
from duly.worker import build_worker
from rules.loader import load_pack
from rules.model import Pack
from services import directory
from store.db import Database
from store.models import Obligation, Person
from store.packs import Migration, deploy
from store.tokens import Principal, TokenRejected, check_token, create_token
from tests.conftest import wheel_binary
from workflows.assignment import AssignmentWorkflow
from workflows.directory import (
    RECONCILE_SCHEDULE_ID,
    DirectoryReconcileWorkflow,
    ensure_reconcile_schedule,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
HR = Principal(token_id=0, role=Role.HR_ADMIN, person_id=None, person_external_id=None, label="t")
NURSE_TRAININGS = {"hipaa-privacy-security", "fire-safety", "osha-bloodborne-pathogens"}
#: A nurse's certifications: an obligation to obtain each until the certificate is registered.
NURSE_CERTS = {"bls-certification", "acls-certification"}
#: How long the read model may take to catch up on a loaded machine before a test fails.
DEADLINE = 60.0


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
class Org:
    env: WorkflowEnvironment
    db: Database
    queue: str

    async def _client(self) -> Any:
        return self.env.client

    async def change(self, change: DirectoryChange | None) -> DirectoryOutcome:
        assert change is not None
        started = await directory.automate([change], temporal=self._client, task_queue=self.queue)
        assert started.started == 1
        handle = self.env.client.get_workflow_handle(
            directory_change_workflow_id(change.external_id, change.change_id),
            result_type=DirectoryOutcome,
        )
        result: DirectoryOutcome = await handle.result()
        return result

    def write(self, ext: str, create: bool = False, **fields: Any) -> DirectoryChange | None:
        with self.db.session() as session:
            if create:
                _, change = directory.create_person(
                    session,
                    fields={"external_id": ext, "name": "Dev Person", **fields},
                    principal=HR,
                    source="scim",
                )
                return change
            _, updated = directory.patch_person(
                session, external_id=ext, fields=fields, principal=HR, source="scim"
            )
            return updated

    def statuses(self, ext: str) -> dict[str, str]:
        """workflow id -> read-model status of every obligation of ``ext``."""
        with self.db.session() as session:
            rows = session.execute(
                select(Obligation.workflow_id, Obligation.status)
                .join(Person, Obligation.person_id == Person.id)
                .where(Person.external_id == ext)
            )
            return {workflow_id: status for workflow_id, status in rows}

    async def until(self, what: str, check: Callable[[], bool]) -> None:
        """Poll ``check`` until it holds (the read model is written by other workflows)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + DEADLINE
        while not check():
            if loop.time() > end:
                raise AssertionError(f"not within {DEADLINE}s: {what}")
            await asyncio.sleep(0.2)

    async def cleanup(self) -> None:
        with self.db.session() as session:
            ids = list(session.scalars(select(Obligation.workflow_id)))
        for workflow_id in ids:
            handle = self.env.client.get_workflow_handle(workflow_id)
            try:
                if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
                    await handle.terminate("test done")
            except RPCError:
                pass


def _pack(tmp_path: Path) -> Pack:
    target = tmp_path / "medical"
    shutil.copytree(MEDICAL, target)
    return load_pack(target)


@pytest_asyncio.fixture(loop_scope="module")
async def org(
    server: WorkflowEnvironment, sqlite_db: Database, tmp_path: Path
) -> AsyncIterator[Org]:
    with sqlite_db.session() as session:
        deploy(session, _pack(tmp_path), author="hr", message="v1", migration=Migration.GRANDFATHER)
    queue = f"dir-dev-{uuid.uuid4().hex[:8]}"
    found = Org(server, sqlite_db, queue)
    async with build_worker(server.client, task_queue=queue, db=sqlite_db):
        try:
            yield found
        finally:
            await found.cleanup()


def _ext() -> str:
    return f"d-{uuid.uuid4().hex[:8]}"


async def test_joiner_mover_leaver_rehire_on_a_dev_server(org: Org) -> None:
    ext = _ext()
    joined = await org.change(org.write(ext, create=True, roles="nurse", department="Nursing"))
    assert {w.split("/")[2] for w in joined.started} == NURSE_TRAININGS | NURSE_CERTS
    await org.until("five obligations recorded", lambda: len(org.statuses(ext)) == 5)

    moved = await org.change(org.write(ext, roles=["receptionist"], department="Front Office"))
    assert {c.requirement_id for c in moved.closed} == {"osha-bloodborne-pathogens"} | NURSE_CERTS
    osha = f"assignment/{ext}/osha-bloodborne-pathogens/1"
    await org.until("OSHA not_applicable", lambda: org.statuses(ext)[osha] == "not_applicable")

    with org.db.session() as session:
        token = create_token(session, role=Role.LEARNER, person_external_id=ext)
    left = await org.change(org.write(ext, employment_status="terminated"))
    assert {c.reason for c in left.closed} == {"left"} and len(left.closed) == 2
    await org.until(
        "everything closed",
        lambda: sorted(org.statuses(ext).values()) == ["cancelled"] * 2 + ["not_applicable"] * 3,
    )
    for workflow_id in org.statuses(ext):
        handle = org.env.client.get_workflow_handle(workflow_id)
        # The run ends just after recording its last status: wait for it, then check.
        await asyncio.wait_for(handle.result(), DEADLINE)
        description = await handle.describe()
        assert description.status is WorkflowExecutionStatus.COMPLETED  # no more reminders
    with org.db.session() as session, pytest.raises(TokenRejected):
        check_token(session, token)

    rehired = await org.change(org.write(ext, employment_status="active"))
    assert sorted(rehired.started) == [
        f"assignment/{ext}/fire-safety/2",
        f"assignment/{ext}/hipaa-privacy-security/2",
    ]


async def test_leave_pauses_and_return_resumes_on_a_dev_server(org: Org) -> None:
    ext = _ext()
    await org.change(org.write(ext, create=True, roles="receptionist", department="Front Office"))
    await org.until("two obligations recorded", lambda: len(org.statuses(ext)) == 2)
    away = await org.change(org.write(ext, employment_status="leave"))
    assert away.paused == 2
    hipaa = org.env.client.get_workflow_handle(f"assignment/{ext}/hipaa-privacy-security/1")
    state: AssignmentState = await hipaa.query(AssignmentWorkflow.state)
    # (A reminder already being sent as the pause arrived may be recorded after it.)
    assert "paused" in [e.kind for e in state.events]
    back = await org.change(org.write(ext, employment_status="active"))
    assert back.resumed == 2
    state = await hipaa.query(AssignmentWorkflow.state)
    assert "resumed" in [e.kind for e in state.events]


async def test_reconciliation_repairs_a_drifted_row_and_its_schedule_is_idempotent(
    org: Org,
) -> None:
    ext = _ext()
    await org.change(org.write(ext, create=True, roles="receptionist", department="Front Office"))
    await org.until("two obligations recorded", lambda: len(org.statuses(ext)) == 2)
    # Drift: the person left while Temporal was down (their change workflow never ran).
    with org.db.session() as session:
        session.execute(
            update(Person).where(Person.external_id == ext).values(employment_status="terminated")
        )
    first = await org.env.client.execute_workflow(
        DirectoryReconcileWorkflow.run,
        ReconcileRequest(),
        id=f"reconcile-{uuid.uuid4().hex[:8]}",
        task_queue=org.queue,
    )
    assert first.closed == 2 and all(ext in fix for fix in first.fixes)
    await org.until("both cancelled", lambda: set(org.statuses(ext).values()) == {"cancelled"})
    second = await org.env.client.execute_workflow(
        DirectoryReconcileWorkflow.run,
        ReconcileRequest(),
        id=f"reconcile-{uuid.uuid4().hex[:8]}",
        task_queue=org.queue,
    )
    assert (second.started, second.closed) == (0, 0)

    assert await ensure_reconcile_schedule(org.env.client, org.queue) is True
    assert await ensure_reconcile_schedule(org.env.client, org.queue) is False
    schedule = org.env.client.get_schedule_handle(RECONCILE_SCHEDULE_ID)
    description = await schedule.describe()
    assert description.schedule.spec.intervals[0].offset.total_seconds() == 3 * 3600
    await schedule.delete()
