"""``duly dev``: Temporal dev server, migrations, worker and API as one supervised group.

The supervisor owns its children: Ctrl-C (or SIGTERM) stops the API and worker first, then the
Temporal server; if any child dies, the rest are stopped and ``duly dev`` exits non-zero. State
lives under ``DULY_DATA_DIR`` (``.duly/`` by default), so a second start resumes every workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.panel import Panel
from sqlalchemy import select

from duly.settings import Settings
from duly.temporal import temporal_cli

if TYPE_CHECKING:
    from rules.model import Pack
    from store.models import Person

console = Console()

#: The demo's assignments: (requirement title, days until due). Several are due soon, so the
#: learner's current stage fires immediately and the outbox fills within seconds of start-up.
DEMO_ASSIGNMENTS: tuple[tuple[str, int], ...] = (
    ("HIPAA Privacy & Security", 3),
    ("HIPAA Privacy & Security", 7),
    ("HIPAA Privacy & Security", 12),
    ("HIPAA Privacy & Security", 25),
    ("HIPAA Privacy & Security", 45),
    ("HIPAA Privacy & Security", 75),
    ("HIPAA Privacy & Security", 120),
    ("OSHA Bloodborne Pathogens", -2),
    ("OSHA Bloodborne Pathogens", 0),
    ("OSHA Bloodborne Pathogens", 14),
    ("OSHA Bloodborne Pathogens", 30),
    ("Fire Safety", 60),
)


@dataclass
class Child:
    """A supervised child process."""

    name: str
    process: subprocess.Popen[bytes]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Linux: if the supervisor is killed outright, the kernel sends the child SIGTERM, so no
    # orphaned Temporal server keeps the port and the SQLite file.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgrp()


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _spawn(name: str, args: list[str], *, log: Path | None = None) -> Child:
    stdout = open(log, "ab") if log else None  # noqa: SIM115 - the child owns the handle
    process = subprocess.Popen(
        args,
        stdout=stdout,
        stderr=subprocess.STDOUT if log else None,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        start_new_session=sys.platform != "linux",
    )
    return Child(name, process)


def _stop(children: list[Child], timeout: float = 15.0) -> None:
    """Stop children in reverse start order: SIGINT, then SIGKILL after ``timeout``."""
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGINT)
            try:
                child.process.wait(timeout)
            except subprocess.TimeoutExpired:
                console.print(f"[yellow]{child.name} did not stop in {timeout:.0f}s; killing it[/]")
                child.process.kill()
                child.process.wait()


async def _wait_for_temporal(settings: Settings, process: subprocess.Popen[bytes]) -> None:
    from duly.temporal import connect

    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"the Temporal dev server exited with code {process.returncode}; "
                f"see {settings.data_dir / 'temporal.log'}"
            )
        try:
            client = await connect(settings)
            await client.service_client.check_health()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Temporal did not come up in 60s ({exc})") from exc
            await asyncio.sleep(0.5)


def load_demo(settings: Settings) -> dict[str, str]:
    """Import the demo org, create demo tokens and assign training; returns tokens by role."""
    from domain.roles import Role
    from duly.demo import load_demo_people
    from store.db import Database
    from store.models import Person

    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            report = load_demo_people(session)
        console.print(
            f"demo org: {report.created} people created, {report.updated} updated, "
            f"{report.unchanged} unchanged"
        )
        pack = deploy_demo_pack(db)
        _demo_mentorship(db)
        with db.session() as session:
            people = list(session.scalars(select(Person).order_by(Person.external_id)))
            managers = [p for p in people if any(q.manager_id == p.id for q in people)]
            staff = [p for p in people if p not in managers]
            # The demo learner and their own manager, so the two tokens show the same team.
            learner = next(p for p in staff if p.manager is not None)
            manager = learner.manager
            assert manager is not None
            tokens = _demo_tokens(
                settings.data_dir,
                session,
                {
                    "hr_admin": (Role.HR_ADMIN, None),
                    "manager": (Role.MANAGER, manager.external_id),
                    "learner": (Role.LEARNER, learner.external_id),
                    "auditor": (Role.AUDITOR, None),
                },
                lifetime=timedelta(days=settings.token_lifetime_days),
            )
            tokens["manager_person"] = manager.external_id
            tokens["learner_person"] = learner.external_id
        asyncio.run(_assign_demo(settings, staff, pack))
        asyncio.run(_enroll_demo_apprentices(settings, db))
    finally:
        db.dispose()
    return tokens


#: Where ``duly dev`` keeps its demo tokens between starts (mode 0600, in the data dir).
DEMO_TOKENS_FILE = "demo_tokens.json"


def _demo_tokens(
    data_dir: Path,
    session: Any,
    wanted: dict[str, tuple[Any, str | None]],
    *,
    lifetime: timedelta,
) -> dict[str, str]:
    """The demo's tokens by name: those of an earlier start while they still work, else new.

    Tokens are stored hashed, so the clear values a restart shows again live in
    ``data_dir/demo_tokens.json`` (0600), like the development key beside it. A token that was
    revoked, expired, or belongs to another person or role now is replaced.
    """
    from store.tokens import create_token, find_token

    path = data_dir / DEMO_TOKENS_FILE
    try:
        kept = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        kept = {}
    tokens: dict[str, str] = {}
    for name, (role, person) in wanted.items():
        previous = kept.get(name) if isinstance(kept, dict) else None
        info = find_token(session, previous) if isinstance(previous, str) else None
        if (
            info is not None
            and info.state == "active"
            and info.role == role.value
            and info.person == person
        ):
            tokens[name] = str(previous)
            continue
        tokens[name] = create_token(
            session, role=role, person_external_id=person, label=f"demo {name}", lifetime=lifetime
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(tokens, handle)
    path.chmod(0o600)
    return tokens


def _demo_mentorship(db: Any) -> None:
    """Demo mentor and mentee profiles, and the demo learner's top match with its reasons."""
    from activities import mentorship_profiles as profiles
    from duly.demo.mentorship import load_demo_mentorship
    from rules.matching import find_mentors

    with db.session() as session:
        written = load_demo_mentorship(session)
    with db.session() as session:
        mentees = profiles.mentee_profiles(session, only="p-1020")
        mentors = profiles.mentor_profiles(session)
    console.print(f"demo mentorship: {written} profiles written")
    if mentees:
        best = find_mentors(mentees[0], mentors, limit=1)
        if best:
            top = best[0]
            console.print(
                f"  p-1020's top mentor: {top.person_id} ({top.score:g}/100): "
                + "; ".join(top.explanations)
            )


