"""The one directory service: every way people enter or change (import, SCIM, API) goes here.

The CSV/JSON import and the SCIM endpoints both call these keyword-only functions, so both
validate a person the same way (:class:`store.people.PersonRow`), resolve managers and refuse
management cycles the same way (:func:`store.people.import_people`), re-plan open obligations
of people who changed time zone the same way (:func:`replan_moved`), and describe what changed
the same way (:class:`DirectoryChange`).

A :class:`DirectoryChange` is the seam for the joiner/mover/leaver automation: it names the
person, a fresh change id (the workflow's business key is person + change id), the kind of
change and the attributes before and after. After committing, every caller hands its changes
to :func:`automate`, which starts one ``DirectoryChangeWorkflow`` per change; when Temporal
cannot be reached the nightly reconciliation repairs what they would have done.
:func:`preview_rows` is the dry run: what each change would assign and close.

Nobody is ever deleted: deactivation sets ``employment_status`` to ``terminated``, which the
send path already honours (no reminders or escalations about people who left), and keeps every
obligation, record and audit entry.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, String, and_, cast, false, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.directory import manager_change, plan_for
from activities.packs import active_pack
from activities.rules import signal_replans
from domain.contracts.directory import (
    ATTRIBUTES,
    MOVER_ATTRIBUTES,
    ChangeKind,
    DirectoryChange,
    DirectoryChangeInput,
)
from domain.statuses import EmploymentStatus
from store import audit
from store.models import Person
from store.obligations import moved_zone_targets
from store.people import (
    ImportReport,
    PersonRow,
    RowError,
    import_people,
    parse_json,
)
from store.tokens import Principal
from workflows.directory import DirectoryChangeWorkflow, directory_change_workflow_id

log = logging.getLogger(__name__)

_IN_CHUNK = 500


class DirectoryError(Exception):
    """A directory request that cannot be honoured; the message says why and what to do."""


class PersonNotFound(DirectoryError):
    """Nobody has that external id."""


class PersonExists(DirectoryError):
    """Someone already has that external id (or, for :class:`UserNameTaken`, that userName)."""


class UserNameTaken(PersonExists):
    """Someone else already has that SCIM userName (ignoring case)."""


class InvalidPerson(DirectoryError):
    """The person's attributes are refused; :attr:`errors` name each field and the fix."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        """Wrap the row errors (already free of contact details)."""
        self.errors = list(errors)
        super().__init__(
            "; ".join(
                f"{e.column}: {e.message}" if e.column and e.column not in e.message else e.message
                for e in self.errors
            )
        )


# ---------------------------------------------------------------------------------------------
# Snapshots and change records
# ---------------------------------------------------------------------------------------------


def snapshot(person: Person) -> dict[str, Any]:
    """A person's directory attributes (``manager`` as the manager's external id)."""
    values: dict[str, Any] = {
        name: getattr(person, name) for name in ATTRIBUTES if name != "manager"
    }
    values["roles"] = list(person.roles or [])
    values["manager"] = person.manager.external_id if person.manager is not None else None
    values["start_date"] = person.start_date.isoformat() if person.start_date else None
    return values


def _snapshots(
    session: Session, external_ids: Collection[str]
) -> dict[str, tuple[int, dict[str, Any]]]:
    # Columns, not ORM objects: an import of 10,000 people reads them twice.
    manager = aliased(Person)
    columns = [getattr(Person, name) for name in ATTRIBUTES if name != "manager"]
    found: dict[str, tuple[int, dict[str, Any]]] = {}
    ids = list(external_ids)
    names = [name for name in ATTRIBUTES if name != "manager"]
    query = select(Person.id, Person.external_id, manager.external_id, *columns).outerjoin(
        manager, Person.manager_id == manager.id
    )
    # A large import reads the directory once (as the import does), a small one by id.
    wanted = set(ids)
    batches = (
        [query]
        if len(ids) > 4 * _IN_CHUNK
        else [
            query.where(Person.external_id.in_(ids[start : start + _IN_CHUNK]))
            for start in range(0, len(ids), _IN_CHUNK)
        ]
    )
    for batch in batches:
        for person_id, external_id, manager_external_id, *values in session.execute(batch):
            if external_id not in wanted:
                continue
            snapshot_ = dict(zip(names, values, strict=True))
            snapshot_["roles"] = list(snapshot_["roles"] or [])
            snapshot_["manager"] = manager_external_id
            # JSON-safe: the change goes into the audit trail and a workflow's input.
            start = snapshot_["start_date"]
            snapshot_["start_date"] = start.isoformat() if start is not None else None
            found[external_id] = (person_id, snapshot_)
    return found


