"""An integration's Temporal Schedule on a dev server: created, updated, triggered, synced.

The whole path a scheduled sync takes: schedule → IntegrationSyncWorkflow → the worker's
sync_integration activity → services.integrations.run_sync → the CSV drop → dead letters and
the integration's cursor and last sync.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.client import ScheduleDescription
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from domain.contracts.integration import integration_schedule_id
from duly.settings import Settings
from duly.worker import build_worker
from services import integrations
from store.db import Database
from store.integrations import Integration
from store.models import DeadLetter
from tests.conftest import wheel_binary

pytestmark = pytest.mark.asyncio(loop_scope="module")


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


async def test_schedule_is_idempotent_and_its_run_syncs_the_drop_folder(
    server: WorkflowEnvironment, sqlite_db: Database, tmp_path: Path
) -> None:
    queue = f"integrations-{uuid.uuid4().hex[:8]}"
    settings = Settings(env="test", data_dir=tmp_path / "data", temporal_task_queue=queue)
    folder = settings.drop_root / "provider"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text(
        "person,requirement_id,completed_at\nnobody,hipaa,2020-13-45\n", encoding="utf-8"
    )
    with sqlite_db.session() as session:
        row = integrations.create_integration(
            session,
            name="provider",
            kind="csv_drop",
            config={"folder": "provider", "every_minutes": 1440},
            secret_ref=None,
            enabled=True,
            actor="test",
            actor_role="hr_admin",
        )
    client = server.client
    assert await integrations.ensure_schedule(client, row, settings) == "created"
    assert await integrations.ensure_schedule(client, row, settings) == "updated"
    handle = client.get_schedule_handle(integration_schedule_id(row.id))
    described: ScheduleDescription = await handle.describe()
    assert described.schedule.spec.intervals[0].every.total_seconds() == 1440 * 60
    async with build_worker(client, task_queue=queue, db=sqlite_db, settings=settings):
        await handle.trigger()
        for _ in range(300):
            with sqlite_db.session() as session:
                stored = session.get(Integration, row.id)
                assert stored is not None
                if stored.last_sync_at is not None:
                    break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the scheduled sync did not run")
    assert stored.last_status == "ok" and len(stored.cursor["files"]) == 1
    with sqlite_db.session() as session:
        [letter] = session.scalars(select(DeadLetter)).all()
        assert letter.source == f"csv_drop:{row.id}"
    assert await integrations.remove_schedule(client, row.id) is True
    assert await integrations.remove_schedule(client, row.id) is False
