"""Worker memory: RSS of one worker process holding N open assignment workflows.

One Temporal dev server (in memory; with ``--server-file``, needed past ~10,000 workflows, in a
scratch SQLite file written without fsync; the server's footprint is not measured, only the
worker's), a throwaway PostgreSQL database (SQLite when PostgreSQL is down) seeded with N
people, and worker processes whose resident set size (``VmRSS`` in ``/proc/<pid>/status``) is
read once their work has settled (no workflow task pending; the RSS is the median of 5 readings
1 s apart). Rows, all in the same run:

* **bare, idle**: a plain ``temporalio`` worker of this script with no workflow started;
* **bare, C cached**: the same worker after starting N bare workflows (sleep 120 days; no
  activity) with a sticky cache of C (``--cache``, default N): the SDK's own cost per open,
  cached workflow (baseline);
* **Duly, idle**: ``duly worker`` before any workflow;
* **Duly, C cached (cache = C)**: ``duly worker`` with ``DULY_WORKER_MAX_CACHED_WORKFLOWS=C``
  after starting N ``AssignmentWorkflow`` (due in 120 days: each plans its ladder, records
  its obligation, decides its status and sleeps to its first stage); C below N when N cached
  would not fit in the machine's memory (the oldest are evicted; all N stay open);
* **Duly, default cache (1,000)** and **Duly, cache 0** (``--bounded``): a fresh
  ``duly worker`` with that cache, after a state query to ``--touch`` of the open workflows
  (each query is a workflow task: the worker replays the history and caches the run, evicting
  the oldest beyond the limit). Without a touch, a restarted worker holds nothing: open
  workflows that sleep cost no worker memory until their next task.

Printed: RSS in MiB, the increase over the same worker idle, KiB per workflow, and the ratio of
Duly's per-workflow cost to the bare workflow's. Run ``python bench/memory.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import workflow

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RPC_TIMEOUT = timedelta(seconds=120)
#: The SDK's default sticky cache (``Worker(max_cached_workflows=1000)``).
SDK_DEFAULT_CACHE = 1000
#: Workflow tasks each worker runs at once, bare and Duly alike: on a starved CPU the SDK's
#: default (100) lets first activations outlast the 10 s task timeout and be retried for ever.
TASKS = 8


@workflow.defn(name="MemoryBare", sandboxed=False)
class MemoryBare:
    """The baseline: an open workflow that only sleeps."""

    @workflow.run
    async def run(self, days: int) -> None:
        await workflow.sleep(timedelta(days=days))


def rss_kib(pid: int) -> int:
    """The process's resident set size, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


async def settled_rss(pid: int, samples: int = 5) -> float:
    """Median RSS in MiB over ``samples`` readings one second apart."""
    readings = []
    for _ in range(samples):
        readings.append(rss_kib(pid) / 1024)
        await asyncio.sleep(1)
    return statistics.median(readings)