def _kind(
    before: Mapping[str, Any] | None, after: Mapping[str, Any], changed: set[str]
) -> ChangeKind:
    if before is None:
        return ChangeKind.JOINER
    old, new = before["employment_status"], after["employment_status"]
    terminated = EmploymentStatus.TERMINATED.value
    if new == terminated and old != terminated:
        return ChangeKind.LEAVER
    if old == terminated and new != terminated:
        return ChangeKind.REHIRE
    if changed & MOVER_ATTRIBUTES:
        return ChangeKind.MOVER
    if new == EmploymentStatus.LEAVE.value and old != new:
        return ChangeKind.LEAVE
    if old == EmploymentStatus.LEAVE.value and old != new:
        return ChangeKind.RETURN
    return ChangeKind.UPDATE


def _changes(
    session: Session,
    before: Mapping[str, tuple[int, dict[str, Any]]],
    external_ids: Iterable[str],
    *,
    source: str,
    actor: str,
) -> list[DirectoryChange]:
    ids = list(external_ids)
    after = _snapshots(session, ids)
    changes: list[DirectoryChange] = []
    for ext in ids:
        if ext not in after:
            continue
        person_id, new = after[ext]
        old = before[ext][1] if ext in before else None
        changed = set(ATTRIBUTES) if old is None else {a for a in ATTRIBUTES if old[a] != new[a]}
        if not changed:
            continue
        changes.append(
            DirectoryChange(
                change_id=uuid.uuid4().hex,
                person_id=person_id,
                external_id=ext,
                kind=_kind(old, new, changed),
                changed=[a for a in ATTRIBUTES if a in changed],
                before=old,
                after=new,
                source=source,
                actor=actor,
            )
        )
    return changes


def apply_rows(
    session: Session,
    *,
    rows: Sequence[PersonRow],
    errors: Sequence[RowError] = (),
    source: str,
    actor: str,
) -> tuple[ImportReport, list[DirectoryChange]]:
    """Upsert validated rows (flushes, never commits) and describe what changed.

    Args:
        session: An open session (the caller commits).
        rows: Valid rows (see :func:`store.people.parse_json` / ``parse_csv``).
        errors: The parser's errors, carried into the report.
        source: ``import``, ``scim`` or ``api`` (recorded in each change).
        actor: The audit actor (recorded in each change).

    Returns:
        The import report and one change record per person whose attributes changed.
    """
    before = _snapshots(session, [row.external_id for row in rows])
    report = import_people(session, rows, errors)
    # A rejected row is unchanged (or absent), so it yields no change record.
    ids = dict.fromkeys(row.external_id for row in rows)
    return report, _changes(session, before, ids, source=source, actor=actor)


# ---------------------------------------------------------------------------------------------
# The import
# ---------------------------------------------------------------------------------------------


class ImportOutcome(BaseModel):
    """An import's report and its change records."""

    report: ImportReport
    changes: list[DirectoryChange] = Field(default_factory=list)


def import_directory(
    session: Session,
    *,
    rows: Sequence[PersonRow],
    errors: Sequence[RowError],
    kind: str,
    principal: Principal,
) -> ImportOutcome:
    """Upsert parsed rows, audit the import (counts only) and commit.

    Commits here, not in the request's session dependency: that runs after the response is
    sent, and a 200 report must describe people that are really saved.
    """
    report, changes = apply_rows(
        session, rows=rows, errors=errors, source="import", actor=principal.actor
    )
    after: dict[str, Any] = {"format": kind, **report.counts}
    audit.record(
        session,
        actor=principal.actor,
        actor_role=principal.role.value,
        action="people.import",
        target="people",
        after=after,
    )
    session.commit()
    return ImportOutcome(report=report, changes=changes)


@dataclass(frozen=True)
class ReplanOutcome:
    """How many re-plans were signalled, and why the others were not (None: all were)."""

    signalled: int
    note: str | None = None


def _reason(error: Exception) -> str:
    if isinstance(error, RPCError):
        return error.message
    # The API's lazy client raises an HTTP 503 whose detail says why Temporal is unreachable.
    return str(getattr(error, "detail", error))


