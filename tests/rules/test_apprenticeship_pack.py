"""The ``programs:`` section of a rules pack: loaded, validated with file:line:column, linted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rules.apprenticeship_model import (
    Evaluations,
    Graduation,
    Program,
    ProgramMigration,
    SponsorType,
    StallChannel,
    StallPolicy,
    StallRecipient,
)
from rules.lint import Finding, lint
from rules.loader import PackInvalid, load_pack
from rules.model import Channel, Kind

PACKS = Path(__file__).resolve().parents[2] / "rules" / "packs"

PACK = """\
pack:
  name: small-shop
  contacts: {hr_mailbox: coordinator@shop.example}
requirements:
  - id: journeyworker-card
    title: Journeyworker card
    kind: certification
    applies_to: {roles: [apprentice]}
    validity: 36 months
  - id: osha-10
    title: OSHA 10
    kind: certification
    applies_to: {roles: [apprentice]}
    validity: 60 months
  - id: safety-basics
    title: Safety basics
    kind: training
    applies_to: {roles: [apprentice]}
    due_in_days: 30
status_rules:
  - {name: default, when: "true", status: compliant}
"""

PROGRAM = """\
programs:
  - id: hvac-tech
    name: HVAC Technician Apprenticeship
    sponsor: {type: employer, name: Cool Air Inc, contact: training@coolair.example}
    duration_years: 2
    work_hours: 3000
    classroom_hours: 288
    periods:
      - {number: 1, name: First year, work_hours: 1500, classroom_hours: 144, wage_percentage: 55,
         skills: [Brazing, Refrigerant recovery]}
      - {number: 2, name: Second year, work_hours: 1500, classroom_hours: 144, wage_percentage: 70,
         skills: [Heat pump diagnostics]}
    evaluations: {every_days: 60, at_period_end: false, grace_days: 7, minimum_score: 65}
    stall:
      after_days: 21
      ladder:
        - {after_days: 0, notify: apprentice, channels: [sms]}
        - {after_days: 5, notify: supervisor}
        - {after_days: 10, notify: hr, channels: [email, slack]}
    graduation:
      all_skills: false
      final_evaluation_min_score: 75
      required_certifications: [osha-10]
    awards: [journeyworker-card]
    on_new_version: rebase
"""

MINIMAL = """\
programs:
  - id: minimal
    name: Minimal
    sponsor: {type: school, name: Trade School, contact: office@school.example}
    duration_years: 1
    work_hours: 1000
    classroom_hours: 100
    periods:
      - {number: 1, name: Only, work_hours: 1000, classroom_hours: 100, wage_percentage: 60,
         skills: [Everything]}
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
    pack = load_pack(write(tmp_path, **{"programs.yaml": PROGRAM}))
    (program,) = pack.programs
    assert pack.program("hvac-tech") is program and pack.program("nope") is None
    assert (program.sponsor.type, program.sponsor.contact) == (
        SponsorType.EMPLOYER,
        "training@coolair.example",
    )
    assert (program.duration_years, program.work_hours, program.classroom_hours) == (2, 3000, 288)
    assert [(p.number, p.wage_percentage) for p in program.periods] == [(1, 55), (2, 70)]
    assert program.skills == ["Brazing", "Refrigerant recovery", "Heat pump diagnostics"]
    assert program.evaluations.model_dump() == {
        "every_days": 60,
        "at_period_end": False,
        "grace_days": 7,
        "minimum_score": 65,
    }
    assert program.stall.after_days == 21
    assert [(s.after_days, s.notify, s.channels) for s in program.stall.ladder] == [
        (0, StallRecipient.APPRENTICE, [StallChannel.SMS]),
        (5, StallRecipient.SUPERVISOR, [StallChannel.EMAIL]),
        (10, StallRecipient.HR, [StallChannel.EMAIL, StallChannel.SLACK]),
    ]
    graduation = program.graduation
    assert (graduation.all_hours, graduation.all_skills) == (True, False)
    assert graduation.final_evaluation_min_score == 75
    assert graduation.required_certifications == ["osha-10"]
    assert program.awards == ["journeyworker-card"]
    assert program.on_new_version is ProgramMigration.REBASE
    assert program.period(2).name == "Second year"
    with pytest.raises(ValueError, match="has periods 1 to 2, not 3"):
        program.period(3)