#: The example pack the demo deploys (when no pack is active yet).
DEMO_PACK = Path(__file__).resolve().parents[1] / "rules" / "packs" / "medical-practice"


def deploy_demo_pack(db: Any) -> Pack | None:
    """Deploy the medical-practice example pack unless a pack is already active; the active one."""
    from activities.packs import active_pack
    from rules.loader import load_pack
    from services.rules import deploy
    from store.packs import Migration

    with db.session() as session:
        current = active_pack(session)
        if current is not None:
            console.print(f"rules pack: {current.info.name} {current.content_hash[:12]} (active)")
            return current
        pack = load_pack(DEMO_PACK)
        deploy(
            session=session,
            pack=pack,
            author="demo",
            message="demo pack",
            migration=Migration.GRANDFATHER,
        )
    console.print(f"rules pack: deployed {pack.info.name} {pack.content_hash[:12]}")
    return pack


#: The pack that carries the demo's apprenticeship program (stored, not made active).
PROGRAM_PACK = Path(__file__).resolve().parents[1] / "rules" / "packs" / "field-technicians"
DEMO_APPRENTICES = Path(__file__).with_name("demo") / "apprentices.csv"
#: (apprentice, days since enrolment, days of approved hours (8 h; 24 h for the one who
#: finished period 1), the last of them days ago, period 1 complete): one on track, one
#: stalled, one advancing to period 2.
DEMO_STAGES = (
    ("p-2011", 40, 24, 2, False),
    ("p-2012", 120, 20, 45, False),
    ("p-2013", 330, 96, 1, True),
)


