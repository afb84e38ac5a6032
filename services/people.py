"""The people directory: import (and re-plan who moved zone), list, read, preferences."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import date

from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session
from temporalio.client import Client

from domain.roles import Role
from services import directory
from services.errors import Forbidden, NotFound
from store import audit
from store.models import NotificationPreference, Person
from store.people import ImportReport, PersonRow, RowError
from store.tokens import Principal


def person(session: Session, *, external_id: str) -> Person:
    """One person by external id (the caller checks they may see them).

    Raises:
        NotFound: Unknown.
    """
    found = session.scalar(select(Person).where(Person.external_id == external_id))
    if found is None:
        raise NotFound()
    return found


def list_people(
    session: Session,
    *,
    scope: Collection[int] | None,
    department: str | None = None,
    role: str | None = None,
    manager: str | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[Person]:
    """People ordered by external id, within ``scope`` (None: everyone).

    ``manager`` limits to that person's direct reports (none when the manager is unknown).
    """
    query = select(Person).order_by(Person.external_id)
    if scope is not None:
        query = query.where(Person.id.in_(scope))
    if department is not None:
        query = query.where(Person.department == department)
    if role is not None:
        # Roles are a JSON list of id-safe strings; matching the quoted element in the JSON
        # text is exact and works the same on SQLite and PostgreSQL.
        needle = role.strip().lower().replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
        query = query.where(cast(Person.roles, String).like(f'%"{needle}"%', escape="\\"))
    if manager is not None:
        boss = session.scalar(select(Person.id).where(Person.external_id == manager))
        if boss is None:
            return []
        query = query.where(Person.manager_id == boss)
    return list(session.scalars(query.limit(limit).offset(offset)).unique())


def import_directory(
    session: Session,
    *,
    rows: list[PersonRow],
    errors: list[RowError],
    kind: str,
    principal: Principal,
) -> directory.ImportOutcome:
    """Upsert the parsed rows, audit the import and commit (the report describes saved people).

    Goes through :func:`services.directory.import_directory`, the service SCIM uses too; the
    outcome's change records go to :func:`after_import`.
    """
    return directory.import_directory(
        session, rows=rows, errors=errors, kind=kind, principal=principal
    )


def preview_import(
    session: Session, *, rows: list[PersonRow], errors: list[RowError], today: date
) -> ImportReport:
    """The dry run: what the import would report, plus what each change would do.

    ``dry_run`` lists, per changed person, what would be assigned and closed. Nothing is
    saved or started.
    """
    report, plans = directory.preview_rows(session, rows=rows, errors=errors, today=today)
    return report.model_copy(update={"dry_run": plans})


async def after_import(
    session: Session,
    *,
    temporal: Callable[[], Awaitable[Client]],
    outcome: directory.ImportOutcome,
    task_queue: str,
    automation: bool = True,
) -> ImportReport:
    """Re-plan people who moved zone and start the change workflows of a committed import.

    When Temporal cannot be reached the report says so: the nightly sweep re-plans, the
    nightly reconciliation assigns and closes.
    """
    report = await replan_moved(session, temporal=temporal, report=outcome.report)
    started = await directory.automate(
        outcome.changes, temporal=temporal, task_queue=task_queue, enabled=automation
    )
    return report.model_copy(update={"automated": started.started, "automation_note": started.note})


async def replan_moved(
    session: Session,
    *,
    temporal: Callable[[], Awaitable[Client]],
    report: ImportReport,
) -> ImportReport:
    """Signal ``replan`` to open obligations planned in a zone their person has left.

    The import is committed already: when Temporal cannot be reached the report says so, and
    the nightly sweep signals them (the read model still shows the old zone until then).
    """
    outcome = await directory.replan_moved(session, temporal=temporal, actor="people import")
    if outcome.note is not None:
        return report.model_copy(update={"replan_note": outcome.note})
    return report.model_copy(update={"replanned": outcome.signalled})


def own_or_hr(principal: Principal, person: Person) -> None:
    """Preferences are the person's own business, and HR's.

    Raises:
        Forbidden: Anyone else.
    """
    if principal.role is not Role.HR_ADMIN and principal.person_id != person.id:
        raise Forbidden("only the person themself or hr_admin may read or change these preferences")


def preferences(session: Session, *, person: Person) -> NotificationPreference | None:
    """The person's notification preferences, None when never set (defaults apply)."""
    return session.get(NotificationPreference, person.id)


def set_preferences(
    session: Session,
    *,
    person: Person,
    principal: Principal,
    channels: list[str] | None,
    sms_opt_out: bool,
    quiet_start: str | None,
    quiet_end: str | None,
) -> None:
    """Replace the person's notification preferences; audited with the previous ones."""
    row = session.get(NotificationPreference, person.id)
    before = None
    if row is None:
        row = NotificationPreference(person_id=person.id)
        session.add(row)
    else:
        before = {
            "channels": row.channels,
            "sms_opt_out": row.sms_opt_out,
            "quiet_start": row.quiet_start,
            "quiet_end": row.quiet_end,
        }
    row.channels = list(channels) if channels is not None else None
    row.sms_opt_out = sms_opt_out
    row.quiet_start, row.quiet_end = quiet_start, quiet_end
    audit.record(
        session,
        actor=principal.actor,
        actor_role=principal.role.value,
        action="person.preferences",
        target=f"person/{person.external_id}",
        before=before,
        after={
            "channels": channels,
            "sms_opt_out": sms_opt_out,
            "quiet_start": quiet_start,
            "quiet_end": quiet_end,
        },
    )
