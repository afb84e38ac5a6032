"""Which status rules can ever fire, and which fact combinations no rule covers.

Conditions only compare facts with literals, so the outcome can change only at those literals:
a grid of each fact's literals (and their neighbours, for numbers) plus one "any other" value
covers every distinct case. The grid is exhaustive when small and seeded-sampled when huge.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rules.facts import FactType, complete_facts, fact_type

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


def analyse(rules: Sequence[tuple[str, EvaluableCondition]], *, seed: int = 0) -> Coverage:
    """Find unreachable rules and uncovered fact combinations (first match wins).

    Args:
        rules: ``(rule name, condition)`` in priority order.
        seed: Seed for sampling when the grid is too large to enumerate.
    """
    literals: dict[str, set[Any]] = {}
    for _, condition in rules:
        for name in condition.facts_used:
            literals.setdefault(name, set())
        for name, values in condition.constants().items():
            literals.setdefault(name, set()).update(values)
    axes = {name: _values(name, values) for name, values in literals.items()}
    points, size, exhaustive = _grid(axes, random.Random(seed))

    fired_first: Counter[str] = Counter()
    true_count: Counter[str] = Counter()
    beaten_by: dict[str, Counter[str]] = {name: Counter() for name, _ in rules}
    co_true: dict[str, Counter[str]] = {name: Counter() for name, _ in rules}
    uncovered: list[dict[str, Any]] = []
    for point in points:
        facts = complete_facts(point)
        winner: str | None = None
        true_so_far: list[str] = []
        for name, condition in rules:
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
            uncovered.append(point)

    coverage = Coverage(uncovered=uncovered, points=size, exhaustive=exhaustive)
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
