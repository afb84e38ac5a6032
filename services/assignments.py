"""Assignments: build, start, signal, update and query ``AssignmentWorkflow`` runs.

The one code path used by the API, the CLI, the demo and (through the starter the shell
gives the activities) bulk jobs and recurring cycles.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from activities.assigning import NotAnAssignment, assignment_input, utc_offset_minutes
from activities.packs import active_pack
from domain.contracts.assignment import (
    AssignmentInput,
    AssignmentState,
    CancelSignal,
    CompleteSignal,
    ExemptSignal,
    ExtendDueDate,
    GrantAttempts,
    StartSignal,
)
from domain.contracts.obligation import AcknowledgeSignal
from domain.ids import ID_PATTERN
from domain.roles import Role
from domain.statuses import EmploymentStatus
from services.errors import Conflict, Forbidden, Invalid, NotFound
from services.restarts import describe_previous
from services.temporal import signal
from store import audit
from store.db import committed
from store.models import Person
from store.obligations import acknowledgement_recorded, start_recorded
from store.tokens import Principal
from workflows.assignment import AssignmentWorkflow

#: The input of an assignment update (one model per update).
UpdateArg = TypeVar("UpdateArg", bound=BaseModel)

__all__ = [
    "NotAnAssignment",
    "assignment_input",
    "start_assignment",
    "utc_offset_minutes",
]


async def start_assignment(*, client: Client, task_queue: str, inp: AssignmentInput) -> bool:
    """Start the assignment workflow unless it already exists.

    Returns:
        True when this call started it, False when a workflow with the same business key
        exists (running or closed): a second start is a no-op, enforced by Temporal.
    """
    try:
        await client.start_workflow(
            AssignmentWorkflow.run,
            inp,
            id=inp.workflow_id,
            task_queue=task_queue,
            # A closed assignment keeps its id too: a second start never begins a second chain.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


#: How long a query of a running workflow may take before the store answers instead.
QUERY_TIMEOUT = 5.0


def person_of(session: Session, *, assignment_id: str) -> Person:
    """The person an assignment id names (the caller checks they may see them).

    Raises:
        NotFound: The id is malformed (the detail shows the shape) or the person is unknown.
    """
    parts = assignment_id.split("/")
    if len(parts) != 4 or parts[0] != "assignment" or not re.match(ID_PATTERN, parts[1]):
        raise NotFound(
            "unknown assignment id; ids look like assignment/{person}/{requirement}/{cycle}"
        )
    person = session.scalar(select(Person).where(Person.external_id == parts[1]))
    if person is None:
        raise NotFound()
    return person


def person(session: Session, *, external_id: str) -> Person:
    """The person to assign to.

    Raises:
        NotFound: Not in the directory (the detail says how to import them).
    """
    found = session.scalar(select(Person).where(Person.external_id == external_id))
    if found is None:
        raise NotFound(f"unknown person {external_id!r}; import them first (POST /people/import)")
    return found


async def live_state(client: Client, *, workflow_id: str) -> AssignmentState | None:
    """The running workflow's state, or None when it does not answer (the store answers)."""
    try:
        handle = client.get_workflow_handle(workflow_id)
        return await asyncio.wait_for(handle.query(AssignmentWorkflow.state), QUERY_TIMEOUT)
    except (RPCError, TimeoutError):
        return None
    except Exception:  # noqa: BLE001 - a failed query (e.g. no worker yet) falls back to the store
        return None


@dataclass(frozen=True)
class Created:
    """What :func:`create` did: the input, whether it started a run, and the live state."""

    inp: AssignmentInput
    created: bool
    state: AssignmentState | None


async def create(
    session: Session,
    client: Client,
    *,
    task_queue: str,
    person: Person,
    title: str,
    due_date: date,
    requirement_id: str | None,
    cycle: int,
    principal: Principal,
) -> Created:
    """Assign ``title`` to ``person`` (idempotent per business key); audited when started.

    Raises:
        Forbidden: A manager assigning to themself.
        Conflict: The person has left.
        Invalid: The requirement is a certification.
    """
    check_assignee(principal, person)
    if person.employment_status == EmploymentStatus.TERMINATED:
        raise Conflict(f"person {person.external_id!r} has left (employment_status=terminated)")
    pack = await committed(session, lambda: active_pack(session))
    try:
        inp = assignment_input(
            person,
            title=title,
            due_date=due_date,
            requirement_id=requirement_id,
            cycle=cycle,
            assigned_by=principal.actor,
            pack=pack,
        )
    except NotAnAssignment as error:
        raise Invalid(str(error)) from None
    created = await start_assignment(client=client, task_queue=task_queue, inp=inp)
    if created:
        await committed(
            session,
            lambda: audit.record(
                session,
                actor=principal.actor,
                actor_role=principal.role.value,
                action="assignment.create",
                target=inp.workflow_id,
                after=inp.model_dump(mode="json"),
            ),
        )
    state = await live_state(client, workflow_id=inp.workflow_id) if not created else None
    return Created(inp=inp, created=created, state=state)