def _store_program_pack(db: Any) -> str:
    """Store the field-technicians pack version without activating it; its hash.

    The demo's active pack is medical-practice; its apprenticeships are enrolled against the
    stored field-technicians version (workflows pin a pack version, whichever is active).
    """
    from rules.loader import load_pack
    from store import audit
    from store.models import RulesPackVersion
    from store.types import utcnow

    pack = load_pack(PROGRAM_PACK)
    with db.session() as session:
        found = session.scalar(
            select(RulesPackVersion).where(RulesPackVersion.content_hash == pack.content_hash)
        )
        if found is None:
            session.add(
                RulesPackVersion(
                    content_hash=pack.content_hash,
                    name=pack.info.name,
                    author="demo",
                    message="stored for the demo apprenticeships (not active)",
                    migration="grandfather",
                    content={"files": pack.files},
                    active=False,
                    deployed_at=utcnow(),
                )
            )
            audit.record(
                session,
                actor="demo",
                actor_role="hr_admin",
                action="rules.store",
                target=f"rules_pack/{pack.info.name}",
                after={"content_hash": pack.content_hash, "active": False},
            )
    return pack.content_hash


async def _enroll_demo_apprentices(settings: Settings, db: Any) -> None:
    """Three elevator-mechanic apprentices at different stages (idempotent across starts)."""
    from activities.packs import load_version
    from domain import Role
    from domain.contracts.apprenticeship import Carried
    from duly.temporal import connect
    from rules.apprenticeship import (
        EnrollmentStatus,
        EntryStatus,
        Evaluation,
        HoursEntry,
        HoursKind,
    )
    from services import apprenticeships
    from services.errors import Conflict
    from store.people import import_people, parse_csv
    from store.tokens import Principal

    rows, errors = parse_csv(DEMO_APPRENTICES.read_text(encoding="utf-8"))
    with db.session() as session:
        import_people(session, rows, errors)
    pack_hash = _store_program_pack(db)
    hr = Principal(
        token_id=0, role=Role.HR_ADMIN, person_id=None, person_external_id=None, label="demo"
    )
    with db.session() as session:
        stored = load_version(session, pack_hash)
    program = stored.program("elevator-mechanic") if stored else None
    assert program is not None  # the field-technicians pack carries it
    client = await connect(settings)
    today = date.today()
    enrolled = 0
    for person, since, days, last_ago, signed in DEMO_STAGES:
        # Their record so far, as a transfer-in summary (the worker is not running yet, so
        # nothing can be logged and approved through the workflow here).
        last = today - timedelta(days=last_ago)
        hours = 24.0 * days if signed else 8.0 * days
        entries = [
            HoursEntry(
                id="~demo-work",
                day=last,
                kind=HoursKind.WORK,
                hours=min(hours, 2000.0) if signed else hours,
                status=EntryStatus.APPROVED,
                description=f"{days} days of approved hours before the demo",
            )
        ]
        if signed:
            entries.append(
                entries[0].model_copy(
                    update={"id": "~demo-classroom", "kind": HoursKind.CLASSROOM, "hours": 144.0}
                )
            )
        carried = Carried(
            period=1,
            status=EnrollmentStatus.ACTIVE,
            supervisor="p-2001",
            entries=entries,
            last_evaluation=Evaluation(day=last, score=82) if signed else None,
            evaluations_done=1 if signed else 0,
            signed_off={s: last for s in program.periods[0].skills} if signed else {},
        )
        with db.session() as session:
            try:
                await apprenticeships.enroll(
                    session,
                    client,
                    task_queue=settings.temporal_task_queue,
                    person=person,
                    program_id=program.id,
                    supervisor="p-2001",
                    enrolled_on=today - timedelta(days=since),
                    principal=hr,
                    pack_hash=pack_hash,
                    carried=carried,
                )
            except Conflict:
                continue  # enrolled on an earlier start
        enrolled += 1
    console.print(
        f"demo apprenticeships: {enrolled} enrolled (elevator-mechanic, {pack_hash[:12]})"
    )


async def _assign_demo(settings: Settings, staff: list[Person], pack: Pack | None) -> None:
    from duly.temporal import connect
    from services.assignments import assignment_input, start_assignment

    client = await connect(settings)
    today = date.today()
    started = 0
    people = staff
    for index, (title, days) in enumerate(DEMO_ASSIGNMENTS):
        person = people[index % len(people)]
        inp = assignment_input(
            person,
            title=title,
            due_date=today + timedelta(days=days),
            assigned_by="demo",
            pack=pack,
        )
        started += await start_assignment(
            client=client, task_queue=settings.temporal_task_queue, inp=inp
        )
    console.print(
        f"demo training: {started} assignments started, "
        f"{len(DEMO_ASSIGNMENTS) - started} already running from an earlier start"
    )
    await _assign_demo_department(client, settings)
    await _demo_project(client, settings)


