"""The bare workflow of ``bench/memory_where.py`` in the SDK's sandbox, in a module of its own.

A sandboxed run re-imports its workflow's module: this one is as small as a module can be, so
its row is the sandbox's own cost per run.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow


@workflow.defn(name="MemoryBareSandboxed")
class MemoryBareSandboxed:
    """An open workflow that only sleeps, sandboxed."""

    @workflow.run
    async def run(self, days: int) -> None:
        await workflow.sleep(timedelta(days=days))
