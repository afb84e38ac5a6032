"""Coverage analysis: unreachable status rules and fact combinations no rule covers."""

from __future__ import annotations

from rules.conditions import Condition, compile_condition
from rules.coverage import analyse


def rules(*pairs: tuple[str, str]) -> list[tuple[str, Condition]]:
    return [(name, compile_condition(text)) for name, text in pairs]


def test_a_complete_ordered_list_has_no_findings() -> None:
    result = analyse(
        rules(
            ("exempt", "exempt"),
            ("completed", "completed"),
            ("grace", "in_grace"),
            ("overdue", "days_until_due < 0"),
            ("due_soon", "days_until_due <= 30"),
            ("default", "true"),
        )
    )
    assert result.unreachable == {} and result.uncovered == [] and result.exhaustive


def test_a_rule_shadowed_by_an_earlier_broader_rule_is_named_with_its_shadow() -> None:
    result = analyse(
        rules(
            ("exempt", "exempt"),
            ("overdue", "days_until_due < 0"),
            ("badly_overdue", "days_until_due < -30"),
            ("default", "true"),
        )
    )
    assert result.unreachable == {"badly_overdue": ["overdue"]}


def test_a_rule_beaten_only_by_several_rules_together_lists_them() -> None:
    result = analyse(
        rules(
            ("nurses", '"nurse" in roles'),
            ("others", 'not ("nurse" in roles)'),
            ("anyone", "true"),
        )
    )
    assert result.unreachable == {"anyone": ["nurses", "others"]}


def test_a_contradiction_is_reported_as_never_true() -> None:
    result = analyse(
        rules(
            ("impossible", "days_until_due < 0 and days_until_due > 10"),
            ("default", "true"),
        )
    )
    assert result.unreachable == {"impossible": []}


def test_missing_default_gives_an_example_nobody_covers() -> None:
    result = analyse(
        rules(
            ("completed", "completed"),
            ("overdue", "days_until_due < 0 and not completed"),
            ("radiology", 'department == "Radiology"'),
        )
    )
    assert result.unreachable == {}
    assert result.uncovered, "no default rule: some facts match nothing"
    example = result.uncovered[0]
    assert example["completed"] is False and example["days_until_due"] >= 0
    assert example["department"] != "Radiology"


def test_string_lists_and_membership_are_covered() -> None:
    result = analyse(
        rules(
            ("clinical", 'department in ["Nursing", "Radiology"]'),
            ("front", 'department == "Front Office"'),
        )
    )
    assert result.uncovered and result.uncovered[0]["department"] not in {
        "Nursing",
        "Radiology",
        "Front Office",
    }
