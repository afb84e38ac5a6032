"""IntegrationSyncWorkflow: one sync of one learning-system integration (run by its schedule)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.integrations import IntegrationActivities
    from domain.contracts.integration import SyncRequest, SyncResult


@workflow.defn
class IntegrationSyncWorkflow:
    """Call the sync activity once; its result says what was pulled, recorded and pushed.

    A source failure is part of the result (the integration's error count rises); only a crash
    of the activity itself is retried, and a retry repeats nothing already recorded.
    """

    @workflow.run
    async def run(self, request: SyncRequest) -> SyncResult:
        """Sync once."""
        return await workflow.execute_activity_method(
            IntegrationActivities.sync_integration,
            request,
            start_to_close_timeout=timedelta(hours=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5), maximum_attempts=5),
        )
