"""The condition language: what HR may write, and what they are told when it is wrong."""

from __future__ import annotations

import pytest

from rules.conditions import ConditionError, compile_condition
from rules.facts import complete_facts


@pytest.mark.parametrize(
    ("text", "facts", "expected"),
    [
        ("days_until_due < 0 and not completed", {"days_until_due": -1}, True),
        ("days_until_due < 0 and not completed", {"days_until_due": -1, "completed": True}, False),
        ("0 > days_until_due", {"days_until_due": -1}, True),  # literal on the left
        ('"nurse" in roles', {"roles": ["nurse", "manager"]}, True),
        ('"nurse" not in roles', {"roles": []}, True),
        ('department in ["Nursing", "Pharmacy"]', {"department": "Pharmacy"}, True),
        ('department not in ["Nursing"]', {"department": "Pharmacy"}, True),
        ("not (exempt or completed) and acknowledged", {"acknowledged": True}, True),
        ("exempt == true", {"exempt": True}, True),
        ("completed != true", {"completed": True}, False),
        ("true", {}, True),
        ("false or in_grace", {"in_grace": True}, True),
        ("ce_credits_short >= 5 or days_until_expiry <= -1", {"days_until_expiry": -1}, True),
        ("kind == 'certification' and days_until_expiry <= 14", {"kind": "training"}, False),
    ],
)
def test_conditions_evaluate_as_written(
    text: str, facts: dict[str, object], expected: bool
) -> None:
    assert compile_condition(text).evaluate(complete_facts(facts)) is expected


def test_facts_used_constants_and_always_true() -> None:
    condition = compile_condition('days_until_due < 30 and "nurse" in roles and not exempt')
    assert condition.facts_used == {"days_until_due", "roles", "exempt"}
    assert condition.constants() == {
        "days_until_due": {30},
        "roles": {"nurse"},
        "exempt": {True, False},
    }
    assert compile_condition("true").always_true and not compile_condition("exempt").always_true


@pytest.mark.parametrize(
    ("text", "offset", "phrase"),
    [
        ("days_until_du < 0", 0, "did you mean 'days_until_due'"),
        ("days_until_due < 'soon'", 17, "is a number"),
        ('department < "A"', 11, "compare it with == or !="),
        ("completed && exempt", 10, "use 'and'"),
        ("completed || exempt", 10, "use 'or'"),
        ("!completed", 0, "use 'not'"),
        ("days_until_due = 3", 15, "use '=='"),
        ("", 0, "the condition is empty"),
        ("(completed", 10, "missing ')'"),
        ("department == 'Nursing", 14, "unterminated string"),
        ("days_until_due", 0, "write a comparison such as days_until_due < 0"),
        ("roles == 'nurse'", 6, 'test membership with "nurse" in roles'),
        ("days_until_due < 3.5", 17, "numbers are whole"),
        ("completed exempt", 10, "join conditions with 'and' or 'or'"),
        ("department in roles", 0, 'test it with quoted text, such as "nurse" in roles'),
        ("days_until_due < days_until_expiry", 17, "not with another fact"),
        ("3 < 4", 0, "needs a fact on one side"),
        ("department in ['a', 3]", 20, "lists may only hold quoted text"),
        ("completed > true", 12, "true/false"),
    ],
)
def test_errors_say_what_to_fix_and_where(text: str, offset: int, phrase: str) -> None:
    with pytest.raises(ConditionError) as caught:
        compile_condition(text)
    error = caught.value
    assert phrase in error.message, error.message
    assert error.offset == offset, (error.offset, error.message)


def test_non_text_is_refused_with_advice() -> None:
    with pytest.raises(ConditionError, match="quote it in YAML"):
        compile_condition(3)  # type: ignore[arg-type]


def test_to_durable_pushes_negation_down() -> None:
    durable = compile_condition("not (completed or days_until_due >= 0)").to_durable()
    assert durable == {"$and": [{"completed": 0}, {"$lt": {"days_until_due": 0}}]}