async def backlog(client: Any, queue: str) -> int:
    """Workflow tasks waiting on ``queue`` (0 when the worker has caught up)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    total = 0
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=kind,
                report_stats=True,
            )
        )
        for info in described.stats_by_priority_key.values():
            total += info.approximate_backlog_count
        total += described.stats.approximate_backlog_count if described.HasField("stats") else 0
    return total


async def wait_settled(client: Any, queue: str, done: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() or await backlog(client, queue) > 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(2)


async def patiently(call: Any) -> None:
    """``call()``, retried while the dev server's namespace cache misses under load.

    A starved in-memory dev server answers "Namespace default is not found" now and then
    (its namespace registry refresh times out); the request itself is fine a second later.
    An earlier attempt may have started the workflow: "already started" counts as done.
    """
    from temporalio.exceptions import WorkflowAlreadyStartedError
    from temporalio.service import RPCError

    for attempt in range(60):
        try:
            await call()
            return
        except WorkflowAlreadyStartedError:
            return
        except RPCError as exc:
            if "amespace" not in str(exc) or attempt == 59:
                raise
            await asyncio.sleep(1)


async def start_all(starts: list[Any], chunk: int) -> float:
    began = time.perf_counter()
    for first in range(0, len(starts), chunk):
        await asyncio.gather(*(patiently(s) for s in starts[first : first + chunk]))
    return time.perf_counter() - began


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


async def wait_polling(log: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while b"polling" not in (log.read_bytes() if log.exists() else b""):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start; see {log}")
        await asyncio.sleep(0.5)


async def bare_rows(client: Any, args: argparse.Namespace, env: dict[str, str], tmp: Path) -> Any:
    queue = f"mem-bare-{uuid.uuid4().hex[:6]}"
    log = tmp / "bare.log"
    proc = spawn(
        [sys.executable, str(Path(__file__).resolve()), "--bare-worker", queue, str(args.cache)],
        env,
        log,
    )
    try:
        await wait_polling(log, proc)
        await asyncio.sleep(3)  # the worker's first polls and imports settle
        idle = await settled_rss(proc.pid)
        handles: list[Any] = []

        def starter(i: int) -> Any:
            async def start() -> None:
                handles.append(
                    await client.start_workflow(
                        MemoryBare.run,
                        120,
                        id=f"mem-bare/{queue}/{i}",
                        task_queue=queue,
                        rpc_timeout=RPC_TIMEOUT,
                    )
                )

            return start

        took = await start_all([starter(i) for i in range(args.n)], args.chunk)
        print(f"  bare: started {args.n} in {took:.0f} s", flush=True)
        await wait_settled(client, queue, lambda: True, "the bare workflows", args.timeout)
        held = await settled_rss(proc.pid)
        print(f"  bare: idle {idle:.1f} MiB, {args.cache} cached {held:.1f} MiB", flush=True)
        return idle, held
    finally:
        stop(proc)


def duly_env(
    base: dict[str, str], url: str, address: str, queue: str, cache: int
) -> dict[str, str]:
    return {
        **base,
        "DULY_DATABASE_URL": url,
        "DULY_TEMPORAL_ADDRESS": address,
        "DULY_TEMPORAL_TASK_QUEUE": queue,
        "DULY_WORKER_MAX_CACHED_WORKFLOWS": str(cache),
        "DULY_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS": str(TASKS),
        "DULY_LOG_LEVEL": "INFO",
        "DULY_WORKER_SANDBOX_REIMPORT": base.get("DULY_WORKER_SANDBOX_REIMPORT", "false"),
    }


async def report_progress(pid: int, idle: float, recorded: Any, every: float) -> None:
    """Every ``every`` seconds: workflows recorded so far, the worker's RSS, KiB per recorded."""
    began = time.monotonic()
    while every > 0:
        await asyncio.sleep(every)
        count = await asyncio.to_thread(recorded)
        rss = rss_kib(pid) / 1024
        per = (rss - idle) * 1024 / count if count else float("nan")
        print(
            f"  Duly progress: {time.monotonic() - began:6.0f} s, {count:,} recorded,"
            f" RSS {rss:.1f} MiB ({per:.1f} KiB per recorded over idle)",
            flush=True,
        )


