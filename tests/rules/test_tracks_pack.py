"""The ``tracks:`` pack section and the assessment-gate fields: loaded, checked, linted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rules.lint import Finding, Level, lint
from rules.loader import PackInvalid, load_pack
from rules.tracks_model import DEFAULT_TRACK_TYPES, TracksSection

PACKS = Path(__file__).resolve().parents[2] / "rules" / "packs"

PACK = """\
pack:
  name: small-site
  contacts: {hr_mailbox: hr@site.example}
requirements:
  - id: gcp
    title: GCP
    kind: training
    applies_to: {all: true}
    due_in_days: 30
    escalation: default
    passing_score: 80
    max_attempts: 3
  - id: consent
    title: Consent
    kind: training
    applies_to: {all: true}
    due_in_days: 30
    escalation: default
escalation_policies:
  - id: default
    stages: [{at: 0d, notify: [learner], channels: [email]}]
status_rules:
  - {name: default, when: "true", status: compliant}
tests:
  - name: anyone
    facts: {}
    expect: {status: compliant, rule: default}
"""

TRACKS = """\
tracks:
  tracks:
    - id: investigator
      name: Investigator
      type: client_investigator
      required_for_go_live: true
      days_to_complete: 30
      courses:
        - {requirement: gcp, order: 1, exam: true, days_to_complete: 14}
        - {requirement: consent, order: 2, required: false, days_to_complete: 30}