async def replan_moved(
    session: Session,
    *,
    temporal: Callable[[], Awaitable[Client]],
    actor: str,
    person_ids: Collection[int] | None = None,
) -> ReplanOutcome:
    """Signal ``replan`` to open obligations planned in a zone their person has left.

    Call after committing the directory change. When Temporal cannot be reached the outcome
    says so and the nightly sweep signals them (asking again finds the same rows).

    Args:
        session: An open session.
        temporal: Returns a connected client (raises when Temporal is unreachable).
        actor: Recorded with each re-plan.
        person_ids: Only these people (None: everyone).
    """
    targets = await asyncio.to_thread(moved_zone_targets, session, person_ids=person_ids)
    if not targets:
        return ReplanOutcome(signalled=0)
    try:
        client = await temporal()
        outcome = await signal_replans(client, targets, actor=actor)
    except Exception as error:
        if not isinstance(error, RPCError) and not hasattr(error, "detail"):
            raise
        reason = _reason(error)
        log.warning("%s: %d re-plans not signalled: %s", actor, len(targets), reason)
        return ReplanOutcome(
            signalled=0,
            note=f"{len(targets)} obligations of people who changed time zone could not be"
            f" re-planned now ({reason}); the nightly sweep re-plans them",
        )
    return ReplanOutcome(signalled=outcome.signalled)


# ---------------------------------------------------------------------------------------------
# The joiner/mover/leaver automation
# ---------------------------------------------------------------------------------------------

#: Workflow starts in flight at once (an import of 10,000 changes starts 10,000 workflows).
_STARTS_IN_FLIGHT = 50


@dataclass(frozen=True)
class AutomationOutcome:
    """How many change workflows were started, and why the others were not (None: all were)."""

    started: int
    existing: int = 0
    note: str | None = None


