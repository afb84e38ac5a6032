"""The ``duly`` command line: ``duly dev|worker|api|migrate|people|tokens|tracks``."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from duly.settings import Settings, SettingsError

app = typer.Typer(
    help="Duly: training & certification compliance on durable Temporal workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
people_app = typer.Typer(help="The people directory (HRIS import).", no_args_is_help=True)
tokens_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)
app.add_typer(people_app, name="people")
app.add_typer(tokens_app, name="tokens")

console = Console()
err = Console(stderr=True)


def load_settings() -> Settings:
    """Read settings, turning a configuration error into a clear message and exit code 2."""
    try:
        return Settings()
    except (SettingsError, ValueError) as exc:
        err.print(f"[bold red]configuration error:[/] {exc}")
        raise typer.Exit(2) from exc


def setup_logging(settings: Settings) -> None:
    """PII-free logging to stderr: text, or JSON lines with ``DULY_LOG_FORMAT=json``."""
    from duly.logs import setup_logging as configure

    configure(settings)


@app.command()
def migrate() -> None:
    """Create or upgrade Duly's tables (idempotent)."""
    from store.migrate import upgrade

    settings = load_settings()
    upgrade(settings.resolved_database_url)
    console.print("[green]database is up to date[/]")


@app.command()
def worker() -> None:
    """Run a Temporal worker (scale out by running more of these)."""
    from duly.worker import run_worker

    settings = load_settings()
    setup_logging(settings)
    asyncio.run(run_worker(settings))


@app.command()
def api(
    proxy_headers: Annotated[
        bool | None,
        typer.Option(
            "--proxy-headers/--no-proxy-headers",
            help="Take the client address from X-Forwarded-For / X-Forwarded-Proto, but only on "
            "connections from --forwarded-allow-ips. Default: on when DULY_FORWARDED_ALLOW_IPS "
            "or --forwarded-allow-ips is given, off otherwise.",
        ),
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            "--forwarded-allow-ips",
            help="Comma-separated IPs or networks of your reverse proxies (e.g. "
            "10.0.0.5,10.1.0.0/16; default DULY_FORWARDED_ALLOW_IPS, else 127.0.0.1,::1). A "
            "forwarded header from any other peer is ignored, so it cannot dodge the per-client "
            "limits. Never '*' unless only the proxy can reach the API.",
        ),
    ] = None,
) -> None:
    """Run the HTTP API (stateless; run as many as you need behind a load balancer).

    Behind a reverse proxy: ``duly api --forwarded-allow-ips 10.0.0.5`` so rate limits and logs
    see each real client instead of the proxy.
    """
    import uvicorn

    from api.app import create_app

    settings = load_settings()
    setup_logging(settings)
    if settings.otel_enabled:
        from duly.tracing import configure_tracer_provider

        configure_tracer_provider("duly-api")
    trusted = forwarded_allow_ips or settings.forwarded_allow_ips
    if proxy_headers is None:
        proxy_headers = trusted is not None
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        # Explicit either way: uvicorn's own default trusts loopback's headers implicitly.
        proxy_headers=proxy_headers,
        forwarded_allow_ips=trusted or "127.0.0.1,::1",
        # JSON logs: uvicorn's loggers propagate to the root handler instead of their own.
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
    )


@app.command()
def dev(
    demo: Annotated[
        bool, typer.Option("--demo", help="Load a demo org and assign training to it.")
    ] = False,
) -> None:
    """Start everything on this machine: Temporal dev server, migrations, worker and API."""
    from duly.devstack import run_dev_stack

    settings = load_settings()
    raise typer.Exit(run_dev_stack(settings, demo=demo))


def _replan_moved(settings: Any, targets: Any) -> None:
    """Signal the open obligations of people who changed time zone to re-plan (best effort)."""
    from activities.rules import signal_replans
    from duly.temporal import connect

    async def signal() -> int:
        client = await connect(settings)
        return (await signal_replans(client, targets, actor=f"cli:{getpass.getuser()}")).signalled

    try:
        count = asyncio.run(signal())
    except Exception as exc:  # noqa: BLE001 - the import is saved; say what happens next
        err.print(
            f"[yellow]{len(targets)} obligations of people who changed time zone were not"
            f" re-planned now ({type(exc).__name__}); the nightly sweep re-plans them[/]"
        )
        return
    console.print(f"{count} open obligations re-planned in their person's new time zone")


def _automate(settings: Any, changes: Any) -> None:
    """Start the change workflows of an import (best effort: the reconciliation catches up)."""
    from duly.temporal import connect
    from services import directory

    if not changes:
        return
    outcome = asyncio.run(
        directory.automate(
            changes,
            temporal=lambda: connect(settings),
            task_queue=settings.temporal_task_queue,
            enabled=settings.directory_automation,
        )
    )
    if outcome.note is not None:
        err.print(f"[yellow]{outcome.note}[/]", highlight=False)
    if outcome.started:
        console.print(
            f"{outcome.started} directory change workflows started (joiners assigned, movers"
            " and leavers followed up)"
        )


def _print_dry_run(plans: list[dict[str, Any]]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"dry run: {len(plans)} people would change (nothing was saved)")
    for column in ("external_id", "change", "would assign", "would close", "other"):
        table.add_column(column, overflow="fold")
    for plan in plans:
        closes = [f"{c['requirement_id']} ({c['status']}: {c['reason']})" for c in plan["close"]]
        other = []
        if plan["keep"]:
            other.append("keeps " + ", ".join(plan["keep"]))
        if plan["certificates_needed"]:
            other.append("needs certificate " + ", ".join(plan["certificates_needed"]))
        if plan["pause"]:
            other.append(f"pauses {plan['pause']}")
        if plan["resume"]:
            other.append(f"resumes {plan['resume']}")
        if plan["revoke_tokens"]:
            other.append("revokes tokens")
        if plan["manager_change"]:
            other.append(f"manager {plan['manager_change']}")
        table.add_row(
            Text(plan["external_id"]),
            plan["kind"],
            Text(", ".join(plan["assign"])),
            Text("; ".join(closes)),
            Text("; ".join(other)),
        )
    console.print(table)