async def duly_rows(
    client: Any, url: str, args: argparse.Namespace, env: dict[str, str], tmp: Path
) -> dict[str, tuple[float, float]]:
    from sqlalchemy import func, insert, select

    from domain.contracts.assignment import AssignmentInput
    from store.db import Database
    from store.models import Obligation, Person
    from workflows.assignment import AssignmentWorkflow

    db = Database(url)
    run = uuid.uuid4().hex[:6]
    people = [f"mem-{run}-{i:06d}" for i in range(args.n)]
    with db.session() as session:
        for first in range(0, args.n, 5000):
            session.execute(
                insert(Person),
                [
                    {"external_id": p, "name": "Memory", "email": f"{p}@example.com"}
                    for p in people[first : first + 5000]
                ],
            )
    address = client.service_client.config.target_host
    queue = f"mem-duly-{run}"
    rows: dict[str, tuple[float, float]] = {}

    def recorded() -> int:
        with db.session() as session:
            return int(session.scalar(select(func.count()).select_from(Obligation)) or 0)

    # 1. One worker caching every workflow: idle first, then N started.
    log = tmp / "duly-all.log"
    proc = spawn(
        [sys.executable, "-m", "duly", "worker"],
        duly_env(env, url, address, queue, args.cache),
        log,
    )
    try:
        await wait_polling(log, proc)
        await asyncio.sleep(3)
        idle = await settled_rss(proc.pid)
        due = (datetime.now(UTC) + timedelta(days=120)).date()
        inputs = [
            AssignmentInput(
                person=p, requirement_id="mem", requirement_title="Memory", due_date=due
            )
            for p in people
        ]

        def starter(inp: AssignmentInput) -> Any:
            async def start() -> None:
                await client.start_workflow(
                    AssignmentWorkflow.run,
                    inp,
                    id=inp.workflow_id,
                    task_queue=queue,
                    rpc_timeout=RPC_TIMEOUT,
                )

            return start

        # A long run (N = 50,000 is hours on a small VM) says how it goes: RSS against the
        # workflows recorded so far, so a run cut short still shows the per-workflow slope.
        progress = asyncio.create_task(report_progress(proc.pid, idle, recorded, args.progress))
        try:
            took = await start_all([starter(i) for i in inputs], args.chunk)
            print(
                f"  Duly: started {args.n} in {took:.0f} s; waiting for every obligation",
                flush=True,
            )
            await wait_settled(
                client, queue, lambda: recorded() >= args.n, "Duly's workflows", args.timeout
            )
        finally:
            progress.cancel()
        rows[f"Duly, {args.cache:,} cached (cache = C)"] = (idle, await settled_rss(proc.pid))
        print(f"  Duly, cache N: idle, held {rows[next(reversed(rows))]} MiB", flush=True)
    finally:
        stop(proc)

    # 2. Fresh workers with a bounded cache, after touching the open workflows with a query.
    touch = inputs[: min(args.n, args.touch)]
    for cache in args.bounded:
        log = tmp / f"duly-{cache}.log"
        proc = spawn(
            [sys.executable, "-m", "duly", "worker"], duly_env(env, url, address, queue, cache), log
        )
        try:
            await wait_polling(log, proc)
            await asyncio.sleep(3)
            idle = await settled_rss(proc.pid)

            def query(inp: AssignmentInput) -> Any:
                async def ask() -> None:
                    await client.get_workflow_handle(inp.workflow_id).query(
                        AssignmentWorkflow.state, rpc_timeout=RPC_TIMEOUT
                    )

                return ask

            took = await start_all([query(i) for i in touch], args.chunk)
            print(f"  Duly, cache {cache}: {len(touch)} queries in {took:.0f} s", flush=True)
            label = f"default ({cache:,})" if cache == SDK_DEFAULT_CACHE else f"{cache:,}"
            rows[f"Duly, cache {label}, {len(touch):,} touched"] = (
                idle,
                await settled_rss(proc.pid),
            )
            print(f"  Duly, cache {cache}: idle, held {rows[next(reversed(rows))]} MiB", flush=True)
        finally:
            stop(proc)
    db.dispose()
    return rows


