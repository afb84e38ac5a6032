"""durable_rules decisions agree with plain Python, respect rule order and survive its limits."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from rules.engine import FactsError, NoRuleMatched, PythonEvaluator, StatusEngine, engine_for
from rules.model import StatusRule

RULES = [
    StatusRule(name="exempt", when="exempt", status="exempt", severity="info"),
    StatusRule(name="done", when="completed", status="compliant"),
    StatusRule(
        name="grace", when="days_until_due < 0 and in_grace", status="grace_period", severity="high"
    ),
    StatusRule(name="late", when="days_until_due < 0", status="overdue", severity="high"),
    StatusRule(
        name="radiology_nurse",
        when='"nurse" in roles and department in ["Radiology", "Imaging"]',
        status="due_soon",
    ),
    StatusRule(
        name="not_nurse_soon",
        when='"nurse" not in roles and days_until_due <= 7',
        status="due_soon",
    ),
    StatusRule(
        name="boston_or_ack",
        when='not (location != "Boston" and not acknowledged) or employer == "Acme"',
        status="due_soon",
    ),
    StatusRule(
        name="short",
        when='ce_credits_short >= 5 and kind == "certification"',
        status="non_compliant",
    ),
    StatusRule(name="never", when="false", status="overdue"),
    StatusRule(name="rest", when="true", status="compliant"),
]


def _random_facts(rng: random.Random) -> dict[str, Any]:
    return {
        "kind": rng.choice(["training", "certification"]),
        "days_until_due": rng.randint(-40, 40),
        "completed": rng.random() < 0.2,
        "exempt": rng.random() < 0.05,
        "in_grace": rng.random() < 0.5,
        "acknowledged": rng.random() < 0.5,
        "ce_credits_short": rng.randint(0, 10),
        "roles": rng.sample(["nurse", "physician", "technician"], rng.randint(0, 2)),
        "department": rng.choice(["Radiology", "Imaging", "Nursing", ""]),
        "location": rng.choice(["Boston", "Denver"]),
        "employer": rng.choice(["Acme", "Duly Health"]),
    }


@pytest.fixture(scope="module")
def engine() -> StatusEngine:
    return StatusEngine("a" * 64, RULES)


def test_durable_rules_agrees_with_python_single_and_batched(engine: StatusEngine) -> None:
    rng = random.Random(7)
    cases = [_random_facts(rng) for _ in range(3000)]
    python = PythonEvaluator("a" * 64, RULES).evaluate_many(cases)
    batched = engine.evaluate_many(cases)  # 3000 > the 1,024-session cap: sessions are freed
    single = [engine.evaluate(c) for c in cases[:1500]]
    assert [d.rule for d in batched] == [d.rule for d in python]
    assert [d.rule for d in single] == [d.rule for d in python[:1500]]
    fired = {d.rule for d in python}
    # The sample exercises every reachable rule, so agreement is not vacuous.
    assert fired == {r.name for r in RULES} - {"never"}


def test_first_match_wins_and_decision_is_explained(engine: StatusEngine) -> None:
    decision = engine.evaluate({"days_until_due": -3, "in_grace": True, "exempt": True})
    assert (decision.status, decision.rule, decision.severity) == ("exempt", "exempt", "info")
    decision = engine.evaluate({"days_until_due": -3, "in_grace": True})
    assert (decision.status, decision.rule) == ("grace_period", "grace")
    assert decision.pack_hash == "a" * 64
    assert decision.facts["days_until_due"] == -3 and decision.facts["completed"] is False


def test_not_in_an_empty_list_holds(engine: StatusEngine) -> None:
    decision = engine.evaluate({"roles": [], "days_until_due": 3, "location": "Denver"})
    assert decision.rule == "not_nurse_soon"


def test_no_matching_rule_is_reported_not_swallowed() -> None:
    engine = StatusEngine(
        "b" * 64, [StatusRule(name="late", when="days_until_due < 0", status="overdue")]
    )
    with pytest.raises(NoRuleMatched, match="add a last rule"):
        engine.evaluate({"days_until_due": 5})
    with pytest.raises(NoRuleMatched):
        engine.evaluate_many([{"days_until_due": -1}, {"days_until_due": 5}])
    assert engine.evaluate({"days_until_due": -1}).rule == "late"


def test_bad_facts_are_refused(engine: StatusEngine) -> None:
    with pytest.raises(FactsError, match="unknown facts"):
        engine.evaluate({"days_untill_due": 3})
    with pytest.raises(FactsError, match="must be int"):
        engine.evaluate({"days_until_due": "3"})


def test_safe_from_many_threads(engine: StatusEngine) -> None:
    rng = random.Random(11)
    cases = [_random_facts(rng) for _ in range(400)]
    expected = [d.rule for d in PythonEvaluator("a" * 64, RULES).evaluate_many(cases)]
    errors: list[BaseException] = []
    got: dict[int, list[str]] = {}

    def work(n: int) -> None:
        try:
            if n % 2:
                got[n] = [engine.evaluate(c).rule for c in cases]
            else:
                got[n] = [d.rule for d in engine.evaluate_many(cases)]
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(rules == expected for rules in got.values())


def test_a_ruleset_name_is_registered_once() -> None:
    StatusEngine("c" * 64, RULES)
    with pytest.raises(RuntimeError, match="engine_for"):
        StatusEngine("c" * 64, RULES)


def test_engine_for_reuses_the_pack_engine() -> None:
    class FakePack:
        content_hash = "d" * 64
        status_rules = RULES

    first = engine_for(FakePack())  # type: ignore[arg-type]
    assert engine_for(FakePack()) is first  # type: ignore[arg-type]