@people_app.command("import")
def people_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Save nothing: show what each changed person would be assigned and which"
            " obligations would close.",
        ),
    ] = False,
) -> None:
    """Upsert people from a CSV or JSON file, keyed by external id.

    Every changed person starts a DirectoryChangeWorkflow: joiners are assigned what the
    active pack says, movers' and leavers' obligations follow (DULY_DIRECTORY_AUTOMATION).

    Exit codes: 0 everything landed, 1 some rows were rejected (the good ones are saved),
    2 the file cannot be imported at all.
    """
    from rich.table import Table
    from rich.text import Text

    from services import directory
    from store import audit
    from store.db import Database
    from store.obligations import moved_zone_targets
    from store.people import PeopleFileError, parse_csv, parse_json

    suffix = file.suffix.lower()
    if suffix not in {".csv", ".json"}:
        err.print(f"[red]{file.name}: name the file .csv or .json so Duly knows how to read it[/]")
        raise typer.Exit(2)
    try:
        if suffix == ".csv":
            rows, errors = parse_csv(file.read_text(encoding="utf-8-sig"))
        else:
            rows, errors = parse_json(file.read_bytes())
    except UnicodeDecodeError as exc:
        err.print(f"[red]{file.name} is not UTF-8 text[/] (byte {exc.start}); export as CSV UTF-8")
        raise typer.Exit(2) from exc
    except PeopleFileError as exc:
        err.print(f"[bold red]{file.name} cannot be imported:[/]")
        for error in exc.errors:
            where = f"row {error.row}: " if error.row else ""
            err.print(f"  {where}{error.message}", markup=False, highlight=False)
        raise typer.Exit(2) from exc

    settings = load_settings()
    db = Database.from_settings(settings)
    if dry_run:
        try:
            with db.session() as session:
                report, plans = directory.preview_rows(
                    session, rows=rows, errors=errors, today=datetime.now(UTC).date()
                )
        finally:
            db.dispose()
        _print_dry_run(plans)
        console.print(
            f"would create {report.created}, update {report.updated}, leave {report.unchanged}"
            f" unchanged, reject {report.rejected}"
        )
        raise typer.Exit(1 if report.errors else 0)
    try:
        with db.session() as session:
            report, changes = directory.apply_rows(
                session, rows=rows, errors=errors, source="import", actor=f"cli:{getpass.getuser()}"
            )
            audit.record(
                session,
                actor=f"cli:{getpass.getuser()}",
                actor_role="cli",
                action="people.import",
                target="people",
                after={"file": file.name, **report.counts},
            )
        with db.session() as session:
            moved = moved_zone_targets(session)
    finally:
        db.dispose()
    if moved:
        _replan_moved(settings, moved)
    _automate(settings, changes)

    summary = Table(title=f"people import: {file.name}")
    for label in ("created", "updated", "unchanged", "rejected"):
        summary.add_column(label, justify="right")
    summary.add_row(
        str(report.created), str(report.updated), str(report.unchanged), str(report.rejected)
    )
    console.print(summary)
    if report.errors:
        problems = Table(title="errors (fix these rows and import the file again)")
        problems.add_column("row", justify="right")
        problems.add_column("column")
        problems.add_column("message", overflow="fold")
        for error in report.errors:
            # Text(), not markup: messages quote user data that may contain [brackets].
            problems.add_row(str(error.row), Text(error.column or ""), Text(error.message))
        console.print(problems)
        raise typer.Exit(1)


@people_app.command("list")
def people_list(
    department: Annotated[str | None, typer.Option(help="Only this department")] = None,
) -> None:
    """List the directory (no contact details) with each person's manager."""
    from rich.table import Table
    from sqlalchemy import select

    from store.db import Database
    from store.models import Person

    settings = load_settings()
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            query = select(Person).order_by(Person.external_id)
            if department:
                query = query.where(Person.department == department)
            people = list(session.scalars(query))
    finally:
        db.dispose()
    table = Table(title=f"{len(people)} people")
    for column in ("external_id", "name", "roles", "department", "location", "manager", "status"):
        table.add_column(column)
    for p in people:
        table.add_row(
            p.external_id,
            p.name,
            ", ".join(p.roles),
            p.department or "",
            p.location or "",
            p.manager.external_id if p.manager else "",
            p.employment_status,
        )
    console.print(table)


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help="hr_admin, manager, learner, auditor or integration")],
    person: Annotated[
        str | None, typer.Option(help="External id of the person (required for manager/learner)")
    ] = None,
    label: Annotated[str | None, typer.Option(help="A note to recognise the token by")] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="Integration tokens: what it may do, repeatable: xapi:write, "
            "completions:write, assignments:write, people:import, people:read, scim "
            "(default: xapi:write only)"
        ),
    ] = None,
    expires_in_days: Annotated[
        int | None,
        typer.Option(
            min=1, max=3650, help="Days until it expires (default DULY_TOKEN_LIFETIME_DAYS)"
        ),
    ] = None,
    no_expiry: Annotated[
        bool, typer.Option("--no-expiry", help="Integration tokens only: never expires")
    ] = False,
) -> None:
    """Create a bearer token and print it (it is stored hashed and cannot be shown again)."""
    from datetime import timedelta

    from domain.roles import Role
    from store import audit
    from store.db import Database
    from store.tokens import TokenError, create_token, find_token, parse_scopes

    try:
        parsed = Role(role)
    except ValueError as exc:
        err.print(f"[red]unknown role {role!r}[/]; use one of: {', '.join(r.value for r in Role)}")
        raise typer.Exit(2) from exc
    settings = load_settings()
    if no_expiry and expires_in_days is not None:
        err.print("[red]--no-expiry and --expires-in-days contradict each other[/]; give one")
        raise typer.Exit(2)
    days = expires_in_days or settings.token_lifetime_days
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            token = create_token(
                session,
                role=parsed,
                person_external_id=person,
                label=label,
                scopes=parse_scopes(scope) if scope else None,
                lifetime=None if no_expiry else timedelta(days=days),
            )
            info = find_token(session, token)
            assert info is not None
            audit.record(
                session,
                actor=f"cli:{getpass.getuser()}",
                actor_role="cli",
                action="token.create",
                target=f"token:{info.id}",
                after={
                    "prefix": info.prefix,
                    "role": info.role,
                    "person": info.person,
                    "scopes": info.scopes,
                    "expires_at": info.expires_at.isoformat() if info.expires_at else None,
                },
            )
    except TokenError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    expiry = info.expires_at.date().isoformat() if info.expires_at else "never"
    scopes = f", scopes {' '.join(info.scopes)}" if info.scopes is not None else ""
    err.print(f"token {info.id} ({info.role}{scopes}) expires {expiry}")
    # Printed bare on stdout so scripts can capture it: TOKEN=$(duly tokens create ...)
    print(token)


