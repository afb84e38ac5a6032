"""PackRolloutWorkflow: move running workflows to a newly deployed rules pack."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.rules import RulesActivities
    from domain.contracts.packs import RolloutRequest, RolloutResult


def rollout_workflow_id(pack_hash: str, mode: str) -> str:
    """Business-key id: one roll-out per (pack, mode); a second deploy click is a no-op."""
    return f"pack-rollout/{pack_hash[:16]}/{mode}"


@workflow.defn
class PackRolloutWorkflow:
    """Signals every open obligation's workflow to adopt a pack (``rebase`` or ``apply_now``).

    The signalling runs in one heartbeating activity so tens of thousands of workflows are
    reached without growing this history; a retried attempt resumes from its last heartbeat.
    """

    @workflow.run
    async def run(self, request: RolloutRequest) -> RolloutResult:
        """Signal them all and report how many were reached."""
        return await workflow.execute_activity_method(
            RulesActivities.roll_out_pack,
            request,
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
        )
