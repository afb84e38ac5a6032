"""The JSON text StatusEngine posts to durable_rules, written without dicts or the JSON encoder.

durable_rules compares strings as their raw JSON text (escapes included, never decoded), so a
message must escape a fact exactly as ``json.dumps`` escaped the ruleset's literals; these
tests hold the message writer to ``json.dumps`` byte for byte, and check decisions on facts
whose strings need escaping.
"""

from __future__ import annotations

import json
import random
import threading
from typing import Any

import pytest

from rules.engine import (
    LIST_SENTINEL,
    MARKER_FIELD,
    PythonEvaluator,
    StatusEngine,
    _batch_json,
    message_writer,
)
from rules.facts import FACTS, FactType, complete_facts
from rules.model import StatusRule

#: Strings that need escaping in JSON, or that ``ensure_ascii=False`` writes as they are.
AWKWARD = [
    "",
    'say "hi"',
    "back\\slash",
    "\\",
    '\\"',
    "tab\there\nnew line\r",
    "\x00\x01\x1f\x7f",
    "Zürich — café",
    "東京",
    "emoji 🩺",
    "\u2028\u2029",
    "%s %d %%",  # the writer is a % format: facts must not be read as placeholders
    "{}",
    '","k":1,"sid":"x',
    LIST_SENTINEL,
]


def _old_message(posted: tuple[str, ...], facts: dict[str, Any]) -> dict[str, Any]:
    """The message as the engine built it before (dict, then ``json``), in the same order."""
    kinds = {n: FACTS[n][0] for n in posted}
    message: dict[str, Any] = {MARKER_FIELD: 1}
    for name in posted:
        if kinds[name] in (FactType.INT, FactType.STR):
            message[name] = facts[name]
    for name in posted:
        if kinds[name] is FactType.BOOL:
            message[name] = 1 if facts[name] else 0
    for name in posted:
        if kinds[name] is FactType.STR_LIST:
            message[name] = [LIST_SENTINEL, *facts[name]]
    return message


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _awkward_facts(rng: random.Random) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for name, (kind, _) in FACTS.items():
        if kind is FactType.INT:
            facts[name] = rng.choice([0, 1, -1, 7, -365, 2**40, -(2**70)])
        elif kind is FactType.BOOL:
            facts[name] = rng.random() < 0.5
        elif kind is FactType.STR:
            facts[name] = rng.choice(AWKWARD)
        else:
            facts[name] = rng.sample(AWKWARD, rng.randint(0, 4))
    return facts


def test_the_writer_writes_what_json_dumps_writes() -> None:
    posted = tuple(sorted(FACTS))  # every fact of every type
    write = message_writer(posted)
    rng = random.Random(5)
    for _ in range(500):
        facts = _awkward_facts(rng)
        expected = _json(_old_message(posted, facts))
        assert "{" + write(facts) == expected
    # Spelled out once: bools as 0/1, ints as written, the sentinel first in every list.
    one = message_writer(("completed", "days_until_due", "kind", "roles"))
    text = one(complete_facts({"completed": True, "days_until_due": -3, "kind": 'a"b\\'}))
    assert text == (
        '"duly_decision":1,"days_until_due":-3,"kind":"a\\"b\\\\","completed":1,'
        '"roles":["\\u0000duly"]}'
    )
    assert one(complete_facts({"roles": ["nurse", "é"]})).endswith(
        '"completed":0,"roles":["\\u0000duly","nurse","é"]}'
    )


def test_a_batch_is_valid_json_with_each_message_s_key_and_session() -> None:
    posted = ("days_until_due", "exempt", "location", "roles")
    write = message_writer(posted)
    rng = random.Random(6)
    facts = [complete_facts(_awkward_facts(rng)) for _ in range(50)]
    decoded = json.loads(_batch_json([write(f) for f in facts], "2a"))
    assert decoded == [
        {"k": i, "sid": "2a", **json.loads(_json(_old_message(posted, f)))}
        for i, f in enumerate(facts)
    ]
    assert [list(m)[:3] for m in decoded] == [["k", "sid", MARKER_FIELD]] * 50


def test_unknown_fact_names_are_refused() -> None:
    with pytest.raises(KeyError):
        message_writer(("days_untill_due",))


RULES = [
    StatusRule(name="quoted", when='department == "R&D \\"West\\" \\\\ Zürich"', status="exempt"),
    StatusRule(name="percent", when='location == "%s %d %%"', status="exempt"),
    StatusRule(name="emoji", when='"🩺 nurse" in roles', status="due_soon"),
    StatusRule(name="not_tab", when='"tab\there" not in roles and exempt', status="compliant"),
    StatusRule(name="late", when="days_until_due < -100000000000", status="overdue"),
    StatusRule(name="rest", when="true", status="compliant"),
]