async def run(args: argparse.Namespace) -> None:
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from bench.api_load import database
    from duly.temporal import temporal_cli

    with (
        tempfile.TemporaryDirectory(prefix="duly-memory-") as tmpdir,
        database(args.database_url, Path(tmpdir)) as url,
    ):
        tmp = Path(tmpdir)
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=temporal_cli(),
            dev_server_log_level="error",  # its slow-call warnings would drown the table
            # In memory, the dev server itself held ~21 GiB with 60,000 workflows open (the
            # 50,000 run on a 24 GiB VM, 2026-12-01): past 10,000, keep its state in a file.
            # The file is a scratch copy for this run, so skip the per-commit fsync: with the
            # default journal the server spent its time blocked on the disk (~3.6 Duly
            # assignments/s, 2026-12-01) instead of serving the worker.
            dev_server_extra_args=(
                [
                    "--db-filename",
                    str(Path(tmpdir) / "temporal.db"),
                    "--sqlite-pragma",
                    "journal_mode=wal",
                    "--sqlite-pragma",
                    "synchronous=off",
                ]
                if args.server_file
                else []
            ),
        )
        base = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DULY_ENV": "dev",
            "DULY_DATA_DIR": str(tmp),
            "DULY_SECRET_KEY": "m" * 48,
            "DULY_DIGEST_WINDOW_SECONDS": "0",
            "DULY_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "DULY_WORKER_SANDBOX_REIMPORT": "true" if args.sandbox_reimport else "false",
        }
        try:
            bare_idle, bare_held = await bare_rows(env.client, args, base, tmp)
            duly = await duly_rows(env.client, url, args, base, tmp)
        finally:
            await env.shutdown()
    bare_per = (bare_held - bare_idle) * 1024 / args.cache
    print(
        f"\nbench/memory.py: N = {args.n:,} open workflows, C = {args.cache:,} cached, one worker "
        f"process, sandbox {'re-import' if args.sandbox_reimport else 'passthrough'}, database "
        f"{url.split(':', 1)[0]}; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    header = f"{'':<44} {'idle MiB':>9} {'held MiB':>9} {'+MiB':>7} {'KiB/wf':>7} {'vs bare':>8}"
    print(header)
    print(
        f"{'bare, ' + format(args.cache, ',') + ' cached (baseline)':<44} {bare_idle:>9.1f} "
        f"{bare_held:>9.1f} {bare_held - bare_idle:>7.1f} {bare_per:>7.1f} {'1.00x':>8}"
    )
    for name, (idle, held) in duly.items():
        cached = args.cache if "cache = C" in name else None
        per = (held - idle) * 1024 / cached if cached else float("nan")
        ratio = f"{per / bare_per:.2f}x" if cached and bare_per > 0 else "-"
        per_text = f"{per:>7.1f}" if cached else f"{'-':>7}"
        print(f"{name:<44} {idle:>9.1f} {held:>9.1f} {held - idle:>7.1f} {per_text} {ratio:>8}")


def bare_worker(queue: str, cache: int) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    async def main() -> None:
        client = await Client.connect(os.environ["DULY_TEMPORAL_ADDRESS"])
        async with Worker(
            client,
            task_queue=queue,
            workflows=[MemoryBare],
            max_cached_workflows=cache,
            max_concurrent_workflow_tasks=TASKS,
        ):
            print("bare worker polling", file=sys.stderr, flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="open workflows (default 10,000)")
    parser.add_argument(
        "--touch", type=int, default=2_000, help="workflows queried by the bounded-cache workers"
    )
    parser.add_argument(
        "--cache",
        type=int,
        help="sticky cache C of the first bare and Duly workers (default N: every workflow "
        "cached); lower it when N cached does not fit in memory",
    )
    parser.add_argument(
        "--bounded",
        type=int,
        nargs="*",
        default=[SDK_DEFAULT_CACHE, 0],
        help="caches of the fresh Duly workers that replay --touch workflows (default 1000 0)",
    )
    parser.add_argument(
        "--sandbox-reimport",
        action="store_true",
        help="Duly workers with DULY_WORKER_SANDBOX_REIMPORT=true (the runner before issue 19)",
    )
    parser.add_argument("--chunk", type=int, default=50, help="starts/queries at once")
    parser.add_argument(
        "--server-file",
        action="store_true",
        help=(
            "dev server with file persistence, WAL and no fsync (needed past ~10,000: in"
            " memory it outgrows RAM)"
        ),
    )
    parser.add_argument(
        "--progress",
        type=float,
        default=120,
        help="seconds between progress lines while Duly's workflows run (0: none)",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="give up on a phase after")
    parser.add_argument(
        "--database-url", help="default: a throwaway PostgreSQL database, else SQLite"
    )
    parser.add_argument("--bare-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_worker:
        bare_worker(args.bare_worker[0], int(args.bare_worker[1]))
        return
    args.cache = args.n if args.cache is None else min(args.cache, args.n)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
