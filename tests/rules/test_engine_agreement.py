"""Both evaluators decide exactly alike on every shipped pack, over many generated fact sets.

The durable_rules engine takes shortcuts for speed (each distinct set of posted facts is
decided once, action results are parsed without decoding the whole message, decisions are
built without re-validation); this holds them to the plain Python first-match evaluator.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from rules.engine import Decision, PythonEvaluator, engine_for
from rules.facts import FACTS, FactType
from rules.loader import load_pack
from rules.model import Pack

PACKS = sorted(p for p in (Path(__file__).parents[2] / "rules" / "packs").iterdir() if p.is_dir())


def _generated(pack: Pack, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` fact sets around the literals the pack's rules compare with (so every rule fires)."""
    rng = random.Random(seed)
    literals: dict[str, set[Any]] = {}
    for rule in pack.status_rules:
        for name, values in rule.condition.constants().items():
            literals.setdefault(name, set()).update(values)
    out = []
    for _ in range(n):
        facts: dict[str, Any] = {}
        for name, (kind, _) in FACTS.items():
            values = sorted(literals.get(name, set()), key=repr)
            if rng.random() < 0.2:
                continue  # left to its default
            if kind is FactType.INT:
                facts[name] = rng.choice(values or [0]) + rng.randint(-3, 3)
            elif kind is FactType.BOOL:
                facts[name] = rng.random() < 0.5
            elif kind is FactType.STR:
                facts[name] = rng.choice([*values, "other"])
            else:
                pool = [*values, "other"]
                facts[name] = rng.sample(pool, rng.randint(0, min(3, len(pool))))
        out.append(facts)
    return out


@pytest.mark.parametrize("path", PACKS, ids=[p.name for p in PACKS])
def test_durable_batch_and_python_agree_on_generated_facts(path: Path) -> None:
    pack = load_pack(path)
    facts = _generated(pack, 20_000, seed=19)
    python = PythonEvaluator(pack.content_hash, pack.status_rules).evaluate_many(facts)
    durable = engine_for(pack).evaluate_many(facts)
    assert durable == python  # status, severity, rule, pack hash and complete facts
    # Not vacuous: most of the pack's rules decide something in this sample.
    fired = {d.rule for d in python}
    assert len(fired) >= len(pack.status_rules) // 2, fired
    # Fast-built decisions are ordinary ones: equal to a validated copy, dump the same.
    for decision in durable[:50]:
        assert Decision.model_validate(decision.model_dump()) == decision
        assert decision.model_fields_set == set(Decision.model_fields)
        with pytest.raises(ValueError):
            decision.status = "x"  # type: ignore[misc]
