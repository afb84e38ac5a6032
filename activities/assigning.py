"""Building assignment inputs (pure) and the starter activities are given.

Activities start assignment workflows (the bulk job, the next cycle of a recurring
requirement) but may not import ``workflows/`` (the workflows import the activities): the
shell hands them :func:`services.assignments.start_assignment` as an
:class:`AssignmentStarter`. The API, the CLI and the demo use the same two functions through
:mod:`services.assignments`.
"""

from __future__ import annotations

from datetime import date
from typing import Protocol
from zoneinfo import ZoneInfo

from temporalio.client import Client

from domain.calendar import zone_offset_minutes
from domain.contracts.assignment import AssignmentInput
from domain.ids import BUILTIN_PACK, slugify
from domain.kinds import ObligationKind
from rules.model import Pack
from store.db import Database
from store.models import Person


def utc_offset_minutes(time_zone: str, day: date) -> int:
    """The zone's UTC offset at reminder time on ``day`` (DST-correct for that date).

    Only a fallback now: workflows plan every instant in the person's zone through the
    ``plan_stages`` activity; this offset is what histories recorded before that replay with.
    """
    return zone_offset_minutes(ZoneInfo(time_zone), day)


class NotAnAssignment(ValueError):
    """The requirement is a certification: it is registered, not assigned with a due date."""


def assignment_input(
    person: Person,
    *,
    title: str,
    due_date: date,
    requirement_id: str | None = None,
    cycle: int = 1,
    assigned_by: str,
    pack: Pack | None = None,
    track_id: str | None = None,
    obtain: bool = False,
) -> AssignmentInput:
    """Build the workflow input for assigning ``title`` to ``person``.

    When the active rules ``pack`` defines the requirement (by id, or by the id derived from
    the title), the assignment is pinned to that pack version and takes its title and kind
    (training, apprenticeship, mentorship: the pack's status rules and the messages' wording
    follow it); otherwise it runs as a training on the built-in ladder and rules.

    ``track_id`` names the track whose enrolment assigns it: that track course's own pass mark
    then applies to the assessment gate (``plan_stages``).

    ``obtain``: the requirement is a certification the person does not hold yet, and this is
    the obligation to obtain it (the directory automation's, for joiners and movers). It runs
    as a due-dated assignment titled ``Obtain …`` (decided by the pack's due-date rules: a
    certification's own rules read an expiry date it does not have yet) under the
    certification's id, its ladder from the certification's escalation policy; registering the
    certificate (``POST /certifications``) completes it.

    Raises:
        NotAnAssignment: The pack's requirement is a certification and ``obtain`` is false
            (register the held certificate instead: ``POST /certifications``).
    """
    key = requirement_id or slugify(title)
    requirement = pack.requirement(key) if pack else None
    if pack is not None and requirement is None:
        requirement = next((r for r in pack.requirements if r.title == title), None)
    kind = ObligationKind.TRAINING
    if requirement is not None:
        key, title, kind = requirement.id, requirement.title, requirement.kind
    if kind is ObligationKind.CERTIFICATION and obtain:
        kind, title = ObligationKind.TRAINING, f"Obtain {title}"[:200]
    elif kind is ObligationKind.CERTIFICATION:
        raise NotAnAssignment(
            f"requirement {key!r} is a certification: it follows its expiry date, not a due"
            " date; register the certificate with POST /certifications instead of assigning it"
        )
    return AssignmentInput(
        person=person.external_id,
        requirement_id=key,
        requirement_title=title,
        pack_hash=pack.content_hash
        if pack is not None and requirement is not None
        else BUILTIN_PACK,
        due_date=due_date,
        cycle=cycle,
        utc_offset_minutes=utc_offset_minutes(person.time_zone, due_date),
        assigned_by=assigned_by,
        kind=kind,
        track_id=track_id,
    )


class AssignmentStarter(Protocol):
    """Starts an assignment workflow unless it exists: ``services.assignments.start_assignment``."""

    async def __call__(self, *, client: Client, task_queue: str, inp: AssignmentInput) -> bool:
        """Start ``inp``'s workflow; False when one with its business key already exists."""
        ...


class StartsAssignments:
    """The database, client, queue and starter of activities that start assignments.

    Bulk jobs and the directory automation share it.

    Args:
        db: The directory, packs and read model.
        client: Starts the assignment workflows.
        task_queue: Where assignment workflows run; by default the activity's own task queue.
        start_assignment: Starts one assignment workflow
            (:func:`services.assignments.start_assignment`; the shell wires it in, as this
            floor may not import the workflows).
    """

    def __init__(
        self,
        db: Database,
        client: Client,
        task_queue: str | None = None,
        *,
        start_assignment: AssignmentStarter,
    ) -> None:
        self._db = db
        self._client = client
        self._task_queue = task_queue
        self._start_assignment = start_assignment
