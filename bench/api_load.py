"""The API under load: Duly's hot routes next to a bare FastAPI app, measured in the same run.

Starts a Temporal dev server (in memory) and a ``duly worker`` process, seeds ``--people``
people each with one real ``AssignmentWorkflow`` (its read-model row written by the workflow),
then runs ``--api-processes`` ``duly api`` processes (uvicorn, PostgreSQL or SQLite) and drives
them with ``--clients`` concurrent keep-alive clients for ``--seconds`` on a mix of

* ``GET /assignments/{id}`` (40 %), ``GET /people/{id}/obligations`` (25 %),
  ``GET /obligations?limit=50`` (20 %), ``POST /assignments/{id}/acknowledge`` (15 %),

all as HR (rate limits off). The baseline is a bare FastAPI + uvicorn app in its own process
serving the same four routes with bodies of the same size from memory, driven by the same
clients for the same time, just before. The floor, driven next, is the same bare app plus one
PostgreSQL ``SELECT`` per request through a pool built like Duly's: what any design with a
database round trip per request costs on this machine. The figures: requests/s overall,
p50/p99 per route, and the ratios Duly/baseline, floor/baseline and Duly/floor. Run
``python bench/api_load.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (route label, weight).
MIX = (
    ("GET /assignments/{id}", 40),
    ("GET /people/{id}/obligations", 25),
    ("GET /obligations?limit=50", 20),
    ("POST /assignments/{id}/acknowledge", 15),
)
PG_ADMIN = os.environ.get(
    "DULY_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the baseline app ---------------------------------------------------------------------------


def _body(size: int) -> bytes:
    filler = max(size - len('{"pad":""}'), 0)
    return json.dumps({"pad": "x" * filler}).encode()


def serve_baseline(port: int, sizes: dict[str, int]) -> None:
    """A bare FastAPI app: each route answers a JSON body of the recorded size from memory."""
    import uvicorn
    from fastapi import FastAPI, Response

    bodies = {label: _body(size) for label, size in sizes.items()}
    app = FastAPI()

    @app.get("/assignments/{assignment_id:path}")
    async def assignment(assignment_id: str) -> Response:
        return Response(bodies["GET /assignments/{id}"], media_type="application/json")

    @app.post("/ack/{assignment_id:path}")
    async def acknowledge(assignment_id: str) -> Response:
        return Response(bodies["POST /assignments/{id}/acknowledge"], media_type="application/json")

    @app.get("/people/{external_id}/obligations")
    async def person(external_id: str) -> Response:
        return Response(bodies["GET /people/{id}/obligations"], media_type="application/json")

    @app.get("/obligations")
    async def obligations() -> Response:
        return Response(bodies["GET /obligations?limit=50"], media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- the floor app ------------------------------------------------------------------------------


def serve_floor(port: int, sizes: dict[str, int], url: str) -> None:
    """Bare FastAPI plus one PostgreSQL round trip per request: the floor for Duly's design.

    Each route checks a connection out of a pool built like Duly's (``store.db.make_engine``:
    10 + 10 connections, a ping only after 5 s idle, the same session timeouts), runs one
    ``SELECT`` of the rows Duly's answer shows (autocommit: no ``BEGIN``/``COMMIT``), and
    answers a body of the size Duly's answer had from memory, as the baseline does. A ``def``
    route (FastAPI's threadpool), as a plain FastAPI app with a blocking driver is written.
    """
    import uvicorn
    from fastapi import FastAPI, Response
    from sqlalchemy import text

    from store.db import make_engine

    engine = make_engine(url).execution_options(isolation_level="AUTOCOMMIT")
    bodies = {label: _body(size) for label, size in sizes.items()}
    one = text("SELECT workflow_id, status, due_date FROM obligations WHERE workflow_id = :id")
    of_person = text(
        "SELECT o.workflow_id, o.status, o.due_date FROM obligations o "
        "JOIN people p ON p.id = o.person_id WHERE p.external_id = :id"
    )
    page = text(
        "SELECT o.workflow_id, o.status, o.due_date, p.external_id FROM obligations o "
        "JOIN people p ON p.id = o.person_id ORDER BY o.id LIMIT 50"
    )
    app = FastAPI()

    def query(statement: Any, **params: str) -> None:
        with engine.connect() as conn:
            conn.execute(statement, params).all()

    @app.get("/assignments/{assignment_id:path}")
    def assignment(assignment_id: str) -> Response:
        query(one, id=assignment_id)
        return Response(bodies["GET /assignments/{id}"], media_type="application/json")

    @app.post("/ack/{assignment_id:path}")
    def acknowledge(assignment_id: str) -> Response:
        query(one, id=assignment_id)
        return Response(bodies["POST /assignments/{id}/acknowledge"], media_type="application/json")

    @app.get("/people/{external_id}/obligations")
    def person(external_id: str) -> Response:
        query(of_person, id=external_id)
        return Response(bodies["GET /people/{id}/obligations"], media_type="application/json")

    @app.get("/obligations")
    def obligations() -> Response:
        query(page)
        return Response(bodies["GET /obligations?limit=50"], media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- load ----------------------------------------------------------------------------------------


@dataclass
class Stats:
    """Latencies (seconds) per route and the errors seen."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def rate(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class Target:
    """How one system is called: base URLs (one per API process) and the path of each route."""

    bases: list[str]
    headers: dict[str, str]
    duly: bool


def request_for(
    label: str, rng: random.Random, ids: list[str], people: list[str]
) -> tuple[str, str, Any]:
    wid = rng.choice(ids)
    if label == "GET /assignments/{id}":
        return "GET", f"/assignments/{wid}", None
    if label == "GET /people/{id}/obligations":
        return "GET", f"/people/{rng.choice(people)}/obligations", None
    if label == "GET /obligations?limit=50":
        return "GET", "/obligations?limit=50", None
    return "POST", f"/assignments/{wid}/acknowledge", {}


async def drive(
    target: Target, seconds: float, clients: int, ids: list[str], people: list[str]
) -> Stats:
    """``clients`` concurrent clients, each with its own connection, for ``seconds``."""
    import aiohttp

    stats = Stats()
    labels = [label for label, weight in MIX for _ in range(weight)]
    deadline = time.perf_counter() + seconds

    async def one(index: int) -> None:
        rng = random.Random(index)
        base = target.bases[index % len(target.bases)]
        connector = aiohttp.TCPConnector(limit=1, force_close=False)
        async with aiohttp.ClientSession(base, connector=connector, headers=target.headers) as http:
            while time.perf_counter() < deadline:
                label = rng.choice(labels)
                method, path, payload = request_for(label, rng, ids, people)
                if not target.duly and method == "POST":
                    path = "/ack" + path.removeprefix("/assignments").removesuffix("/acknowledge")
                started = time.perf_counter()
                async with http.request(method, path, json=payload) as response:
                    await response.read()
                    ok = response.status < 400
                elapsed = time.perf_counter() - started
                if ok:
                    stats.latencies.setdefault(label, []).append(elapsed)
                else:
                    key = f"{label} {response.status}"
                    stats.errors[key] = stats.errors.get(key, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    stats.seconds = time.perf_counter() - started
    return stats


# --- Duly ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(url: str | None, tmp: Path) -> Iterator[str]:
    """A migrated throwaway database: ``url``, else PostgreSQL if reachable, else SQLite."""
    import sqlalchemy as sa

    from store.migrate import upgrade

    if url is None:
        name = f"duly_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        except sa.exc.OperationalError:
            admin.dispose()
            url = f"sqlite:///{tmp / 'bench.db'}"
            upgrade(url)
            yield url
            return
        try:
            url = str(
                sa.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
            )
            upgrade(url)
            yield url
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        return
    upgrade(url)
    yield url


def seed_people(db: Any, n: int) -> list[str]:
    from store.models import Person

    with db.session() as session:
        manager = Person(external_id="bench-mgr", name="Bench Manager", email="mgr@example.com")
        session.add(manager)
        session.flush()
        for i in range(n):
            session.add(
                Person(
                    external_id=f"bench-{i:05d}",
                    name=f"Bench Person {i}",
                    email=f"p{i}@example.com",
                    manager_id=manager.id,
                )
            )
    return [f"bench-{i:05d}" for i in range(n)]


async def start_assignments(client: Any, queue: str, people: list[str]) -> list[str]:
    from domain.contracts.assignment import AssignmentInput
    from workflows.assignment import AssignmentWorkflow

    due = date.today() + timedelta(days=120)  # nothing due: each records its row and sleeps
    ids: list[str] = []
    for first in range(0, len(people), 50):
        inputs = [
            AssignmentInput(
                person=p,
                requirement_id="bench-fire-safety",
                requirement_title="Fire safety",
                due_date=due,
                cycle=1,
                utc_offset_minutes=0,
                assigned_by="bench",
            )
            for p in people[first : first + 50]
        ]
        await asyncio.gather(
            *(
                client.start_workflow(AssignmentWorkflow.run, i, id=i.workflow_id, task_queue=queue)
                for i in inputs
            )
        )
        ids += [i.workflow_id for i in inputs]
    return ids


def wait_for_rows(db: Any, n: int, timeout: float = 300) -> None:
    from sqlalchemy import func, select

    from store.models import Obligation

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            if session.scalar(select(func.count()).select_from(Obligation)) >= n:
                return
        time.sleep(0.5)
    raise SystemExit(f"the workflows did not write {n} read-model rows in {timeout} s")


def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{base} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"{base} did not come up in {timeout} s")


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def print_rows(name: str, stats: Stats, base: Stats | None) -> None:
    print(
        f"\n{name}: {stats.total} requests in {stats.seconds:.1f} s = {stats.rate:.0f} req/s"
        + (f" ({stats.rate / base.rate:.2f}x baseline)" if base else "")
    )
    print(
        f"  {'route':<38} {'n':>6} {'p50 ms':>8} {'p99 ms':>8}"
        + ("  p99 vs baseline" if base else "")
    )
    for label, _ in MIX:
        values = stats.latencies.get(label, [])
        p50, p99 = percentile(values, 0.5) * 1e3, percentile(values, 0.99) * 1e3
        ratio = ""
        if base is not None:
            bp99 = percentile(base.latencies.get(label, []), 0.99) * 1e3
            ratio = f"  {p99 / bp99:.2f}x"
        print(f"  {label:<38} {len(values):>6} {p50:>8.1f} {p99:>8.1f}{ratio}")
    if stats.errors:
        print(f"  errors: {stats.errors}")


async def run(args: argparse.Namespace) -> None:
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from domain.roles import Role
    from duly.temporal import temporal_cli
    from store.db import Database
    from store.tokens import create_token

    with (
        tempfile.TemporaryDirectory(prefix="duly-api-load-") as tmpdir,
        database(args.database_url, Path(tmpdir)) as url,
    ):
        tmp = Path(tmpdir)
        db = Database(url)
        people = seed_people(db, args.people)
        with db.session() as session:
            token = create_token(session, role=Role.HR_ADMIN, label="bench")
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=temporal_cli(),
            ui=False,
        )
        queue = "duly-bench"
        procs: list[subprocess.Popen[bytes]] = []
        worker: subprocess.Popen[bytes] | None = None
        try:
            child_env = {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "DULY_ENV": "dev",
                "DULY_DATA_DIR": str(tmp),
                "DULY_DATABASE_URL": url,
                "DULY_SECRET_KEY": "b" * 48,
                "DULY_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                "DULY_TEMPORAL_TASK_QUEUE": queue,
                "DULY_RATE_LIMIT_PER_TOKEN": "off",
                "DULY_RATE_LIMIT_ANONYMOUS": "off",
                "DULY_LOG_LEVEL": "WARNING",
            }
            # The worker runs in its own process, as in production: in this process it would
            # share the GIL and event loop with the load clients during Duly's run only (its
            # acknowledgements), slowing the clients' side of Duly's figures and not the
            # baseline's. Few workflow tasks at once: on a starved CPU, a hundred concurrent
            # first activations each outlast the 10 s workflow task timeout and are retried.
            worker_log = (tmp / "worker.log").open("wb")
            worker = subprocess.Popen(
                [sys.executable, "-m", "duly", "worker"],
                cwd=ROOT,
                env={**child_env, "DULY_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS": "8"},
                stdout=worker_log,
                stderr=subprocess.STDOUT,
            )
            ids = await start_assignments(env.client, queue, people)
            await asyncio.to_thread(wait_for_rows, db, len(ids))
            headers = {"Authorization": f"Bearer {token}"}
            results: list[tuple[str, Stats, Stats, Stats]] = []
            for processes in args.api_processes:
                bases = []
                for _ in range(processes):
                    port = free_port()
                    proc = spawn(
                        [sys.executable, "-m", "duly", "api"],
                        {**child_env, "DULY_API_PORT": str(port)},
                    )
                    procs.append(proc)
                    bases.append(f"http://127.0.0.1:{port}")
                    await asyncio.to_thread(wait_healthy, bases[-1], proc)
                # Sizes of Duly's answers, for the baseline's bodies.
                import httpx

                sizes = {}
                async with httpx.AsyncClient(base_url=bases[0], headers=headers) as http:
                    for label, _ in MIX:
                        method, path, payload = request_for(label, random.Random(0), ids, people)
                        response = await http.request(method, path, json=payload)
                        assert response.status_code < 400, (
                            label,
                            response.status_code,
                            response.text,
                        )
                        sizes[label] = len(response.content)
                baseline_bases = []
                for _ in range(processes):
                    port = free_port()
                    proc = spawn(
                        [
                            sys.executable,
                            str(Path(__file__).resolve()),
                            "--serve-baseline",
                            str(port),
                            "--sizes",
                            json.dumps(sizes),
                        ],
                        child_env,
                    )
                    procs.append(proc)
                    baseline_bases.append(f"http://127.0.0.1:{port}")
                    await asyncio.to_thread(wait_healthy, baseline_bases[-1], proc)
                base_stats = await drive(
                    Target(baseline_bases, headers, duly=False),
                    args.seconds,
                    args.clients,
                    ids,
                    people,
                )
                floor_bases = []
                for _ in range(processes):
                    port = free_port()
                    proc = spawn(
                        [
                            sys.executable,
                            str(Path(__file__).resolve()),
                            "--serve-floor",
                            str(port),
                            "--sizes",
                            json.dumps(sizes),
                            "--floor-url",
                            url,
                        ],
                        child_env,
                    )
                    procs.append(proc)
                    floor_bases.append(f"http://127.0.0.1:{port}")
                    await asyncio.to_thread(wait_healthy, floor_bases[-1], proc)
                floor_stats = await drive(
                    Target(floor_bases, headers, duly=False),
                    args.seconds,
                    args.clients,
                    ids,
                    people,
                )
                duly_stats = await drive(
                    Target(bases, headers, duly=True), args.seconds, args.clients, ids, people
                )
                results.append(
                    (f"{processes} API process(es)", base_stats, floor_stats, duly_stats)
                )
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    proc.wait(timeout=30)
                procs.clear()
        finally:
            for proc in procs:
                proc.kill()
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=30)
            await env.shutdown()
            db.dispose()
    print(
        f"\nbench/api_load.py: {args.clients} clients, {args.seconds:.0f} s per system, "
        f"{args.people} assignments, database {url.split(':', 1)[0]}; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for name, base_stats, floor_stats, duly_stats in results:
        print(f"\n=== {name} ===")
        print_rows("baseline (bare FastAPI, same-size JSON from memory)", base_stats, None)
        print_rows(
            "floor (bare FastAPI + one PostgreSQL SELECT per request, Duly's pool)",
            floor_stats,
            base_stats,
        )
        print_rows("Duly", duly_stats, base_stats)

        def worst(stats: Stats, ref: Stats) -> float:
            return max(
                percentile(stats.latencies.get(label, []), 0.99)
                / percentile(ref.latencies.get(label, []), 0.99)
                for label, _ in MIX
            )

        print(
            f"\n  Duly: throughput {duly_stats.rate / base_stats.rate:.2f}x baseline "
            f"(goal >= 0.5x); worst p99 {worst(duly_stats, base_stats):.2f}x baseline "
            "(goal <= 3x)"
        )
        print(
            f"  floor: throughput {floor_stats.rate / base_stats.rate:.2f}x baseline; "
            f"worst p99 {worst(floor_stats, base_stats):.2f}x baseline"
        )
        print(
            f"  Duly vs floor: throughput {duly_stats.rate / floor_stats.rate:.2f}x; "
            f"worst p99 {worst(duly_stats, floor_stats):.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="load per system (default 30)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--people", type=int, default=200, help="assignments seeded (default 200)")
    parser.add_argument(
        "--api-processes",
        type=int,
        nargs="+",
        default=[1],
        help="API processes per run, e.g. 1 2 (default 1)",
    )
    parser.add_argument(
        "--database-url", help="default: a throwaway PostgreSQL database, else SQLite"
    )
    parser.add_argument("--serve-baseline", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--floor-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, json.loads(args.sizes))
        return
    if args.serve_floor:
        serve_floor(args.serve_floor, json.loads(args.sizes), args.floor_url)
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
