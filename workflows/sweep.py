"""StatusSweepWorkflow: re-decide every open obligation's status (run daily by a schedule)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.rules import RulesActivities
    from domain.contracts.sweep import ReplanRequest, SweepRequest, SweepResult

SWEEP_SCHEDULE_ID = "duly-status-sweep"
SWEEP_WORKFLOW_ID = "status-sweep"


@workflow.defn
class StatusSweepWorkflow:
    """One sweep: batch-evaluate all open obligations as of now; the result lists transitions.

    Then every open obligation still planned in a zone its person has left is signalled to
    re-plan (a people import does it at once; this is the catch-up).
    """

    @workflow.run
    async def run(self) -> SweepResult:
        """Sweep once, then re-plan the obligations of people who moved time zone."""
        result = await workflow.execute_activity_method(
            RulesActivities.sweep_statuses,
            SweepRequest(as_of=workflow.now()),
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
        )
        if workflow.patched("sweep-replans-moved-people"):
            # The people import signals at once; this catches a signal it could not send.
            replans = await workflow.execute_activity_method(
                RulesActivities.replan_moved,
                ReplanRequest(actor="nightly sweep"),
                start_to_close_timeout=timedelta(minutes=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
            )
            result = result.model_copy(update={"replanned": replans.signalled})
        return result


async def ensure_sweep_schedule(
    client: Any, task_queue: str, *, every: timedelta = timedelta(days=1)
) -> bool:
    """Create the daily sweep schedule unless it exists (idempotent; every worker calls it).

    Returns:
        True when this call created it.
    """
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleAlreadyRunningError,
        ScheduleIntervalSpec,
        ScheduleOverlapPolicy,
        SchedulePolicy,
        ScheduleSpec,
    )

    try:
        await client.create_schedule(
            SWEEP_SCHEDULE_ID,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    StatusSweepWorkflow.run, id=SWEEP_WORKFLOW_ID, task_queue=task_queue
                ),
                # 02:00 UTC: after midnight in the Americas and Europe, before the workday.
                spec=ScheduleSpec(
                    intervals=[ScheduleIntervalSpec(every=every, offset=timedelta(hours=2))]
                ),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ),
        )
    except ScheduleAlreadyRunningError:
        return False
    return True