@tokens_app.command("list")
def tokens_list(
    show_all: Annotated[
        bool, typer.Option("--all", help="Also expired, revoked and terminated people's tokens")
    ] = False,
) -> None:
    """List tokens (id, first characters, role, person, scopes, expiry); never the secrets."""
    from rich.table import Table

    from store.db import Database
    from store.tokens import list_tokens

    settings = load_settings()
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            infos = list_tokens(session, include_inactive=show_all)
    finally:
        db.dispose()
    table = Table()
    for column in ("id", "prefix", "role", "person", "label", "scopes", "expires", "state"):
        table.add_column(column, overflow="fold")  # wrap, never cut: ids and scopes matter
    for info in infos:
        table.add_row(
            str(info.id),
            info.prefix,
            info.role,
            info.person or "",
            info.label or "",
            " ".join(info.scopes) if info.scopes is not None else "(role)",
            info.expires_at.date().isoformat() if info.expires_at else "never",
            info.state,
        )
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (see `duly tokens list`)")],
) -> None:
    """Revoke a token at once; its next request answers 401."""
    from store import audit
    from store.db import Database
    from store.tokens import TokenError, revoke_token

    settings = load_settings()
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            info = revoke_token(session, token_id)
            audit.record(
                session,
                actor=f"cli:{getpass.getuser()}",
                actor_role="cli",
                action="token.revoke",
                target=f"token:{info.id}",
                after={"prefix": info.prefix, "role": info.role, "person": info.person},
            )
    except TokenError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    console.print(f"token {info.id} ({info.prefix}…, {info.role}) revoked")


if __name__ == "__main__":
    app()


# ---------------------------------------------------------------------------------------------
# duly rules: validate, lint, test, preview and deploy rules packs.
# ---------------------------------------------------------------------------------------------

rules_app = typer.Typer(
    help="Rules packs: validate, lint, test, preview and deploy what HR wrote.",
    no_args_is_help=True,
)
app.add_typer(rules_app, name="rules")

PackDir = Annotated[Path, typer.Argument(help="The pack directory (YAML files)")]


