"""The reminder herd: N obligations whose next reminder fires at the same instant.

A Temporal dev server with file persistence (as ``make run``), a throwaway PostgreSQL database
(SQLite when PostgreSQL is down) and ``--workers`` ``duly worker`` processes. Two herds, one
after the other, in the same run:

* **baseline**: N bare workflows that sleep on a timer to one instant and then run one no-op
  activity (which returns the wall time it ran at), on ``--workers`` worker processes of this
  script;
* **Duly**: N people in the one IANA zone where 09:00 local is the next whole hour (or half or
  quarter hour where a zone has that offset) at least ``--lead`` seconds ahead, each with an
  ``AssignmentWorkflow`` due that local day: its ``0d`` stage (09:00 local) fires at that
  instant for all N. (Created late, each first sends the notice of its current stage at
  once; only the ``0d`` notices are measured.) Messages go to the outbox (the ledger).

Printed for each: time from the instant to the last message (activity), p50/p99 lateness, and
for Duly duplicates (ledger rows per workflow, stage, recipient and channel beyond one: must be
0), with the ratios Duly/baseline. Waiting for a 09:00 boundary can take up to an hour;
``--at HH:MM`` (UTC) picks the instant. Run ``python bench/herd.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from temporalio import activity, workflow

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
#: A loaded dev server with file persistence can take many seconds to accept a start.
RPC_TIMEOUT = timedelta(seconds=120)


@activity.defn(name="herd_noop")
def herd_noop(_: int) -> float:
    """The baseline's one activity: returns the wall time it ran at."""
    return time.time()


@workflow.defn(name="HerdBaseline", sandboxed=False)
class HerdBaseline:
    """Sleep to an instant, then run one no-op activity."""

    @workflow.run
    async def run(self, fire_at: float) -> float:
        delay = fire_at - workflow.now().timestamp()
        if delay > 0:
            await workflow.sleep(delay)
        ran: float = await workflow.execute_activity(
            herd_noop, 0, start_to_close_timeout=timedelta(minutes=10)
        )
        return ran


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def zone_at_nine(after: datetime, at: str | None) -> tuple[datetime, str]:
    """The first instant >= ``after`` (on a quarter hour) where some zone reads 09:00."""
    zones = sorted(z for z in available_timezones() if "/" in z and not z.startswith("posix/"))
    moment = after.replace(second=0, microsecond=0)
    if at is not None:
        hh, mm = (int(x) for x in at.split(":"))
        moment = moment.replace(hour=hh, minute=mm)
        if moment < after:
            moment += timedelta(days=1)
    else:
        moment += timedelta(minutes=(15 - moment.minute % 15) % 15)
        if moment < after:
            moment += timedelta(minutes=15)
    for _ in range(96):
        for zone in zones:
            local = moment.astimezone(ZoneInfo(zone))
            if (local.hour, local.minute) == (9, 0):
                return moment, zone
        if at is not None:
            break
        moment += timedelta(minutes=15)
    raise SystemExit(f"no time zone reads 09:00 at {moment:%H:%M} UTC; pick another --at")


def worker_env(url: str, address: str, queue: str, tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DULY_ENV": "dev",
        "DULY_DATA_DIR": str(tmp),
        "DULY_SECRET_KEY": "h" * 48,
        "DULY_DATABASE_URL": url,
        "DULY_TEMPORAL_ADDRESS": address,
        "DULY_TEMPORAL_TASK_QUEUE": queue,
        "DULY_DIGEST_WINDOW_SECONDS": "0",
        "DULY_LOG_LEVEL": "WARNING",
    }


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out)


async def start_all(starts: list[Any], chunk: int = 20) -> float:
    began = time.perf_counter()
    for first in range(0, len(starts), chunk):
        await asyncio.gather(*(s() for s in starts[first : first + chunk]))
    return time.perf_counter() - began


async def baseline(
    client: Any, args: argparse.Namespace, env: dict[str, str], tmp: Path
) -> dict[str, float]:
    queue = f"herd-baseline-{uuid.uuid4().hex[:6]}"
    procs = [
        spawn(
            [sys.executable, str(Path(__file__).resolve()), "--baseline-worker", queue],
            env,
            tmp / f"b{i}.log",
        )
        for i in range(args.workers)
    ]
    try:
        fire_at = time.time() + args.lead
        handles: list[Any] = []

        def starter(i: int) -> Any:
            async def start() -> None:
                handles.append(
                    await client.start_workflow(
                        HerdBaseline.run,
                        fire_at,
                        id=f"herd-baseline/{queue}/{i}",
                        task_queue=queue,
                        rpc_timeout=RPC_TIMEOUT,
                    )
                )

            return start

        took = await start_all([starter(i) for i in range(args.n)])
        if time.time() > fire_at:
            print(
                f"warning: starting the baseline took {took:.0f} s, past its instant; raise --lead"
            )
        # Each result() is a long poll on the server; thousands at once exceed the dev server's
        # per-namespace poller limit, so a bounded number wait at a time (the wall time each
        # activity ran is in its result, so when it is collected does not matter).
        polls = asyncio.Semaphore(100)

        async def result(handle: Any) -> float:
            async with polls:
                return float(await handle.result())

        ran = await asyncio.gather(*(result(h) for h in handles))
        late = [r - fire_at for r in ran]
        return {
            "last": max(late),
            "p50": percentile(late, 0.5),
            "p99": percentile(late, 0.99),
            "n": len(late),
            "dup": 0,
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)