async def start_change(client: Client, *, task_queue: str, change: DirectoryChange) -> bool:
    """Start one change's ``DirectoryChangeWorkflow`` unless it exists (idempotent).

    Returns:
        True when this call started it.
    """
    try:
        await client.start_workflow(
            DirectoryChangeWorkflow.run,
            DirectoryChangeInput(change=change),
            id=directory_change_workflow_id(change.external_id, change.change_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def automate(
    changes: Sequence[DirectoryChange],
    *,
    temporal: Callable[[], Awaitable[Client]],
    task_queue: str,
    enabled: bool = True,
) -> AutomationOutcome:
    """Start a ``DirectoryChangeWorkflow`` per change (call after committing the changes).

    Args:
        changes: What the write changed (one per person).
        temporal: Returns a connected client (raises when Temporal is unreachable).
        task_queue: Where the workflows run.
        enabled: ``DULY_DIRECTORY_AUTOMATION``; off: nothing is started.

    Returns:
        Counts, and a note when Temporal could not be reached (the nightly reconciliation
        then assigns and closes what these workflows would have).
    """
    if not enabled or not changes:
        return AutomationOutcome(started=0)
    started = existing = 0
    try:
        client = await temporal()
        for first in range(0, len(changes), _STARTS_IN_FLIGHT):
            chunk = changes[first : first + _STARTS_IN_FLIGHT]
            results = await asyncio.gather(
                *(start_change(client, task_queue=task_queue, change=c) for c in chunk)
            )
            started += sum(1 for r in results if r)
            existing += sum(1 for r in results if not r)
    except Exception as error:
        if not isinstance(error, RPCError) and not hasattr(error, "detail"):
            raise
        reason = _reason(error)
        left = len(changes) - started - existing
        log.warning("%d directory change workflows not started: %s", left, reason)
        return AutomationOutcome(
            started=started,
            existing=existing,
            note=f"{left} directory changes could not be automated now ({reason}); the nightly"
            " reconciliation assigns and closes what they need",
        )
    return AutomationOutcome(started=started, existing=existing)


def preview_rows(
    session: Session,
    *,
    rows: Sequence[PersonRow],
    errors: Sequence[RowError] = (),
    today: date,
) -> tuple[ImportReport, list[dict[str, Any]]]:
    """The dry run of an import: what each change would assign and close; nothing is saved.

    Applies the rows in the session, plans each change from the directory as it would be,
    and rolls everything back.

    Returns:
        The report the import would give, and one plan summary per changed person
        (:meth:`domain.contracts.directory.PersonPlan.summary` plus the change's attributes).
    """
    try:
        report, changes = apply_rows(
            session, rows=rows, errors=errors, source="import", actor="dry run"
        )
        pack = active_pack(session)
        plans: list[dict[str, Any]] = []
        for change in changes:
            person = session.get(Person, change.person_id)
            if person is None:  # pragma: no cover - just written
                continue
            plan = plan_for(
                session,
                person,
                pack=pack,
                today=today,
                kind=change.kind,
                manager=manager_change(change),
            )
            plans.append({**plan.summary(), "changed": list(change.changed)})
    finally:
        session.rollback()
    return report, plans


# ---------------------------------------------------------------------------------------------
# One person at a time (SCIM, API)
# ---------------------------------------------------------------------------------------------


def get_person(session: Session, *, external_id: str) -> Person:
    """One person by external id.

    Raises:
        PersonNotFound: Nobody has it.
    """
    person = session.scalar(select(Person).where(Person.external_id == external_id))
    if person is None:
        raise PersonNotFound(f"no person has the id {external_id[:64]!r}")
    return person


def _row(fields: Mapping[str, Any]) -> PersonRow:
    rows, errors = parse_json([dict(fields)])
    problems = [e for e in errors if not e.file_level] or errors
    if problems or not rows:
        raise InvalidPerson(problems or [RowError(row=1, message="no person given")])
    return rows[0]


def user_name_of(person: Person) -> str:
    """The person's SCIM userName: the stored one, else (imported people) the external id."""
    return person.user_name or person.external_id


def _user_name_column() -> ColumnElement[str]:
    return func.coalesce(Person.user_name, Person.external_id)


def _check_user_name(session: Session, user_name: str, external_id: str) -> None:
    """Refuse a userName someone else has, ignoring case (RFC 7644 ``uniqueness``).

    Compared with everyone's effective userName, so an imported person (no stored userName)
    holds their external id as their userName.
    """
    taken = session.scalar(
        select(Person.external_id)
        .where(func.lower(_user_name_column()) == user_name.lower())
        .where(Person.external_id != external_id)
        .limit(1)
    )
    if taken is not None:
        # Neither the userName (often an email address) nor who holds it goes in the message.
        raise UserNameTaken("another person already has this userName; userName is unique")


def _write(
    session: Session,
    *,
    row: PersonRow,
    principal: Principal,
    source: str,
    action: str,
    user_name: str | None = None,
) -> tuple[Person, DirectoryChange | None]:
    if user_name is not None:
        _check_user_name(session, user_name, row.external_id)
    report, changes = apply_rows(session, rows=[row], source=source, actor=principal.actor)
    problems = [e for e in report.errors if not e.file_level]
    if problems:
        raise InvalidPerson(problems)
    person = get_person(session, external_id=row.external_id)
    renamed = user_name is not None and person.user_name != user_name
    if renamed:
        person.user_name = user_name
    change = changes[0] if changes else None
    if change is not None or renamed:
        # The userName itself is not audited (it is often an email address), only that it
        # changed; it drives no obligation, so it makes no change record.
        after = change.audit_view() if change is not None else {}
        audit.record(
            session,
            actor=principal.actor,
            actor_role=principal.role.value,
            action=action,
            target=f"person/{row.external_id}",
            after={**after, "user_name_changed": True} if renamed else after,
        )
    try:
        session.commit()
    except IntegrityError:
        # A concurrent request took the userName between the check and the write.
        session.rollback()
        raise UserNameTaken(
            "another person already has this userName; userName is unique"
        ) from None
    return person, change


def create_person(
    session: Session,
    *,
    fields: Mapping[str, Any],
    principal: Principal,
    source: str,
    user_name: str | None = None,
) -> tuple[Person, DirectoryChange]:
    """Add one person (a joiner).

    Args:
        session: An open session; committed on success.
        fields: :class:`store.people.PersonRow` keys (``external_id`` and ``name`` required).
        principal: Who asks (audited).
        source: ``scim`` or ``api``.
        user_name: The SCIM userName to store (None: none; the external id stands for it).

    Raises:
        InvalidPerson: A field is refused (unknown manager, cycle, bad email...).
        PersonExists: The external id is taken.
        UserNameTaken: Someone else has ``user_name`` (ignoring case).
    """
    row = _row(fields)
    if session.scalar(select(Person.id).where(Person.external_id == row.external_id)) is not None:
        raise PersonExists(
            f"a person with the id {row.external_id!r} already exists; replace or patch them"
        )
    try:
        person, change = _write(
            session,
            row=row,
            principal=principal,
            source=source,
            action="person.create",
            user_name=user_name,
        )
    except IntegrityError:
        # Created by a concurrent request between the check above and the insert.
        session.rollback()
        raise PersonExists(
            f"a person with the id {row.external_id!r} already exists; replace or patch them"
        ) from None
    assert change is not None  # a new person always changes the directory
    return person, change


def replace_person(
    session: Session,
    *,
    external_id: str,
    fields: Mapping[str, Any],
    principal: Principal,
    source: str,
    keep: Collection[str] = (),
    user_name: str | None = None,
) -> tuple[Person, DirectoryChange | None]:
    """Replace one person's attributes: every attribute not in ``fields`` is cleared.

    Args:
        session: An open session; committed on success.
        external_id: Whom (the key never changes).
        fields: :class:`store.people.PersonRow` keys.
        principal: Who asks (audited).
        source: ``scim`` or ``api``.
        keep: Attributes left as they are when ``fields`` omits them (ones the caller does
            not manage, such as a Slack id set by the HR import).
        user_name: The SCIM userName to store (None: left as it is).

    Returns:
        The person and the change (None when nothing changed).

    Raises:
        PersonNotFound: Nobody has ``external_id``.
        InvalidPerson: A field is refused.
        UserNameTaken: Someone else has ``user_name`` (ignoring case).
    """
    get_person(session, external_id=external_id)
    full: dict[str, Any] = {
        name: None for name in ATTRIBUTES if name not in keep and name != "name"
    }
    full.update(fields)
    full["external_id"] = external_id
    return _write(
        session,
        row=_row(full),
        principal=principal,
        source=source,
        action="person.replace",
        user_name=user_name,
    )


def patch_person(
    session: Session,
    *,
    external_id: str,
    fields: Mapping[str, Any],
    principal: Principal,
    source: str,
) -> tuple[Person, DirectoryChange | None]:
    """Change only the given attributes of one person (None clears one).

    Raises:
        PersonNotFound: Nobody has ``external_id``.
        InvalidPerson: A field is refused.
    """
    current = get_person(session, external_id=external_id)
    data: dict[str, Any] = {"name": current.name, **fields, "external_id": external_id}
    return _write(
        session, row=_row(data), principal=principal, source=source, action="person.update"
    )


def deactivate_person(
    session: Session, *, external_id: str, principal: Principal, source: str
) -> tuple[Person, DirectoryChange | None]:
    """Mark a person as left (``terminated``); nothing about them is deleted.

    Reminders and escalations about them stop at the next send (the send path skips people
    who left); closing their open obligations is the leaver automation's job.

    Raises:
        PersonNotFound: Nobody has ``external_id``.
    """
    return patch_person(
        session,
        external_id=external_id,
        fields={"employment_status": EmploymentStatus.TERMINATED.value},
        principal=principal,
        source=source,
    )


# ---------------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------------

#: Attributes a query may compare.
Attribute = Literal[
    "external_id",
    "user_name",
    "name",
    "email",
    "department",
    "employer",
    "location",
    "role",
    "active",
]
Operator = Literal["eq", "co", "sw"]


@dataclass(frozen=True)
class Compare:
    """``attribute op value``; string comparisons ignore case."""

    attribute: Attribute
    op: Operator
    value: str | bool


@dataclass(frozen=True)
class AllOf:
    """Every part holds."""

    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    """At least one part holds."""

    parts: tuple[Condition, ...]


Condition = Compare | AllOf | AnyOf

_COLUMNS: dict[str, Any] = {
    "external_id": Person.external_id,
    "user_name": _user_name_column(),
    "name": Person.name,
    "email": Person.email,
    "department": Person.department,
    "employer": Person.employer,
    "location": Person.location,
}


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")


def _sql(condition: Condition) -> ColumnElement[bool]:
    if isinstance(condition, AllOf):
        return and_(*(_sql(part) for part in condition.parts))
    if isinstance(condition, AnyOf):
        return or_(*(_sql(part) for part in condition.parts))
    value = condition.value
    if condition.attribute == "active":
        if not isinstance(value, bool) or condition.op != "eq":
            return false()
        terminated = Person.employment_status == EmploymentStatus.TERMINATED.value
        return ~terminated if value else terminated
    text = str(value).lower()
    if condition.attribute == "role":
        # Roles are a JSON list of id-safe strings: match the quoted element in the JSON text.
        roles = func.lower(cast(Person.roles, String))
        pattern = {"eq": f'%"{_like(text)}"%', "sw": f'%"{_like(text)}%', "co": f"%{_like(text)}%"}
        return roles.like(pattern[condition.op], escape="\\")
    column = func.lower(_COLUMNS[condition.attribute])
    if condition.op == "eq":
        return column == text
    if condition.op == "sw":
        return column.like(f"{_like(text)}%", escape="\\")
    return column.like(f"%{_like(text)}%", escape="\\")


def list_people(
    session: Session, *, where: Condition | None = None, offset: int = 0, limit: int = 100
) -> tuple[int, list[Person]]:
    """People matching ``where``, ordered by external id, with the total number of matches.

    Args:
        session: An open session.
        where: The condition (None: everyone).
        offset: How many matches to skip (0-based).
        limit: At most this many people.
    """
    condition = _sql(where) if where is not None else None
    count = select(func.count()).select_from(Person)
    query = select(Person).order_by(Person.external_id)
    if condition is not None:
        count = count.where(condition)
        query = query.where(condition)
    total = session.scalar(count) or 0
    people = list(session.scalars(query.offset(offset).limit(limit)).unique())
    return total, people


# ---------------------------------------------------------------------------------------------
# Departments (SCIM Groups): a department is the people whose ``department`` names it
# ---------------------------------------------------------------------------------------------


def departments(session: Session) -> list[tuple[str, int]]:
    """Every department someone is in, with how many people are, ordered by name."""
    rows = session.execute(
        select(Person.department, func.count())
        .where(Person.department.is_not(None))
        .group_by(Person.department)
        .order_by(Person.department)
    )
    return [(name, count) for name, count in rows if name is not None]


def department_members(session: Session, *, name: str) -> list[Person]:
    """The people in a department, ordered by external id (empty when nobody is)."""
    return list(
        session.scalars(
            select(Person).where(Person.department == name).order_by(Person.external_id)
        ).unique()
    )


def set_department_members(
    session: Session,
    *,
    name: str | None,
    members: Collection[str],
    previous: str | None,
    principal: Principal,
    source: str,
) -> list[DirectoryChange]:
    """Make ``members`` exactly the people of department ``name`` (committed, audited).

    People in department ``previous`` (the department's old name; ``name`` when it is not
    renamed) who are not in ``members`` leave it (their department is cleared). ``name`` None
    empties the department. Every member changed is a mover.

    Raises:
        InvalidPerson: A member is unknown, or the name is not a valid department.
    """
    wanted = list(dict.fromkeys(members))
    people: dict[str, Person] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        for person in session.scalars(select(Person).where(Person.external_id.in_(chunk))):
            people[person.external_id] = person
    unknown = [ext for ext in wanted if ext not in people]
    if unknown:
        shown = ", ".join(repr(ext[:64]) for ext in unknown[:10])
        raise InvalidPerson(
            [
                RowError(
                    row=1,
                    column="members",
                    message=f"unknown member(s) {shown}: create the users first",
                )
            ]
        )
    leaving = (
        [p for p in department_members(session, name=previous) if p.external_id not in people]
        if previous is not None
        else []
    )
    data = [
        {"external_id": p.external_id, "name": p.name, "department": name} for p in people.values()
    ] + [{"external_id": p.external_id, "name": p.name, "department": None} for p in leaving]
    if not data:
        return []
    rows, errors = parse_json(data)
    problems = [e for e in errors if not e.file_level]
    if problems:
        raise InvalidPerson(problems[:1])
    report, changes = apply_rows(session, rows=rows, source=source, actor=principal.actor)
    problems = [e for e in report.errors if not e.file_level]
    if problems:
        raise InvalidPerson(problems)
    for change in changes:
        audit.record(
            session,
            actor=principal.actor,
            actor_role=principal.role.value,
            action="person.department",
            target=f"person/{change.external_id}",
            after=change.audit_view(),
        )
    session.commit()
    return changes