#: The demo's client project: (name, client, days to go-live, project manager, track, target
#: role, person enrolled). One go-live track, not complete yet: it blocks (issue 17).
DEMO_PROJECT = (
    "Riverside imaging study",
    "Riverside Clinic",
    14,
    "p-1010",
    "site-administrator",
    "manager",
    "p-1012",
)

#: The demo's assessment failure: a second administrator on the project team sits the
#: Research Site Systems Administration exam (pass mark 70 %, three attempts) three times and
#: fails each: (person, requirement, scores in percent). Their course becomes ``failed``.
DEMO_FAILED_EXAM = ("p-1011", "research-systems-admin", (55.0, 62.0, 64.0))


async def _demo_project(client: Any, settings: Settings) -> None:
    """A client project two weeks from go-live whose site-administrator track blocks."""
    from datetime import UTC, datetime

    from domain.roles import Role
    from services import tracks
    from services.assignments import person as find_person
    from services.errors import ServiceError
    from store.db import Database
    from store.models import Project
    from store.tokens import Principal

    name, client_name, days, manager, track, role, member = DEMO_PROJECT
    principal = Principal(
        token_id=0, role=Role.HR_ADMIN, person_id=None, person_external_id=None, label="demo"
    )
    db = Database(settings.resolved_database_url)
    try:
        with db.session() as session:
            if session.scalar(select(Project.id).where(Project.name == name)) is not None:
                console.print(f"demo project: {name} exists from an earlier start")
                return
            try:
                row = await tracks.create_project(
                    session,
                    client,
                    task_queue=settings.temporal_task_queue,
                    name=name,
                    client_name=client_name,
                    go_live=date.today() + timedelta(days=days),
                    manager=find_person(session, external_id=manager),
                    principal=principal,
                )
                tracks.assign_track(
                    session,
                    project_row=row,
                    track_id=track,
                    target_role=role,
                    people_needed=1,
                    due_date=row.go_live,
                    principal=principal,
                )
                await tracks.enrol(
                    session,
                    client,
                    task_queue=settings.temporal_task_queue,
                    track_id=track,
                    person=find_person(session, external_id=member),
                    principal=principal,
                    source="hr",
                    now=datetime.now(UTC),
                )
            except ServiceError as problem:  # no pack with tracks deployed: no demo project
                console.print(f"demo project skipped: {problem}")
                return
            console.print(
                f"demo project: {name} (id {row.id}) goes live {row.go_live.isoformat()};"
                f" {track} blocks until {member} completes it"
                f" (GET /projects/{row.id}/readiness)"
            )
            await _demo_failed_exam(session, client, settings, principal, track)
    finally:
        db.dispose()


async def _demo_failed_exam(
    session: Any, client: Any, settings: Settings, principal: Any, track: str
) -> None:
    """A failed attempt, then attempts exhausted: the course (and the track) become failed.

    The evidence is signalled before the worker runs: the assignment holds it until its
    pinned pack's plan (with the gate) is known, then judges each attempt in order.
    """
    from datetime import UTC, datetime

    from domain.contracts.assignment import CompleteSignal
    from services import tracks
    from services.assignments import person as find_person
    from workflows.assignment import AssignmentWorkflow

    member, requirement, scores = DEMO_FAILED_EXAM
    enrolled = await tracks.enrol(
        session,
        client,
        task_queue=settings.temporal_task_queue,
        track_id=track,
        person=find_person(session, external_id=member),
        principal=principal,
        source="hr",
        now=datetime.now(UTC),
    )
    workflow_id = next((w for w in enrolled.started if w.split("/")[2] == requirement), None)
    if workflow_id is None:
        return  # the course was assigned earlier: its attempts are its own
    now = datetime.now(UTC)
    handle = client.get_workflow_handle(workflow_id)
    for n, score in enumerate(scores):
        await handle.signal(
            AssignmentWorkflow.complete,
            CompleteSignal(
                completed_at=now - timedelta(hours=len(scores) - n),
                source="demo-lms",
                actor="demo",
                score=score,
                score_percent=score,
                attempt_id=f"demo-attempt-{n + 1}",
            ),
        )
    console.print(
        f"demo assessment: {member} failed {requirement} {len(scores)} times"
        f" ({', '.join(f'{s:g} %' for s in scores)}; 70 % to pass): the course is failed and"
        f" {track} shows it (GET /assignments/{workflow_id})"
    )


