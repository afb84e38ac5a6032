"""Where a cached workflow's memory goes: tracemalloc per workflow, bare vs Duly, by file.

``bench/memory.py`` measures the worker's RSS; this script explains it. One process runs a
Temporal dev server (in memory), a throwaway database seeded with ``--n`` people and, one after
the other, in-process workers (sticky cache = N, 8 workflow tasks at once) for these rows:

* **bare, unsandboxed** (baseline): ``MemoryBare`` of ``bench/memory.py`` (sleeps; nothing else);
* **bare, sandboxed**: the same workflow in the SDK's default sandbox: the sandbox's own cost
  per run (a fresh ``sys.modules`` and a re-import of the workflow's module);
* **Duly, as shipped**: ``AssignmentWorkflow`` on ``duly.worker.build_worker`` with the worker's
  runner (``duly.worker.workflow_runner``, ``DULY_WORKER_SANDBOX_REIMPORT`` unset/false);
* **Duly, workflow modules re-imported per run**: the SDK's default sandbox, Duly's runner
  before issue 19.

For each: Python-heap bytes per cached workflow (``tracemalloc``, the snapshot of the settled
worker minus the one taken idle; the SDK's Rust core is not counted: ``memory.py``'s RSS is)
and, with ``--top``, where they were allocated (by file). Run
``python bench/memory_where.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.memory import RPC_TIMEOUT, TASKS, MemoryBare, start_all, wait_settled  # noqa: E402
from bench.memory_sandboxed import MemoryBareSandboxed  # noqa: E402


def grouped(diff: list[tracemalloc.StatisticDiff], top: int) -> list[tuple[str, int]]:
    """The ``top`` files by bytes allocated (paths shortened to the package)."""
    by_file: dict[str, int] = {}
    for stat in diff:
        name = stat.traceback[0].filename
        for marker in ("site-packages/", "lib/python3.11/", str(ROOT) + "/"):
            if marker in name:
                name = name.split(marker, 1)[1]
                break
        by_file[name] = by_file.get(name, 0) + stat.size_diff
    return sorted(by_file.items(), key=lambda kv: -kv[1])[:top]


async def measure(
    client: Any, worker: Any, queue: str, starts: list[Any], done: Any, args: argparse.Namespace
) -> tuple[float, list[tuple[str, int]]]:
    """KiB per workflow on the Python heap once ``starts`` settled, and the top files."""
    async with worker:
        await asyncio.sleep(2)
        gc.collect()
        idle = tracemalloc.take_snapshot()
        await start_all(starts, 50)
        await wait_settled(client, queue, done, queue, 3600)
        await asyncio.sleep(2)
        gc.collect()
        held = tracemalloc.take_snapshot()
        diff = held.compare_to(idle, "filename")
        total = sum(s.size_diff for s in diff)
        return total / 1024 / len(starts), grouped(diff, args.top)


async def run(args: argparse.Namespace) -> None:
    from sqlalchemy import func, insert, select
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

    from bench.api_load import database
    from domain.contracts.assignment import AssignmentInput
    from duly.settings import Settings
    from duly.temporal import temporal_cli
    from duly.worker import build_worker, workflow_runner
    from store.db import Database
    from store.models import Obligation, Person
    from workflows.assignment import AssignmentWorkflow

    n = args.n
    rows: list[tuple[str, float, list[tuple[str, int]]]] = []
    with (
        tempfile.TemporaryDirectory(prefix="duly-memwhere-") as tmpdir,
        database(args.database_url, Path(tmpdir)) as url,
    ):
        os.environ.update(
            {
                "DULY_ENV": "dev",
                "DULY_DATA_DIR": tmpdir,
                "DULY_SECRET_KEY": "m" * 48,
                "DULY_DIGEST_WINDOW_SECONDS": "0",
                "DULY_DATABASE_URL": url,
            }
        )
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=temporal_cli(),
            dev_server_log_level="error",
        )
        client = env.client
        db = Database(url)
        tracemalloc.start(1)
        try:
            for label, cls, sandboxed in (
                ("bare, unsandboxed (baseline)", MemoryBare, False),
                ("bare, sandboxed", MemoryBareSandboxed, True),
            ):
                queue = f"where-{uuid.uuid4().hex[:6]}"
                worker = Worker(
                    client,
                    task_queue=queue,
                    workflows=[cls],
                    max_cached_workflows=n,
                    max_concurrent_workflow_tasks=TASKS,
                )

                def bare(i: int, cls: Any = cls, queue: str = queue) -> Any:
                    async def start() -> None:
                        await client.start_workflow(
                            cls.run,
                            120,
                            id=f"{queue}/{i}",
                            task_queue=queue,
                            rpc_timeout=RPC_TIMEOUT,
                        )

                    return start

                per, top = await measure(
                    client, worker, queue, [bare(i) for i in range(n)], lambda: True, args
                )
                rows.append((label, per, top))
                print(f"  {label}: {per:.1f} KiB/wf", flush=True)
                del sandboxed

            settings = Settings()
            for label, runner in (
                ("Duly, as shipped", workflow_runner(settings)),
                ("Duly, workflow modules re-imported per run", SandboxedWorkflowRunner()),
            ):
                run_id = uuid.uuid4().hex[:6]
                people = [f"where-{run_id}-{i:05d}" for i in range(n)]
                with db.session() as session:
                    session.execute(
                        insert(Person),
                        [
                            {"external_id": p, "name": "M", "email": f"{p}@example.com"}
                            for p in people
                        ],
                    )
                queue = f"where-duly-{run_id}"
                worker = build_worker(
                    client,
                    task_queue=queue,
                    db=db,
                    settings=settings,
                    max_cached_workflows=n,
                    max_concurrent_workflow_tasks=TASKS,
                    workflow_runner=runner,
                )
                due = (datetime.now(UTC) + timedelta(days=120)).date()
                inputs = [
                    AssignmentInput(
                        person=p, requirement_id="mem", requirement_title="Memory", due_date=due
                    )
                    for p in people
                ]

                def duly(inp: AssignmentInput, queue: str = queue) -> Any:
                    async def start() -> None:
                        await client.start_workflow(
                            AssignmentWorkflow.run,
                            inp,
                            id=inp.workflow_id,
                            task_queue=queue,
                            rpc_timeout=RPC_TIMEOUT,
                        )

                    return start

                def recorded(people: list[str] = people) -> bool:
                    with db.session() as session:
                        count = session.scalar(
                            select(func.count())
                            .select_from(Obligation)
                            .join(Person, Person.id == Obligation.person_id)
                            .where(Person.external_id.in_(people))
                        )
                    return int(count or 0) >= n

                per, top = await measure(
                    client, worker, queue, [duly(i) for i in inputs], recorded, args
                )
                rows.append((label, per, top))
                print(f"  {label}: {per:.1f} KiB/wf", flush=True)
        finally:
            tracemalloc.stop()
            db.dispose()
            await env.shutdown()
    base = rows[0][1]
    print(
        f"\nbench/memory_where.py: N = {n:,} cached workflows, Python heap (tracemalloc), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'':<46} {'KiB/wf':>8} {'vs bare':>8}")
    for label, per, _ in rows:
        print(f"{label:<46} {per:>8.1f} {per / base:>7.2f}x")
    if args.top:
        for label, _, top in rows:
            print(f"\n{label}: top files, KiB per workflow")
            for name, size in top:
                print(f"  {size / 1024 / n:>8.2f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=500, help="workflows per row (default 500)")
    parser.add_argument("--top", type=int, default=12, help="files listed per row (0: none)")
    parser.add_argument("--database-url", help="default: a throwaway PostgreSQL database")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
