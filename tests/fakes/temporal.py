"""A stand-in for temporalio's Client in API tests: records signals and workflow starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio.service import RPCError, RPCStatusCode


@dataclass
class FakeHandle:
    """A workflow handle whose ``signal`` is recorded (or raises the client's ``error``)."""

    workflow_id: str
    temporal: FakeTemporal

    async def signal(self, signal: Any, arg: Any = None, **_: Any) -> None:
        if self.temporal.error is not None:
            raise self.temporal.error
        name = getattr(signal, "__name__", signal)
        self.temporal.signals.append((self.workflow_id, str(name), arg))

    async def execute_update(self, update: Any, arg: Any = None, **_: Any) -> None:
        """Recorded with the signals (the answer is not looked at by the callers faked)."""
        await self.signal(update, arg)


@dataclass
class FakeTemporal:
    """Stands in for temporalio.client.Client: records signals and starts, can fail signals."""

    signals: list[tuple[str, str, Any]] = field(default_factory=list)
    started: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    error: Exception | None = None
    #: Schedules by id (``create_schedule`` / ``get_schedule_handle().update`` / ``delete``).
    schedules: dict[str, Any] = field(default_factory=dict)

    def get_workflow_handle(self, workflow_id: str, **_: Any) -> FakeHandle:
        return FakeHandle(workflow_id, self)

    def get_workflow_handle_for(self, _run: Any, workflow_id: str, **_: Any) -> FakeHandle:
        return FakeHandle(workflow_id, self)

    async def start_workflow(self, _run: Any, arg: Any, **kwargs: Any) -> None:
        self.started.append((arg, kwargs))

    async def create_schedule(self, schedule_id: str, schedule: Any, **_: Any) -> None:
        from temporalio.client import ScheduleAlreadyRunningError

        if schedule_id in self.schedules:
            raise ScheduleAlreadyRunningError()
        self.schedules[schedule_id] = schedule

    def get_schedule_handle(self, schedule_id: str) -> FakeScheduleHandle:
        return FakeScheduleHandle(schedule_id, self)


@dataclass
class FakeScheduleHandle:
    """A schedule handle: ``update`` replaces the stored schedule, ``delete`` removes it."""

    schedule_id: str
    temporal: FakeTemporal

    async def update(self, updater: Any, **_: Any) -> None:
        if self.schedule_id not in self.temporal.schedules:
            raise not_found()
        update = await updater(None)
        self.temporal.schedules[self.schedule_id] = update.schedule

    async def delete(self, **_: Any) -> None:
        if self.temporal.schedules.pop(self.schedule_id, None) is None:
            raise not_found()


def not_found() -> RPCError:
    """What Temporal answers for a signal to a closed workflow."""
    return RPCError("workflow execution already completed", RPCStatusCode.NOT_FOUND, b"")


class AbsentHandle(FakeHandle):
    """A workflow Temporal does not know: signals are recorded, everything else is NOT_FOUND."""

    async def _absent(self, *_: Any, **__: Any) -> Any:
        raise not_found()

    describe = query = result = execute_update = fetch_history = _absent


class HealthyService:
    """``client.service_client``: answers the readiness probe."""

    async def check_health(self, **_: Any) -> bool:
        return True


class NoWorkflows(FakeTemporal):
    """A Temporal with no workflows (the read model answers), so every route can be called."""

    service_client = HealthyService()

    def get_workflow_handle(self, workflow_id: str, **_: Any) -> FakeHandle:
        return AbsentHandle(workflow_id, self)

    def get_workflow_handle_for(self, _run: Any, workflow_id: str, **_: Any) -> FakeHandle:
        return AbsentHandle(workflow_id, self)
