"""Faults on the dev server: a worker killed (SIGKILL) in the middle of a reminder herd.

A real Temporal dev server, ``duly worker`` as a child process and a fake SendGrid in this
process. ``HERD`` assignments are started due today, so each sends its due-day notice at
once: a herd of sends. When part of them has gone out the worker is killed with
SIGKILL (no drain, no cleanup: leases held, activities and workflow tasks in flight), a new
worker starts, and every message must end in the ledger exactly once, sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from domain.contracts.assignment import AssignmentInput
from notifications.delivery import DONE
from store.db import Database
from store.migrate import upgrade
from store.models import Notification, Obligation, Person
from tests.conftest import wheel_binary
from tests.fakes.providers import FakeSendGrid
from workflows.assignment import AssignmentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[1]
#: Scaled down from the issue's 1,000 to keep the test near a minute on a shared 2-core VM
#: (``DULY_FAULT_HERD=1000`` runs the issue's size; measured: 60 in 115 s at load average 14).
HERD = int(os.environ.get("DULY_FAULT_HERD", "60"))
#: The fake provider answers each call after this long, so the herd takes seconds, not
#: milliseconds, and the kill lands while sends are in flight.
PROVIDER_SECONDS = 0.1


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=wheel_binary("temporal"),
        ui=False,
    )
    try:
        yield env
    finally:
        await env.shutdown()


def worker_process(
    client: Client,
    url: str,
    queue: str,
    sendgrid: FakeSendGrid,
    data_dir: Path,
    *,
    digest_window: int = 0,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DULY_ENV": "test",
        "DULY_DATA_DIR": str(data_dir),
        "DULY_SECRET_KEY": "k" * 48,
        "DULY_DATABASE_URL": url,
        "DULY_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "DULY_TEMPORAL_TASK_QUEUE": queue,
        "DULY_SENDGRID_API_KEY": sendgrid.api_key,
        "DULY_SENDGRID_BASE_URL": sendgrid.base_url,
        # A killed attempt's ledger rows are taken over after the lease (the minimum, 5 s).
        "DULY_SEND_LEASE_SECONDS": "5",
        # 0: each notice goes out on its own (no digest window to wait for).
        "DULY_DIGEST_WINDOW_SECONDS": str(digest_window),
        "DULY_LOG_LEVEL": "INFO",
        # A shared CI core: few workflow tasks at once, so none outlasts its 10 s timeout.
        "DULY_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS": "8",
    }
    # Its log goes to a file (a pipe nobody reads would block the worker once full).
    with (data_dir / "worker.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "duly", "worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def ledger(db: Database) -> list[Notification]:
    with db.session() as session:
        return list(session.scalars(select(Notification).where(Notification.channel == "email")))


async def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.5)


async def test_a_worker_killed_mid_herd_loses_and_doubles_nothing(
    server: WorkflowEnvironment, postgres_url: str, tmp_path: Path
) -> None:
    # PostgreSQL, as in production: sixteen activity threads writing the ledger at once.
    url = postgres_url
    upgrade(url)
    db = Database(url)
    people = [f"herd-{i:04d}" for i in range(HERD)]
    with db.session() as session:
        for external_id in people:
            session.add(
                Person(external_id=external_id, name="Herd", email=f"{external_id}@example.com")
            )
    queue = f"herd-{uuid.uuid4().hex[:8]}"
    client = server.client
    sendgrid = FakeSendGrid()
    sendgrid.start()
    sendgrid.slow_all(PROVIDER_SECONDS)
    first = worker_process(client, url, queue, sendgrid, tmp_path)
    second: subprocess.Popen[bytes] | None = None
    try:
        # Due today: the due-day notice goes out at once, directly (never folded into a digest,
        # never deferred past its day), whatever the hour or weekday.
        due = datetime.now(UTC).date()
        inputs = [
            AssignmentInput(
                person=p, requirement_id="fire", requirement_title="Fire safety", due_date=due
            )
            for p in people
        ]
        for start in range(0, HERD, 50):
            await asyncio.gather(
                *(
                    client.start_workflow(
                        AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=queue
                    )
                    for inp in inputs[start : start + 50]
                )
            )
        # Mid-herd: some notices out, most not.
        try:
            await wait_for(lambda: len(sendgrid.accepted) >= HERD // 5, 300, "the herd to start")
        except BaseException:
            first.send_signal(signal.SIGKILL)
            print("worker:", (tmp_path / "worker.log").read_text()[-3000:])
            print("ledger:", Counter((r.channel, r.status) for r in ledger(db)))
            print("received:", len(sendgrid.received))
            with db.session() as session:
                print("obligations:", Counter(session.scalars(select(Obligation.status))))
            raise
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        at_kill = ledger(db)
        sent_at_kill = {r.idempotency_key for r in at_kill if r.status in DONE}
        in_flight = {r.idempotency_key for r in at_kill if r.status not in DONE}
        assert len(sent_at_kill) < HERD, "the kill came after the herd: nothing was tested"

        second = worker_process(client, url, queue, sendgrid, tmp_path)

        def all_sent() -> bool:
            rows = ledger(db)
            return len(rows) >= HERD and all(r.status in DONE for r in rows)

        try:
            await wait_for(all_sent, 300, "every notice to be sent after the restart")
        except BaseException:
            print("worker:", (tmp_path / "worker.log").read_text()[-3000:])
            print("ledger:", Counter((r.channel, r.status) for r in ledger(db)))
            raise
        rows = ledger(db)
        # Exactly once in the ledger: one row per person (the notice of the current stage).
        with db.session() as session:
            ids = {pid: ext for pid, ext in session.execute(select(Person.id, Person.external_id))}
        assert sorted(ids[r.person_id] for r in rows if r.person_id is not None) == people
        assert len({r.idempotency_key for r in rows}) == HERD
        assert all(r.status in DONE for r in rows)
        # At the provider: every row went out; a call can only repeat for a row whose attempt
        # was inside the provider call when the worker died (the provider has no idempotency
        # key; the ledger's lease makes that the only window).
        calls = Counter(
            r.body["custom_args"]["idempotency_key"]
            for r in sendgrid.accepted
            if isinstance(r.body, dict)
        )
        assert set(calls) == {r.idempotency_key for r in rows}
        repeated = {key for key, n in calls.items() if n > 1}
        assert repeated <= in_flight, repeated - in_flight
        assert not repeated & sent_at_kill
        print(
            f"herd {HERD}: {len(sent_at_kill)} sent before SIGKILL, {len(in_flight)} unsettled "
            f"at the kill, {len(rows)} ledger rows after, {len(repeated)} repeated provider calls"
        )
        # Nothing more goes out once the ledger is settled (no late retry sends again).
        settled = len(sendgrid.accepted)
        await asyncio.sleep(1)
        assert len(sendgrid.accepted) == settled
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
        sendgrid.stop()
        db.dispose()


# -- Temporal restarted mid-ladder -------------------------------------------------------------

#: People per group of the restart test (two groups: due today, due in three days).
RESTART_GROUP = int(os.environ.get("DULY_FAULT_RESTART_GROUP", "20"))
#: The digest window of the restart test's worker: the digests' timers are set before the
#: restart and must fire after it, so it outlasts starting the herd and the restart itself.
DIGEST_WINDOW = 30


def afternoon_zone(now: datetime) -> tuple[str, date]:
    """A fixed-offset IANA zone where ``now`` is 15:00–15:59 local, and today's date there.

    ``Etc/GMT-5`` is UTC+5 (POSIX signs). Offsets run from -12 to +11, all of which exist.
    """
    offset = (15 - now.hour + 12) % 24 - 12
    name = "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"
    return name, now.astimezone(ZoneInfo(name)).date()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_server(port: int, db_file: Path) -> WorkflowEnvironment:
    """The dev server on ``port`` with file persistence in ``db_file`` (as ``make run``)."""
    return await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=wheel_binary("temporal"),
        dev_server_database_filename=str(db_file),
        port=port,
        ui=False,
    )


def rows_by(db: Database) -> list[tuple[str, str, str | None, str, str]]:
    """(workflow id, stage, recipient role, status, key) of every e-mail row of the ledger."""
    with db.session() as session:
        return [
            (r.workflow_id, r.stage, r.recipient_role, r.status, r.idempotency_key)
            for r in session.scalars(select(Notification).where(Notification.channel == "email"))
        ]


async def test_a_temporal_restart_mid_ladder_loses_and_doubles_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    """The dev server is killed (SIGKILL) and restarted on its file while the ladder runs.

    Two groups of assignments, so both kinds of in-flight work cross the restart:

    * **due today**: each sends its due-day notice at once, directly; the provider is slow,
      so sends (activities) are in flight when the server dies;
    * **due in three days**: each queues its late ``-7d`` notice for the person's digest,
      whose workflow sleeps ``DIGEST_WINDOW`` seconds: a timer set before the restart, fired
      after (a digest of one item sends that item as it is).

    Afterwards every notice is in the ledger exactly once per stage, every digest went out
    exactly once, and every assignment is still open and waiting for its next stage.
    """
    url = postgres_url
    upgrade(url)
    db = Database(url)
    # The due-day stage fires at 09:00 local, so "due today" means "0d has fired" only after
    # 09:00: every person lives in a fixed-offset zone where it is mid-afternoon now (CI
    # starts at any hour), and "today" is that zone's date.
    zone, today = afternoon_zone(datetime.now(UTC))
    groups = {
        "0d": ([f"now-{i:03d}" for i in range(RESTART_GROUP)], today),
        "-7d": ([f"soon-{i:03d}" for i in range(RESTART_GROUP)], today + timedelta(days=3)),
    }
    with db.session() as session:
        for people, _ in groups.values():
            for external_id in people:
                session.add(
                    Person(
                        external_id=external_id,
                        name="Ladder",
                        email=f"{external_id}@x.test",
                        time_zone=zone,
                    )
                )
    port = free_port()
    server_file = tmp_path / "temporal.db"
    server = await start_server(port, server_file)
    queue = f"restart-{uuid.uuid4().hex[:8]}"
    sendgrid = FakeSendGrid()
    sendgrid.start()
    sendgrid.slow_all(PROVIDER_SECONDS * 2)
    # A quarter of the due-day notices go out; the rest are held at the provider (in flight)
    # until after the restart, however fast or loaded the machine is.
    sendgrid.hold_after(RESTART_GROUP // 4)
    worker = worker_process(
        server.client, url, queue, sendgrid, tmp_path, digest_window=DIGEST_WINDOW
    )
    restarted: WorkflowEnvironment | None = None
    try:
        inputs = [
            AssignmentInput(person=p, requirement_id="fire", requirement_title="Fire", due_date=due)
            for people, due in groups.values()
            for p in people
        ]
        await asyncio.gather(
            *(
                server.client.start_workflow(
                    AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=queue
                )
                for inp in inputs
            )
        )
        now_people, _ = groups["0d"]
        try:
            # Mid-ladder: some due-day sends out, the digests' timers set, no digest sent.
            await wait_for(
                lambda: (
                    len(sendgrid.accepted) >= RESTART_GROUP // 4
                    and sum(1 for r in rows_by(db) if r[1] == "-7d") >= RESTART_GROUP // 2
                ),
                120,
                "the ladder to be under way",
            )
        except BaseException:
            print("worker:", (tmp_path / "worker.log").read_text()[-3000:])
            print("ledger:", Counter((r[1], r[3]) for r in rows_by(db)))
            raise
        await server.shutdown()  # the CLI's child is killed (SIGKILL), its file kept
        at_kill = rows_by(db)
        sent_at_kill = {r[4] for r in at_kill if r[1] == "0d" and r[3] in DONE}
        assert len(sent_at_kill) < RESTART_GROUP, "the restart came after the sends"
        assert not any(r[1] == "-7d" and r[3] in DONE for r in at_kill), (
            "the restart came after the digests went out"
        )

        restarted = await start_server(port, server_file)
        client = restarted.client
        sendgrid.release()

        def settled() -> bool:
            rows = rows_by(db)
            return sum(1 for r in rows if r[3] in DONE) >= 2 * RESTART_GROUP

        try:
            await wait_for(settled, 180, "every notice and digest after the restart")
        except BaseException:
            print("worker:", (tmp_path / "worker.log").read_text()[-3000:])
            print("ledger:", Counter((r[1], r[3]) for r in rows_by(db)))
            raise
        rows = rows_by(db)
        # Exactly once per workflow and stage in the ledger.
        per_stage = Counter((r[0], r[1], r[2]) for r in rows)
        assert {n for n in per_stage.values()} == {1}, [k for k, n in per_stage.items() if n > 1]
        by_stage = Counter(r[1] for r in rows)
        assert by_stage == {"0d": RESTART_GROUP, "-7d": RESTART_GROUP}
        # Sent: each person's digest held one reminder, which goes out as it is (a digest of one).
        assert all(r[3] in DONE for r in rows)
        # At the provider: each sent row went out; a digest exactly once (its timer crossed the
        # restart, so none was in flight at the kill); a due-day notice again only if its
        # attempt was in flight at the kill.
        calls = Counter(
            r.body["custom_args"]["idempotency_key"]
            for r in sendgrid.accepted
            if isinstance(r.body, dict)
        )
        assert set(calls) == {r[4] for r in rows if r[3] in DONE}
        repeated = {key for key, n in calls.items() if n > 1}
        assert not repeated & {r[4] for r in rows if r[1] == "-7d"}
        assert repeated <= {r[4] for r in at_kill if r[1] == "0d" and r[3] not in DONE}
        # Still open, each waiting for its next stage (the due instant or the 0d stage).
        for inp in inputs:
            handle = client.get_workflow_handle(inp.workflow_id)
            state = await handle.query(AssignmentWorkflow.state)
            due_today = inp.person in now_people
            assert state.stages_sent == (["0d"] if due_today else ["-7d"]), state.stages_sent
            assert state.completed_at is None
        print(
            f"restart mid-ladder: {len(sent_at_kill)}/{RESTART_GROUP} due-day notices sent "
            f"before the kill, {RESTART_GROUP} digest timers across it; ledger {dict(by_stage)}"
        )
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        sendgrid.stop()
        db.dispose()
        for env in (restarted, server):
            if env is not None:
                with contextlib.suppress(Exception):
                    await env.shutdown()


# -- PostgreSQL unavailable ---------------------------------------------------------------------

#: How long PostgreSQL stays unreachable: 30 s, as production sees a failover or a restart
#: (every connection reset, new ones refused, activity retries backing off 1, 2, 4, 8, 16 s).
#: ``DULY_FAULT_OUTAGE_SECONDS`` shortens it for a quick local run; the paths are the same.
OUTAGE_SECONDS = float(os.environ.get("DULY_FAULT_OUTAGE_SECONDS", "30"))
OUTAGE_HERD = 20


async def test_postgresql_unavailable_activities_retry_and_the_api_answers_503(
    postgres_url: str, tmp_path: Path
) -> None:
    """PostgreSQL goes away (through a proxy this test cuts) and comes back.

    The worker and the API reach a throwaway database through :class:`TcpProxy`; the machine's
    PostgreSQL itself (shared with other suites) is never stopped. While the proxy is cut,
    assignments are started: their activities fail and retry; the API answers 503 with a JSON
    ``detail`` and ``Retry-After`` on what needs the database (``/healthz`` stays 200). Once it
    is restored, both recover by themselves: every notice goes out exactly once and the API
    answers 200 again, with no restart.
    """
    from fastapi.testclient import TestClient
    from sqlalchemy import make_url

    from api.app import create_app
    from duly.settings import Settings
    from tests.conftest import bearer
    from tests.fakes.tcpproxy import TcpProxy
    from tests.fakes.temporal import FakeTemporal

    upgrade(postgres_url)
    direct = Database(postgres_url)  # the test's own view, never cut
    target = make_url(postgres_url)
    proxy = TcpProxy((target.host or "127.0.0.1", target.port or 5432))
    proxy.start()
    url = target.set(port=proxy.port).render_as_string(hide_password=False)
    people = [f"pg-{i:03d}" for i in range(OUTAGE_HERD)]
    with direct.session() as session:
        for external_id in people:
            session.add(Person(external_id=external_id, name="Outage", email=f"{external_id}@x.t"))
    hr = bearer(direct, "hr_admin")
    server = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=wheel_binary("temporal"),
        ui=False,
    )
    queue = f"outage-{uuid.uuid4().hex[:8]}"
    sendgrid = FakeSendGrid()
    sendgrid.start()
    worker = worker_process(server.client, url, queue, sendgrid, tmp_path)
    api_db = Database(url)
    app = create_app(
        Settings(env="test", secret_key="o" * 48, rate_limit_per_token="off"),
        database=api_db,
        temporal_client=FakeTemporal(),  # type: ignore[arg-type]  # only database routes here
    )
    try:
        with TestClient(app, raise_server_exceptions=False) as api:
            assert api.get("/obligations", headers=hr).status_code == 200  # pool warmed up
            await wait_for(
                lambda: b"worker polling" in (tmp_path / "worker.log").read_bytes(),
                120,
                "the worker to poll",
            )

            proxy.cut()
            cut_at = asyncio.get_running_loop().time()
            down = api.get("/obligations", headers=hr)
            assert down.status_code == 503, down.text
            assert down.headers["content-type"].startswith("application/json")
            assert "database" in down.json()["detail"]
            assert int(down.headers["Retry-After"]) > 0
            assert api.get("/healthz").status_code == 200  # liveness does not need it
            assert api.get("/readyz").status_code == 503

            due = datetime.now(UTC).date()
            inputs = [
                AssignmentInput(
                    person=p, requirement_id="fire", requirement_title="Fire", due_date=due
                )
                for p in people
            ]
            handles = await asyncio.gather(
                *(
                    server.client.start_workflow(
                        AssignmentWorkflow.run, inp, id=inp.workflow_id, task_queue=queue
                    )
                    for inp in inputs
                )
            )

            async def retrying() -> int:
                """Workflows whose pending activity has failed at least once."""
                count = 0
                for handle in handles:
                    described = await handle.describe()
                    pending = described.raw_description.pending_activities
                    count += any(a.attempt >= 2 for a in pending)
                return count

            deadline = asyncio.get_running_loop().time() + 120
            while await retrying() < OUTAGE_HERD:
                if asyncio.get_running_loop().time() > deadline:
                    pytest.fail("the activities did not fail and retry during the outage")
                await asyncio.sleep(0.5)
            assert sendgrid.accepted == []
            assert api.get(f"/people/{people[0]}/obligations", headers=hr).status_code == 503
            # The outage lasts its full length (a deliberate duration, not a wait for a result).
            remaining = OUTAGE_SECONDS - (asyncio.get_running_loop().time() - cut_at)
            await asyncio.sleep(max(0.0, remaining))

            proxy.restore()
            # The API recovers by itself, on the first request (the connections the outage
            # reset were invalidated by the failed requests, or sat idle and are pinged).
            back = api.get("/obligations", headers=hr)
            assert back.status_code == 200, back.text

            def all_sent() -> bool:
                rows = ledger(direct)
                return len(rows) >= OUTAGE_HERD and all(r.status in DONE for r in rows)

            try:
                await wait_for(all_sent, 180, "every notice after PostgreSQL came back")
            except BaseException:
                print("worker:", (tmp_path / "worker.log").read_text()[-3000:])
                print("ledger:", Counter(r.status for r in ledger(direct)))
                raise
            rows = ledger(direct)
            assert len({r.idempotency_key for r in rows}) == len(rows) == OUTAGE_HERD
            calls = Counter(
                r.body["custom_args"]["idempotency_key"]
                for r in sendgrid.accepted
                if isinstance(r.body, dict)
            )
            # Nothing went out during the outage, so nothing can have gone out twice.
            assert calls == dict.fromkeys((r.idempotency_key for r in rows), 1)
            listed = api.get("/obligations", headers=hr, params={"limit": 100})
            assert listed.status_code == 200 and len(listed.json()) == OUTAGE_HERD, listed.text
            print(
                f"PostgreSQL down {OUTAGE_SECONDS:.0f} s: {OUTAGE_HERD} workflows retried, "
                f"{len(rows)} notices once each after; proxy connections {proxy.accepted}"
            )
    finally:
        proxy.stop()
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        sendgrid.stop()
        api_db.dispose()
        direct.dispose()
        await server.shutdown()
