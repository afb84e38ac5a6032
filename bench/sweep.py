"""The nightly status sweep at size, on PostgreSQL, next to a plain SQL pass over the same rows.

It creates a throwaway database (default ``duly_bench_sweep`` on the server of
``--admin-url``), migrates it, deploys the medical-practice pack and writes ``--n`` open
obligations (default 100,000) for ``--n / 5`` people spread over time zones, roles and due
dates. Then, in the same run:

* ``sweep``: :meth:`activities.rules.RulesActivities.sweep_statuses`, the activity the nightly
  ``StatusSweepWorkflow`` runs (through ``temporalio.testing.ActivityEnvironment``: the same code
  path, no Temporal server): read every open pinned row, build facts, decide with durable_rules,
  write changes back with compare-and-set;
* ``plain SQL``: the floor for the same I/O: one SELECT of the same rows (joined with people,
  same filter) fetched as tuples, then the same status changes written back by one set-based
  UPDATE per target status, in one transaction.

The database is restored to its seeded statuses before each timed run, so every run sees the
same input and makes the same changes; both contenders must change the same rows. The database
is dropped at the end (``--keep`` keeps it). Run ``python -m bench.sweep --help``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from temporalio.testing import ActivityEnvironment

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from activities.rules import RulesActivities  # noqa: E402
from domain.contracts.sweep import SweepRequest, SweepResult  # noqa: E402
from rules.loader import load_pack  # noqa: E402
from store.db import Database  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.models import Obligation, Person  # noqa: E402
from store.packs import Migration, deploy  # noqa: E402
from store.sweep import WORKFLOW_HELD_STATUSES  # noqa: E402

PACK = ROOT / "rules" / "packs" / "medical-practice"
#: The sweep's instant (fixed: every run decides the same statuses).
AS_OF = datetime(2026, 11, 23, 2, tzinfo=UTC)
ZONES = ("UTC", "Europe/Paris", "America/New_York", "America/Los_Angeles", "Asia/Tokyo")
ROLES = ("nurse", "physician", "technician", "pharmacist", "front-desk")
STATUSES = ("assigned", "compliant", "due_soon", "overdue", "grace_period")


def seed(db: Database, n: int, seed_value: int) -> str:
    """Deploy the pack and write ``n`` open obligations; returns the pack hash."""
    rng = random.Random(seed_value)
    pack = load_pack(PACK)
    requirements = [r.id for r in pack.requirements]
    with db.session() as session:
        deploy(session, pack, author="bench", message="bench", migration=Migration.GRANDFATHER)
    people = max(1, n // 5)
    with db.engine.begin() as conn:
        conn.execute(
            sa.insert(Person.__table__),
            [
                {
                    "external_id": f"p-{i}",
                    "name": f"Person {i}",
                    "roles": [rng.choice(ROLES)],
                    "time_zone": ZONES[i % len(ZONES)],
                    "employment_status": "active",
                    "created_at": AS_OF,
                    "updated_at": AS_OF,
                }
                for i in range(people)
            ],
        )
        ids = [row[0] for row in conn.execute(sa.select(Person.id).order_by(Person.id))]
        rows: list[dict[str, Any]] = []
        for i in range(n):
            requirement = requirements[i % len(requirements)]
            due = AS_OF.date() + timedelta(days=rng.randint(-60, 200))
            rows.append(
                {
                    "workflow_id": f"assignment/p-{i}/{requirement}/1",
                    "person_id": ids[i % len(ids)],
                    "kind": "training",
                    "requirement_id": requirement,
                    "requirement_title": requirement,
                    "cycle": 1,
                    "due_date": due,
                    "status": rng.choice(STATUSES),
                    "pack_hash": pack.content_hash,
                    "acknowledged_at": AS_OF if rng.random() < 0.3 else None,
                    "started_at": AS_OF if rng.random() < 0.2 else None,
                    "exempt": False,
                    "ce_credits_short": 0,
                    "suspended": False,
                    "version": 1,
                    "as_of": AS_OF - timedelta(days=1),
                    "created_at": AS_OF,
                    "updated_at": AS_OF,
                }
            )
            if len(rows) == 10_000:
                conn.execute(sa.insert(Obligation.__table__), rows)
                rows = []
        if rows:
            conn.execute(sa.insert(Obligation.__table__), rows)
        conn.execute(
            sa.text("CREATE TABLE bench_seed AS SELECT id, status, version FROM obligations")
        )
    return pack.content_hash


def reset(db: Database) -> None:
    """Put every obligation back at its seeded status and version."""
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE obligations o SET status = s.status, version = s.version FROM bench_seed s"
                " WHERE o.id = s.id AND (o.status <> s.status OR o.version <> s.version)"
            )
        )
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text("VACUUM ANALYZE obligations")
        )


def changed_rows(db: Database) -> dict[int, str]:
    """Rows whose status differs from the seed: {id: new status}."""
    with db.engine.connect() as conn:
        return dict(
            conn.execute(
                sa.text(
                    "SELECT o.id, o.status FROM obligations o JOIN bench_seed s ON o.id = s.id"
                    " WHERE o.status <> s.status"
                )
            ).all()
        )


def run_sweep(db: Database) -> tuple[float, SweepResult]:
    activities = RulesActivities(db)
    began = time.perf_counter()
    result = ActivityEnvironment().run(activities.sweep_statuses, SweepRequest(as_of=AS_OF))
    return time.perf_counter() - began, result


def run_plain(db: Database, changes: dict[int, str]) -> tuple[float, int, int]:
    """Read the sweep's rows, write ``changes`` set-based; (seconds, rows read, rows written)."""
    held = ", ".join(f"'{s}'" for s in WORKFLOW_HELD_STATUSES)
    by_status: dict[str, list[int]] = {}
    for oid, status in changes.items():
        by_status.setdefault(status, []).append(oid)
    began = time.perf_counter()
    with db.engine.begin() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT o.id, o.version, o.status, o.pack_hash, o.requirement_id, o.kind,"
                " o.due_date, o.expiry_date, o.completed_at, o.acknowledged_at, o.started_at,"
                " o.exempt, o.exempt_until, o.ce_credits_short, o.as_of, p.roles, p.department,"
                " p.location, p.employer, p.employment_status, p.time_zone"
                " FROM obligations o JOIN people p ON p.id = o.person_id"
                f" WHERE o.completed_at IS NULL AND o.status NOT IN ({held})"
                " AND NOT o.suspended AND o.pack_hash <> 'builtin'"
                " ORDER BY o.pack_hash, o.id"
            )
        ).all()
        version = {row[0]: row[1] for row in rows}
        written = 0
        for status, ids in by_status.items():
            written += conn.execute(
                sa.text(
                    "UPDATE obligations SET status = :status, version = obligations.version + 1"
                    " FROM unnest(CAST(:ids AS integer[]), CAST(:versions AS integer[]))"
                    " AS c(id, version)"
                    " WHERE obligations.id = c.id AND obligations.version = c.version"
                ),
                {"status": status, "ids": ids, "versions": [version[i] for i in ids]},
            ).rowcount
    return time.perf_counter() - began, len(rows), written


