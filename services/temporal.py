"""Typed workflow calls shared by the services: signal a running workflow, or say why not."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from services.errors import Conflict, NotFound


async def signal(client: Client, *, workflow_id: str, signal: Any, arg: object, what: str) -> None:
    """Send ``signal`` (a typed ``@workflow.signal`` method reference) with ``arg``.

    Args:
        client: The Temporal client.
        workflow_id: The workflow to signal.
        signal: The signal method, e.g. ``AssignmentWorkflow.complete``.
        arg: Its one input model.
        what: How to name the workflow in a :class:`Conflict` ("assignment").

    Raises:
        NotFound: There is no such workflow.
        Conflict: It has closed (completed, cancelled, failed, ...).
    """
    handle = client.get_workflow_handle(workflow_id)
    try:
        await handle.signal(signal, arg)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        try:
            description = await handle.describe()
        except RPCError:
            raise NotFound() from exc
        if description.status != WorkflowExecutionStatus.RUNNING:
            state = description.status.name.lower() if description.status else "closed"
            raise Conflict(f"{what} is already closed ({state})") from exc
        raise