"""


def write(directory: Path, pack: str = PACK, **files: str) -> Path:
    for name, text in {"pack.yaml": pack, **files}.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def issues(directory: Path) -> list[str]:
    with pytest.raises(PackInvalid) as raised:
        load_pack(directory)
    return [str(issue) for issue in raised.value.issues]


def test_the_section_loads_with_every_setting(tmp_path: Path) -> None:
    text = TRACKS.replace(
        "      courses:",
        "      description: For investigators.\n      estimated_hours: 6.5\n"
        "      active: false\n      auto_enrol: {roles: [physician], except: {locations: [Oslo]}}\n"
        "      courses:",
    )
    section = load_pack(write(tmp_path, **{"tracks.yaml": text})).tracks
    assert section.types == list(DEFAULT_TRACK_TYPES)
    (track,) = section.tracks
    assert (track.id, track.name, track.type, track.description) == (
        "investigator",
        "Investigator",
        "client_investigator",
        "For investigators.",
    )
    assert (track.active, track.required_for_go_live, track.estimated_hours) == (False, True, 6.5)
    assert track.days_to_complete == 30 and track.is_learning_path
    assert [
        (c.requirement, c.order, c.required, c.exam, c.days_to_complete) for c in track.courses
    ] == [
        ("gcp", 1, True, True, 14),
        ("consent", 2, False, False, 30),
    ]
    assert track.auto_enrol is not None
    assert track.auto_enrol.selects(["physician"], "Research", "Boston", "Duly Health")
    assert not track.auto_enrol.selects(["physician"], "Research", "Oslo", "Duly Health")
    assert not track.auto_enrol.selects(["nurse"], "Research", "Boston", "Duly Health")
    assert section.track("investigator") is track and section.track("nope") is None


def test_courses_are_taken_in_order_whatever_order_they_are_listed_in(tmp_path: Path) -> None:
    text = (
        TRACKS.replace("order: 1, exam", "order: 9, exam").replace(
            "        - {requirement: gcp, order: 9, exam: true, days_to_complete: 14}\n", ""
        )
        + "        - {requirement: gcp, order: 9, exam: true}\n"
    )
    track = load_pack(write(tmp_path, **{"tracks.yaml": text})).tracks.tracks[0]
    assert [c.requirement for c in track.courses] == ["consent", "gcp"]
    assert [c.requirement for c in track.ordered_courses] == ["consent", "gcp"]
    assert [c.requirement for c in track.required_courses] == ["gcp"]


def test_a_pack_without_the_section_has_no_tracks_and_the_default_types(tmp_path: Path) -> None:
    section = load_pack(write(tmp_path)).tracks
    assert section == TracksSection() and section.tracks == []
    assert section.types == ["internal", "client_admin", "client_investigator", "client_employee"]


def test_the_gate_fields_load_on_requirements(tmp_path: Path) -> None:
    pack = load_pack(
        write(
            tmp_path,
            PACK.replace(
                "    max_attempts: 3\n", "    max_attempts: 3\n    retake_after_days: 2\n"
            ),
        )
    )
    gcp, consent = pack.requirements
    assert (gcp.passing_score, gcp.max_attempts, gcp.retake_after_days) == (80, 3, 2)
    assert (consent.passing_score, consent.max_attempts, consent.retake_after_days) == (
        None,
        None,
        None,
    )


def test_a_pack_can_declare_its_own_track_types(tmp_path: Path) -> None:
    text = TRACKS.replace("tracks:\n  tracks:", "tracks:\n  types: [sponsor, site]\n  tracks:")
    text = text.replace("type: client_investigator", "type: site")
    assert load_pack(write(tmp_path, **{"tracks.yaml": text})).tracks.types == ["sponsor", "site"]
    # The default types are then no longer allowed.
    wrong = text.replace("type: site", "type: client_investigator")
    assert issues(write(tmp_path, **{"tracks.yaml": wrong})) == [
        "tracks.yaml:6:13: tracks.tracks[0] (id: investigator).type: unknown track type"
        " 'client_investigator'; use one of sponsor, site, or declare it under tracks: types"
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "tracks:\n  tracks:",
            "tracks:\n  trakcs:",
            "tracks.yaml:2:3: tracks.trakcs: unknown key 'trakcs' (did you mean 'tracks'?);"
            " allowed keys: types, tracks",
        ),
        (
            "{requirement: gcp, order: 1,",
            "{requirment: gcp, order: 1,",
            "tracks.yaml:9:12: tracks.tracks[0] (id: investigator).courses[0].requirment:"
            " unknown key 'requirment' (did you mean 'requirement'?); allowed keys: requirement,"
            " order, required, exam, passing_score, days_to_complete",
        ),
        (
            "      courses:",
            "      auto_enrol: {role: [nurse]}\n      courses:",
            "tracks.yaml:8:20: tracks.tracks[0] (id: investigator).auto_enrol.role: unknown key"
            " 'role' (did you mean 'roles'?); allowed keys: roles, departments, locations,"
            " employers, all, except",
        ),
        (
            "order: 2,",
            "order: 1,",
            "tracks.yaml:9:9: tracks.tracks[0] (id: investigator).courses: courses 'gcp' and"
            " 'consent' both have order 1; give each course its own place",
        ),
        (
            "requirement: consent,",
            "requirement: gcp,",
            "tracks.yaml:9:9: tracks.tracks[0] (id: investigator).courses: requirement 'gcp' is"
            " listed twice (orders 1 and 2); keep one",
        ),
        (
            "order: 1, exam: true",
            "order: 1, required: false, exam: true",
            "tracks.yaml:9:9: tracks.tracks[0] (id: investigator).courses: no course is required,"
            " so the track could never complete; mark at least one course 'required: true'",
        ),
        (
            "exam: true, days_to_complete: 14",
            "exam: true, days_to_complete: 40",
            "tracks.yaml:3:7: tracks.tracks[0] (id: investigator): course 'gcp' is due 40 days"
            " after enrolment, after the track's own window of 30 days; shorten its"
            " days_to_complete or lengthen the track's",
        ),
        (
            "required: false, days_to_complete: 30",
            "required: false, days_to_complete: 10",
            "tracks.yaml:3:7: tracks.tracks[0] (id: investigator): course 'consent' (order 2) is"
            " due 10 days after enrolment, before 'gcp' (order 1) that comes first, due at 14"
            " days; reorder the courses or move the milestones",
        ),
        (
            "requirement: gcp,",
            "requirement: gpc,",
            "tracks.yaml:9:25: tracks.tracks[0] (id: investigator).courses[0] (requirement:"
            " gpc).requirement: unknown requirement 'gpc' (did you mean 'gcp'?); a course is a"
            " requirement of this pack: add it under 'requirements' or fix the id",
        ),
        (
            "type: client_investigator",
            "type: client_investigatr",
            "tracks.yaml:5:13: tracks.tracks[0] (id: investigator).type: unknown track type"
            " 'client_investigatr' (did you mean 'client_investigator'?); use one of internal,"
            " client_admin, client_investigator, client_employee, or declare it under tracks:"
            " types",
        ),
        (
            "required: false, days_to_complete: 30",
            "required: false, exam: true, days_to_complete: 30",
            "tracks.yaml:10:67: tracks.tracks[0] (id: investigator).courses[1] (requirement:"
            " consent).exam: course 'consent' has an exam but no passing score; give the course a"
            " passing_score or the requirement one",
        ),
        (
            "required: false, days_to_complete: 30",
            "required: false, passing_score: 70, days_to_complete: 30",
            "tracks.yaml:10:11: tracks.tracks[0] (id: investigator).courses[1] (requirement:"
            " consent): passing_score 70 is set but exam is false; add 'exam: true' or remove"
            " passing_score",
        ),
        (
            "      courses:",
            "      auto_enrol: {}\n      courses:",
            "tracks.yaml:8:19: tracks.tracks[0] (id: investigator).auto_enrol: say who is"
            " enrolled: 'all: true', or list roles, departments, locations or employers",
        ),
        (
            "tracks:\n  tracks:",
            "tracks:\n  types: [site, site]\n  tracks:",
            "tracks.yaml:2:10: tracks.types: type 'site' is listed twice; keep one",
        ),
        (
            "order: 1, exam: true",
            "order: 0, exam: true",
            "tracks.yaml:9:37: tracks.tracks[0] (id: investigator).courses[0] (requirement:"
            " gcp).order: must be at least 1; found 0",
        ),
        (
            "exam: true, days_to_complete: 14}",
            "exam: true, passing_score: 101, days_to_complete: 14}",
            "tracks.yaml:9:67: tracks.tracks[0] (id: investigator).courses[0] (requirement:"
            " gcp).passing_score: must be at most 100.0; found 101",
        ),
    ],
)
def test_a_broken_section_says_where_and_what_to_fix(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in TRACKS
    found = issues(write(tmp_path, **{"tracks.yaml": TRACKS.replace(old, new)}))
    # A misspelt key is reported once as unknown, and, when required, once as missing.
    assert len(found) <= 2 and any(f.startswith(expected) for f in found), found


def test_a_misspelt_section_name_is_suggested(tmp_path: Path) -> None:
    (found,) = issues(
        write(
            tmp_path, **{"tracks.yaml": TRACKS.replace("tracks:\n  tracks:", "trakcs:\n  tracks:")}
        )
    )
    assert found.startswith(
        "tracks.yaml:1:1: trakcs: unknown section 'trakcs' (did you mean 'tracks'?);"
    )


def test_two_tracks_with_one_id_are_refused(tmp_path: Path) -> None:
    text = TRACKS + (
        "    - id: investigator\n      name: Again\n      type: internal\n"
        "      courses: [{requirement: gcp, order: 1, exam: true}]\n"
    )
    assert issues(write(tmp_path, **{"tracks.yaml": text})) == [
        "tracks.yaml:3:5: tracks.tracks: two tracks have the id 'investigator'; make each id unique"
    ]


def test_two_tracks_sections_are_refused(tmp_path: Path) -> None:
    assert issues(write(tmp_path, **{"a.yaml": TRACKS, "b.yaml": TRACKS})) == [
        "b.yaml:1:1: tracks: a second 'tracks' section (the first is at a.yaml:1); keep one"
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "passing_score: 80",
            "passing_score: 120",
            "pack.yaml:11:20: requirements[0] (id: gcp).passing_score: must be at most 100",
        ),
        (
            "max_attempts: 3",
            "max_attempts: 0",
            "pack.yaml:12:19: requirements[0] (id: gcp).max_attempts: must be at least 1; found 0",
        ),
        (
            "    max_attempts: 3\n",
            "    max_attempts: 3\n    retake_after_days: -1\n",
            "pack.yaml:13:24: requirements[0] (id: gcp).retake_after_days: must be at least 0;"
            " found -1",
        ),
        (
            "    max_attempts: 3\n",
            "    max_attemps: 3\n",
            "pack.yaml:12:5: requirements[0] (id: gcp).max_attemps: unknown key 'max_attemps' (did"
            " you mean 'max_attempts'?);",
        ),
    ],
)
def test_bad_gate_fields_say_where(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in PACK
    (found,) = issues(write(tmp_path, PACK.replace(old, new)))
    assert found.startswith(expected), found


# ----------------------------------------------------------------------------------------
# Lint


def findings(directory: Path, *codes: str) -> list[tuple[str, Level, str, int]]:
    found: list[Finding] = lint(load_pack(directory))
    return [(f.code, f.level, f.file, f.line) for f in found if f.code in codes]


GATE_AND_TRACK_CODES = (
    "gate-without-score",
    "gate-always-passes",
    "retake-never-used",
    "inactive-go-live-track",
    "no-milestones",
    "two-passing-scores",
    "exam-not-marked",
)


def test_a_clean_section_has_no_gate_or_track_findings(tmp_path: Path) -> None:
    assert findings(write(tmp_path, **{"tracks.yaml": TRACKS}), *GATE_AND_TRACK_CODES) == []


def test_lint_flags_attempt_limits_without_a_passing_score(tmp_path: Path) -> None:
    pack = PACK.replace("    passing_score: 80\n", "").replace(
        "    max_attempts: 3\n", "    max_attempts: 3\n    retake_after_days: 2\n"
    )
    (found,) = [f for f in lint(load_pack(write(tmp_path, pack))) if f.code == "gate-without-score"]
    assert (found.level, found.file, found.line) == (Level.WARNING, "pack.yaml", 5)
    assert found.message.startswith(
        "requirement 'gcp' sets max_attempts and retake_after_days but no passing_score"
    )


def test_lint_flags_a_pass_mark_of_zero_and_a_cool_down_with_one_attempt(tmp_path: Path) -> None:
    pack = PACK.replace("passing_score: 80", "passing_score: 0").replace(
        "    max_attempts: 3\n", "    max_attempts: 1\n    retake_after_days: 5\n"
    )
    assert findings(write(tmp_path, pack), *GATE_AND_TRACK_CODES) == [
        ("gate-always-passes", Level.WARNING, "pack.yaml", 5),
        ("retake-never-used", Level.WARNING, "pack.yaml", 5),
    ]


def test_lint_flags_an_inactive_go_live_track_and_a_path_without_milestones(
    tmp_path: Path,
) -> None:
    text = (
        TRACKS.replace("      days_to_complete: 30\n", "      active: false\n")
        .replace(", days_to_complete: 14", "")
        .replace(", days_to_complete: 30", "")
        .replace("      courses:", "      auto_enrol: {all: true}\n      courses:")
    )
    assert findings(write(tmp_path, **{"tracks.yaml": text}), *GATE_AND_TRACK_CODES) == [
        ("inactive-go-live-track", Level.WARNING, "tracks.yaml", 3),
        ("no-milestones", Level.WARNING, "tracks.yaml", 3),
    ]


def test_lint_flags_two_pass_marks_and_an_exam_not_marked(tmp_path: Path) -> None:
    two = TRACKS.replace(
        "exam: true, days_to_complete", "exam: true, passing_score: 90, days_to_complete"
    )
    (found,) = [
        f
        for f in lint(load_pack(write(tmp_path, **{"tracks.yaml": two})))
        if f.code == "two-passing-scores"
    ]
    assert found.message == (
        "track 'investigator': course 'gcp' passes at 90 % but the requirement's own"
        " passing_score is 80 %; one exam result could complete the requirement and not the"
        " course (or the reverse); use one score"
    )
    unmarked = TRACKS.replace("order: 1, exam: true,", "order: 1,")
    assert findings(write(tmp_path, **{"tracks.yaml": unmarked}), *GATE_AND_TRACK_CODES) == [
        ("exam-not-marked", Level.WARNING, "tracks.yaml", 3),
    ]


# ----------------------------------------------------------------------------------------
# The shipped example


def test_the_medical_practice_pack_ships_research_site_tracks_and_gates() -> None:
    pack = load_pack(PACKS / "medical-practice")
    assert "tracks.yaml" in pack.files
    tracks = {t.id: t for t in pack.tracks.tracks}
    assert {t.type for t in tracks.values()} == set(DEFAULT_TRACK_TYPES)
    go_live = sorted(t.id for t in tracks.values() if t.required_for_go_live)
    assert go_live == ["implementation-team", "site-administrator", "site-investigator"]
    investigator = tracks["site-investigator"]
    assert [(c.requirement, c.required, c.exam) for c in investigator.ordered_courses] == [
        ("human-subjects-protection", True, True),
        ("ich-gcp", True, True),
        ("bls-certification", True, False),
        ("osha-bloodborne-pathogens", False, False),
    ]
    path = tracks["radiology-research-path"]
    assert path.is_learning_path and path.auto_enrol is not None
    assert path.auto_enrol.selects(["technician"], "Radiology", "Denver", "Duly Health")
    assert not path.auto_enrol.selects(["technician"], "Pharmacy", "Seattle", "Duly Health")
    assert [c.days_to_complete for c in path.ordered_courses] == [14, 30, 45, 60]
    gcp = pack.requirement("ich-gcp")
    assert gcp is not None
    assert (gcp.passing_score, gcp.max_attempts, gcp.retake_after_days) == (80, 3, 1)
    every_course = {c.requirement for t in tracks.values() for c in t.courses}
    assert every_course <= {r.id for r in pack.requirements}
    assert [f for f in lint(pack) if f.code in GATE_AND_TRACK_CODES] == []


def test_the_readme_example_is_valid(tmp_path: Path) -> None:
    readme = (PACKS.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Tracks, learning paths and assessment gates (pack section)", 1)[1]
    requirements, tracks = re.findall(r"```yaml\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    head, tail = PACK.split("requirements:\n", 1)
    rest = "escalation_policies:" + tail.split("escalation_policies:", 1)[1]
    loaded = load_pack(
        write(tmp_path, head + rest, **{"requirements.yaml": requirements, "tracks.yaml": tracks})
    )
    assert [t.id for t in loaded.tracks.tracks] == ["site-investigator", "new-technician-path"]
    assert [f for f in lint(loaded) if f.code in GATE_AND_TRACK_CODES] == []
