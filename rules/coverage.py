"""Which status rules can ever fire, and which fact combinations no rule covers.

Conditions only compare facts with literals, so the outcome can change only at those literals:
a grid of each fact's literals (and their neighbours, for numbers) plus one "any other" value
covers every distinct case. The grid is exhaustive when small and seeded-sampled when huge.

Split by kind: when the rules read ``kind`` or a fact only one kind sets
(:data:`rules.facts.KIND_FACTS`), there is one grid per kind of obligation. In a kind's grid
``kind`` is fixed, the facts other kinds own keep their defaults (they always have them for this
kind), and only the rules that can hold for that kind, and the facts they read, are varied: each
kind's rules are checked over that kind's own facts. A pack whose certification, training and
apprenticeship-program rules each read a handful of facts stays exhaustively checkable, where
the product of all of them would not be.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from domain.kinds import ObligationKind
from rules.facts import KIND_FACTS, FactType, complete_facts, fact_type

MAX_EXHAUSTIVE = 200_000
SAMPLES = 50_000
OTHER = "<any other value>"


class EvaluableCondition(Protocol):
    """What coverage analysis needs from a compiled condition."""

    @property
    def facts_used(self) -> frozenset[str]:
        """Names of the facts the condition reads."""
        ...

    def constants(self) -> dict[str, set[Any]]:
        """Per fact, the literals it is compared with."""
        ...

    def evaluate(self, facts: Mapping[str, Any]) -> bool:
        """Whether the condition holds for these (complete) facts."""
        ...


@dataclass
class Coverage:
    """The outcome of analysing an ordered rule list."""

    #: Rules that never fire first, with the earlier rules that beat them: one name when a
    #: single earlier rule is true wherever this one is; empty when the rule is never true.
    unreachable: dict[str, list[str]] = field(default_factory=dict)
    #: Example fact sets (only the facts the rules read) that no rule matches.
    uncovered: list[dict[str, Any]] = field(default_factory=list)
    points: int = 0
    exhaustive: bool = True


def _values(name: str, literals: set[Any]) -> list[Any]:
    kind = fact_type(name)
    if kind is FactType.BOOL:
        return [False, True]
    if kind is FactType.INT:
        numbers = {int(v) for v in literals if isinstance(v, int) and not isinstance(v, bool)}
        around = {n + d for n in numbers for d in (-1, 0, 1)} | {0}
        return sorted(around)
    if kind is FactType.STR_LIST:
        words = sorted(str(v) for v in literals)
        combos: list[Any] = [[], [OTHER]]
        combos += [[w] for w in words]
        combos += [list(pair) for pair in itertools.combinations(words, 2)]
        return combos
    return [*sorted(str(v) for v in literals), OTHER]


def _grid(
    axes: dict[str, list[Any]], rng: random.Random
) -> tuple[Iterator[dict[str, Any]], int, bool]:
    names = sorted(axes)
    size = 1
    for name in names:
        size *= len(axes[name])
    if size <= MAX_EXHAUSTIVE:
        points = (
            dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(axes[n] for n in names))
        )
        return points, size, True
    sampled = ({name: rng.choice(axes[name]) for name in names} for _ in range(SAMPLES))
    return sampled, SAMPLES, False


@dataclass(frozen=True)
class Part:
    """One grid of the analysis: the facts fixed in it and the rules that can hold there."""

    #: Facts with one value throughout (``kind``); empty when the rules are not split.
    fixed: dict[str, Any]
    #: Per varied fact, the values tried.
    axes: dict[str, list[Any]]
    #: The rules that can hold in this part, in priority order (the others never do).
    rules: list[tuple[str, EvaluableCondition]]


def _literals(rules: Sequence[tuple[str, EvaluableCondition]]) -> dict[str, set[Any]]:
    literals: dict[str, set[Any]] = {}
    for _, condition in rules:
        for name in condition.facts_used:
            literals.setdefault(name, set())
        for name, values in condition.constants().items():
            literals.setdefault(name, set()).update(values)
    return literals


def _can_hold(
    condition: EvaluableCondition,
    fixed: dict[str, Any],
    literals: dict[str, set[Any]],
    varied: frozenset[str],
) -> bool:
    """Whether ``condition`` is true somewhere with ``fixed`` set and only ``varied`` varying.

    The condition's own facts are few, so its own grid is small; a condition too large to
    enumerate is assumed to hold (it then stays in the part: slower, never wrong).
    """
    axes = {
        name: _values(name, literals[name])
        for name in condition.facts_used
        if name in varied and name not in fixed
    }
    points, _, exhaustive = _grid(axes, random.Random(0))
    if not exhaustive:
        return True
    return any(condition.evaluate(complete_facts({**point, **fixed})) for point in points)


def parts(rules: Sequence[tuple[str, EvaluableCondition]]) -> list[Part]:
    """The grids :func:`analyse` walks: one, or one per kind (see the module docstring).

    Args:
        rules: ``(rule name, condition)`` in priority order.
    """
    literals = _literals(rules)
    owned = {name for facts in KIND_FACTS.values() for name in facts}
    if "kind" not in literals and not owned & set(literals):
        axes = {name: _values(name, values) for name, values in literals.items()}
        return [Part(fixed={}, axes=axes, rules=list(rules))]
    found: list[Part] = []
    for kind in ObligationKind:
        others = owned - KIND_FACTS.get(kind.value, frozenset())
        varied = frozenset(name for name in literals if name not in others and name != "kind")
        fixed: dict[str, Any] = {"kind": kind.value}
        held = [(n, c) for n, c in rules if _can_hold(c, fixed, literals, varied)]
        read = {name for _, condition in held for name in condition.facts_used} & varied
        axes = {name: _values(name, literals[name]) for name in read}
        found.append(Part(fixed=fixed, axes=axes, rules=held))
    return found


def analyse(rules: Sequence[tuple[str, EvaluableCondition]], *, seed: int = 0) -> Coverage:
    """Find unreachable rules and uncovered fact combinations (first match wins).

    Args:
        rules: ``(rule name, condition)`` in priority order.
        seed: Seed for sampling when a grid is too large to enumerate.
    """
    rng = random.Random(seed)
    fired_first: Counter[str] = Counter()
    true_count: Counter[str] = Counter()
    beaten_by: dict[str, Counter[str]] = {name: Counter() for name, _ in rules}
    co_true: dict[str, Counter[str]] = {name: Counter() for name, _ in rules}
    uncovered: list[dict[str, Any]] = []
    total, exhaustive = 0, True
    for part in parts(rules):
        points, size, complete = _grid(part.axes, rng)
        total += size
        exhaustive = exhaustive and complete
        for point in points:
            facts = complete_facts({**point, **part.fixed})
            winner: str | None = None
            true_so_far: list[str] = []
            for name, condition in part.rules:
                if condition.evaluate(facts):
                    true_count[name] += 1
                    co_true[name].update(true_so_far)
                    true_so_far.append(name)
                    if winner is None:
                        winner = name
                        fired_first[name] += 1
                    else:
                        beaten_by[name][winner] += 1
            if winner is None and len(uncovered) < 3:
                uncovered.append({**part.fixed, **point})

    coverage = Coverage(uncovered=uncovered, points=total, exhaustive=exhaustive)
    order = [name for name, _ in rules]
    for name in order:
        if fired_first[name]:
            continue
        if not true_count[name]:
            coverage.unreachable[name] = []
            continue
        covering = [e for e in order if co_true[name][e] == true_count[name]]
        coverage.unreachable[name] = covering[:1] or sorted(beaten_by[name], key=order.index)
    return coverage
