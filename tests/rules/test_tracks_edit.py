"""Editing a track in the pack's files: only the lines that must change do."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from rules.loader import load_pack, pack_from_files
from rules.tracks_edit import TrackEditError, TrackNotFound, reorder_courses, set_active

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"


def _changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_reorder_changes_only_the_order_values_and_keeps_comments() -> None:
    pack = load_pack(MEDICAL)
    files = reorder_courses(
        pack.files,
        "site-administrator",
        ["research-systems-admin", "hipaa-privacy-security", "human-subjects-protection"],
    )
    changed = _changed_lines(pack.files["tracks.yaml"], files["tracks.yaml"])
    assert changed == [
        "-        - {requirement: hipaa-privacy-security, order: 1}",
        "-        - {requirement: research-systems-admin, order: 2, exam: true}",
        "+        - {requirement: hipaa-privacy-security, order: 2}",
        "+        - {requirement: research-systems-admin, order: 1, exam: true}",
    ]
    track = pack_from_files(files).tracks.track("site-administrator")
    assert track is not None
    assert [c.requirement for c in track.ordered_courses][:2] == [
        "research-systems-admin",
        "hipaa-privacy-security",
    ]
    assert {k: v for k, v in files.items() if k != "tracks.yaml"} == {
        k: v for k, v in pack.files.items() if k != "tracks.yaml"
    }


def test_set_active_adds_or_flips_one_line() -> None:
    pack = load_pack(MEDICAL)
    off = set_active(pack.files, "site-investigator", False)
    assert _changed_lines(pack.files["tracks.yaml"], off["tracks.yaml"]) == ["+      active: false"]
    assert pack_from_files(off).tracks.track("site-investigator").active is False  # type: ignore[union-attr]
    on = set_active(off, "site-investigator", True)
    assert _changed_lines(off["tracks.yaml"], on["tracks.yaml"]) == [
        "-      active: false",
        "+      active: true",
    ]


def test_flow_style_tracks_and_refusals() -> None:
    flow = "    - {id: a, name: A, courses: [{requirement: x, order: 1}]}\n"
    files = {"pack.yaml": "pack: {name: t}\n", "t.yaml": "tracks:\n  tracks:\n" + flow}
    assert "- {id: a, active: false, name: A" in set_active(files, "a", False)["t.yaml"]
    with pytest.raises(TrackNotFound):
        set_active(files, "b", False)
    with pytest.raises(TrackEditError, match="missing x"):
        reorder_courses(files, "a", ["y"])
    with pytest.raises(TrackEditError, match="listed twice: x"):
        reorder_courses(files, "a", ["x", "x"])
