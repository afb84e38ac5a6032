"""Anchors: the known instants time-skipping tests start from (tests/timeskip.py)."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from tests.timeskip import Anchor, default_anchor


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "anchor"),
    [
        ("00:30", Anchor(time(0, 30))),
        ("9:05", Anchor(time(9, 5))),
        ("31 23:59", Anchor(time(23, 59), day=31)),
        ("last 23:59", Anchor(time(23, 59), day=-1)),
        ("02-28 12:00", Anchor(time(12), day=28, month=2)),
        ("02-last 12:00", Anchor(time(12), day=-1, month=2)),
    ],
)
def test_parse(text: str, anchor: Anchor) -> None:
    assert Anchor.parse(text) == anchor
    assert Anchor.parse(str(anchor)) == anchor


@pytest.mark.parametrize("text", ["", "noon", "24:00", "12:60", "32 10:00", "13-01 10:00", "7"])
def test_parse_refuses_what_is_not_an_instant(text: str) -> None:
    with pytest.raises(ValueError, match=r"HH:MM|must be|hour|minute"):
        Anchor.parse(text)


@pytest.mark.parametrize(
    ("anchor", "now", "expected"),
    [
        # Later today, else tomorrow; never "now" itself (the clock cannot go back).
        ("10:00", "2026-11-30T08:10:00", "2026-11-30T10:00:00"),
        ("10:00", "2026-11-30T10:00:00", "2026-12-01T10:00:00"),
        ("00:30", "2026-12-31T23:00:00", "2027-01-01T00:30:00"),
        # The 31st skips the months without one; "last" is each month's own last day.
        ("31 23:59", "2026-11-01T00:00:00", "2026-12-31T23:59:00"),
        ("last 23:59", "2027-02-01T00:00:00", "2027-02-28T23:59:00"),
        ("last 23:59", "2028-02-01T00:00:00", "2028-02-29T23:59:00"),
        ("11-30 12:00", "2026-11-30T12:00:01", "2027-11-30T12:00:00"),
        ("02-29 12:00", "2026-11-30T08:10:00", "2028-02-29T12:00:00"),
    ],
)
def test_next_after(anchor: str, now: str, expected: str) -> None:
    assert Anchor.parse(anchor).next_after(at(now)) == at(expected)


def test_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DULY_TEST_CLOCK", raising=False)
    assert default_anchor() == Anchor(time(10))
    monkeypatch.setenv("DULY_TEST_CLOCK", "last 23:59")
    assert default_anchor() == Anchor(time(23, 59), day=-1)
    monkeypatch.setenv("DULY_TEST_CLOCK", "tea time")
    with pytest.raises(ValueError, match="tea time"):
        default_anchor()
