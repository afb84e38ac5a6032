"""The rules pack loader: valid packs load; broken packs give file:line:column issues for HR."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from rules.loader import MAX_FILE_BYTES, PackInvalid, PackIssue, content_hash, load_pack
from rules.model import Kind, Pack

PACK = """\
pack:
  name: clinic
  description: A small clinic
  statuses: [renewal_due]
"""

REQUIREMENTS = """\
requirements:
  - id: hipaa
    title: HIPAA Privacy
    kind: training
    applies_to: {all: true}
    due_in_days: 30
    escalation: standard
  - id: bls
    title: Basic Life Support
    kind: certification
    applies_to: {roles: [nurse], except: {locations: [remote]}}
    validity: 24 months
"""

POLICIES = """\
escalation_policies:
  - id: standard
    stages:
      - {at: -30d, notify: [learner], channels: [email]}
      - at: +7d
        notify: [learner, manager]
        channels: [email]
        unless: acknowledged and started
"""

RULES = """\
status_rules:
  - name: exempt
    when: exempt
    status: exempt
  - name: past_due
    when: days_until_due < 0
    status: overdue
  - name: default
    when: "true"
    status: compliant
"""

TESTS = """\
tests:
  - name: late nurse
    facts: {days_until_due: -3, roles: [nurse]}
    expect: {status: overdue, rule: past_due}
