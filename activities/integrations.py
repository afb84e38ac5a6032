"""The integration sync activity: one sync of one learning-system connector.

Thin: the sync itself (:func:`services.integrations.run_sync`) is injected by the worker, as
:class:`~activities.rules.RulesActivities` gets ``start_assignment``; it is idempotent (the
cursor and the intake's idempotency keys), so a retried activity repeats nothing recorded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import activity

from domain.contracts.integration import SyncRequest, SyncResult

Sync = Callable[[SyncRequest], Awaitable[SyncResult]]


class IntegrationActivities:
    """Activities of :class:`~workflows.integration.IntegrationSyncWorkflow`."""

    def __init__(self, sync: Sync) -> None:
        self._sync = sync

    @activity.defn(name="sync_integration")
    async def sync_integration(self, request: SyncRequest) -> SyncResult:
        """Sync the integration; a failed sync is a result (error counted), not a retry storm."""
        return await self._sync(request)

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for the worker."""
        return [self.sync_integration]