async def unanswered(client: Client, *, workflow_id: str) -> str | None:
    """Why an existing run did not answer, and how HR replaces it (None: nothing to add)."""
    try:
        previous = await describe_previous(client, workflow_id)
    except RPCError:
        return None
    if previous is None:
        return None
    stuck = (
        f", its workflow task failed {previous.workflow_task_attempts} times"
        if previous.workflow_task_attempts > 1
        else ""
    )
    return (
        f"the run did not answer (status {previous.status}{stuck}); if it is stuck, HR can"
        f" replace it: POST /assignments/{workflow_id}/restart"
    )


def check_assignee(principal: Principal, person: Person) -> None:
    """Managers assign to their reports, not to themselves (the README's "own reports").

    Raises:
        Forbidden: A manager naming themself.
    """
    if principal.role is Role.MANAGER and principal.person_id == person.id:
        raise Forbidden(
            "managers assign training to their reports, not to themselves; ask HR to assign"
            f" {person.external_id!r}"
        )


def _not_own(principal: Principal, person: Person, what: str) -> None:
    if principal.role is Role.MANAGER and principal.person_id == person.id:
        raise Forbidden(f"managers cannot {what} their own")


async def _send(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    signal_ref: Any,
    arg: BaseModel,
    action: str,
    principal: Principal,
) -> None:
    """Signal the assignment (typed reference) and audit the action as the caller."""
    await signal(client, workflow_id=workflow_id, signal=signal_ref, arg=arg, what="assignment")
    await committed(
        session,
        lambda: audit.record(
            session,
            actor=principal.actor,
            actor_role=principal.role.value,
            action=action,
            target=workflow_id,
            after=arg.model_dump(mode="json"),
        ),
    )


async def complete(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    person: Person,
    completion: CompleteSignal,
    principal: Principal,
) -> None:
    """Record completion evidence.

    Under an assessment gate, a score below the pass mark is a failed attempt (the
    workflow decides); evidence the gate would not count is refused here when the running
    workflow says so: every attempt used (``failed``), or inside the retake cool-down.

    Raises:
        Forbidden: A manager completing their own assignment.
        NotFound: No such workflow.
        Conflict: It has closed, its attempts are all used, or the retake is not open yet
            (the detail says when it opens).
    """
    if principal.role is Role.MANAGER and principal.person_id == person.id:
        raise Forbidden("managers cannot complete their own assignments")
    await gate_admits(client, workflow_id=workflow_id, completion=completion)
    await _send(
        session,
        client,
        workflow_id=workflow_id,
        signal_ref=AssignmentWorkflow.complete,
        arg=completion,
        action="assignment.complete",
        principal=principal,
    )


async def acknowledge(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    acknowledgement: AcknowledgeSignal,
    principal: Principal,
) -> bool:
    """Acknowledge the reminders (raises like :func:`complete`).

    Returns:
        False, sending nothing, when the assignment already recorded an acknowledgement (or a
        completion): every signal is a history event whatever the workflow does with it, and
        a workflow whose history passes 51,200 events is ended by Temporal.
    """
    if await committed(session, lambda: acknowledgement_recorded(session, workflow_id)):
        return False
    await _send(
        session,
        client,
        workflow_id=workflow_id,
        signal_ref=AssignmentWorkflow.acknowledge,
        arg=acknowledgement,
        action="assignment.acknowledge",
        principal=principal,
    )
    return True


async def start_training(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    start: StartSignal,
    principal: Principal,
) -> bool:
    """Record that the learner began (raises like :func:`complete`).

    Returns:
        False, sending nothing, when the assignment already recorded a start (or a completion):
        a repeat would only grow the workflow's history (see :func:`acknowledge`).
    """
    if await committed(session, lambda: start_recorded(session, workflow_id)):
        return False
    await _send(
        session,
        client,
        workflow_id=workflow_id,
        signal_ref=AssignmentWorkflow.start,
        arg=start,
        action="assignment.start",
        principal=principal,
    )
    return True