async def duly_herd(
    client: Any, db: Any, args: argparse.Namespace, env: dict[str, str], tmp: Path
) -> dict[str, float]:
    from sqlalchemy import func, select

    from domain.contracts.assignment import AssignmentInput
    from store.models import Notification, Person
    from workflows.assignment import AssignmentWorkflow

    queue = env["DULY_TEMPORAL_TASK_QUEUE"]
    fire_at, zone = zone_at_nine(datetime.now(UTC) + timedelta(seconds=args.lead), args.at)
    due: date = fire_at.astimezone(ZoneInfo(zone)).date()
    print(f"Duly herd: {args.n} x 0d notice at {fire_at:%Y-%m-%d %H:%M} UTC (09:00 in {zone})")
    run = uuid.uuid4().hex[:6]
    people = [f"herd-{run}-{i:05d}" for i in range(args.n)]
    with db.session() as session:
        for p in people:
            session.add(
                Person(external_id=p, name="Herd", email=f"{p}@example.com", time_zone=zone)
            )
    procs = [
        spawn([sys.executable, "-m", "duly", "worker"], env, tmp / f"w{i}.log")
        for i in range(args.workers)
    ]
    try:
        inputs = [
            AssignmentInput(person=p, requirement_id="herd", requirement_title="Herd", due_date=due)
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

        took = await start_all([starter(i) for i in inputs])
        print(f"  started {args.n} in {took:.0f} s; waiting for {fire_at:%H:%M:%S} UTC")
        if datetime.now(UTC) > fire_at:
            print("warning: starting took past the instant; raise --lead")

        def rows() -> list[Any]:
            with db.session() as session:
                return list(
                    session.execute(
                        select(
                            Notification.workflow_id,
                            Notification.recipient_role,
                            Notification.channel,
                            Notification.status,
                            func.coalesce(Notification.updated_at, Notification.created_at),
                        ).where(Notification.stage == "0d")
                    )
                )

        deadline = (
            time.monotonic()
            + args.timeout
            + max(0.0, (fire_at - datetime.now(UTC)).total_seconds())
        )
        while True:
            found = rows()
            done = {r[0] for r in found if r[3] in ("sent", "delivered")}
            if len(done) >= args.n or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        found = rows()
        sent = [r for r in found if r[3] in ("sent", "delivered")]
        per_message = Counter((r[0], r[1], r[2]) for r in found)
        late = [(r[4] - fire_at).total_seconds() for r in sent]
        missing = args.n - len({r[0] for r in sent})
        if missing:
            print(f"warning: {missing} workflows had no 0d message by the deadline")
        return {
            "last": max(late),
            "p50": percentile(late, 0.5),
            "p99": percentile(late, 0.99),
            "n": len(sent),
            "dup": sum(n - 1 for n in per_message.values()),
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)


async def run(args: argparse.Namespace) -> None:
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from bench.api_load import database
    from duly.temporal import temporal_cli
    from store.db import Database

    with (
        tempfile.TemporaryDirectory(prefix="duly-herd-") as tmpdir,
        database(args.database_url, Path(tmpdir)) as url,
    ):
        tmp = Path(tmpdir)
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=temporal_cli(),
            dev_server_extra_args=["--db-filename", str(tmp / "temporal.db")],
        )
        db = Database(url)
        try:
            address = env.client.service_client.config.target_host
            wenv = worker_env(url, address, f"duly-herd-{uuid.uuid4().hex[:6]}", tmp)
            base = await baseline(env.client, args, wenv, tmp)
            ours = await duly_herd(env.client, db, args, wenv, tmp)
        finally:
            db.dispose()
            await env.shutdown()
    print(
        f"\nbench/herd.py: N = {args.n}, {args.workers} worker process(es), dev server with file "
        f"persistence, database {url.split(':', 1)[0]}; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'':<34} {'messages':>9} {'last s':>8} {'p50 s':>7} {'p99 s':>7} {'dups':>5}")
    for name, r in (
        ("baseline (timer + no-op activity)", base),
        ("Duly (0d notice in the ledger)", ours),
    ):
        figures = f"{r['n']:>9.0f} {r['last']:>8.2f} {r['p50']:>7.2f} {r['p99']:>7.2f}"
        print(f"{name:<34} {figures} {r['dup']:>5.0f}")
    ratios = {k: ours[k] / base[k] for k in ("last", "p50", "p99")}
    print(
        f"ratios Duly/baseline: last {ratios['last']:.2f}x, p50 {ratios['p50']:.2f}x, "
        f"p99 {ratios['p99']:.2f}x (goal <= 1.5x); duplicates {ours['dup']:.0f} (goal 0)"
    )


def baseline_worker(queue: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.client import Client
    from temporalio.worker import Worker

    async def main() -> None:
        client = await Client.connect(os.environ["DULY_TEMPORAL_ADDRESS"])
        async with Worker(
            client,
            task_queue=queue,
            workflows=[HerdBaseline],
            activities=[herd_noop],
            activity_executor=ThreadPoolExecutor(16),
            max_concurrent_activities=16,
        ):
            await asyncio.Event().wait()

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, default=5000, help="obligations in the herd (default 5,000)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (default 1; 2 = scale-out)"
    )
    parser.add_argument(
        "--lead", type=float, default=120, help="seconds between starting and the instant (min)"
    )
    parser.add_argument(
        "--at", help="the Duly herd's instant, HH:MM UTC (a zone must read 09:00 then)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="give up this long after the instant"
    )
    parser.add_argument(
        "--database-url", help="default: a throwaway PostgreSQL database, else SQLite"
    )
    parser.add_argument("--baseline-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker:
        baseline_worker(args.baseline_worker)
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
