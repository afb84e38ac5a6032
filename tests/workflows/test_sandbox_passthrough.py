"""Duly's workflow modules pass through the sandbox (issue 19, worker memory), safely.

Passed through, ``workflows.*`` is imported once per worker process instead of once per workflow
run (``bench/memory_where.py``: ~190 KiB of Python heap per cached assignment re-imported, ~40
passed through). The price: the sandbox's module proxies (``datetime.now``, ``random``...) no
longer guard those modules' own globals, and a module-level object is shared by every run. The
static guard below stands in for them; the recorded histories still replay in the SDK's default
(re-importing) sandbox (``test_audit_history.py``), which keeps its runtime checks.
"""

from __future__ import annotations

import ast
from pathlib import Path

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from duly.settings import Settings
from duly.worker import PASSED_THROUGH, workflow_runner

WORKFLOWS_DIR = Path(__file__).parents[2] / "workflows"

#: Modules whose use in workflow code is non-deterministic or does I/O.
FORBIDDEN_MODULES = {
    "os",
    "time",
    "random",
    "secrets",
    "uuid",
    "socket",
    "threading",
    "subprocess",
    "requests",
    "httpx",
    "sqlalchemy",
    "store",
    "services",
    "notifications",
}
#: Calls that read the wall clock (workflow code uses ``workflow.now()``).
FORBIDDEN_CALLS = {"now", "utcnow", "today", "fromtimestamp"}
#: Methods that change a container in place.
MUTATORS = {"append", "extend", "insert", "pop", "remove", "clear", "update", "add", "discard"}


def violations(source: str) -> list[str]:
    """What in ``source`` would be unsafe in a module shared by every workflow run."""
    tree = ast.parse(source)
    found: list[str] = []
    module_names = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            names = []
        found += [f"imports {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
        if isinstance(node, ast.Global):
            found.append(f"global {', '.join(node.names)}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if node.func.attr in FORBIDDEN_CALLS and not (
                isinstance(owner, ast.Name) and owner.id == "workflow"
            ):
                found.append(f"calls .{node.func.attr}()")
            if (
                node.func.attr in MUTATORS
                and isinstance(owner, ast.Name)
                and owner.id in module_names
            ):
                found.append(f"mutates module-level {owner.id}")
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Subscript | ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id in module_names
                ):
                    found.append(f"mutates module-level {target.value.id}")
    return found


def test_the_guard_flags_what_the_sandbox_would_have_caught() -> None:
    bad = (
        "import random\nfrom datetime import datetime\nfrom store.db import Database\n"
        "SEEN = []\nLIMITS = {}\n"
        "def f():\n    global SEEN\n    SEEN.append(datetime.now())\n    LIMITS['a'] = 1\n"
    )
    assert sorted(violations(bad)) == [
        "calls .now()",
        "global SEEN",
        "imports random",
        "imports store.db",
        "mutates module-level LIMITS",
        "mutates module-level SEEN",
    ]
    assert violations("from temporalio import workflow\nx = workflow.now()\n") == []


def test_passed_through_workflow_modules_hold_nothing_a_run_could_change() -> None:
    files = sorted(WORKFLOWS_DIR.glob("*.py"))
    assert len(files) > 10
    found = {f.name: v for f in files if (v := violations(f.read_text()))}
    assert found == {}


def test_the_worker_passes_workflow_modules_through_unless_told_to_reimport() -> None:
    lean = workflow_runner(Settings(worker_sandbox_reimport=False))
    assert isinstance(lean, SandboxedWorkflowRunner)
    assert set(PASSED_THROUGH) == {"workflows"}
    assert "workflows" in lean.restrictions.passthrough_modules
    # Everything else the SDK restricts stays restricted.
    assert lean.restrictions.invalid_module_members == (
        SandboxRestrictions.default.invalid_module_members
    )
    strict = workflow_runner(Settings(worker_sandbox_reimport=True))
    assert isinstance(strict, SandboxedWorkflowRunner)
    assert strict.restrictions == SandboxRestrictions.default
