"""BulkAssignWorkflow: assign one requirement to everyone a selector matches.

Design (see ARCHITECTURE.md, "Fan-out limits"): no child workflows. The workflow

1. runs ``resolve_bulk_targets`` once: the sorted external ids of the active people the
   selector matches, the due date and the pinned pack hash (all recorded in the history, so
   the run is reproducible even if the directory or the active pack changes meanwhile);
2. walks that list in windows of :data:`WINDOW` people, one ``start_bulk_assignments``
   activity per window. The activity starts each person's ``AssignmentWorkflow`` with its
   deterministic business-key id (``assignment/{person}/{requirement}/1``), 50 at a time, and
   heartbeats its offset and counts so a retried attempt resumes where the last one stopped.
   A person who already has the obligation is *skipped* (Temporal rejects the duplicate id);
3. adds each window's counts to its own :class:`BulkProgress`, readable at any time through
   the ``progress`` query, and continues as new when the history grows large.

10,000 people are 20 activity calls (~130 history events). The target list travels in the
history (and in a continue-as-new input): ~15 bytes per person, fine up to ~100,000 people.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.bulk import BulkActivities
    from domain.contracts.bulk import (
        MAX_ERRORS,
        WINDOW,
        BulkAssignInput,
        BulkAssignRequest,
        BulkPlan,
        BulkProgress,
        BulkSelector,
        BulkWindow,
        BulkWindowResult,
    )
    from domain.ids import bulk_workflow_id

# The contracts live in domain.contracts.bulk (the activities use them too); re-exported here.
__all__ = [
    "MAX_ERRORS",
    "WINDOW",
    "BulkAssignInput",
    "BulkAssignRequest",
    "BulkAssignWorkflow",
    "BulkPlan",
    "BulkProgress",
    "BulkSelector",
    "BulkWindow",
    "BulkWindowResult",
    "bulk_workflow_id",
]


@workflow.defn
class BulkAssignWorkflow:
    """Starts an ``AssignmentWorkflow`` per selected person, a window at a time."""

    @workflow.init
    def __init__(self, inp: BulkAssignInput) -> None:
        self._progress = inp.progress or BulkProgress(bulk_id=inp.request.bulk_id)

    @workflow.query
    def progress(self) -> BulkProgress:
        """Counts so far (``done`` once every window has run)."""
        return self._progress

    @workflow.run
    async def run(self, inp: BulkAssignInput) -> BulkProgress:
        """Resolve the targets (first run only), then start them window by window."""
        request = inp.request
        plan = inp.plan
        if plan is None:
            plan = await workflow.execute_activity_method(
                BulkActivities.resolve_bulk_targets,
                request,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
            )
            self._progress.total = len(plan.people)
        offset = inp.offset
        while offset < len(plan.people):
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(
                    BulkAssignInput(
                        request=request,
                        plan=plan,
                        offset=offset,
                        progress=self._progress,
                        window=inp.window,
                    )
                )
            window = BulkWindow(
                bulk_id=request.bulk_id,
                requirement_id=plan.requirement_id,
                requirement_title=plan.requirement_title,
                due_date=plan.due_date,
                pack_hash=plan.pack_hash,
                assigned_by=request.assigned_by,
                people=plan.people[offset : offset + inp.window],
            )
            result = await workflow.execute_activity_method(
                BulkActivities.start_bulk_assignments,
                window,
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
            )
            progress = self._progress
            progress.started += result.started
            progress.skipped += result.skipped
            progress.failed += result.failed
            room = MAX_ERRORS - len(progress.errors)
            if room > 0:
                progress.errors.extend(result.errors[:room])
            offset += len(window.people)
        self._progress.done = True
        return self._progress
