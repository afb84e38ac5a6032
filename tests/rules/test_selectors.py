"""Selector semantics (bulk jobs) as a pure function: no directory, no Temporal."""

from __future__ import annotations

import pytest

from rules.selectors import DirectoryRow, UnknownManager, select_people

ROWS = [
    DirectoryRow(1, "ceo", ["executive"], "board", "hq", None),
    DirectoryRow(2, "nina", ["nurse", "supervisor"], "icu", "north", 1),
    DirectoryRow(3, "omar", ["nurse"], "icu", "south", 2),
    DirectoryRow(4, "pia", ["pharmacist"], "pharmacy", "north", 3),
    DirectoryRow(5, "quinn", ["nurse"], "er", "north", None),
]


def test_an_empty_selector_matches_everyone_sorted() -> None:
    assert select_people(reversed(ROWS)) == ["ceo", "nina", "omar", "pia", "quinn"]


def test_criteria_are_anded_values_ored() -> None:
    assert select_people(ROWS, roles=["nurse", "pharmacist"], locations=["north"]) == [
        "nina",
        "pia",
        "quinn",
    ]
    assert select_people(ROWS, roles=["nurse"], departments=["icu"], people=["omar"]) == ["omar"]


def test_a_manager_selects_their_whole_team_not_themselves() -> None:
    assert select_people(ROWS, manager="nina") == ["omar", "pia"]
    assert select_people(ROWS, manager="ceo", roles=["nurse"]) == ["nina", "omar"]


def test_a_loop_in_manager_links_ends() -> None:
    loop = [DirectoryRow(1, "a", None, None, None, 2), DirectoryRow(2, "b", None, None, None, 1)]
    assert select_people(loop, manager="a") == ["a", "b"]


def test_an_unknown_manager_is_an_error_not_an_empty_selection() -> None:
    with pytest.raises(UnknownManager, match="'ghost' is not an active person"):
        select_people(ROWS, manager="ghost")
