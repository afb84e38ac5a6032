"""The floors stay honest: each package imports only the floors below it (ARCHITECTURE.md).

A small AST walk over every ``.py`` file of the packages, function-local and ``TYPE_CHECKING``
imports included (a lazy import is still a dependency: the cycle issue 12 found was kept alive
by one). A failure names each offending ``file:line``, what it imports and the rule it breaks.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Floors, low to high: a module may import its own package and any floor strictly below.
FLOORS: dict[str, float] = {
    "domain": 1,
    "rules": 2,
    "store": 3,
    "notifications": 4,
    "activities": 5,
    "workflows": 6,
    "services": 7,
    "api": 8,
    # The application shell: CLI, dev stack, worker wiring, demo.
    "duly": 9,
}

#: The configuration floor (1.5). Settings, key derivation and the Temporal client factory are
#: read by store (migrations), notifications (providers), activities, services and api, so they
#: cannot live on the shell's floor; they are plain configuration that imports only the domain
#: and third-party libraries, so they sit just above it. ``duly`` itself is only ``__version__``.
CONFIG_MODULES: frozenset[str] = frozenset(
    {"duly", "duly.settings", "duly.keys", "duly.temporal", "duly.metrics", "duly.tracing"}
)
CONFIG_FLOOR = 1.5

#: Pairs the floor order alone would allow but the architecture forbids: (importer, imported).
FORBIDDEN: dict[tuple[str, str], str] = {
    ("store", "rules"): "store persists plain data; it does not know the rules (issue 12 item 3)",
    ("rules", "config"): "rules are pure: facts in, decision out; no settings, no keys",
}

#: Third-party imports the domain may use: validation and the signal decorators its contracts
#: (``ObligationMessages``) carry. Everything else there would be I/O or a heavier dependency.
DOMAIN_THIRD_PARTY: frozenset[str] = frozenset({"pydantic", "pydantic_core", "temporalio.workflow"})


@dataclass(frozen=True)
class Edge:
    """One import statement: where it is, which unit imports which."""

    where: str
    source: str
    target: str
    module: str


def module_name(path: Path) -> str:
    """``api/routers/bulk.py`` → ``api.routers.bulk``; a package's ``__init__`` → the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit(module: str) -> str:
    """The unit a module belongs to: ``config`` for the configuration modules, else its package."""
    return "config" if module in CONFIG_MODULES else module.split(".")[0]


def floor(unit_name: str) -> float:
    """The floor of a unit."""
    return CONFIG_FLOOR if unit_name == "config" else FLOORS[unit_name]


def sources() -> list[Path]:
    """Every Python file of the packages (migrations included)."""
    return sorted(p for package in FLOORS for p in (ROOT / package).rglob("*.py"))


def imported_modules(path: Path, tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in ``tree``, function-local ones included.

    ``from a import b`` names ``a.b`` when ``b`` is a module of ours (``from duly import cli`` is
    an import of ``duly.cli``) and ``a`` when it is a name in one.
    """
    found: list[tuple[int, str]] = []
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this file's package
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                # Third-party names stay precise (temporalio.workflow); ours resolve to a module.
                ours = base.split(".")[0] in FLOORS
                found.append((node.lineno, base if ours and not _is_ours(candidate) else candidate))
    return list(dict.fromkeys(found))  # one line per statement and module


def _is_ours(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def edges() -> tuple[list[Edge], list[Edge]]:
    """Imports between our units, and the domain's third-party imports."""
    ours: list[Edge] = []
    third_party: list[Edge] = []
    for path in sources():
        source = unit(module_name(path))
        rel = path.relative_to(ROOT)
        for line, module in imported_modules(path, ast.parse(path.read_text(), str(rel))):
            top = module.split(".")[0]
            where = f"{rel}:{line}"
            if top in FLOORS:
                target = unit(module)
                if target != source:
                    ours.append(Edge(where, source, target, module))
            elif source == "domain" and top not in sys.stdlib_module_names and top != "__future__":
                third_party.append(Edge(where, source, top, module))
    return ours, third_party


def violations() -> list[str]:
    """Every import that breaks a floor rule, as ``file:line: what (rule)``."""
    ours, third_party = edges()
    found: list[str] = []
    for edge in ours:
        low, high = floor(edge.source), floor(edge.target)
        if high > low:
            found.append(
                f"{edge.where}: {edge.source} (floor {low:g}) imports {edge.module}"
                f" ({edge.target}, floor {high:g}): a floor may import only the floors below it"
            )
        elif (edge.source, edge.target) in FORBIDDEN:
            found.append(
                f"{edge.where}: {edge.source} imports {edge.module}:"
                f" {FORBIDDEN[edge.source, edge.target]}"
            )
    for edge in third_party:
        if not any(
            edge.module == ok or edge.module.startswith(ok + ".") for ok in DOMAIN_THIRD_PARTY
        ):
            found.append(
                f"{edge.where}: domain imports {edge.module}: the domain may use only"
                f" {', '.join(sorted(DOMAIN_THIRD_PARTY))} besides the standard library"
            )
    return found


def cycles() -> list[str]:
    """Groups of units that reach each other (strongly connected), with the imports inside."""
    ours, _ = edges()
    graph: dict[str, dict[str, str]] = defaultdict(dict)
    for edge in ours:
        graph[edge.source].setdefault(edge.target, edge.where)
    nodes = sorted({edge.source for edge in ours} | {edge.target for edge in ours})
    reach = {node: _reachable(graph, node) for node in nodes}
    found: list[str] = []
    done: set[str] = set()
    for node in nodes:
        group = sorted(other for other in nodes if other in reach[node] and node in reach[other])
        if len(group) < 2 or node in done:
            continue
        done.update(group)
        inside = [
            f"  {a} -> {b} ({graph[a][b]})" for a in group for b in sorted(graph[a]) if b in group
        ]
        found.append(f"cycle between {', '.join(group)}:\n" + "\n".join(inside))
    return found


def _reachable(graph: dict[str, dict[str, str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def test_every_package_has_a_floor() -> None:
    """A new top-level package must be placed on a floor (here and in ARCHITECTURE.md)."""
    ours = set(FLOORS)
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages <= ours, f"packages without a floor in tests/test_layers.py: {packages - ours}"


def test_no_floor_imports_a_higher_one() -> None:
    """Each floor imports only the floors below it; the config modules import only the domain."""
    found = violations()
    assert not found, f"{len(found)} imports break the floors:\n" + "\n".join(found)


def test_no_cycle_between_packages() -> None:
    """No package reaches itself through others (not even through a function-local import)."""
    found = cycles()
    assert not found, "\n".join(found)


def test_no_router_imports_another() -> None:
    """Routers map HTTP to services; what two routers share lives in services or api/ modules."""
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in sorted((ROOT / "api" / "routers").glob("*.py"))
        for line, module in imported_modules(path, ast.parse(path.read_text()))
        if module.startswith("api.routers.") and module != module_name(path)
    ]
    assert not found, "a router imports another router:\n" + "\n".join(found)


def test_the_checker_sees_a_violation() -> None:
    """The walk finds function-local and relative imports (so the tests above can fail)."""
    sample = ROOT / "store" / "models.py"
    tree = ast.parse("def f():\n    from api.app import create_app\n    from . import db\n")
    assert imported_modules(sample, tree) == [(2, "api.app"), (3, "store.db")]