"""

VALID: dict[str, str] = {
    "pack.yaml": PACK,
    "policies.yaml": POLICIES,
    "requirements.yaml": REQUIREMENTS,
    "rules.yaml": RULES,
    "tests.yml": TESTS,
}

TEMPLATE = "Hello {{ person.name }},\n{% if overdue %}You are late.{% endif %}\n"

ISSUE_FORMAT = re.compile(r"^[^:]+:\d+:\d+: .+")
DIR = "<dir>"  # stands for the pack directory itself in expectations


def write(directory: Path, files: Mapping[str, str | bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return directory


def req(body: str) -> str:
    """A requirements file holding one requirement; ``body`` lines start at line 3."""
    return "requirements:\n  - id: hipaa\n" + body


def stage(body: str) -> str:
    """A policy whose only stage is ``body`` (line 4)."""
    return "escalation_policies:\n  - id: standard\n    stages:\n" + body


def rule(when: str) -> str:
    """A status rule whose ``when`` line is line 3: ``    when: <when>`` (value at column 11)."""
    return f"status_rules:\n  - name: r\n    when: {when}\n    status: compliant\n"


TRAINING = (
    "    title: HIPAA\n    kind: training\n    applies_to: {all: true}\n    due_in_days: 30\n"
)


# --------------------------------------------------------------------------------------------
# Valid packs


def test_a_valid_pack_loads_every_file_in_name_order(tmp_path: Path) -> None:
    pack = load_pack(write(tmp_path / "p", dict(VALID)))
    assert isinstance(pack, Pack)
    assert pack.info.name == "clinic"
    assert [r.id for r in pack.requirements] == ["hipaa", "bls"]
    assert pack.requirements[1].kind is Kind.CERTIFICATION
    assert pack.requirements[1].applies_to.except_ is not None
    assert [p.id for p in pack.escalation_policies] == ["standard"]
    assert [r.name for r in pack.status_rules] == ["exempt", "past_due", "default"]
    assert [t.name for t in pack.tests] == ["late nurse"]
    assert "renewal_due" in pack.statuses
    assert pack.files == VALID
    assert pack.templates == {}
    assert re.fullmatch(r"[0-9a-f]{64}", pack.content_hash)


def test_a_minimal_single_file_pack_loads(tmp_path: Path) -> None:
    text = "pack: {name: tiny}\nstatus_rules:\n  - {name: all, when: true, status: compliant}\n"
    pack = load_pack(str(write(tmp_path / "p", {"pack.yaml": text})))
    assert pack.status_rules[0].when == "true"
    assert pack.requirements == [] and pack.tests == []


def test_empty_yaml_files_are_allowed(tmp_path: Path) -> None:
    files = {**VALID, "empty.yaml": "", "comments.yaml": "# nothing yet\n", "doc.yml": "---\n"}
    pack = load_pack(write(tmp_path / "p", files))
    assert set(pack.files) == set(files)


def test_templates_load_with_their_text_and_path(tmp_path: Path) -> None:
    files = {
        **VALID,
        "templates/training/reminder.email.html.j2": TEMPLATE,
        "templates/training/-30d.sms.j2": "  {{ title }} is due soon\n",
    }
    pack = load_pack(write(tmp_path / "p", files))
    assert pack.templates == {
        "training/reminder.email.html.j2": TEMPLATE,
        "training/-30d.sms.j2": "  {{ title }} is due soon\n",
    }
    # Texts are kept exactly as written (leading spaces and trailing newline included).
    assert pack.files["templates/training/-30d.sms.j2"] == "  {{ title }} is due soon\n"
    assert set(pack.files) == set(VALID) | {
        "templates/training/reminder.email.html.j2",
        "templates/training/-30d.sms.j2",
    }


def test_content_hash_is_over_the_pack_files_bytes(tmp_path: Path) -> None:
    files = {**VALID, "templates/training/reminder.email.html.j2": TEMPLATE}
    pack = load_pack(write(tmp_path / "p", files))
    expected = content_hash({name: text.encode() for name, text in files.items()})
    assert pack.content_hash == expected


def test_content_hash_changes_when_any_byte_changes(tmp_path: Path) -> None:
    files = {**VALID, "templates/training/reminder.email.html.j2": TEMPLATE}
    original = load_pack(write(tmp_path / "p", files)).content_hash
    seen = {original}
    for i, (name, text) in enumerate(files.items()):
        changed = dict(files)
        changed[name] = text.replace("\n", " \n", 1)  # one more byte, same meaning
        digest = load_pack(write(tmp_path / f"c{i}", changed)).content_hash
        assert digest not in seen, name
        seen.add(digest)
    renamed = dict(files)
    renamed["zz.yml"] = renamed.pop("tests.yml")
    assert load_pack(write(tmp_path / "renamed", renamed)).content_hash not in seen


def test_content_hash_ignores_other_files(tmp_path: Path) -> None:
    original = load_pack(write(tmp_path / "p", dict(VALID))).content_hash
    extra: dict[str, str | bytes] = {
        "README.md": "# our pack\n",
        "notes.txt": "x",
        ".git/config": "[core]\n",
        "drafts/more.yaml": "not: [valid",
        ".hidden.yaml": "not: [valid",
        "templates/.DS_Store": b"\x00\x01\xff",
    }
    pack = load_pack(write(tmp_path / "p", extra))
    assert pack.content_hash == original
    assert set(pack.files) == set(VALID)


def test_content_hash_framing_is_unambiguous() -> None:
    assert content_hash({"a": b"bc"}) != content_hash({"ab": b"c"})
    assert content_hash({"a": b"", "b": b""}) != content_hash({"a": b"b"})
    assert content_hash({"a": b"1", "b": b"2"}) == content_hash({"b": b"2", "a": b"1"})
    assert content_hash({}) != content_hash({"": b""})


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {**VALID, "pack.yaml": b"\xef\xbb\xbf" + PACK.encode()}
    assert load_pack(write(tmp_path / "p", files)).info.name == "clinic"


# --------------------------------------------------------------------------------------------
# Broken packs: (files, file, line, column or None, phrase)

Case = tuple[dict[str, str | bytes], str, int, int | None, str]


def broken(
    changes: dict[str, str | bytes], file: str, line: int, column: int | None, phrase: str
) -> Case:
    """The valid pack with ``changes`` applied (files replaced or added)."""
    return ({**VALID, **changes}, file, line, column, phrase)


def without(names: tuple[str, ...], file: str, line: int, column: int | None, phrase: str) -> Case:
    """The valid pack without the files ``names``."""
    files: dict[str, str | bytes] = {k: v for k, v in VALID.items() if k not in names}
    return (files, file, line, column, phrase)


BROKEN: dict[str, Case] = {
    # --- YAML itself
    "yaml syntax error": broken(
        {"pack.yaml": "pack:\n  name: clinic\n  description: note: quote me\n"},
        "pack.yaml",
        3,
        20,
        "mapping values are not allowed",
    ),
    "unclosed flow list": broken(
        {"pack.yaml": "pack:\n  name: clinic\n  statuses: [a, b\n"},
        "pack.yaml",
        3,
        13,
        "never closed",
    ),
    "unclosed quote": broken(
        {"pack.yaml": "pack:\n  name: clinic\n  description: 'A clinic\n"},
        "pack.yaml",
        3,
        16,
        "never closed",
    ),
    "tab indentation": broken(
        {"pack.yaml": "pack:\n\tname: clinic\n"}, "pack.yaml", 2, 1, "spaces, not tabs"
    ),
    "duplicate key": broken(
        {"pack.yaml": "pack:\n  name: clinic\n  description: a\n  name: other\n"},
        "pack.yaml",
        4,
        3,
        "duplicate key 'name' (first at line 2)",
    ),
    "duplicate section": broken(
        {"rules.yaml": RULES + "status_rules: []\n"},
        "rules.yaml",
        11,
        1,
        "duplicate key 'status_rules' (first at line 1)",
    ),
    "anchor": broken(
        {"requirements.yaml": req(TRAINING.replace("{all: true}", "&everyone {all: true}"))},
        "requirements.yaml",
        5,
        17,
        "anchors (&everyone) are not allowed",
    ),
    "alias": broken(
        {"requirements.yaml": req(TRAINING.replace("{all: true}", "*everyone"))},
        "requirements.yaml",
        5,
        17,
        "aliases (*everyone) are not allowed",
    ),
    "two documents": broken(
        {"pack.yaml": PACK + "---\npack: {name: other}\n"},
        "pack.yaml",
        5,
        1,
        "remove the extra '---'",
    ),
    "control character": broken(
        {"pack.yaml": "pack:\n  name: clinic\n  description: a\x07b\n"},
        "pack.yaml",
        3,
        17,
        "control character (U+0007)",
    ),
    "custom tag": broken(
        {"pack.yaml": "pack: !!python/object:os.system {name: clinic}\n"},
        "pack.yaml",
        1,
        7,
        "YAML tags such as !!python/object:os.system are not allowed",
    ),
    "non-mapping top level": broken(
        {"rules.yaml": "- name: exempt\n  when: exempt\n"},
        "rules.yaml",
        1,
        1,
        "top level of the file must be a mapping",
    ),
    "scalar top level": broken(
        {"rules.yaml": "just some words\n"}, "rules.yaml", 1, 1, "must be a mapping"
    ),
    "unknown section typo": broken(
        {"rules.yaml": RULES.replace("status_rules:", "status_rule:")},
        "rules.yaml",
        1,
        1,
        "unknown section 'status_rule' (did you mean 'status_rules'?)",
    ),
    "non-UTF-8 file": broken(
        {"pack.yaml": b"pack:\n  name: clinic\n  description: caf\xe9 au lait\n"},
        "pack.yaml",
        3,
        19,
        "not valid UTF-8",
    ),
    "file too large": broken(
        {"big.yaml": "# " + "x" * MAX_FILE_BYTES + "\n"}, "big.yaml", 1, 1, "larger than 1 MiB"
    ),
    # --- requirements
    "unknown key typo": broken(
        {"requirements.yaml": req(TRAINING + "    grace_day: 5\n")},
        "requirements.yaml",
        7,
        5,
        "unknown key 'grace_day' (did you mean 'grace_days'?)",
    ),
    "unknown key under except alias": broken(
        {"requirements.yaml": req(TRAINING.replace("{all: true}", "{all: true, except: {x: 1}}"))},
        "requirements.yaml",
        5,
        38,
        "allowed keys: roles, departments, locations, employers",
    ),
    "missing title": broken(
        {"requirements.yaml": req(TRAINING.replace("    title: HIPAA\n", ""))},
        "requirements.yaml",
        2,
        5,
        "missing required key 'title'",
    ),
    "grace_days not a number": broken(
        {"requirements.yaml": req(TRAINING + '    grace_days: "ten"\n')},
        "requirements.yaml",
        7,
        17,
        "whole number",
    ),
    "negative grace": broken(
        {"requirements.yaml": req(TRAINING + "    grace_days: -5\n")},
        "requirements.yaml",
        7,
        17,
        "must be at least 0; found -5",
    ),
    "bad kind": broken(
        {"requirements.yaml": req(TRAINING.replace("training", "webinar"))},
        "requirements.yaml",
        4,
        11,
        "must be one of 'training', 'certification'",
    ),
    "bad identifier": broken(
        {"requirements.yaml": "requirements:\n  - id: HIPAA Training\n" + TRAINING},
        "requirements.yaml",
        2,
        9,
        "lowercase letters, digits",
    ),
    "bad recurrence": broken(
        {"requirements.yaml": req(TRAINING + "    recurrence: {every: monthly}\n")},
        "requirements.yaml",
        7,
        25,
        "'12 months' or '2 years'",
    ),
    "fixed anniversary without anniversary": broken(
        {
            "requirements.yaml": req(
                TRAINING + "    recurrence:\n      every: 1 year\n      basis: fixed_anniversary\n"
            )
        },
        "requirements.yaml",
        8,
        7,
        "needs 'anniversary: MM-DD'",
    ),
    "certification without validity": broken(
        {"requirements.yaml": req(TRAINING.replace("training", "certification"))},
        "requirements.yaml",
        2,
        5,
        "needs 'validity'",
    ),
    "training without due_in_days": broken(
        {"requirements.yaml": req(TRAINING.replace("    due_in_days: 30\n", ""))},
        "requirements.yaml",
        2,
        5,
        "needs 'due_in_days'",
    ),
    "applies_to empty": broken(
        {"requirements.yaml": req(TRAINING.replace("{all: true}", "{}"))},
        "requirements.yaml",
        5,
        17,
        "say who this applies to",
    ),
    "applies_to missing value": broken(
        {"requirements.yaml": req(TRAINING.replace(" {all: true}", ""))},
        "requirements.yaml",
        5,
        5,
        "must be a mapping",
    ),
    "applies_to all and roles": broken(
        {"requirements.yaml": req(TRAINING.replace("{all: true}", "{all: true, roles: [rn]}"))},
        "requirements.yaml",
        5,
        17,
        "either 'all: true' or roles",
    ),
    # --- escalation policies
    "bad channel": broken(
        {"policies.yaml": stage("      - {at: -30d, notify: [learner], channels: [email, fax]}\n")},
        "policies.yaml",
        4,
        57,
        "one of 'email', 'sms', 'slack' or 'in_app'; found 'fax'",
    ),
    "bad recipient": broken(
        {"policies.yaml": stage("      - {at: -30d, notify: [boss], channels: [email]}\n")},
        "policies.yaml",
        4,
        29,
        "one of 'learner', 'manager'",
    ),
    "offset without unit": broken(
        {"policies.yaml": stage("      - {at: -30, notify: [learner], channels: [email]}\n")},
        "policies.yaml",
        4,
        14,
        "such as -30d",
    ),
    "offset in words": broken(
        {"policies.yaml": stage("      - {at: 30 days, notify: [learner], channels: [email]}\n")},
        "policies.yaml",
        4,
        14,
        "-30d, 0d or +14d",
    ),
    "no stages": broken(
        {"policies.yaml": "escalation_policies:\n  - id: standard\n    stages: []\n"},
        "policies.yaml",
        3,
        13,
        "needs at least 1 item",
    ),
    "slack_channel recipient without channel name": broken(
        {
            "policies.yaml": stage(
                "      - at: -30d\n        notify: [slack_channel]\n        channels: [slack]\n"
            )
        },
        "policies.yaml",
        4,
        9,
        "slack_channel: #name",
    ),
    "unless with unknown fact": broken(
        {"policies.yaml": POLICIES.replace("acknowledged and started", "acknowledged and opend")},
        "policies.yaml",
        8,
        34,
        "unknown fact 'opend'",
    ),
    # --- conditions
    "unknown fact in condition": broken(
        {"rules.yaml": rule("days_until_dew < 0")},
        "rules.yaml",
        3,
        11,
        "unknown fact 'days_until_dew'; did you mean 'days_until_due'?",
    ),
    "condition type error": broken(
        {"rules.yaml": rule('days_until_due == "x"')},
        "rules.yaml",
        3,
        29,
        "days_until_due is a number",
    ),
    "condition type error in quoted scalar": broken(
        {"rules.yaml": rule("\"days_until_due == 'x'\"")},
        "rules.yaml",
        3,
        30,
        "compare it with a number",
    ),
    "condition type error after escapes": broken(
        {"rules.yaml": rule('"department == \\"A\\" or days_until_due == \\"x\\""')},
        "rules.yaml",
        3,
        53,
        "days_until_due is a number",
    ),
    "unterminated string in condition": broken(
        {"rules.yaml": rule("'department == \"Nursing'")},
        "rules.yaml",
        3,
        26,
        "unterminated string",
    ),
    "double ampersand": broken(
        {"rules.yaml": rule("exempt && completed")}, "rules.yaml", 3, 18, "use 'and' instead"
    ),
    "empty condition": broken(
        {"rules.yaml": rule('""')}, "rules.yaml", 3, 12, "the condition is empty"
    ),
    "condition that is not text": broken(
        {"rules.yaml": rule("[exempt]")}, "rules.yaml", 3, 11, "a condition must be text"
    ),
    "multi-line condition": broken(
        {"rules.yaml": rule("exempt and\n      nothing")},
        "rules.yaml",
        3,
        11,
        "unknown fact 'nothing'",
    ),
    # --- tests
    "test with unknown fact": broken(
        {"tests.yml": TESTS.replace("roles:", "rolez:")},
        "tests.yml",
        3,
        33,
        "unknown fact 'rolez'",
    ),
    "test fact of the wrong type": broken(
        {"tests.yml": TESTS.replace("-3", "soon")},
        "tests.yml",
        3,
        29,
        "fact 'days_until_due' must be a whole number",
    ),
    "test without expect": broken(
        {"tests.yml": "tests:\n  - name: x\n    facts: {exempt: true}\n"},
        "tests.yml",
        2,
        5,
        "missing required key 'expect'",
    ),
    # --- cross-file checks
    "missing pack section": without(("pack.yaml",), "policies.yaml", 1, 1, "no 'pack' section"),
    "two pack sections": broken(
        {"rules.yaml": "pack: {name: other}\n" + RULES},
        "rules.yaml",
        1,
        1,
        "a second 'pack' section (the first is at pack.yaml:1)",
    ),
    "no status rules": without(("rules.yaml", "tests.yml"), "pack.yaml", 1, 1, "no status rules"),
    "duplicate requirement id across files": broken(
        {"more.yaml": req(TRAINING)},
        "requirements.yaml",
        2,
        9,
        "duplicate requirement id 'hipaa' (first at more.yaml:2)",
    ),
    "duplicate rule name": broken(
        {"rules.yaml": RULES + "  - {name: exempt, when: exempt, status: exempt}\n"},
        "rules.yaml",
        11,
        12,
        "duplicate status rule name 'exempt' (first at rules.yaml:2)",
    ),
    "duplicate policy id": broken(
        {"p2.yaml": POLICIES}, "policies.yaml", 2, 9, "duplicate escalation policy id 'standard'"
    ),
    "duplicate test name": broken(
        {"tests.yml": TESTS + TESTS.removeprefix("tests:\n")},
        "tests.yml",
        5,
        11,
        "duplicate test name 'late nurse' (first at tests.yml:2)",
    ),
    "duplicate declared status": broken(
        {"pack.yaml": PACK.replace("[renewal_due]", "[renewal_due, on_hold, renewal_due]")},
        "pack.yaml",
        4,
        36,
        "duplicate status 'renewal_due'",
    ),
    "unknown escalation policy": broken(
        {"requirements.yaml": REQUIREMENTS.replace("escalation: standard", "escalation: standrd")},
        "requirements.yaml",
        7,
        17,
        "unknown escalation policy 'standrd' (did you mean 'standard'?)",
    ),
    "unknown status in rule": broken(
        {"rules.yaml": RULES.replace("status: overdue", "status: overdo")},
        "rules.yaml",
        7,
        13,
        "unknown status 'overdo' (did you mean 'overdue'?)",
    ),
    "test expecting unknown status": broken(
        {"tests.yml": TESTS.replace("status: overdue", "status: late")},
        "tests.yml",
        4,
        22,
        "unknown status 'late'",
    ),
    "test expecting unknown rule": broken(
        {"tests.yml": TESTS.replace("rule: past_due", "rule: pastdue")},
        "tests.yml",
        4,
        37,
        "no status rule is named 'pastdue' (did you mean 'past_due'?)",
    ),
    # --- directory
    "empty directory": without(tuple(VALID), DIR, 1, 1, "no YAML file"),
    "only other files": (
        {"README.md": "# hi\n", "templates/a.email.j2": "hi"},
        DIR,
        1,
        1,
        "no YAML file",
    ),
    # --- templates
    "bad template syntax": broken(
        {"templates/training/reminder.email.html.j2": "Hi\n{% if overdue %}\nlate\n"},
        "templates/training/reminder.email.html.j2",
        2,
        1,
        "template syntax error",
    ),
    "unclosed template expression": broken(
        {"templates/training/-30d.sms.j2": "Hi {{ person.name\n"},
        "templates/training/-30d.sms.j2",
        1,
        1,
        "template syntax error",
    ),
    "template without .j2": broken(
        {"templates/training/reminder.html": "Hi\n"},
        "templates/training/reminder.html",
        1,
        1,
        "must end in .j2",
    ),
    "template not UTF-8": broken(
        {"templates/x.sms.j2": b"ol\xe9\n"}, "templates/x.sms.j2", 1, 3, "not valid UTF-8"
    ),
}


def check_format(error: PackInvalid) -> None:
    assert error.issues, "PackInvalid without issues"
    assert error.issues == sorted(error.issues, key=lambda i: (i.file, i.line, i.column))
    assert str(error) == "\n".join(str(issue) for issue in error.issues)
    for issue in error.issues:
        assert ISSUE_FORMAT.match(str(issue)), str(issue)
        assert "Traceback" not in issue.message
        assert "\n" not in issue.message
        assert issue.line >= 1 and issue.column >= 1


@pytest.mark.parametrize(("files", "file", "line", "column", "phrase"), BROKEN.values(), ids=BROKEN)
def test_a_broken_pack_says_where_and_what_to_fix(
    tmp_path: Path,
    files: dict[str, str | bytes],
    file: str,
    line: int,
    column: int | None,
    phrase: str,
) -> None:
    directory = write(tmp_path / "pack", files)
    with pytest.raises(PackInvalid) as caught:
        load_pack(directory)
    check_format(caught.value)
    expected_file = str(directory) if file == DIR else file
    matching = [
        issue
        for issue in caught.value.issues
        if issue.file == expected_file
        and issue.line == line
        and (column is None or issue.column == column)
        and phrase in issue.message
    ]
    assert matching, f"expected {expected_file}:{line}:{column} '{phrase}' in:\n{caught.value}"


def test_the_corpus_is_large_enough() -> None:
    assert len(BROKEN) >= 35


def test_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PackInvalid) as caught:
        load_pack(tmp_path / "nope")
    check_format(caught.value)
    assert caught.value.issues == [
        PackIssue(str(tmp_path / "nope"), 1, 1, caught.value.issues[0].message)
    ]
    assert "does not exist" in str(caught.value)


def test_a_file_instead_of_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(PACK)
    with pytest.raises(PackInvalid, match="a rules pack is a directory"):
        load_pack(path)


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    files = {
        **VALID,
        "requirements.yaml": REQUIREMENTS.replace("due_in_days: 30", "due_in_days: soon"),
        "rules.yaml": RULES.replace("when: exempt", "when: exemt"),
        "templates/a.email.j2": "{% if %}",
    }
    with pytest.raises(PackInvalid) as caught:
        load_pack(write(tmp_path / "p", files))
    places = {(i.file, i.line) for i in caught.value.issues}
    assert {("requirements.yaml", 6), ("rules.yaml", 3), ("templates/a.email.j2", 1)} <= places


def test_cross_checks_that_would_only_cascade_are_skipped(tmp_path: Path) -> None:
    # The pack section is broken: no "missing pack section" or "unknown status" on top of it.
    files = {**VALID, "pack.yaml": PACK.replace("name: clinic", "name: Clinic!")}
    with pytest.raises(PackInvalid) as caught:
        load_pack(write(tmp_path / "p", files))
    assert [(i.file, i.line) for i in caught.value.issues] == [("pack.yaml", 2)]


def test_messages_name_the_location_and_the_offending_value(tmp_path: Path) -> None:
    files = {**VALID, "requirements.yaml": REQUIREMENTS.replace("24 months", "forever")}
    with pytest.raises(PackInvalid) as caught:
        load_pack(write(tmp_path / "p", files))
    (issue,) = caught.value.issues
    assert issue.message.startswith("requirements[1] (id: bls).validity: ")
    assert "'forever'" in issue.message


def test_long_values_are_truncated(tmp_path: Path) -> None:
    files = {
        **VALID,
        "requirements.yaml": REQUIREMENTS.replace("kind: training", "kind: " + "x" * 500),
    }
    with pytest.raises(PackInvalid) as caught:
        load_pack(write(tmp_path / "p", files))
    assert len(caught.value.issues[0].message) < 250


def test_deep_nesting_is_refused_without_a_recursion_error(tmp_path: Path) -> None:
    text = "pack: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(PackInvalid, match="nested more than"):
        load_pack(write(tmp_path / "p", {**VALID, "pack.yaml": text}))


def test_alias_bombs_are_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    text = "\n".join(lines) + "\n"
    with pytest.raises(PackInvalid, match="anchors"):
        load_pack(write(tmp_path / "p", {**VALID, "bomb.yaml": text}))


# --------------------------------------------------------------------------------------------
# Property-style: corrupting a valid pack never raises anything but PackInvalid

SINGLE_FILE = PACK + REQUIREMENTS + POLICIES + RULES + TESTS


def variants() -> list[str]:
    lines = SINGLE_FILE.splitlines(keepends=True)
    out = ["".join(lines[:i] + lines[i + 1 :]) for i in range(len(lines))]
    out += [SINGLE_FILE[:end] for end in range(0, len(SINGLE_FILE), 7)]
    out += [SINGLE_FILE.replace(":", "", 1 + i) for i in range(0, 60, 5)]
    out += [SINGLE_FILE.replace("  ", "\t", 1 + i) for i in range(0, 60, 6)]
    out += [SINGLE_FILE.replace("[", "{", 1 + i) for i in range(10)]
    return out


def test_corrupted_packs_load_or_raise_pack_invalid(tmp_path: Path) -> None:
    assert load_pack(write(tmp_path / "ok", {"pack.yaml": SINGLE_FILE})).info.name == "clinic"
    outcomes = {"loaded": 0, "invalid": 0}
    for n, text in enumerate(variants()):
        directory = write(tmp_path / f"v{n}", {"pack.yaml": text})
        try:
            load_pack(directory)
        except PackInvalid as error:
            check_format(error)
            assert not any("could not be checked" in i.message for i in error.issues), error
            outcomes["invalid"] += 1
        else:
            outcomes["loaded"] += 1
    assert outcomes["invalid"] > 50 and outcomes["loaded"] > 0


def test_issues_are_capped_per_file(tmp_path: Path) -> None:
    text = "".join(f"section{i}: 1\n" for i in range(150))
    with pytest.raises(PackInvalid) as caught:
        load_pack(write(tmp_path / "p", {**VALID, "junk.yaml": text}))
    check_format(caught.value)
    assert len(caught.value.issues) == 101
    assert "more problems from here on" in caught.value.issues[-1].message


def test_a_value_yaml_reads_as_another_type_gets_a_quoting_hint(tmp_path: Path) -> None:
    files = {**VALID, "pack.yaml": PACK.replace("A small clinic", "2024-01-01")}
    with pytest.raises(PackInvalid) as caught:
        load_pack(write(tmp_path / "p", files))
    (issue,) = caught.value.issues
    assert (issue.line, issue.column) == (3, 16)
    assert "must be text (put it in quotes" in issue.message


def test_an_empty_value_points_at_its_key(tmp_path: Path) -> None:
    files = {**VALID, "requirements.yaml": req(TRAINING.replace("kind: training", "kind:"))}
    with pytest.raises(PackInvalid) as caught:
        load_pack(write(tmp_path / "p", files))
    (issue,) = caught.value.issues
    assert (issue.line, issue.column) == (4, 5)
    assert "found nothing (the value is empty)" in issue.message