def test_optional_keys_take_the_documented_defaults(tmp_path: Path) -> None:
    (program,) = load_pack(write(tmp_path, **{"programs.yaml": MINIMAL})).programs
    assert program.evaluations.model_dump() == {
        "every_days": 90,
        "at_period_end": True,
        "grace_days": 14,
        "minimum_score": 70,
    }
    assert program.stall.after_days == 30
    assert [
        (s.after_days, s.notify.value, [c.value for c in s.channels]) for s in program.stall.ladder
    ] == [
        (0, "apprentice", ["email", "sms"]),
        (7, "supervisor", ["email"]),
        (14, "sponsor", ["email"]),
    ]
    assert program.graduation.model_dump() == {
        "all_hours": True,
        "all_skills": True,
        "final_evaluation_min_score": None,
        "required_certifications": [],
    }
    assert program.awards == []
    assert program.on_new_version is ProgramMigration.GRANDFATHER


def test_a_pack_without_programs_has_none(tmp_path: Path) -> None:
    assert load_pack(write(tmp_path)).programs == []


def test_the_field_technicians_pack_ships_the_elevator_mechanic_program() -> None:
    pack = load_pack(PACKS / "field-technicians")
    program = pack.program("elevator-mechanic")
    assert program is not None and "programs.yaml" in pack.files
    assert (program.duration_years, program.work_hours, program.classroom_hours) == (4, 8000, 576)
    assert program.sponsor.type is SponsorType.UNION
    wages = [p.wage_percentage for p in program.periods]
    assert len(wages) == 4 and wages == sorted(set(wages)), wages  # strictly rising
    assert all(len(p.skills) >= 3 for p in program.periods)
    assert sum(p.work_hours for p in program.periods) == 8000
    assert sum(p.classroom_hours for p in program.periods) == 576
    for requirement_id in [*program.awards, *program.graduation.required_certifications]:
        requirement = pack.requirement(requirement_id)
        assert requirement is not None and requirement.kind is Kind.CERTIFICATION
    assert program.awards == ["elevator-mechanic-certificate"]
    # --strict: not even a warning.
    assert lint(pack) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "work_hours: 3000",
            "work_hour: 3000",
            "programs.yaml:6:5: programs[0] (id: hvac-tech).work_hour: unknown key 'work_hour'"
            " (did you mean 'work_hours'?); allowed keys: id, name, sponsor, duration_years,",
        ),
        (
            "sponsor: {type: employer, name: Cool Air Inc, contact: training@coolair.example}",
            "sponsor: Cool Air Inc",
            "programs.yaml:4:14: programs[0] (id: hvac-tech).sponsor: must be a mapping of"
            " 'key: value' lines; found 'Cool Air Inc'",
        ),
        (
            "duration_years: 2",
            "duration_years: 2.5",
            "programs.yaml:5:21: programs[0] (id: hvac-tech).duration_years: must be a whole"
            " number, such as 30; found 2.5",
        ),
        (
            "    periods:\n",
            "    periods: []\n    old_periods:\n",
            "programs.yaml:8:14: programs[0] (id: hvac-tech).periods: needs at least 1 item(s)",
        ),
        (
            "type: employer",
            "type: company",
            "programs.yaml:4:21: programs[0] (id: hvac-tech).sponsor.type: must be one of 'union',"
            " 'employer', 'school' or 'consortium'; found 'company'",
        ),
        (
            "training@coolair.example",
            "Jane at Cool Air",
            "programs.yaml:4:60: programs[0] (id: hvac-tech).sponsor.contact: the sponsor contact"
            " is an email address such as jatc@local1.example, not 'Jane at Cool Air'",
        ),
        (
            "{number: 2,",
            "{number: 3,",
            "programs.yaml:9:7: programs[0] (id: hvac-tech).periods: number the periods 1, 2, 3..."
            " in order; period 2 is numbered 3",
        ),
        (
            "classroom_hours: 288",
            "classroom_hours: 300",
            "programs.yaml:9:7: programs[0] (id: hvac-tech).periods: the periods' classroom_hours"
            " add up to 288 (144 + 144), not the program's classroom_hours: 300; make them equal",
        ),
        (
            "work_hours: 3000",
            "work_hours: 2999",
            "programs.yaml:9:7: programs[0] (id: hvac-tech).periods: the periods' work_hours add up"
            " to 3,000 (1,500 + 1,500), not the program's work_hours: 2,999; make them equal",
        ),
        (
            "wage_percentage: 70",
            "wage_percentage: 50",
            "programs.yaml:9:7: programs[0] (id: hvac-tech).periods: wage percentages must never go"
            " down: period 2 pays 50% after period 1's 55%",
        ),
        (
            "wage_percentage: 70",
            "wage_percentage: 110",
            "programs.yaml:11:97: programs[0] (id: hvac-tech).periods[1] (name: Second year)"
            ".wage_percentage: must be at most 100",
        ),
        (
            "[Heat pump diagnostics]",
            "[heat pump diagnostics, brazing]",
            "programs.yaml:9:7: programs[0] (id: hvac-tech).periods: the skill 'brazing' is in"
            " period 1 and period 2; a skill is signed off once, so keep it in one period",
        ),
        (
            "[Heat pump diagnostics]",
            "[Heat pump diagnostics, heat  pump DIAGNOSTICS]",
            "programs.yaml:12:18: programs[0] (id: hvac-tech).periods[1] (name: Second year)"
            ".skills: the skill 'heat pump DIAGNOSTICS' is listed twice; remove one",
        ),
        (
            "work_hours: 1500, classroom_hours: 144, wage_percentage: 55",
            "work_hours: 0, classroom_hours: 0, wage_percentage: 55",
            "programs.yaml:9:9: programs[0] (id: hvac-tech).periods[0] (name: First year): period 1"
            " needs no hours at all; give it work_hours or classroom_hours, or remove it",
        ),
        (
            "after_days: 5,",
            "after_days: 0,",
            "programs.yaml:17:9: programs[0] (id: hvac-tech).stall.ladder: list the ladder in order"
            " of after_days, each later than the one before; found 0 after 0",
        ),
        (
            "notify: supervisor}",
            "notify: manager}",
            "programs.yaml:18:35: programs[0] (id: hvac-tech).stall.ladder[1].notify: must be one"
            " of 'apprentice', 'supervisor', 'sponsor' or 'hr'; found 'manager'",
        ),
        (
            "on_new_version: rebase",
            "on_new_version: migrate",
            "programs.yaml:25:21: programs[0] (id: hvac-tech).on_new_version: must be one of"
            " 'grandfather', 'rebase' or 'apply_now'; found 'migrate'",
        ),
        (
            "[osha-10]",
            "[osha-100]",
            "programs.yaml:23:33: programs[0] (id: hvac-tech).graduation.required_certifications[0]"
            ":"
            " unknown requirement 'osha-100' (did you mean 'osha-10'?); name a requirement of kind"
            " certification (certifications in this pack: journeyworker-card, osha-10)",
        ),
        (
            "[osha-10]",
            "[safety-basics]",
            "programs.yaml:23:33: programs[0] (id: hvac-tech).graduation.required_certifications[0]"
            ":"
            " requirement 'safety-basics' is a training, not a certification;",
        ),
        (
            "awards: [journeyworker-card]",
            "awards: [journeyworker-crad]",
            "programs.yaml:24:14: programs[0] (id: hvac-tech).awards[0]: unknown requirement"
            " 'journeyworker-crad' (did you mean 'journeyworker-card'?);",
        ),
        (
            "[osha-10]",
            "[journeyworker-card]",
            "programs.yaml:24:14: programs[0] (id: hvac-tech).awards[0]: 'journeyworker-card' is"
            " both required to graduate and awarded on graduation, so nobody could graduate;",
        ),
    ],
)
def test_a_broken_program_says_where_and_what_to_fix(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in PROGRAM
    found = issues(write(tmp_path, **{"programs.yaml": PROGRAM.replace(old, new)}))
    assert any(f.startswith(expected) for f in found), found
    # Only the problem itself (and, for a misspelt key, the key it lacks) is reported.
    assert len(found) <= 2, found


def test_a_program_id_must_be_unique_across_files(tmp_path: Path) -> None:
    assert issues(write(tmp_path, **{"a.yaml": PROGRAM, "b.yaml": PROGRAM})) == [
        "b.yaml:2:9: programs[0] (id: hvac-tech).id: duplicate program id 'hvac-tech' (first at"
        " a.yaml:2); make it unique"
    ]


def test_a_misspelt_section_suggests_programs(tmp_path: Path) -> None:
    (found,) = issues(write(tmp_path, **{"a.yaml": "program:\n  - id: x\n"}))
    assert found.startswith(
        "a.yaml:1:1: program: unknown section 'program' (did you mean 'programs'?);"
    )


def test_the_model_is_usable_without_a_pack() -> None:
    # The workflow contracts (phase B) will carry a Program on its own.
    program = Program.model_validate(
        {
            "id": "p",
            "name": "P",
            "sponsor": {"type": "consortium", "name": "C", "contact": "c@c.example"},
            "duration_years": 1,
            "work_hours": 10,
            "classroom_hours": 0,
            "periods": [{"number": 1, "name": "One", "work_hours": 10, "wage_percentage": 90}],
        }
    )
    assert program.periods[0].classroom_hours == 0 and program.skills == []


def findings(directory: Path) -> list[Finding]:
    return [f for f in lint(load_pack(directory)) if "program" in f.message]


def test_a_clean_program_has_no_findings(tmp_path: Path) -> None:
    assert findings(write(tmp_path, **{"programs.yaml": PROGRAM})) == []


def test_lint_warns_when_the_stall_ladder_reaches_hr_without_a_mailbox(tmp_path: Path) -> None:
    write(tmp_path, **{"programs.yaml": PROGRAM})
    text = PACK.replace("  contacts: {hr_mailbox: coordinator@shop.example}\n", "")
    (tmp_path / "pack.yaml").write_text(text, encoding="utf-8")
    (found,) = findings(tmp_path)
    assert (found.code, found.file, found.line) == ("no-hr-mailbox", "programs.yaml", 2)


@pytest.mark.parametrize(
    ("old", "new", "code", "words"),
    [
        (
            "skills: [Heat pump diagnostics]",
            "skills: []",
            "period-without-skills",
            "period 2 (Second year) of program 'hvac-tech' lists no skills",
        ),
        (
            "final_evaluation_min_score: 75",
            "final_evaluation_min_score: 60",
            "final-score-below-minimum",
            "a final evaluation of 60, below the minimum score of every evaluation (65)",
        ),
        (
            "after_days: 21",
            "after_days: 61",
            "late-stall-notice",
            "61 days after the last approved hours, later than the next evaluation (every 60",
        ),
        (
            "duration_years: 2",
            "duration_years: 1",
            # 3,000 work hours in one year is more than full time plus a quarter.
            "implausible-pace",
            "needs 3,000 work hours a year (3,000 over 1 years), more than 2,600",
        ),
    ],
)
def test_lint_flags_programs_that_would_surprise(
    tmp_path: Path, old: str, new: str, code: str, words: str
) -> None:
    assert old in PROGRAM
    text = PROGRAM.replace(old, new)
    (found,) = findings(write(tmp_path, **{"programs.yaml": text}))
    assert (found.code, found.file, found.line) == (code, "programs.yaml", 2)
    assert words in found.message, found.message


def test_stall_channels_are_the_packs_channels() -> None:
    # Repeated in rules.apprenticeship_model so it imports nothing of ours; kept in step here.
    assert [c.value for c in StallChannel] == [c.value for c in Channel]


def test_the_model_module_imports_nothing_of_ours() -> None:
    """Nothing but the domain floor's skill_key (shared with the hours entry contract)."""
    source = (PACKS.parent / "apprenticeship_model.py").read_text(encoding="utf-8")
    imports = re.findall(r"^(?:from|import) (\S+)", source, re.M)
    assert sorted(set(imports)) == [
        "__future__",
        "domain.contracts.apprenticeship",
        "enum",
        "itertools",
        "pydantic",
        "re",
        "typing",
    ]


def test_the_readme_example_loads(tmp_path: Path) -> None:
    readme = (PACKS.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Apprenticeship programs (pack section)", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert example is not None
    (program,) = load_pack(write(tmp_path, **{"programs.yaml": example.group(1)})).programs
    assert program.periods[0].name == "Probationary"
    # The optional keys it shows are the defaults, as it says.
    assert program.evaluations == Evaluations()
    assert program.stall == StallPolicy()
    assert program.graduation == Graduation()
    assert (program.awards, program.on_new_version) == ([], ProgramMigration.GRANDFATHER)


# -- classroom hours from the LMS ------------------------------------------------------------

LMS = """\
    classroom_from_lms:
      approval: auto
      courses:
        - {activity_id: "https://lms.example/xapi/epa-608-prep", name: EPA 608 prep, hours: 6}
        - {activity_id: "https://lms.example/xapi/brazing-lab"}
"""


def test_lms_courses_load_with_their_approval(tmp_path: Path) -> None:
    pack = load_pack(write(tmp_path, **{"programs.yaml": PROGRAM + LMS}))
    program = pack.program("hvac-tech")
    assert program is not None
    assert program.classroom_from_lms.approval.value == "auto"
    prep = program.lms_course("https://lms.example/xapi/epa-608-prep")
    assert prep is not None and prep.hours == 6 and prep.name == "EPA 608 prep"
    lab = program.lms_course("https://lms.example/xapi/brazing-lab")
    assert lab is not None and lab.hours is None  # counted by each statement's duration
    assert program.lms_course("https://lms.example/xapi/other") is None
    # Without the section: nothing from the LMS, and hours would wait for the supervisor.
    minimal = load_pack(write(tmp_path, **{"programs.yaml": MINIMAL})).program("minimal")
    assert minimal is not None and minimal.classroom_from_lms.courses == []
    assert minimal.classroom_from_lms.approval.value == "supervisor"


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("hours: 6}", "hours: 40}", "must be at most 24.0; found 40"),
        ("approval: auto", "approval: always", "'supervisor' or 'auto'"),
        ("brazing-lab", "epa-608-prep", "is listed twice"),
    ],
)
def test_a_broken_lms_section_says_what_to_fix(
    tmp_path: Path, old: str, new: str, words: str
) -> None:
    found = issues(write(tmp_path, **{"programs.yaml": PROGRAM + LMS.replace(old, new)}))
    assert any("classroom_from_lms" in f and words in f for f in found), found


def test_lint_refuses_an_lms_course_that_is_also_a_requirements_activity(tmp_path: Path) -> None:
    pack_text = PACK.replace(
        "    due_in_days: 30\n",
        "    due_in_days: 30\n    xapi_activity_id: https://lms.example/xapi/brazing-lab\n",
    )
    directory = tmp_path / "clash"
    directory.mkdir()
    (directory / "pack.yaml").write_text(pack_text, encoding="utf-8")
    (directory / "programs.yaml").write_text(PROGRAM + LMS, encoding="utf-8")
    clash = [f for f in lint(load_pack(directory)) if f.code == "duplicate-xapi-activity"]
    assert [(f.level.value, f.file) for f in clash] == [("error", "programs.yaml")]
    assert "requirement 'safety-basics' maps it too" in clash[0].message
