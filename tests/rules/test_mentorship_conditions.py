"""Conditions on the mentorship that satisfies a ``kind: mentorship`` requirement."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.contracts.mentorship import MentorshipType
from rules.lint import lint
from rules.loader import PackInvalid, load_pack
from rules.mentorship_model import MentorshipCondition

PACK = """\
pack:
  name: small-shop
  contacts: {hr_mailbox: coordinator@shop.example}
status_rules:
  - {name: default, when: "true", status: compliant}
tests:
  - name: anyone
    facts: {}
    expect: {status: compliant, rule: default}
"""

REQUIREMENTS = """\
requirements:
  - id: epa-608
    title: EPA 608 Universal
    kind: certification
    applies_to: {roles: [hvac_technician]}
    validity: 36 months
  - id: prep-mentor
    title: A certification-prep mentor
    kind: mentorship
    applies_to: {roles: [apprentice]}
    due_in_days: 30
    mentorship:
      types: [certification_prep, skill_specific]
      mentor_certifications: [epa-608]
"""


def write(directory: Path, requirements: str) -> Path:
    (directory / "pack.yaml").write_text(PACK, encoding="utf-8")
    (directory / "requirements.yaml").write_text(requirements, encoding="utf-8")
    return directory


def issues(directory: Path) -> list[str]:
    with pytest.raises(PackInvalid) as raised:
        load_pack(directory)
    return [str(issue) for issue in raised.value.issues]


def test_conditions_load(tmp_path: Path) -> None:
    pack = load_pack(write(tmp_path, REQUIREMENTS))
    condition = pack.requirement("prep-mentor").mentorship  # type: ignore[union-attr]
    assert condition == MentorshipCondition(
        types=[MentorshipType.CERTIFICATION_PREP, MentorshipType.SKILL_SPECIFIC],
        mentor_certifications=["epa-608"],
    )
    assert not [f for f in lint(pack) if f.code == "unknown-mentor-certification"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "types: [certification_prep, skill_specific]",
            "types: [certification_prep, exam_cram]",
            "requirements.yaml:13:35: requirements[1] (id: prep-mentor).mentorship.types[1]:"
            " must be one of 'general', 'certification_prep', 'career_transition' or"
            " 'skill_specific'; found 'exam_cram'",
        ),
        (
            "types: [certification_prep, skill_specific]",
            "typ: [certification_prep]",
            "requirements.yaml:13:7: requirements[1] (id: prep-mentor).mentorship.typ: unknown"
            " key 'typ' (did you mean 'types'?); allowed keys: types, mentor_certifications",
        ),
        (
            "types: [certification_prep, skill_specific]",
            "types: []",
            "requirements.yaml:13:14: requirements[1] (id: prep-mentor).mentorship.types: needs"
            " at least 1 item(s)",
        ),
        (
            "mentor_certifications: [epa-608]",
            "mentor_certifications: epa-608",
            "requirements.yaml:14:30: requirements[1] (id: prep-mentor).mentorship"
            ".mentor_certifications: must be a list: one '- item' per line, or [a, b];"
            " found 'epa-608'",
        ),
    ],
)
def test_bad_conditions_are_refused_where_they_are_written(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert issues(write(tmp_path, REQUIREMENTS.replace(old, new))) == [expected]


def test_conditions_only_on_a_mentorship_requirement(tmp_path: Path) -> None:
    text = REQUIREMENTS.replace(
        "    validity: 36 months\n",
        "    validity: 36 months\n    mentorship: {types: [general]}\n",
    )
    assert issues(write(tmp_path, text)) == [
        "requirements.yaml:2:5: requirements[0] (id: epa-608): 'mentorship' (conditions on the"
        " mentorship) only applies to a requirement of kind mentorship, not certification"
    ]


def test_lint_warns_of_a_certification_the_pack_does_not_hold(tmp_path: Path) -> None:
    pack = load_pack(write(tmp_path, REQUIREMENTS.replace("[epa-608]", "[epa-680]")))
    (finding,) = [f for f in lint(pack) if f.code == "unknown-mentor-certification"]
    assert finding.level.value == "warning"
    assert (finding.file, finding.line) == ("requirements.yaml", 7)
    assert "'epa-680'" in finding.message and "prep-mentor" in finding.message


def test_refusal_reads_the_type_and_the_mentors_certifications() -> None:
    condition = MentorshipCondition(
        types=[MentorshipType.CERTIFICATION_PREP], mentor_certifications=["epa-608", "QEI"]
    )
    titles = {"epa-608": "EPA 608 Universal"}
    held = ["epa 608 universal", "qei"]
    assert (
        condition.refusal(type="certification_prep", mentor_certifications=held, titles=titles)
        is None
    )
    assert (
        condition.refusal(type="general", mentor_certifications=held, titles=titles)
        == "its type is general, and the requirement needs certification_prep"
    )
    assert (
        condition.refusal(type="certification_prep", mentor_certifications=["qei"], titles=titles)
        == "the mentor does not hold epa-608"
    )
    # Without the pack's titles, an id only matches a certificate titled like it.
    assert condition.refusal(type="certification_prep", mentor_certifications=held) == (
        "the mentor does not hold epa-608"
    )
    assert MentorshipCondition().refusal(type="general", mentor_certifications=[]) is None