@pytest.fixture(scope="module")
def engine() -> StatusEngine:
    return StatusEngine("e" * 64, RULES)


def test_strings_that_need_escaping_decide_as_in_python(engine: StatusEngine) -> None:
    assert engine.evaluate({"department": 'R&D "West" \\ Zürich'}).rule == "quoted"
    assert engine.evaluate({"department": 'R&D "West" \\ Zurich'}).rule == "rest"
    assert engine.evaluate({"location": "%s %d %%"}).rule == "percent"
    assert engine.evaluate({"roles": ["x", "🩺 nurse"]}).rule == "emoji"
    assert engine.evaluate({"roles": ["🩺"], "exempt": True}).rule == "not_tab"
    assert engine.evaluate({"roles": ["tab\there"], "exempt": True}).rule == "rest"
    assert engine.evaluate({"days_until_due": -(2**40)}).rule == "late"
    rng = random.Random(8)
    cases = []
    for _ in range(2000):
        facts = _awkward_facts(rng)
        facts["department"] = rng.choice([*AWKWARD, 'R&D "West" \\ Zürich'])
        facts["location"] = rng.choice(AWKWARD)
        facts["roles"] = rng.sample([*AWKWARD, "🩺 nurse", "tab\there"], rng.randint(0, 3))
        facts["days_until_due"] = rng.choice([0, -(2**40), 5])
        cases.append(facts)
    python = PythonEvaluator("e" * 64, RULES).evaluate_many(cases)
    assert engine.evaluate_many(cases) == python
    assert {d.rule for d in python} == {r.name for r in RULES}


def test_equal_posted_facts_go_to_durable_rules_once(
    engine: StatusEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    run = engine._run

    def counting(bodies: list[str]) -> list[str]:
        sent.append(len(bodies))
        return run(bodies)

    monkeypatch.setattr(engine, "_run", counting)
    # "requirement" is read by no rule: 600 obligations, two distinct sets of posted facts.
    cases = [
        {"requirement": f"r{i}", "location": "%s %d %%" if i % 2 else "Boston"} for i in range(600)
    ]
    decisions = engine.evaluate_many(cases)
    assert sent == [2]
    assert [d.rule for d in decisions] == ["rest", "percent"] * 300
    assert [d.facts["requirement"] for d in decisions] == [f"r{i}" for i in range(600)]


def test_sessions_are_fresh_per_batch_across_threads(
    engine: StatusEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rules.engine as engine_module

    sids: list[str] = []
    batch_json = engine_module._batch_json

    def recording(bodies: list[str], sid: str) -> str:
        sids.append(sid)
        return batch_json(bodies, sid)

    monkeypatch.setattr(engine_module, "_batch_json", recording)
    cases = [{"days_until_due": i} for i in range(engine_module.BATCH_SIZE * 3)]
    threads = [threading.Thread(target=engine.evaluate_many, args=(cases,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sids) == 12
    assert len(set(sids)) == 12 and "0" not in sids


def test_a_message_both_branches_of_an_or_match_is_decided_once() -> None:
    # Each rule's action carries all the messages it consumes (its "cap"); a message two
    # branches of one "or" match appears twice in that action, and still once in the results.
    rules = [
        StatusRule(name="late_or_grace", when="days_until_due < 0 or in_grace", status="overdue"),
        StatusRule(name="soon", when="days_until_due <= 7 or exempt", status="due_soon"),
        StatusRule(name="rest", when="true", status="compliant"),
    ]
    engine = StatusEngine("f" * 64, rules)
    cases = [
        {"days_until_due": d, "in_grace": g, "exempt": e}
        for d in range(-5, 12)
        for g in (False, True)
        for e in (False, True)
    ] * 20  # repeated obligations: de-duplicated before durable_rules
    python = PythonEvaluator("f" * 64, rules).evaluate_many(cases)
    assert engine.evaluate_many(cases) == python
    assert {d.rule for d in python} == {"late_or_grace", "soon", "rest"}


def test_actions_decode_as_json_when_they_do_not_look_as_expected() -> None:
    from rules.engine import _decoded

    one = '{"late":{"m":{"sid":"1","k":3,"duly_decision":1}}}'
    many = '{"late":[{"m":{"k":4,"sid":"1"}},{"m":{"sid":"1","k":0}}]}'
    assert _decoded(one) == ("late", [3])
    assert _decoded(many) == ("late", [4, 0])
