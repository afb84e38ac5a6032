"""DigestWorkflow: fold a person's non-final reminders of one day into one message per channel."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.assignment import AssignmentActivities
    from duly.domain import DigestInput, DigestItem, DigestRequest, DigestResult


def digest_workflow_id(person: str, day: str, channel: str) -> str:
    """Business key: one digest per person, local day and channel."""
    return f"digest/{person}/{day}/{channel}"


@workflow.defn
class DigestWorkflow:
    """Collects ``add`` signals for the input's window, then sends them as one message.

    Stages fire at the same local hour, so a day's reminders arrive within seconds of each
    other; the window (``DULY_DIGEST_WINDOW_SECONDS``, 10 minutes by default) is generous.

    A reminder that arrives while the digest is being sent is kept for another round, so
    nothing is dropped; one that arrives after the workflow closed starts a new run.
    """

    def __init__(self) -> None:
        self._items: list[int] = []

    @workflow.signal
    def add(self, item: DigestItem) -> None:
        """Queue one reminder (duplicates are ignored)."""
        if item.notification_id not in self._items:
            self._items.append(item.notification_id)

    @workflow.run
    async def run(self, input: DigestInput) -> list[DigestResult]:
        """Wait for the window, send, repeat while more arrived."""
        results: list[DigestResult] = []
        while True:
            await workflow.wait_condition(lambda: bool(self._items))
            await workflow.sleep(timedelta(seconds=input.window_seconds))
            batch, self._items = self._items, []
            results.append(
                await workflow.execute_activity_method(
                    AssignmentActivities.send_digest,
                    DigestRequest(
                        person=input.person,
                        channel=input.channel,
                        day=input.day,
                        notification_ids=batch,
                    ),
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
                )
            )
            if not self._items:
                return results