#: The demo's bulk job: a whole department assigned one requirement (people who already have
#: it are skipped). A fixed bulk id, so a restart does not start it twice.
DEMO_DEPARTMENT = ("Nursing", "fire-safety", "demo-nursing-fire-safety")


async def _assign_demo_department(client: Any, settings: Settings) -> None:
    from services.bulk import start_bulk
    from workflows.bulk import BulkAssignRequest, BulkSelector

    department, requirement, bulk_id = DEMO_DEPARTMENT
    request = BulkAssignRequest(
        bulk_id=bulk_id,
        requirement_id=requirement,
        selector=BulkSelector(departments=[department]),
        assigned_by="demo",
    )
    if not await start_bulk(client, task_queue=settings.temporal_task_queue, request=request):
        console.print(f"demo department: {department} bulk job ran on an earlier start")
        return
    console.print(
        f"demo department: assigning {requirement} to everyone in {department} "
        f"(progress: GET /assignments/bulk/{bulk_id})"
    )


def run_dev_stack(settings: Settings, *, demo: bool) -> int:
    """Run the whole stack until Ctrl-C; returns the process exit code."""
    from store.migrate import upgrade

    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    host, port_text = settings.temporal_address.rsplit(":", 1)
    for what, h, p in (
        ("Temporal", host, int(port_text)),
        ("the Temporal UI", host, settings.temporal_ui_port),
        ("the API", settings.api_host, settings.api_port),
    ):
        if _port_in_use(h, p):
            console.print(
                f"[red]{h}:{p} (for {what}) is already in use.[/] Stop what uses it (an earlier "
                "`duly dev`?) or choose other ports with DULY_TEMPORAL_ADDRESS, "
                "DULY_TEMPORAL_UI_PORT and DULY_API_PORT."
            )
            return 2

    upgrade(settings.resolved_database_url)
    console.print(f"database ready: {_safe_url(settings.resolved_database_url)}")

    children: list[Child] = []
    stopping = False

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        temporal = _spawn(
            "temporal",
            [
                temporal_cli(),
                "server",
                "start-dev",
                "--ip",
                host,
                "--port",
                port_text,
                "--ui-port",
                str(settings.temporal_ui_port),
                "--db-filename",
                str(data_dir / "temporal.db"),
                "--namespace",
                settings.temporal_namespace,
                "--log-level",
                "warn",
            ],
            log=data_dir / "temporal.log",
        )
        children.append(temporal)
        asyncio.run(_wait_for_temporal(settings, temporal.process))
        console.print(f"Temporal dev server ready on {settings.temporal_address}")

        tokens = load_demo(settings) if demo else {}

        duly = [sys.executable, "-m", "duly.cli"]
        # A short digest window locally, so the demo's early reminders show within seconds.
        os.environ.setdefault("DULY_DIGEST_WINDOW_SECONDS", "5")
        children.append(_spawn("worker", [*duly, "worker"]))
        children.append(_spawn("api", [*duly, "api"]))
        _banner(settings, tokens)

        while not stopping:
            for child in children:
                code = child.process.poll()
                if code is not None:
                    console.print(f"[red]{child.name} exited with code {code}; stopping Duly[/]")
                    return 1
            time.sleep(0.3)
        console.print("stopping Duly…")
        return 0
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    finally:
        _stop(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        console.print("Duly stopped; data kept in " + str(data_dir))


def _safe_url(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


def _banner(settings: Settings, tokens: dict[str, str]) -> None:
    api = settings.api_base_url
    lines = [
        f"API            {api}",
        f"API docs       {api}/docs",
        f"Temporal UI    {settings.temporal_ui_url}",
        f"data           {settings.data_dir.resolve()}",
    ]
    if tokens:
        lines += [
            "",
            f"hr_admin token {tokens['hr_admin']}",
            f"manager token  {tokens['manager']}  (person {tokens['manager_person']})",
            f"learner token  {tokens['learner']}  (person {tokens['learner_person']})",
            f"auditor token  {tokens['auditor']}",
            "",
            "try: curl -H 'Authorization: Bearer <hr_admin token>' " + api + "/notifications",
        ]
    lines += ["", "Ctrl-C stops everything; workflows resume on the next start."]
    console.print(Panel("\n".join(lines), title="Duly is running", expand=False))