def load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100_000, help="open obligations to sweep")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each (best kept)")
    parser.add_argument(
        "--admin-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL database to connect to while creating and dropping the bench one",
    )
    parser.add_argument("--database", default="duly_bench_sweep", help="the throwaway database")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    args = parser.parse_args()

    admin = sa.create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{args.database}"'))
    url = sa.make_url(args.admin_url).set(database=args.database)
    url_text = url.render_as_string(hide_password=False)
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs ({cpu}), load {load()}")
    db: Database | None = None
    try:
        upgrade(url_text)
        db = Database(url_text)
        began = time.perf_counter()
        seed(db, args.n, args.seed)
        print(f"seeded {args.n:,} obligations in {time.perf_counter() - began:.1f} s")
        sweeps: list[float] = []
        plains: list[float] = []
        result: SweepResult | None = None
        changes: dict[int, str] = {}
        for run in range(args.repeat):
            reset(db)
            seconds, result = run_sweep(db)
            sweeps.append(seconds)
            changes = changed_rows(db)
            if len(changes) != result.changed:
                raise SystemExit(f"FAIL: sweep says {result.changed} changed, found {len(changes)}")
            print(f"  run {run + 1}: sweep {seconds:.2f} s (load {load()})")
            reset(db)
            seconds, read, written = run_plain(db, changes)
            if read != result.evaluated + result.skipped or written != len(changes):
                raise SystemExit(
                    f"FAIL: plain pass read {read} / wrote {written}, sweep evaluated"
                    f" {result.evaluated} + skipped {result.skipped} / changed {len(changes)}"
                )
            plains.append(seconds)
            print(f"  run {run + 1}: plain SQL {seconds:.2f} s (load {load()})")
        assert result is not None
        sweep, plain = min(sweeps), min(plains)
        rows = result.evaluated
        print(
            f"\nN = {args.n:,}: evaluated {result.evaluated:,}, skipped {result.skipped:,},"
            f" changed {result.changed:,}, conflicts {result.conflicts}; best of {args.repeat}"
        )
        header = f"{'contender':<12} {'wall s':>8} {'rows/s':>10} {'vs plain SQL':>13}"
        print(header)
        print("-" * len(header))
        print(f"{'plain SQL':<12} {plain:>8.2f} {rows / plain:>10,.0f} {1.0:>12.2f}x")
        print(f"{'sweep':<12} {sweep:>8.2f} {rows / sweep:>10,.0f} {plain / sweep:>12.2f}x")
        print(f"(sweep decisions/s: {rows / sweep:,.0f}; load at the end {load()})")
    finally:
        if db is not None:
            db.dispose()
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    cli()
