"""The declared dependencies match the code, and the lock files match the declarations.

* Every third-party module the code imports belongs to a distribution pyproject.toml declares
  (the packages' imports among the runtime dependencies; tests and bench may use the test extra).
* requirements-test.lock pins every declared dependency at a version its specifier admits, each
  pin hash-checked; requirements.lock pins the runtime ones at the very same versions.
* The environment running this suite has the locked versions (``make test`` installs the lock).
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PACKAGES = [
    "domain",
    "duly",
    "workflows",
    "activities",
    "rules",
    "api",
    "notifications",
    "store",
    "services",
]
LOCAL = {*PACKAGES, "tests", "bench"}
#: Where pip's resolver is asked to target (README "Dependencies").
TARGET = {"python_version": "3.11", "sys_platform": "linux", "platform_machine": "x86_64"}


def _requirements(names: list[str]) -> list[Requirement]:
    return [Requirement(r) for r in names]


RUNTIME = _requirements(PROJECT["dependencies"])
TEST = _requirements(PROJECT["optional-dependencies"]["test"])
#: Optional tracing (duly/tracing.py imports it only when DULY_OTEL_ENABLED is set).
OTEL = _requirements(PROJECT["optional-dependencies"]["otel"])


def _declared(requirements: list[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements}


def _pins(lock: str) -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes) of a lock written by ``make lock``."""
    text = (ROOT / lock).read_text()
    pins: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=\S)", text):
        found = re.match(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", block)
        if found:
            name = canonicalize_name(found[1])
            pins[name] = (Version(found[2]), block.count("--hash=sha256:"))
    return pins


def _imports(folder: str) -> dict[str, set[str]]:
    """Top-level third-party modules imported under ``folder`` -> the files importing them."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in LOCAL | {"__future__"}:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _undeclared(folders: list[str], declared: set[str]) -> list[str]:
    owners = metadata.packages_distributions()
    problems = []
    for folder in folders:
        for module, files in sorted(_imports(folder).items()):
            distributions = {canonicalize_name(d) for d in owners.get(module, [])}
            if not distributions & declared:
                problems.append(f"{module} ({sorted(distributions) or 'not installed'}) in {files}")
    return problems


def test_packages_import_only_declared_runtime_dependencies() -> None:
    assert _undeclared(PACKAGES, _declared(RUNTIME) | _declared(OTEL)) == []


def test_tests_and_bench_import_only_declared_dependencies() -> None:
    declared = _declared(RUNTIME) | _declared(TEST) | _declared(OTEL)
    assert _undeclared(["tests", "bench"], declared) == []


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [("requirements-test.lock", RUNTIME + TEST), ("requirements.lock", RUNTIME)],
)
def test_lock_pins_every_declared_dependency_within_its_specifier(
    lock: str, requirements: list[Requirement]
) -> None:
    pins = _pins(lock)
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate(TARGET):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in {lock}: run `make lock`"
        version, _ = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock} pins {name}=={version}, outside {requirement}: run `make lock`"
        )
    unhashed = sorted(name for name, (_, hashes) in pins.items() if hashes == 0)
    assert unhashed == [], f"{lock}: pins without a hash"


def test_runtime_lock_pins_the_test_locks_versions() -> None:
    runtime, test = _pins("requirements.lock"), _pins("requirements-test.lock")
    differ = {n: (v, test.get(n, (None,))[0]) for n, (v, _) in runtime.items() if n in test}
    assert {n: pair for n, pair in differ.items() if pair[0] != pair[1]} == {}
    assert set(runtime) <= set(test)


def test_this_environment_has_the_locked_versions() -> None:
    """What ran green is what the lock says (a stale venv: ``make clean test``)."""
    drift = {}
    for name, (version, _) in _pins("requirements-test.lock").items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            drift[name] = (str(version), str(installed))
    assert drift == {}, f"locked vs installed: {drift}"


def test_floors_the_code_relies_on() -> None:
    """Features the code uses, and the first versions that have them."""
    floors = {canonicalize_name(r.name): r.specifier for r in RUNTIME + TEST}
    deps = (ROOT / "api" / "deps.py").read_text()
    if re.search(r"Depends\([^)]*scope=", deps):  # dependency scopes: FastAPI 0.121
        assert not floors["fastapi"].contains("0.120.4")
    if re.search(r"class \w+:\n(?:.*\n)*?\s+def __init__\(self, request: Request", deps):
        # A class dependency annotated as strings (from __future__ import annotations): 0.123.10
        assert not floors["fastapi"].contains("0.123.9")
    loop_scoped = any("loop_scope" in p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    if loop_scoped:  # loop_scope on marks and fixtures: pytest-asyncio 0.24
        assert not floors["pytest-asyncio"].contains("0.23.8")
    assert not floors["jinja2"].contains("3.1.5")  # sandbox escape CVE-2025-27516


def _pip_installs(text: str) -> list[str]:
    """Every ``pip install`` into Duly's environment in a Dockerfile or Makefile.

    Continuations are joined; ``make lock``'s own tool venv (uv, pinned) is not Duly's.
    """
    joined = re.sub(r"\\\n", " ", text)
    found = re.findall(r"(\S*python\s+-m\s+pip|\S*pip)\s+install([^&\n]*)", joined)
    return [args.strip() for where, args in found if "LOCKER" not in where]


@pytest.mark.parametrize(
    ("path", "lock"),
    [("Dockerfile", "requirements.lock"), ("Makefile", "$(TEST_LOCK)")],
)
def test_installs_come_from_the_locks(path: str, lock: str) -> None:
    """The image and `make test` (so CI) install the locked versions, then Duly without deps."""
    installs = _pip_installs((ROOT / path).read_text())
    assert any(f"-r {lock}" in i and "--require-hashes" in i for i in installs), installs
    for install in installs:
        from_lock = "--require-hashes" in install and "-r " in install
        assert from_lock or "--no-deps" in install, f"{path}: unpinned `pip install{install}`"
