"""Assignments: build, start, signal, update and query ``AssignmentWorkflow`` runs.

The one code path used by the API, the CLI, the demo and (through the starter the shell
gives the activities) bulk jobs and recurring cycles.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.assigning import NotAnAssignment, assignment_input, utc_offset_minutes
from duly.domain import AssignmentInput
from workflows.assignment import AssignmentWorkflow

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