def _load_pack_or_exit(directory: Path) -> Any:
    """Load a pack; print every problem as file:line:column and exit 1 when it is invalid."""
    from rules.loader import PackInvalid, load_pack

    try:
        return load_pack(directory)
    except PackInvalid as invalid:
        count = len(invalid.issues)
        typer.echo(
            f"{directory}: the pack is invalid ({count} problem{'s' if count != 1 else ''})",
            err=True,
        )
        for issue in invalid.issues:
            # Plain text (no Rich markup, emoji codes or wrapping): file:line:column must reach
            # editors and CI exactly as written, one issue per line.
            typer.echo(str(issue), err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # noqa: BLE001 - a bad pack must never end in a traceback
        typer.echo(f"{directory}:1:1: the pack could not be read: {exc}", err=True)
        raise typer.Exit(1) from None


def _directory_people() -> list[Any] | None:
    """The current directory for lint/preview, or None when the database is not set up."""
    from sqlalchemy.exc import SQLAlchemyError

    from services.rules import directory
    from store.db import Database

    settings = load_settings()
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            people = directory(session=session)
            session.expunge_all()
            return people
    except SQLAlchemyError:
        return None
    finally:
        db.dispose()


@rules_app.command("validate")
def rules_validate(directory: PackDir) -> None:
    """Check a pack's syntax, types and references; exit 1 with file:line:column problems."""
    pack = _load_pack_or_exit(directory)
    console.print(
        f"[green]valid[/] {pack.info.name}: {len(pack.requirements)} requirements,"
        f" {len(pack.escalation_policies)} escalation policies, {len(pack.status_rules)} status"
        f" rules, {len(pack.tests)} tests, {len(pack.templates)} templates;"
        f" content hash {pack.content_hash[:12]}"
    )


@rules_app.command("lint")
def rules_lint(
    directory: PackDir,
    strict: Annotated[bool, typer.Option(help="Fail on warnings too")] = False,
    use_directory: Annotated[
        bool, typer.Option("--directory/--no-directory", help="Check audiences against people")
    ] = True,
) -> None:
    """Find unreachable or missing status rules, empty stages, unused policies and more."""
    from notifications.messages import lint_templates
    from rules.lint import Level, lint

    pack = _load_pack_or_exit(directory)
    people = _directory_people() if use_directory else None
    findings = lint(pack, people, templates=lint_templates)
    for finding in findings:
        style = "red" if finding.level is Level.ERROR else "yellow"
        console.print(
            str(finding), style=style, markup=False, emoji=False, highlight=False, soft_wrap=True
        )
    errors = sum(1 for f in findings if f.level is Level.ERROR)
    warnings = len(findings) - errors
    if people is None and use_directory:
        console.print("[dim]directory checks skipped: the database is not set up (duly migrate)[/]")
    console.print(f"{errors} errors, {warnings} warnings")
    if errors or (strict and warnings):
        raise typer.Exit(1)


@rules_app.command("test")
def rules_test(directory: PackDir) -> None:
    """Run the pack's own test cases through durable_rules; exit 1 on any failure."""
    from rich.markup import escape

    from rules.cases import run_tests

    pack = _load_pack_or_exit(directory)
    results = run_tests(pack)
    for case in results:
        if case.passed:
            console.print(f"[green]PASS[/] {escape(case.name)}", highlight=False)
        else:
            console.print(f"[red]FAIL[/] {escape(case.name)}", highlight=False)
            for line in case.diff():
                console.print(
                    f"    {line}",
                    style="red" if line[0] == "+" else None,
                    markup=False,
                    emoji=False,
                    soft_wrap=True,
                )
    failed = sum(1 for c in results if not c.passed)
    console.print(f"{len(results) - failed} passed, {failed} failed")
    if failed or not results:
        if not results:
            err.print("the pack has no tests: add cases under 'tests:'")
        raise typer.Exit(1)


@rules_app.command("preview")
def rules_preview(
    directory: PackDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    today: Annotated[str | None, typer.Option(help="Evaluate as of this date (YYYY-MM-DD)")] = None,
) -> None:
    """Whose status and which remaining stages would change if this pack were deployed."""
    import json
    from datetime import date

    from rich.table import Table

    from services.rules import preview
    from store.db import Database

    pack = _load_pack_or_exit(directory)
    try:
        day = date.fromisoformat(today) if today else None
    except ValueError:
        err.print(f"--today must be a date like 2026-11-23, not {today!r}")
        raise typer.Exit(2) from None
    settings = load_settings()
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            result = preview(session=session, pack=pack, today=day)
    finally:
        db.dispose()
    if as_json:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
        return
    table = Table(
        title=f"{pack.info.name} {pack.content_hash[:12]} vs"
        f" {(result.active_hash or 'builtin')[:12]}: {result.obligations} open obligations,"
        f" {result.status_changes} status changes, {result.stage_changes} stage changes"
    )
    table.add_column("workflow", overflow="fold")
    for column in ("status now", "status after", "stages now", "stages after"):
        table.add_column(column)
    for row in result.rows:
        table.add_row(
            row.workflow_id,
            f"{row.status_before} ({row.rule_before or '-'})",
            f"{row.status_after} ({row.rule_after or '-'})",
            " ".join(row.stages_before) or "-",
            " ".join(row.stages_after) or "-",
        )
    console.print(table)
    for transition, count in sorted(result.transitions.items()):
        console.print(f"  {transition}: {count}")
    for requirement, count in sorted(result.new_requirements.items()):
        console.print(f"  {requirement}: {count} people owe it and have no obligation yet")
    for requirement, count in result.would_assign.items():
        console.print(f"  directory: would assign {requirement} to {count} people")
    for requirement, count in result.would_close.items():
        console.print(
            f"  directory: would close {count} open {requirement} (not_applicable: no longer"
            " applies)"
        )
    for requirement, count in result.would_keep.items():
        console.print(
            f"  directory: would keep {count} open {requirement} (on_no_longer_applicable: keep)"
        )


@rules_app.command("deploy")
def rules_deploy(
    directory: PackDir,
    message: Annotated[str, typer.Option("--message", "-m", help="Why this change")],
    migration: Annotated[
        str, typer.Option(help="grandfather | rebase | apply_now (see README)")
    ] = "grandfather",
    author: Annotated[str | None, typer.Option(help="Who deploys (default: your login)")] = None,
) -> None:
    """Validate, lint and test a pack, store it with its hash, make it active, roll it out."""
    from services.rules import audience_changes, deploy, deploy_blockers, start_rollout
    from store.db import Database
    from store.packs import Migration

    try:
        mode = Migration(migration)
    except ValueError:
        err.print(f"--migration must be grandfather, rebase or apply_now, not {migration!r}")
        raise typer.Exit(2) from None
    pack = _load_pack_or_exit(directory)
    blockers = deploy_blockers(pack=pack, people=_directory_people())
    if blockers:
        err.print("[bold red]refusing to deploy:[/]")
        for problem in blockers:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(1)
    settings = load_settings()
    who = author or getpass.getuser()
    client = None
    if mode is not Migration.GRANDFATHER:
        from duly.temporal import connect

        try:
            client = asyncio.run(connect(settings))
        except Exception as exc:  # noqa: BLE001 - reported, nothing deployed
            err.print(f"[red]cannot reach Temporal to roll out ({exc}); nothing was deployed[/]")
            raise typer.Exit(1) from None
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            audiences = audience_changes(session=session, pack=pack)
            version = deploy(
                session=session, pack=pack, author=who, message=message, migration=mode
            )
            content_hash = version.content_hash
    finally:
        db.dispose()
    console.print(
        f"[green]deployed[/] {pack.info.name} {content_hash[:12]} ({mode.value}) by {who}"
    )
    if client is not None:
        workflow_id = asyncio.run(
            start_rollout(
                client=client,
                task_queue=settings.temporal_task_queue,
                pack_hash=content_hash,
                mode=mode.value,
                deployed_by=who,
            )
        )
        console.print(f"roll-out to running workflows started: {workflow_id}")
    if audiences and settings.directory_automation:
        _reconcile_after_deploy(settings, content_hash, who, audiences)


def _reconcile_after_deploy(
    settings: Any, content_hash: str, who: str, audiences: list[str]
) -> None:
    """Assign and close per the new audiences (best effort: the nightly run catches up)."""
    from duly.temporal import connect
    from services.rules import start_directory_reconcile

    async def start() -> str:
        client = await connect(settings)
        return await start_directory_reconcile(
            client=client,
            task_queue=settings.temporal_task_queue,
            pack_hash=content_hash,
            deployed_by=who,
        )

    console.print(f"who owes it changed for: {', '.join(audiences)}")
    try:
        workflow_id = asyncio.run(start())
    except Exception as exc:  # noqa: BLE001 - deployed; say what happens next
        err.print(
            f"[yellow]cannot reach Temporal ({type(exc).__name__}); the nightly reconciliation"
            " assigns and closes per this pack[/]"
        )
        return
    console.print(f"directory reconciliation started: {workflow_id}")


@rules_app.command("versions")
def rules_versions() -> None:
    """List deployed pack versions, newest first."""
    from rich.table import Table

    from services.rules import list_versions
    from store.db import Database

    settings = load_settings()
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            rows = list_versions(session=session)
    finally:
        db.dispose()
    table = Table(title=f"{len(rows)} deployed versions")
    table.add_column("hash", no_wrap=True, min_width=12)
    for column in ("name", "deployed", "by", "migration", "message", "active"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["content_hash"])[:12],
            str(row["name"]),
            str(row["deployed_at"])[:19],
            str(row["author"]),
            str(row["migration"]),
            str(row["message"] or ""),
            "*" if row["active"] else "",
        )
    console.print(table)


@rules_app.command("sweep")
def rules_sweep() -> None:
    """Re-decide every open obligation's status now (the worker also schedules this daily)."""
    from datetime import UTC, datetime

    from duly.temporal import connect
    from workflows.sweep import SWEEP_WORKFLOW_ID, StatusSweepWorkflow

    settings = load_settings()

    async def sweep() -> Any:
        client = await connect(settings)
        return await client.execute_workflow(
            StatusSweepWorkflow.run,
            id=f"{SWEEP_WORKFLOW_ID}/manual/{datetime.now(UTC):%Y%m%dT%H%M%S}",
            task_queue=settings.temporal_task_queue,
        )

    result = asyncio.run(sweep())
    console.print(
        f"{result.evaluated} obligations re-decided, {result.changed} changed status,"
        f" {result.skipped} skipped, {result.conflicts} changed by their workflow meanwhile"
        f" (left as written), {result.replanned} re-planned for a new time zone"
    )
    for transition, count in sorted(result.transitions.items()):
        console.print(f"  {transition}: {count}")


