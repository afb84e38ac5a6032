"""The time-skipping ``env`` fixture keeps one red test one red test (pytest run inside pytest).

A sub-run of a small test module on the real fixtures: a test fails with a workflow still waiting
on its timer, another leaves one behind and passes, another locks the server's clock and passes;
the tests after each of them skip days of time and must pass, and a clean test's server is kept.
On the old fixture (one server per module, nothing else) the sub-run hangs at the third test.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

SUB_CONFTEST = """
from tests.timeskip import *  # noqa: F403 - the fixtures and report hook under test
"""

SUB_TESTS = '''
from datetime import time, timedelta
import uuid

import pytest
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

pytestmark = pytest.mark.asyncio(loop_scope="module")
SERVERS = []  # (test, server started count, server address)


@workflow.defn(sandboxed=False)
class Nap:
    @workflow.run
    async def run(self, days: int) -> str:
        await workflow.sleep(timedelta(days=days))
        return "rested"


async def nap(env: WorkflowEnvironment, days: int) -> str:
    """Run a workflow across ``days`` of skipped time on a worker of its own."""
    queue = str(uuid.uuid4())
    async with Worker(env.client, task_queue=queue, workflows=[Nap]):
        return await env.client.execute_workflow(
            Nap.run, days, id=f"nap-{uuid.uuid4()}", task_queue=queue
        )


def note(name, env, server):
    SERVERS.append((name, server.started, env.client.service_client.config.target_host))


async def leave_a_napper(env: WorkflowEnvironment) -> None:
    """Start a 3-day nap and stop its worker: the nap is left waiting on its timer."""
    queue = str(uuid.uuid4())
    async with Worker(env.client, task_queue=queue, workflows=[Nap]):
        await env.client.start_workflow(Nap.run, 3, id=f"left-{uuid.uuid4()}", task_queue=queue)
        await env.sleep(timedelta(hours=1))


async def test_1_anchored_then_fails_with_a_workflow_left_waiting(env, time_skipping_server):
    note("1", env, time_skipping_server)
    now = await env.get_current_time()
    assert now.time().replace(second=0, microsecond=0) == time(10, 0), now
    await leave_a_napper(env)
    assert False, "deliberate failure"


async def test_2_skips_days_after_the_failure(env, time_skipping_server):
    note("2", env, time_skipping_server)
    await env.sleep(timedelta(days=10))
    assert await nap(env, 5) == "rested"


async def test_3_passes_but_leaves_a_workflow_behind(env, time_skipping_server):
    note("3", env, time_skipping_server)
    await leave_a_napper(env)


async def test_4_skips_past_the_leftover_timer(env, time_skipping_server):
    note("4", env, time_skipping_server)
    assert await nap(env, 5) == "rested"
    # Lock the clock as a task in flight at a worker's shutdown would: it cannot skip any more.
    from temporalio.api.testservice.v1 import LockTimeSkippingRequest

    await env.client.test_service.lock_time_skipping(LockTimeSkippingRequest())


async def test_5_skips_after_a_locked_clock(env, time_skipping_server):
    note("5", env, time_skipping_server)
    assert await nap(env, 5) == "rested"


async def test_6_servers():
    started = [count for _, count, _ in SERVERS]
    addresses = [address for _, _, address in SERVERS]
    # 1 failed: replaced. 2 clean: kept for 3. 3 left a workflow: replaced. 4 locked: replaced.
    # (Addresses only show reuse: a new server may get a port an old one freed.)
    assert started == [1, 2, 2, 3, 4], SERVERS
    assert addresses[2] == addresses[1]
'''


@pytest.fixture
def sub_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester directory that imports this repository's ``tests`` package."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("DULY_TEST_CLOCK", raising=False)
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makeconftest(SUB_CONFTEST)
    pytester.makepyfile(test_sub=SUB_TESTS)
    return pytester


def test_one_failure_does_not_cascade_and_servers_are_reused_when_clean(
    sub_run: pytest.Pytester,
) -> None:
    result = sub_run.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-ra", timeout=180)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 1 and outcomes.get("passed") == 5, result.stdout.str()
    output = result.stdout.str()
    assert re.search(r"^FAILED test_sub.py::test_1_\w+", output, re.MULTILINE), output
    assert "AssertionError: deliberate failure" in output  # and for the reason it was meant to
    # Nothing waited for a locked clock (each skip would take its 30 s RPC deadline).
    assert "Timeout expired" not in output
