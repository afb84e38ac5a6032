"""Activities of :class:`workflows.bulk.BulkAssignWorkflow`: resolve targets, start assignments."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.assigning import StartsAssignments, assignment_input
from activities.packs import active_pack, load_version
from domain.contracts.bulk import (
    MAX_ERRORS,
    BulkAssignRequest,
    BulkPlan,
    BulkSelector,
    BulkWindow,
    BulkWindowResult,
)
from domain.statuses import EmploymentStatus
from rules import selectors
from store.models import Person

#: Assignment starts in flight at once within a window.
CHUNK = 50

#: Temporal errors worth retrying the whole activity for (it resumes from its heartbeat).
_TRANSIENT = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.CANCELLED,
    }
)

_Row = tuple[int, str, list[str] | None, str | None, str | None, int | None]


def select_people(rows: Iterable[_Row], selector: BulkSelector) -> list[str]:
    """Filter directory rows by ``selector`` (see :func:`rules.selectors.select_people`).

    Args:
        rows: ``(id, external_id, roles, department, location, manager_id)`` of the active
            people (the whole directory, so the manager's team can be walked).
        selector: The criteria (ANDed; values inside one criterion ORed).

    Returns:
        The matching external ids, sorted.

    Raises:
        ApplicationError: Non-retryable, when ``selector.manager`` is not an active person.
    """
    try:
        return selectors.select_people(
            rows,
            roles=selector.roles,
            departments=selector.departments,
            locations=selector.locations,
            manager=selector.manager,
            people=selector.people,
        )
    except selectors.UnknownManager as error:
        raise ApplicationError(str(error), non_retryable=True) from None


class BulkActivities(StartsAssignments):
    """Bulk-assignment activities bound to one database and a Temporal client.

    Args:
        db: The directory and rules pack database.
        client: Starts the assignment workflows.
        task_queue: Where assignment workflows run; by default the activity's own task queue.
        start_assignment: Starts one assignment workflow
            (:func:`services.assignments.start_assignment`; the shell wires it in, as this
            floor may not import the workflows).
    """

    @activity.defn(name="resolve_bulk_targets")
    def resolve_bulk_targets(self, request: BulkAssignRequest) -> BulkPlan:
        """Fix what the job does: the active people matched, the due date and the pack.

        Raises:
            ApplicationError: Non-retryable, when the due date or the title cannot be
                determined (no ``due_date`` and the active pack gives no ``due_in_days``;
                no title and the requirement is not in the active pack) or the manager is
                unknown.
        """
        with self._db.session() as session:
            pack = active_pack(session)
            rows: list[_Row] = [
                tuple(row)  # type: ignore[misc]
                for row in session.execute(
                    select(
                        Person.id,
                        Person.external_id,
                        Person.roles,
                        Person.department,
                        Person.location,
                        Person.manager_id,
                    ).where(Person.employment_status == EmploymentStatus.ACTIVE.value)
                )
            ]
        requirement = pack.requirement(request.requirement_id) if pack is not None else None
        title = requirement.title if requirement is not None else request.requirement_title
        if title is None:
            raise ApplicationError(
                f"requirement {request.requirement_id!r} is not in the active pack;"
                " give requirement_title",
                non_retryable=True,
            )
        due = request.due_date
        if due is None:
            if requirement is None or requirement.due_in_days is None:
                raise ApplicationError(
                    f"requirement {request.requirement_id!r} has no due_in_days in the active"
                    " pack; give due_date",
                    non_retryable=True,
                )
            due = datetime.now(UTC).date() + timedelta(days=requirement.due_in_days)
        return BulkPlan(
            people=select_people(rows, request.selector),
            requirement_id=request.requirement_id,
            requirement_title=title,
            due_date=due,
            pack_hash=pack.content_hash if pack is not None else None,
        )

    @activity.defn(name="start_bulk_assignments")
    async def start_bulk_assignments(self, window: BulkWindow) -> BulkWindowResult:
        """Start an assignment per person of the window, ``CHUNK`` at a time.

        Heartbeats ``(offset, counts)`` after each chunk; a retried attempt resumes there. A
        start that succeeded just before a crash is counted as skipped by the retry.

        Raises:
            RPCError: A transient Temporal error (the activity is retried).
        """
        details = activity.info().heartbeat_details
        offset = int(details[0]) if details else 0
        counts = (
            BulkWindowResult.model_validate(details[1]) if len(details) > 1 else BulkWindowResult()
        )
        task_queue = self._task_queue or activity.info().task_queue
        with self._db.session() as session:
            pack = load_version(session, window.pack_hash) if window.pack_hash else None
            people = {
                p.external_id: p
                for p in session.scalars(
                    select(Person).where(Person.external_id.in_(window.people))
                )
            }
            session.expunge_all()
        for first in range(offset, len(window.people), CHUNK):
            chunk = window.people[first : first + CHUNK]
            missing: list[str] = []
            started: list[str] = []
            starts: list[Any] = []
            for external_id in chunk:
                person = people.get(external_id)
                if person is None:
                    missing.append(external_id)
                    continue
                try:
                    inp = assignment_input(
                        person,
                        title=window.requirement_title,
                        due_date=window.due_date,
                        requirement_id=window.requirement_id,
                        assigned_by=window.assigned_by,
                        pack=pack,
                    )
                except ValueError as exc:  # out of bounds or not an assignment: this person fails
                    _fail(counts, f"{external_id}: {exc}"[:300])
                    continue
                started.append(external_id)
                starts.append(
                    self._start_assignment(client=self._client, task_queue=task_queue, inp=inp)
                )
            results = await asyncio.gather(*starts, return_exceptions=True)
            for external_id in missing:
                _fail(counts, f"{external_id}: not in the directory any more")
            for external_id, result in zip(started, results, strict=True):
                if isinstance(result, RPCError) and result.status in _TRANSIENT:
                    raise result
                if isinstance(result, BaseException):
                    _fail(counts, f"{external_id}: {type(result).__name__}: {result}"[:300])
                elif result:
                    counts.started += 1
                else:
                    counts.skipped += 1
            activity.heartbeat(first + len(chunk), counts)
        return counts

    def all(self) -> list[Callable[..., Any]]:
        """Every activity callable, for the worker."""
        return [self.resolve_bulk_targets, self.start_bulk_assignments]


def _fail(counts: BulkWindowResult, error: str) -> None:
    counts.failed += 1
    if len(counts.errors) < MAX_ERRORS:
        counts.errors.append(error)