@app.command()
def assign(
    requirement: Annotated[str, typer.Option(help="The requirement id in the active pack")],
    role: Annotated[
        list[str] | None, typer.Option(help="People with this role (repeatable)")
    ] = None,
    department: Annotated[list[str] | None, typer.Option(help="In this department")] = None,
    location: Annotated[list[str] | None, typer.Option(help="At this location")] = None,
    team: Annotated[
        str | None, typer.Option(help="Everyone under this manager (external id)")
    ] = None,
    person: Annotated[list[str] | None, typer.Option(help="Explicit people (repeatable)")] = None,
    due: Annotated[
        str | None, typer.Option(help="Due date YYYY-MM-DD (default: the pack's)")
    ] = None,
) -> None:
    """Assign a requirement to many people at once, with a progress bar (a BulkAssignWorkflow)."""
    import uuid
    from datetime import date

    from rich.progress import BarColumn, Progress, TextColumn

    from domain.bounds import OutOfRange
    from duly.temporal import connect
    from services.bulk import query_progress, start_bulk
    from workflows.bulk import BulkAssignRequest, BulkSelector

    settings = load_settings()
    try:
        due_date = date.fromisoformat(due) if due else None
    except ValueError:
        err.print(f"--due must be a date like 2027-01-15, not {due!r}")
        raise typer.Exit(2) from None
    if due_date is not None:
        try:
            settings.due_date_window().check("--due", due_date)
        except OutOfRange as problem:
            err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    request = BulkAssignRequest(
        bulk_id=f"cli-{uuid.uuid4().hex[:12]}",
        requirement_id=requirement,
        due_date=due_date,
        selector=BulkSelector(
            roles=role or None,
            departments=department or None,
            locations=location or None,
            manager=team,
            people=person or None,
        ),
        assigned_by=f"cli:{getpass.getuser()}",
    )

    async def run() -> Any:
        client = await connect(settings)
        await start_bulk(client, task_queue=settings.temporal_task_queue, request=request)
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}")
        ) as bar:
            task = bar.add_task(requirement, total=None, counts="resolving people…")
            while True:
                progress = await query_progress(client, bulk_id=request.bulk_id)
                bar.update(
                    task,
                    total=progress.total or None,
                    completed=progress.started + progress.skipped + progress.failed,
                    counts=f"{progress.started} started, {progress.skipped} already had it,"
                    f" {progress.failed} failed of {progress.total}",
                )
                if progress.done:
                    return progress
                await asyncio.sleep(0.5)

    result = asyncio.run(run())
    for error in result.errors:
        err.print(f"  {error}", markup=False)
    if result.failed:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------
# duly assignments / duly certifications: replace a failed, stuck or closed run.
# ---------------------------------------------------------------------------------------------

assignments_app = typer.Typer(help="Training assignments.", no_args_is_help=True)
certifications_app = typer.Typer(help="Held certifications.", no_args_is_help=True)
app.add_typer(assignments_app, name="assignments")
app.add_typer(certifications_app, name="certifications")

Reason = Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the audit log)")]


def _date_option(name: str, value: str | None) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        err.print(f"{name} must be a date like 2027-01-15, not {value!r}", markup=False)
        raise typer.Exit(2) from None


def _in_window(settings: Settings, name: str, value: Any, *, past: bool = False) -> None:
    """Exit 2 naming the option, the value and the allowed range when ``value`` is outside it."""
    from domain.bounds import OutOfRange

    if value is None:
        return
    window = settings.past_date_window() if past else settings.due_date_window()
    try:
        window.check(name, value)
    except OutOfRange as problem:
        err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _run_restart(restart: Any, **kwargs: Any) -> Any:
    """Run a restart service function with a database session and a Temporal client.

    Exit codes: 0 restarted, 1 refused or not found, 2 a value out of range or missing.
    """
    from domain.bounds import OutOfRange
    from duly.temporal import connect
    from services.restarts import InvalidField, RestartRefused, UnknownObligation
    from store.db import Database

    settings = load_settings()
    db = Database.from_settings(settings)

    async def run() -> Any:
        client = await connect(settings)
        with db.session() as session:
            return await restart(
                session,
                client,
                settings=settings,
                actor=f"cli:{getpass.getuser()}",
                actor_role="cli",
                **kwargs,
            )

    try:
        return asyncio.run(run())
    except (OutOfRange, InvalidField) as problem:
        err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except (UnknownObligation, RestartRefused) as problem:
        err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()


