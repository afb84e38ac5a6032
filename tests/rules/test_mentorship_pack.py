"""The ``mentorship:`` section of a rules pack: loaded, validated with file:line:column, linted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rules.lint import Finding, lint
from rules.loader import PackInvalid, load_pack
from rules.mentorship_model import (
    MatchingWeights,
    MentorshipPolicy,
    NudgeChannel,
    NudgeRecipient,
)
from rules.model import Channel

PACKS = Path(__file__).resolve().parents[2] / "rules" / "packs"

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

MENTORSHIP = """\
mentorship:
  weights:
    specialization: 40
    geographic: 10
    experience_gap: 15
    availability: 15
    communication: 10
    past_success: 10
  ideal_experience_gap: {min_years: 3, max_years: 8}
  request_expiry_days: 5
  session_cadence_days: 21
  nudges:
    - {after_days: 1, notify: mentee, channels: [sms]}
    - {after_days: 4, notify: mentor}
    - {after_days: 9, notify: coordinator, channels: [email, slack]}
  feedback: {midpoint: false}
"""


def write(directory: Path, **files: str) -> Path:
    for name, text in {"pack.yaml": PACK, **files}.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def issues(directory: Path) -> list[str]:
    with pytest.raises(PackInvalid) as raised:
        load_pack(directory)
    return [str(issue) for issue in raised.value.issues]


def test_the_section_loads_with_every_setting(tmp_path: Path) -> None:
    section = load_pack(write(tmp_path, **{"mentorship.yaml": MENTORSHIP})).mentorship
    assert section.weights == MatchingWeights(specialization=40, geographic=10)
    assert (section.ideal_experience_gap.min_years, section.ideal_experience_gap.max_years) == (
        3,
        8,
    )
    assert (section.request_expiry_days, section.session_cadence_days) == (5, 21)
    assert [(s.after_days, s.notify, s.channels) for s in section.nudges] == [
        (1, NudgeRecipient.MENTEE, [NudgeChannel.SMS]),
        (4, NudgeRecipient.MENTOR, [NudgeChannel.EMAIL]),
        (9, NudgeRecipient.COORDINATOR, [NudgeChannel.EMAIL, NudgeChannel.SLACK]),
    ]
    assert (section.feedback.midpoint, section.feedback.end) == (False, True)


def test_a_pack_without_the_section_gets_the_documented_defaults(tmp_path: Path) -> None:
    section = load_pack(write(tmp_path)).mentorship
    assert section == MentorshipPolicy()
    assert section.weights.model_dump() == {
        "specialization": 30,
        "geographic": 20,
        "experience_gap": 15,
        "availability": 15,
        "communication": 10,
        "past_success": 10,
    }
    assert (section.ideal_experience_gap.min_years, section.ideal_experience_gap.max_years) == (
        2,
        10,
    )
    assert (section.request_expiry_days, section.session_cadence_days) == (7, 14)
    assert [s.notify for s in section.nudges] == [
        NudgeRecipient.MENTEE,
        NudgeRecipient.MENTOR,
        NudgeRecipient.COORDINATOR,
    ]


def test_the_field_technicians_pack_ships_a_mentorship_section() -> None:
    pack = load_pack(PACKS / "field-technicians")
    assert "mentorship.yaml" in pack.files
    section = pack.mentorship
    assert section.weights == MatchingWeights()
    assert section.session_cadence_days == 14 and section.request_expiry_days == 7
    # Field crews are on the road: the mentee and mentor nudges go by SMS too.
    assert [(s.notify.value, [c.value for c in s.channels]) for s in section.nudges] == [
        ("mentee", ["email", "sms"]),
        ("mentor", ["email", "sms"]),
        ("coordinator", ["email"]),
    ]
    assert not [f for f in lint(pack) if "mentorship" in f.message]


def test_weights_that_do_not_add_up_to_100_are_refused_where_they_are_written(
    tmp_path: Path,
) -> None:
    text = MENTORSHIP.replace("specialization: 40", "specialization: 35")
    assert issues(write(tmp_path, **{"mentorship.yaml": text})) == [
        "mentorship.yaml:3:5: mentorship.weights: the weights add up to 95 (specialization 35"
        " + geographic 10 + experience_gap 15 + availability 15 + communication 10 +"
        " past_success 10); they must add up to 100, so add 5 point(s)"
    ]


def test_weights_over_100_say_how_many_points_to_remove(tmp_path: Path) -> None:
    text = "mentorship:\n  weights: {specialization: 45}\n"
    (found,) = issues(write(tmp_path, **{"mentorship.yaml": text}))
    assert found.startswith("mentorship.yaml:2:12: mentorship.weights: the weights add up to 115")
    assert found.endswith("so remove 15 point(s)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "mentorship:\n  request_expiry_day: 7\n",
            "mentorship.yaml:2:3: mentorship.request_expiry_day: unknown key"
            " 'request_expiry_day' (did you mean 'request_expiry_days'?);",
        ),
        (
            "mentorship:\n  weights: {specialisation: 30}\n",
            "mentorship.yaml:2:13: mentorship.weights.specialisation: unknown key"
            " 'specialisation' (did you mean 'specialization'?);",
        ),
        (
            "mentorhsip:\n  request_expiry_days: 7\n",
            "mentorship.yaml:1:1: mentorhsip: unknown section 'mentorhsip' (did you mean"
            " 'mentorship'?);",
        ),
        (
            "mentorship:\n  weights: {specialization: -5, geographic: 55}\n",
            "mentorship.yaml:2:29: mentorship.weights.specialization: must be at least 0; found -5",
        ),
        (
            "mentorship:\n  ideal_experience_gap: {min_years: 12, max_years: 4}\n",
            "mentorship.yaml:2:25: mentorship.ideal_experience_gap: min_years (12) is more than"
            " max_years (4); swap them",
        ),
        (
            "mentorship:\n  request_expiry_days: 0\n",
            "mentorship.yaml:2:24: mentorship.request_expiry_days: must be at least 1; found 0",
        ),
        (
            "mentorship:\n  nudges:\n    - {after_days: 3, notify: mentee}\n"
            "    - {after_days: 2, notify: mentor}\n",
            "mentorship.yaml:3:5: mentorship.nudges: list the nudges in order of after_days, each"
            " later than the one before; found 2 after 3",
        ),
        (
            "mentorship:\n  nudges:\n    - {after_days: 0, notify: manager}\n",
            "mentorship.yaml:3:31: mentorship.nudges[0].notify: must be one of 'mentee', 'mentor'"
            " or 'coordinator'; found 'manager'",
        ),
        (
            "mentorship:\n  nudges:\n    - {after_days: 0, notify: mentee, channels: [fax]}\n",
            "mentorship.yaml:3:50: mentorship.nudges[0].channels[0]: must be one of 'email',"
            " 'sms', 'slack' or 'in_app'; found 'fax'",
        ),
        (
            "mentorship:\n  nudges: []\n",
            "mentorship.yaml:2:11: mentorship.nudges: needs at least 1 item(s)",
        ),
    ],
)
def test_a_broken_section_says_where_and_what_to_fix(
    tmp_path: Path, text: str, expected: str
) -> None:
    (found,) = issues(write(tmp_path, **{"mentorship.yaml": text}))
    assert found.startswith(expected), found


def test_two_mentorship_sections_are_refused(tmp_path: Path) -> None:
    second = "mentorship:\n  session_cadence_days: 7\n"
    assert issues(write(tmp_path, **{"a.yaml": MENTORSHIP, "b.yaml": second})) == [
        "b.yaml:1:1: mentorship: a second 'mentorship' section (the first is at a.yaml:1); keep one"
    ]


def findings(directory: Path) -> list[Finding]:
    return [f for f in lint(load_pack(directory)) if "mentorship" in f.message]


def test_lint_warns_when_the_coordinator_has_no_mailbox(tmp_path: Path) -> None:
    write(tmp_path, **{"mentorship.yaml": MENTORSHIP})
    text = PACK.replace("  contacts: {hr_mailbox: coordinator@shop.example}\n", "")
    (tmp_path / "pack.yaml").write_text(text, encoding="utf-8")
    (found,) = findings(tmp_path)
    assert (found.code, found.file, found.line) == ("no-hr-mailbox", "mentorship.yaml", 15)
    assert "pack.contacts.hr_mailbox" in found.message


def test_lint_warns_about_a_nudge_after_the_next_session_is_due(tmp_path: Path) -> None:
    text = MENTORSHIP.replace("session_cadence_days: 21", "session_cadence_days: 7")
    (found,) = findings(write(tmp_path, **{"mentorship.yaml": text}))
    assert (found.code, found.file, found.line) == ("late-nudge", "mentorship.yaml", 15)
    assert "coordinator comes 9 days after a missed session" in found.message


def test_nudge_channels_are_the_packs_channels() -> None:
    # Repeated in rules.mentorship_model so it imports nothing of ours; kept in step here.
    assert [c.value for c in NudgeChannel] == [c.value for c in Channel]


def test_the_readme_example_is_valid_and_shows_the_defaults(tmp_path: Path) -> None:
    readme = (PACKS.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Mentorship matching (pack section and scoring)", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert example is not None
    loaded = load_pack(write(tmp_path, **{"mentorship.yaml": example.group(1)})).mentorship
    assert loaded == MentorshipPolicy()
