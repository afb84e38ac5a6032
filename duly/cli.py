"""The ``duly`` command line: ``duly dev|worker|api|migrate|people|tokens``."""

from __future__ import annotations

import asyncio
import getpass
import logging
from pathlib import Path
from typing import Annotated

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
    """Plain, PII-free logging to stderr."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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
def api() -> None:
    """Run the HTTP API (stateless; run as many as you need behind a load balancer)."""
    import uvicorn

    from api.app import create_app

    settings = load_settings()
    setup_logging(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
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


@people_app.command("import")
def people_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Upsert people from a CSV or JSON file, keyed by external id.

    Exit codes: 0 everything landed, 1 some rows were rejected (the good ones are saved),
    2 the file cannot be imported at all.
    """
    from rich.table import Table
    from rich.text import Text

    from store import audit
    from store.db import Database
    from store.people import PeopleFileError, import_people, parse_csv, parse_json

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
    db = Database(settings.resolved_database_url)
    try:
        with db.session() as session:
            report = import_people(session, rows, errors)
            audit.record(
                session,
                actor=f"cli:{getpass.getuser()}",
                actor_role="cli",
                action="people.import",
                target="people",
                after={"file": file.name, **report.counts},
            )
    finally:
        db.dispose()

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
    db = Database(settings.resolved_database_url)
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
) -> None:
    """Create a bearer token and print it (it is stored hashed and cannot be shown again)."""
    from duly.domain import Role
    from store.db import Database
    from store.tokens import TokenError, create_token

    try:
        parsed = Role(role)
    except ValueError as exc:
        err.print(f"[red]unknown role {role!r}[/]; use one of: {', '.join(r.value for r in Role)}")
        raise typer.Exit(2) from exc
    settings = load_settings()
    db = Database(settings.resolved_database_url)
    try:
        with db.session() as session:
            token = create_token(session, role=parsed, person_external_id=person, label=label)
    except TokenError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    # Printed bare on stdout so scripts can capture it: TOKEN=$(duly tokens create ...)
    print(token)


if __name__ == "__main__":
    app()