async def exempt(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    exemption: ExemptSignal,
    principal: Principal,
) -> None:
    """Exempt the person (raises like :func:`complete`)."""
    await _send(
        session,
        client,
        workflow_id=workflow_id,
        signal_ref=AssignmentWorkflow.exempt,
        arg=exemption,
        action="assignment.exempt",
        principal=principal,
    )


async def cancel(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    person: Person,
    cancellation: CancelSignal,
    principal: Principal,
) -> None:
    """Cancel the obligation; a manager may not cancel their own (raises like :func:`complete`)."""
    _not_own(principal, person, "cancel")
    await _send(
        session,
        client,
        workflow_id=workflow_id,
        signal_ref=AssignmentWorkflow.cancel,
        arg=cancellation,
        action="assignment.cancel",
        principal=principal,
    )


async def extend(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    person: Person,
    update: ExtendDueDate,
    principal: Principal,
) -> AssignmentState:
    """Move the due date later (an update: the answer is the re-planned state).

    Raises:
        Forbidden: A manager extending their own.
        Invalid: The workflow refused (the detail says why).
        Conflict: The assignment is closed.
    """
    _not_own(principal, person, "extend")
    return await _audited_update(
        session,
        client.get_workflow_handle(workflow_id),
        AssignmentWorkflow.extend_due_date,
        update,
        refused="extension refused",
        action="assignment.extend",
        principal=principal,
    )


async def _audited_update(
    session: Session,
    handle: WorkflowHandle[Any, Any],
    update: UpdateMethodMultiParam[[AssignmentWorkflow, UpdateArg], AssignmentState],
    arg: UpdateArg,
    *,
    refused: str,
    action: str,
    principal: Principal,
) -> AssignmentState:
    """Run an assignment update, then audit it in its own short transaction.

    Raises:
        Invalid: The workflow's validator refused (``refused: why``).
        Conflict: The assignment is closed.
    """
    try:
        state = await handle.execute_update(update, arg)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause.message if isinstance(exc.cause, ApplicationError) else str(exc.cause)
        raise Invalid(f"{refused}: {cause}") from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("assignment is closed") from exc
        raise
    await committed(
        session,
        lambda: audit.record(
            session,
            actor=principal.actor,
            actor_role=principal.role.value,
            action=action,
            target=handle.id,
            after=arg.model_dump(mode="json"),
        ),
    )
    return state


async def gate_admits(client: Client, *, workflow_id: str, completion: CompleteSignal) -> None:
    """Refuse completion evidence the assessment gate would not count (before it is sent).

    The running workflow's state decides (it has the last word and ignores such evidence as
    ``retake_not_yet`` / ``attempt_not_counted`` anyway): every attempt used (``failed``), or
    the evidence's ``completed_at`` inside the retake cool-down after the last failed attempt.
    A workflow that does not answer admits the evidence (the workflow still judges it). The API
    (``POST /assignments/{id}/complete``) and the intake (xAPI, ``POST /completions``) both ask.

    Raises:
        Conflict: Every attempt is used, or the retake cool-down has not passed (the detail says
            what was refused and when the next attempt counts).
    """
    state = await live_state(client, workflow_id=workflow_id)
    if state is None or state.gate is None or state.completed_at is not None:
        return
    if state.status == "failed":
        raise Conflict(
            f"not counted: all {state.attempts_allowed} assessment attempts are used and the"
            " assignment is failed; HR can grant another attempt"
            " (POST /assignments/{id}/grant-attempts)"
        )
    opens = state.retake_opens_at
    if opens is not None and completion.completed_at < opens:
        days = state.gate.retake_after_days
        raise Conflict(
            f"not counted: the attempt at {completion.completed_at.isoformat()} is inside the"
            f" retake cool-down ({days} day(s) after a failed attempt, the requirement's"
            f" retake_after_days); the next attempt counts from {opens.isoformat()}"
        )


async def grant_attempts(
    session: Session,
    client: Client,
    *,
    workflow_id: str,
    grant: GrantAttempts,
    principal: Principal,
) -> AssignmentState:
    """HR grants extra assessment attempts (an update; audited); a failed assignment reopens.

    Raises:
        Invalid: The workflow refused (no attempt limit, closed; the detail says why).
        Conflict: The assignment is closed.
    """
    return await _audited_update(
        session,
        client.get_workflow_handle(workflow_id),
        AssignmentWorkflow.grant_attempts,
        grant,
        refused="grant refused",
        action="assignment.grant_attempts",
        principal=principal,
    )
