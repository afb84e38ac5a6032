"""Joiners, movers and leavers as durable workflows, and the nightly reconciliation.

``DirectoryChangeWorkflow`` runs once per directory change (business key person + change
id: a second start of the same change is refused by Temporal). It plans from the directory
as it is when it runs (:func:`rules.directory.plan_person`, recorded in the history) and
carries the plan out: obligations start through the normal assignment path, pinned to the
active pack; closings, pauses and resumes are signals to the obligations' workflows.

``DirectoryReconcileWorkflow`` (a Temporal Schedule, nightly, and after a pack deploy)
plans everyone and repairs what drifted (a change whose workflow could not be started, an
obligation started by hand that no longer applies, a pack whose ``applies_to`` changed).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.directory import DirectoryActivities
    from activities.tracks import TrackActivities
    from domain.contracts.directory import (
        ApplyPlanRequest,
        DirectoryChangeInput,
        DirectoryOutcome,
        PlanChangeRequest,
        ReconcileRequest,
        ReconcileResult,
    )
    from domain.contracts.tracks import TrackNoticeSweep
    from domain.ids import directory_change_workflow_id

__all__ = [
    "RECONCILE_SCHEDULE_ID",
    "DirectoryChangeWorkflow",
    "DirectoryReconcileWorkflow",
    "directory_change_workflow_id",
    "ensure_reconcile_schedule",
    "reconcile_workflow_id",
]

RECONCILE_SCHEDULE_ID = "duly-directory-reconcile"
_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


def reconcile_workflow_id(reason: str) -> str:
    """Business key of one reconciliation (``nightly`` runs are the schedule's)."""
    return f"directory-reconcile/{reason}"


@workflow.defn
class DirectoryChangeWorkflow:
    """One person's directory change: assign what now applies, close what no longer does."""

    @workflow.run
    async def run(self, inp: DirectoryChangeInput) -> DirectoryOutcome:
        """Plan (recorded), then apply; the result says what was started and closed."""
        change = inp.change
        plan = await workflow.execute_activity_method(
            DirectoryActivities.plan_directory_change,
            PlanChangeRequest(change=change, today=workflow.now().date()),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=_RETRY,
        )
        if plan.is_empty():
            # Nothing to do (an update, or a mover whose requirements did not change); the
            # plan, with a manager change if any, is in this history.
            return DirectoryOutcome(
                change_id=change.change_id,
                external_id=change.external_id,
                kind=plan.kind,
                kept=list(plan.keep),
                certificates_needed=list(plan.certificates_needed),
                manager_change=plan.manager_change,
            )
        return await workflow.execute_activity_method(
            DirectoryActivities.apply_directory_plan,
            ApplyPlanRequest(
                plan=plan,
                actor=f"directory ({change.source})",
                change_id=change.change_id,
            ),
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=_RETRY,
        )


#: The reconciliation also starts the track completion notices nobody sent.
TRACK_NOTICES_PATCH = "reconcile-track-completion-notices"


@workflow.defn
class DirectoryReconcileWorkflow:
    """Compare the directory with the open obligations and repair the drift."""

    @workflow.run
    async def run(self, request: ReconcileRequest) -> ReconcileResult:
        """Reconcile everyone as of the workflow's today; the result lists what was fixed."""
        if request.today is None:
            request = request.model_copy(update={"today": workflow.now().date()})
        result = await workflow.execute_activity_method(
            DirectoryActivities.reconcile_directory,
            request,
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=_RETRY,
        )
        # Histories from before completion notices did not run this step.
        if not request.dry_run and workflow.patched(TRACK_NOTICES_PATCH):
            # Tracks completed outside a course's workflow (or a notice whose start failed):
            # their learners are told now, once.
            started = await workflow.execute_activity_method(
                TrackActivities.send_track_completion_notices,
                TrackNoticeSweep(as_of=workflow.now()),
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=_RETRY,
            )
            result = result.model_copy(update={"track_notices": len(started)})
        return result


async def ensure_reconcile_schedule(
    client: Any, task_queue: str, *, every: timedelta = timedelta(days=1)
) -> bool:
    """Create the nightly reconciliation schedule unless it exists (idempotent).

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
            RECONCILE_SCHEDULE_ID,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    DirectoryReconcileWorkflow.run,
                    ReconcileRequest(),
                    id=reconcile_workflow_id("nightly"),
                    task_queue=task_queue,
                ),
                # 03:00 UTC: an hour after the status sweep, before the workday.
                spec=ScheduleSpec(
                    intervals=[ScheduleIntervalSpec(every=every, offset=timedelta(hours=3))]
                ),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ),
        )
    except ScheduleAlreadyRunningError:
        return False
    return True
