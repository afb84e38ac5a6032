"""DigestWorkflow: fold a person's non-final reminders of one day into one message per channel."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.assignment import ObligationActivities
    from domain.contracts.digest import DigestInput, DigestItem, DigestRequest, DigestResult

#: The signal that queues one reminder. Signal-with-start takes the name (the SDK's
#: ``start_signal`` is a string), so the handler and the starter share this one.
ADD_SIGNAL = "add"


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

    @workflow.signal(name=ADD_SIGNAL)
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
                    ObligationActivities.send_digest,
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


class DigestStarter:
    """Adds a queued reminder to the person's digest workflow of the day (signal-with-start).

    The ``send_reminder`` activity calls it (as its ``activities.assignment.DigestSink``) from
    a worker thread; the Temporal client lives on the worker's event loop.
    """

    def __init__(
        self,
        client: Any,
        task_queue: str,
        loop: asyncio.AbstractEventLoop,
        window_seconds: int = 600,
    ) -> None:
        """Bind the client, the task queue digests run on, the client's loop and the window."""
        self._client, self._task_queue, self._loop = client, task_queue, loop
        self._window = window_seconds

    def add(self, person: str, day: date, channel: str, notification_id: int) -> None:
        """Signal-with-start ``digest/{person}/{day}/{channel}``."""
        coroutine = self._client.start_workflow(
            DigestWorkflow.run,
            DigestInput(person=person, channel=channel, day=day, window_seconds=self._window),
            id=digest_workflow_id(person, day.isoformat(), channel),
            task_queue=self._task_queue,
            start_signal=ADD_SIGNAL,
            start_signal_args=[DigestItem(notification_id=notification_id)],
        )
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)
