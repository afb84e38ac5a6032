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


# -- split by kind --------------------------------------------------------------------------


def test_rules_that_read_no_kind_and_no_owned_fact_are_one_grid() -> None:
    from rules.coverage import parts

    (only,) = parts(rules(("late", "days_until_due < 0"), ("default", "true")))
    assert only.fixed == {} and sorted(only.axes) == ["days_until_due"]


def test_each_kind_is_checked_over_its_own_facts_only() -> None:
    from rules.coverage import parts

    split = parts(
        rules(
            ("expired", 'kind == "certification" and days_until_expiry < 0'),
            ("stalled", 'program != "" and days_since_approved_hours >= 30'),
            ("late", "days_until_due < 0"),
            ("default", "true"),
        )
    )
    by_kind = {part.fixed["kind"]: part for part in split}
    assert sorted(by_kind) == ["apprenticeship", "certification", "mentorship", "training"]
    # A training never has an expiry date or program facts: neither is varied, and the rules
    # that need them are not in its grid.
    assert sorted(by_kind["training"].axes) == ["days_until_due"]
    assert [n for n, _ in by_kind["training"].rules] == ["late", "default"]
    assert sorted(by_kind["certification"].axes) == ["days_until_due", "days_until_expiry"]
    assert sorted(by_kind["apprenticeship"].axes) == [
        "days_since_approved_hours",
        "days_until_due",
        "program",
    ]
    assert [n for n, _ in by_kind["apprenticeship"].rules] == ["stalled", "late", "default"]


def test_split_grids_are_far_smaller_than_every_fact_together() -> None:
    """Many certification and program facts: one grid would be sampled, the split is exact."""
    pairs = [
        ("expired", 'kind == "certification" and days_until_expiry < 0 and "mech" in roles'),
        ("ce", 'kind == "certification" and ce_credits_short > 0 and days_until_expiry <= 120'),
        ("window", 'kind == "certification" and days_until_expiry <= 90'),
        ("inactive", 'program != "" and apprenticeship_status != "active"'),
        ("stalled", 'program != "" and days_since_approved_hours >= 30'),
        ("behind", 'program != "" and (hours_behind >= 160 or evaluation_overdue)'),
        ("ahead", 'program != "" and hours_logged > 8000 and period >= 4'),
        ("on_track", 'program != ""'),
        ("late", 'days_until_due < 0 and department in ["A", "B"] and employer == "X"'),
        ("default", "true"),
    ]
    result = analyse(rules(*pairs))
    assert result.exhaustive and result.unreachable == {} and result.uncovered == []
    from rules.coverage import MAX_EXHAUSTIVE, _literals, _values

    together = 1
    for name, values in _literals(rules(*pairs)).items():
        together *= len(_values(name, values))
    assert together > MAX_EXHAUSTIVE > result.points


def test_a_misspelt_kind_is_a_rule_that_never_decides() -> None:
    result = analyse(
        rules(("cert", 'kind == "certifcation" and days_until_due < 0'), ("default", "true"))
    )
    assert result.unreachable == {"cert": []}


def test_an_uncovered_example_names_its_kind() -> None:
    result = analyse(
        rules(
            ("stalled", 'program != "" and days_since_approved_hours >= 30'),
            ("others", 'kind != "apprenticeship"'),
        )
    )
    assert result.uncovered
    assert {p["kind"] for p in result.uncovered} == {"apprenticeship"}
    assert all(p["days_since_approved_hours"] < 30 or p["program"] == "" for p in result.uncovered)


def test_a_rule_beaten_in_one_kind_and_firing_in_another_is_reachable() -> None:
    result = analyse(
        rules(
            ("programs", 'program != ""'),
            ("late", "days_until_due < 0"),
            ("default", "true"),
        )
    )
    assert result.unreachable == {}