def _report_restart(done: Any) -> None:
    previous = done.previous
    ended = "terminated" if done.terminated else f"was already {previous.status}"
    stuck = (
        f" (its workflow task had failed {previous.workflow_task_attempts} times)"
        if previous.workflow_task_attempts > 1
        else ""
    )
    console.print(
        f"restarted {done.workflow_id}: run {previous.run_id} {ended}{stuck};"
        f" fresh run {done.run_id}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@assignments_app.command("restart")
def assignments_restart(
    assignment_id: Annotated[str, typer.Argument(help="assignment/{person}/{requirement}/{cycle}")],
    reason: Reason,
    due: Annotated[
        str | None, typer.Option(help="Corrected due date YYYY-MM-DD (default: the old run's)")
    ] = None,
    title: Annotated[str | None, typer.Option(help="The training's title")] = None,
) -> None:
    """Replace a failed, stuck or closed assignment with a fresh run under the same id (audited)."""
    from services.restarts import restart_assignment

    due_date = _date_option("--due", due)
    _in_window(load_settings(), "--due", due_date)
    done = _run_restart(
        restart_assignment,
        workflow_id=assignment_id,
        reason=reason,
        due_date=due_date,
        title=title,
    )
    _report_restart(done)
    console.print(f"due {done.input.due_date.isoformat()}, pack {done.input.pack_hash[:12]}")


@certifications_app.command("restart")
def certifications_restart(
    certification_id: Annotated[str, typer.Argument(help="certification/{person}/{certification}")],
    reason: Reason,
    issued_on: Annotated[str | None, typer.Option(help="Corrected issue date YYYY-MM-DD")] = None,
    expires_on: Annotated[str | None, typer.Option(help="Corrected expiry date YYYY-MM-DD")] = None,
    certificate_number: Annotated[str | None, typer.Option(help="Certificate number")] = None,
) -> None:
    """Replace a failed, stuck or closed certification run with a fresh one (audited)."""
    from services.restarts import restart_certification

    settings = load_settings()
    issued = _date_option("--issued-on", issued_on)
    expires = _date_option("--expires-on", expires_on)
    _in_window(settings, "--issued-on", issued, past=True)
    _in_window(settings, "--expires-on", expires)
    done = _run_restart(
        restart_certification,
        workflow_id=certification_id,
        reason=reason,
        issued_on=issued,
        expires_on=expires,
        certificate_number=certificate_number,
    )
    _report_restart(done)
    cert = done.input.certificate
    console.print(
        f"cycle {cert.cycle}: issued {cert.issued_on.isoformat()},"
        f" expires {cert.expires_on.isoformat()}; {len(done.input.ce_credits)} CE credit entries"
        f" carried, {len(done.dropped_credits)} dropped"
    )


# ---------------------------------------------------------------------------------------------
# duly apprenticeship: enrol, read progress, import a training provider's hours CSV.
# ---------------------------------------------------------------------------------------------

apprenticeship_app = typer.Typer(help="Registered apprenticeships.", no_args_is_help=True)
app.add_typer(apprenticeship_app, name="apprenticeship")

#: The columns of a training provider's hours CSV (``skills``: separated by ``;``).
HOURS_COLUMNS = ("person", "program", "entry_id", "day", "kind", "hours", "description", "skills")


def _cli_principal() -> Any:
    from domain import Role
    from store.tokens import Principal

    return Principal(
        token_id=0,
        role=Role.HR_ADMIN,
        person_id=None,
        person_external_id=None,
        label=f"cli:{getpass.getuser()}",
    )


def _run_service(call: Any) -> Any:
    """Run ``call(session, client)`` with a session and a Temporal client.

    Exit codes: 1 refused, not found or unavailable; 2 invalid input.
    """
    from duly.temporal import connect
    from services.errors import Invalid, ServiceError
    from store.db import Database

    settings = load_settings()
    db = Database(settings.resolved_database_url)

    async def run() -> Any:
        client = await connect(settings)
        with db.session() as session:
            return await call(session, client, settings)

    try:
        return asyncio.run(run())
    except Invalid as problem:
        err.print(problem.detail, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except ServiceError as problem:
        err.print(problem.detail, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()


@apprenticeship_app.command("enroll")
def apprenticeship_enroll(
    person: Annotated[str, typer.Argument(help="The apprentice's external id")],
    program: Annotated[
        str, typer.Argument(help="The program id (see GET /apprenticeship/programs)")
    ],
    supervisor: Annotated[str, typer.Option(help="The supervising journeyworker's external id")],
    enrolled_on: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: today)")] = None,
) -> None:
    """Enrol a person in a program of the active rules pack (starts its workflow; audited)."""
    from services import apprenticeships

    day = _date_option("--enrolled-on", enrolled_on)

    async def call(session: Any, client: Any, settings: Settings) -> Any:
        return await apprenticeships.enroll(
            session,
            client,
            task_queue=settings.temporal_task_queue,
            person=person,
            program_id=program,
            supervisor=supervisor,
            enrolled_on=day,
            principal=_cli_principal(),
        )

    inp = _run_service(call)
    console.print(f"enrolled {inp.workflow_id} from {inp.enrolled_on.isoformat()}", markup=False)


@apprenticeship_app.command("status")
def apprenticeship_status(
    person: Annotated[str, typer.Argument(help="The apprentice's external id")],
    program: Annotated[str, typer.Argument(help="The program id")],
) -> None:
    """An apprenticeship's live progress: period, wage, hours, skills, what graduation needs."""
    from services import apprenticeships

    async def call(session: Any, client: Any, settings: Settings) -> Any:
        return await apprenticeships.state(
            client, workflow_id=apprenticeships.workflow_id_of(person, program)
        )

    state = _run_service(call)
    lines = [
        f"{state.workflow_id}: {state.status.value}, {state.compliance_status}"
        f" ({state.decided_by}), supervisor {state.supervisor}",
        f"period {state.period} at {state.wage_percentage:g}% of the journeyworker wage;"
        f" expected completion {state.expected_completion.isoformat()}",
        f"work {state.work_approved:g} approved + {state.work_pending:g} pending"
        f" (expected by today {state.work_expected:g}); classroom {state.classroom_approved:g}"
        f" + {state.classroom_pending:g} (expected {state.classroom_expected:g})",
        f"skills signed off {len(state.skills_signed_off)},"
        f" pending {len(state.skills_pending)}; evaluations {state.evaluations_done},"
        f" next due {state.evaluation_due_on}" + (" (OVERDUE)" if state.evaluation_overdue else ""),
        *(f"  to graduate: {u}" for u in state.unmet),
    ]
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@apprenticeship_app.command("import-hours")
def apprenticeship_import_hours(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Log a training provider's hours CSV (each row pending until the supervisor approves).

    Columns: person, program, entry_id, day, kind, hours, description, skills (``;``-separated).
    Rows are idempotent by entry id; refused rows say why and the others still count. Exit 1
    when any row was refused.
    """
    import csv

    from pydantic import ValidationError

    from rules.apprenticeship import HoursEntry
    from services import apprenticeships
    from services.errors import ServiceError

    with file.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    missing = [c for c in HOURS_COLUMNS[:6] if rows and c not in rows[0]]
    if missing:
        err.print(f"{file}: missing columns {', '.join(missing)}", markup=False)
        raise typer.Exit(2)

    async def call(session: Any, client: Any, settings: Settings) -> list[str]:
        problems: list[str] = []
        for number, row in enumerate(rows, start=2):
            try:
                entry = HoursEntry(
                    id=row["entry_id"],
                    day=row["day"],
                    kind=row["kind"],
                    hours=float(row["hours"]),
                    description=row.get("description") or "",
                    skills=[s for s in (row.get("skills") or "").split(";") if s.strip()],
                )
                await apprenticeships.log_hours(
                    session,
                    client,
                    workflow_id=apprenticeships.workflow_id_of(row["person"], row["program"]),
                    entry=entry,
                    principal=_cli_principal(),
                    source="csv",
                )
            except (ValueError, ValidationError) as error:
                problems.append(f"{file}:{number}: {error}")
            except ServiceError as error:
                problems.append(f"{file}:{number}: {error.detail}")
        return problems

    problems = _run_service(call)
    console.print(f"{len(rows) - len(problems)} of {len(rows)} rows logged", markup=False)
    for problem in problems:
        err.print(problem, markup=False, highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------
# duly tracks: enrol people in tracks (or every learning path by role) and read progress.
# ---------------------------------------------------------------------------------------------

tracks_app = typer.Typer(help="Tracks and learning paths (the pack's tracks section).")
app.add_typer(tracks_app, name="tracks", no_args_is_help=True)


@tracks_app.command("enroll")
def tracks_enroll(
    track: Annotated[str | None, typer.Argument(help="The track id (GET /tracks).")] = None,
    person: Annotated[
        list[str] | None, typer.Option("--person", help="External id; repeat for several.")
    ] = None,
    auto: Annotated[
        bool,
        typer.Option("--auto", help="Enrol everyone in the learning paths that select them."),
    ] = False,
) -> None:
    """Enrol people in a track (its courses are assigned at their milestones), or --auto.

    Exit codes: 0 done, 1 refused (unknown track or person, inactive track), 2 bad usage.
    """
    from datetime import UTC, datetime

    from duly.temporal import connect
    from services import tracks
    from services.assignments import person as find_person
    from services.errors import ServiceError
    from store.db import Database

    if auto == bool(track or person):
        err.print("give either a TRACK with --person, or --auto")
        raise typer.Exit(2)
    settings = load_settings()
    db = Database(settings.resolved_database_url)
    principal = _cli_principal()

    async def run() -> list[str]:
        client = await connect(settings)
        now = datetime.now(UTC)
        lines: list[str] = []
        with db.session() as session:
            if auto:
                done = await tracks.auto_enrol(
                    session,
                    client,
                    task_queue=settings.temporal_task_queue,
                    principal=principal,
                    now=now,
                )
                for result in done:
                    e = result.enrolment
                    lines.append(f"{e.person.external_id}: {e.track_id} ({len(result.started)})")
                lines.append(f"{len(done)} new enrolment(s)")
                return lines
            assert track is not None
            for external_id in person or []:
                result = await tracks.enrol(
                    session,
                    client,
                    task_queue=settings.temporal_task_queue,
                    track_id=track,
                    person=find_person(session, external_id=external_id),
                    principal=principal,
                    source="hr",
                    now=now,
                )
                state = "enrolled" if result.created else "already enrolled"
                lines.append(f"{external_id}: {state}, {len(result.started)} course(s) assigned")
        return lines

    try:
        for line in asyncio.run(run()):
            console.print(line, markup=False)
    except ServiceError as problem:
        err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()


def _track_edit(change: Callable[[Any, Any], tuple[Any, bool]]) -> None:
    """Run a track edit (a new pack version) and print the track's order and state."""
    from services.errors import ServiceError
    from store.db import Database

    settings = load_settings()
    db = Database(settings.resolved_database_url)
    try:
        with db.session() as session:
            track, deployed = change(session, _cli_principal())
        courses = ", ".join(f"{c.order}. {c.requirement}" for c in track.ordered_courses)
        state = "active" if track.active else "inactive"
        done = "new pack version deployed" if deployed else "no change"
        console.print(f"{track.id} ({state}): {courses} [{done}]", markup=False, soft_wrap=True)
    except ServiceError as problem:
        err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()


@tracks_app.command("reorder")
def tracks_reorder(
    track: Annotated[str, typer.Argument(help="The track id.")],
    courses: Annotated[
        list[str], typer.Argument(help="Every course's requirement id, in the new order.")
    ],
) -> None:
    """Put a track's courses in a new order (deploys a new pack version; progress is kept).

    Exit codes: 0 done, 1 refused (unknown track, not exactly its courses, a milestone out of
    order), 2 bad usage.
    """
    from services import tracks

    _track_edit(
        lambda session, principal: tracks.reorder(
            session, track_id=track, courses=courses, principal=principal
        )
    )


@tracks_app.command("deactivate")
def tracks_deactivate(
    track: Annotated[str, typer.Argument(help="The track id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (audited).")],
) -> None:
    """Deactivate a track (soft): nobody new is enrolled; people mid-track can finish."""
    from services import tracks

    _track_edit(
        lambda session, principal: tracks.set_track_active(
            session, track_id=track, active=False, reason=reason, principal=principal
        )
    )


@tracks_app.command("activate")
def tracks_activate(
    track: Annotated[str, typer.Argument(help="The track id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (audited).")],
) -> None:
    """Reactivate a deactivated track: enrolment reopens."""
    from services import tracks

    _track_edit(
        lambda session, principal: tracks.set_track_active(
            session, track_id=track, active=True, reason=reason, principal=principal
        )
    )


@tracks_app.command("progress")
def tracks_progress(
    track: Annotated[str, typer.Argument(help="The track id.")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="As recorded at the end of this day (UTC).")
    ] = None,
) -> None:
    """Everyone enrolled in a track: status, percent and each course's status."""
    from datetime import UTC, date, datetime, time

    from services import tracks
    from services.errors import ServiceError
    from store.db import Database

    settings = load_settings()
    instant = datetime.now(UTC)
    if as_of is not None:
        try:
            instant = min(instant, datetime.combine(date.fromisoformat(as_of), time.max, UTC))
        except ValueError:
            err.print(f"--as-of must be a date like 2027-01-15, not {as_of!r}")
            raise typer.Exit(2) from None
    db = Database(settings.resolved_database_url)
    try:
        with db.session() as session:
            rows = tracks.track_progress(session, track_id=track, as_of=instant, visible=None)
            for person, _, progress in rows:
                courses = ", ".join(
                    f"{c.requirement_id} {c.status.value}" for c in progress.courses
                )
                console.print(
                    f"{person.external_id} {progress.status.value} {progress.percent}%: {courses}",
                    markup=False,
                )
            if not rows:
                console.print("nobody is enrolled", markup=False)
    except ServiceError as problem:
        err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()


audit_app = typer.Typer(help="The audit log and evidence packs.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("export")
def audit_export(
    since: Annotated[str, typer.Option(help="First day, YYYY-MM-DD (UTC, included)")],
    until: Annotated[str, typer.Option(help="Last day, YYYY-MM-DD (UTC, included)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the ZIP")],
    person: Annotated[str | None, typer.Option(help="A person's external id")] = None,
    team: Annotated[str | None, typer.Option(help="A manager's external id: their reports")] = None,
    requirement: Annotated[str | None, typer.Option(help="A requirement id")] = None,
    no_histories: Annotated[
        bool, typer.Option("--no-histories", help="Do not contact Temporal for raw histories")
    ] = False,
) -> None:
    """Write an evidence pack (ZIP with a SHA-256 manifest) for a person, team or requirement."""
    from datetime import UTC, date, datetime

    from services import evidence
    from services.errors import ServiceError
    from store import audit
    from store.db import Database

    settings = load_settings()
    try:
        first, last = date.fromisoformat(since), date.fromisoformat(until)
    except ValueError as exc:
        err.print(f"[bold red]bad date:[/] {exc}")
        raise typer.Exit(2) from exc
    db = Database(settings.resolved_database_url)
    try:
        with db.session() as session:
            gathered = evidence.gather(
                session,
                since=first,
                until=last,
                person=person,
                team=team,
                requirement=requirement,
            )
            audit.record(
                session,
                actor=f"cli:{getpass.getuser()}",
                actor_role="cli",
                action="evidence.export",
                target="evidence",
                after={**gathered.selection, "since": since, "until": until},
            )
    except ServiceError as exc:
        err.print(f"[bold red]{exc.detail}[/]")
        raise typer.Exit(1) from exc
    finally:
        db.dispose()

    async def build() -> bytes:
        fetch: evidence.HistoryFetcher | None = None
        if not no_histories:
            from duly.temporal import connect

            try:
                fetch = evidence.history_fetcher(await connect(settings))
            except Exception as exc:  # noqa: BLE001 - the pack says histories are missing
                err.print(f"[yellow]Temporal unreachable ({type(exc).__name__}): no histories[/]")
        return await evidence.evidence_pack(
            gathered, fetch=fetch, generated_at=datetime.now(UTC), limit=len(gathered.workflow_ids)
        )

    data = asyncio.run(build())
    out.write_bytes(data)
    console.print(
        f"[green]wrote {out}[/] ({len(data):,} bytes, {len(gathered.workflow_ids)} workflows,"
        f" {len(gathered.files)} files before histories)"
    )


# ---------------------------------------------------------------------------------------------
# duly integrations: learning-system connectors (Moodle, xAPI LRS pull, CSV drop).
# ---------------------------------------------------------------------------------------------

integrations_app = typer.Typer(
    help="Learning-system connectors: Moodle, xAPI LRS pull, CSV drop.", no_args_is_help=True
)
app.add_typer(integrations_app, name="integrations")


async def _ensure_schedule(settings: Any, row: Any) -> str:
    from duly.temporal import connect
    from services.integrations import ensure_schedule

    try:
        client = await connect(settings)
        return await ensure_schedule(client, row, settings)
    except Exception as exc:  # noqa: BLE001 - the row is kept; the worker ensures it at start
        return f"pending (Temporal unreachable: {type(exc).__name__}); the worker creates it"


@integrations_app.command("add")
def integrations_add(
    name: Annotated[str, typer.Argument(help="A name to recognise it by")],
    kind: Annotated[str, typer.Option(help="moodle, xapi_lrs or csv_drop")],
    config: Annotated[
        str,
        typer.Option(
            help='JSON, e.g. \'{"base_url": "https://moodle.example.org"}\','
            ' \'{"endpoint": "https://lrs.example.org/xapi/"}\', \'{"folder": "provider"}\''
        ),
    ] = "{}",
    secret_ref: Annotated[
        str | None, typer.Option(help="env:NAME or file:/path holding the token (never stored)")
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it paused")] = False,
) -> None:
    """Add an integration and create its sync schedule."""
    import json

    from services.integrations import IntegrationInvalid, create_integration
    from store.db import Database

    try:
        parsed = json.loads(config)
    except ValueError as exc:
        err.print(f"[red]--config is not JSON: {exc}[/]")
        raise typer.Exit(2) from exc
    if not isinstance(parsed, dict):
        err.print("[red]--config must be a JSON object[/]")
        raise typer.Exit(2)
    settings = load_settings()
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            row = create_integration(
                session,
                name=name,
                kind=kind,
                config=parsed,
                secret_ref=secret_ref,
                enabled=not disabled,
                actor=f"cli:{getpass.getuser()}",
                actor_role="cli",
            )
    except IntegrationInvalid as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    schedule = asyncio.run(_ensure_schedule(settings, row))
    console.print(f"integration {row.id} ({row.kind}) added")
    console.print(f"schedule {row.schedule_id}: {schedule}")


@integrations_app.command("list")
def integrations_list() -> None:
    """List integrations with their last sync, status and error count (never secrets)."""
    from rich.table import Table

    from services.integrations import list_integrations
    from store.db import Database

    settings = load_settings()
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            rows = list_integrations(session)
    finally:
        db.dispose()
    table = Table()
    for column in ("id", "name", "kind", "enabled", "last sync", "status", "errors", "last error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            str(row.id),
            row.name,
            row.kind,
            "yes" if row.enabled else "no",
            row.last_sync_at.isoformat(timespec="seconds") if row.last_sync_at else "never",
            row.last_status or "",
            str(row.error_count),
            row.last_error or "",
        )
    console.print(table)


@integrations_app.command("test")
def integrations_test(
    integration_id: Annotated[int, typer.Argument(help="The integration's id")],
) -> None:
    """Reach the source with the integration's credentials (exit 1 when it fails)."""
    from services.integrations import UnknownIntegration, check_connection
    from store.db import Database

    settings = load_settings()
    db = Database.from_settings(settings)
    session = db.sessionmaker()
    try:
        ok, detail = asyncio.run(
            check_connection(session, integration_id=integration_id, settings=settings)
        )
    except UnknownIntegration as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    finally:
        session.close()
        db.dispose()
    if not ok:
        err.print(f"[red]failed: {detail}[/]")
        raise typer.Exit(1)
    console.print(f"ok: {detail}")


@integrations_app.command("sync")
def integrations_sync(
    integration_id: Annotated[int, typer.Argument(help="The integration's id")],
    here: Annotated[
        bool, typer.Option("--here", help="Sync in this process and wait (not through a worker)")
    ] = False,
) -> None:
    """Sync now: start the sync workflow (default) or run it here and print what it did."""
    from domain.contracts.integration import SyncRequest
    from duly.temporal import connect
    from services.integrations import run_sync
    from store.db import Database

    settings = load_settings()
    if not here:
        workflow_id = asyncio.run(_start_sync(settings, integration_id))
        console.print(f"sync started: {workflow_id}")
        return
    db = Database.from_settings(settings)

    async def _run() -> Any:
        async def _client() -> Any:
            # Only when a completion is matched: a sync of dead letters needs no Temporal.
            return await connect(settings)

        return await run_sync(
            db, _client, settings, SyncRequest(integration_id=integration_id, trigger="cli")
        )

    try:
        result = asyncio.run(_run())
    finally:
        db.dispose()
    console.print(result.model_dump_json(indent=2))
    if not result.ok:
        raise typer.Exit(1)


async def _start_sync(settings: Any, integration_id: int) -> str:
    from duly.temporal import connect
    from services.integrations import sync_now

    client = await connect(settings)
    return await sync_now(client, integration_id=integration_id, settings=settings, trigger="cli")
