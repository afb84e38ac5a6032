"""Bulk assignments: start a :class:`workflows.bulk.BulkAssignWorkflow` and read its progress.

The one way to do so: the API, the CLI and the dev stack's demo all call these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.packs import active_pack
from domain.kinds import ObligationKind
from domain.roles import Role
from domain.statuses import EmploymentStatus
from services.errors import Forbidden, Invalid, NotFound, Unavailable
from store import audit
from store.db import committed
from store.models import Person
from store.tokens import Principal
from workflows.bulk import (
    BulkAssignInput,
    BulkAssignRequest,
    BulkAssignWorkflow,
    BulkProgress,
    BulkSelector,
    bulk_workflow_id,
)

#: Seconds a progress query may take.
QUERY_TIMEOUT = 5.0


def check_requirement(
    session: Session, *, requirement_id: str, title: str | None, due_date_given: bool
) -> None:
    """Refuse now, rather than with a failed job later, a title or due date that is unknown.

    Raises:
        Invalid: The requirement is not in the active pack and no title is given, it is a
            certification, or it has no ``due_in_days`` and no due date is given.
    """
    pack = active_pack(session)
    requirement = pack.requirement(requirement_id) if pack is not None else None
    if requirement is None and title is None:
        raise Invalid(
            f"requirement {requirement_id!r} is not in the active pack; give requirement_title"
        )
    if requirement is not None and requirement.kind is ObligationKind.CERTIFICATION:
        raise Invalid(
            f"requirement {requirement_id!r} is a certification: it follows its"
            " expiry date, not a due date; register certificates with POST /certifications"
        )
    if not due_date_given and (requirement is None or requirement.due_in_days is None):
        raise Invalid(f"requirement {requirement_id!r} has no due_in_days; give due_date")


def check_selector(session: Session, selector: BulkSelector, principal: Principal) -> None:
    """Refuse now, rather than with a failed job later, a selector that cannot work.

    Raises:
        Invalid: ``selector.manager`` is not an active person (the job's activity would fail).
        Forbidden: A manager names themself in ``selector.people`` (they assign to their
            reports, not to themselves).
    """
    if selector.manager is not None:
        manager = session.scalar(select(Person).where(Person.external_id == selector.manager))
        if manager is None or manager.employment_status != EmploymentStatus.ACTIVE.value:
            raise Invalid(
                f"selector.manager {selector.manager!r} is not an active person in the"
                " directory; give an active person's external id (GET /people) or leave it out"
            )
    own = principal.person_external_id
    if principal.role is Role.MANAGER and own is not None and own in (selector.people or []):
        raise Forbidden(
            f"managers assign training to their reports, not to themselves: remove {own!r}"
            " from selector.people, or ask HR"
        )


async def start_bulk(
    client: Client,
    *,
    task_queue: str,
    request: BulkAssignRequest,
    session: Session | None = None,
    principal: Principal | None = None,
) -> bool:
    """Start the bulk job unless one with its id exists (idempotent per ``bulk_id``).

    Args:
        client: The Temporal client.
        task_queue: Where the bulk workflow runs.
        request: The job; its ``assigned_by`` is kept in the run's memo (managers see only
            their own jobs).
        session: With ``principal``, audits the start as ``assignment.bulk``.
        principal: The caller (API); the CLI and the demo start unaudited, as before.

    Returns:
        True when this call started the job.
    """
    try:
        await client.start_workflow(
            BulkAssignWorkflow.run,
            BulkAssignInput(request=request),
            id=bulk_workflow_id(request.bulk_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            memo={"assigned_by": request.assigned_by},
        )
    except WorkflowAlreadyStartedError:
        return False
    if session is not None and principal is not None:
        await committed(
            session,
            lambda: audit.record(
                session,
                actor=principal.actor,
                actor_role=principal.role.value,
                action="assignment.bulk",
                target=bulk_workflow_id(request.bulk_id),
                after=request.model_dump(mode="json"),
            ),
        )
    return True


async def query_progress(client: Client, *, bulk_id: str) -> BulkProgress:
    """The running job's progress (a typed query)."""
    handle = client.get_workflow_handle(bulk_workflow_id(bulk_id), result_type=BulkProgress)
    return await handle.query(BulkAssignWorkflow.progress)


@dataclass(frozen=True)
class BulkRun:
    """A job's progress and its workflow's execution status (``RUNNING``, ``COMPLETED``, ...)."""

    progress: BulkProgress
    status: str


async def progress(client: Client, *, bulk_id: str, principal: Principal) -> BulkRun:
    """Progress of a bulk job; managers see only the jobs they started.

    Raises:
        NotFound: No such job, or a manager's view of someone else's.
        Unavailable: The workflow did not answer the query.
    """
    # Untyped handle: mypy cannot bind get_workflow_handle_for through the import cycle.
    handle = client.get_workflow_handle(bulk_workflow_id(bulk_id), result_type=BulkProgress)
    try:
        description = await handle.describe()
        if principal.role is Role.MANAGER and (
            await description.memo_value("assigned_by", None) != principal.actor
        ):
            raise NotFound()
        run_status = description.status or WorkflowExecutionStatus.RUNNING
        if run_status is WorkflowExecutionStatus.COMPLETED:
            result = await handle.result()
        else:
            result = await handle.query(
                BulkAssignWorkflow.progress, rpc_timeout=timedelta(seconds=QUERY_TIMEOUT)
            )
    except WorkflowQueryFailedError as error:
        raise Unavailable(f"progress unavailable ({error})") from error
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise NotFound() from error
        raise Unavailable(f"progress unavailable ({error.message})") from error
    return BulkRun(progress=result, status=run_status.name)
