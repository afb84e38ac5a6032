"""``duly rules``: validate, lint, test, preview, deploy and versions from the command line."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from duly.cli import app as cli
from store.db import Database
from store.models import Obligation, Person, RulesPackVersion

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
FIELD = Path(__file__).parents[2] / "rules" / "packs" / "field-technicians"


@pytest.fixture
def runner(sqlite_db: Database, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DULY_DATABASE_URL", sqlite_db.url)
    return CliRunner()


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    target = tmp_path / "pack"
    shutil.copytree(MEDICAL, target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("directory", [MEDICAL, FIELD], ids=["medical", "field"])
def test_shipped_packs_validate_lint_and_pass_their_tests(
    runner: CliRunner, directory: Path
) -> None:
    validated = runner.invoke(cli, ["rules", "validate", str(directory)])
    assert validated.exit_code == 0, validated.output
    assert "valid" in validated.output and "content hash" in validated.output
    linted = runner.invoke(cli, ["rules", "lint", str(directory), "--no-directory", "--strict"])
    assert linted.exit_code == 0, linted.output
    tested = runner.invoke(cli, ["rules", "test", str(directory)])
    assert tested.exit_code == 0, tested.output
    assert re.search(r"(\d+) passed, 0 failed", tested.output)


def test_validate_points_at_file_line_and_column(runner: CliRunner, pack: Path) -> None:
    _edit(pack / "status.yaml", 'when: "days_until_due < 0"', 'when: "days_until_du < 0"')
    result = runner.invoke(cli, ["rules", "validate", str(pack)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    line = next(
        n
        for n, text in enumerate((pack / "status.yaml").read_text().splitlines(), 1)
        if "days_until_du <" in text
    )
    assert re.search(
        rf"status\.yaml:{line}:\d+: .*unknown fact 'days_until_du'.*days_until_due", result.output
    )


def test_validate_missing_directory_is_a_message_not_a_traceback(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(cli, ["rules", "validate", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert re.search(r":1:1: ", result.output)


def test_lint_finds_a_shadowed_rule(runner: CliRunner, pack: Path) -> None:
    # Widen the overdue rule to everything due within 30 days: the due-soon rule after it
    # can never decide.
    _edit(pack / "status.yaml", 'when: "days_until_due < 0"\n', 'when: "days_until_due <= 30"\n')
    result = runner.invoke(cli, ["rules", "lint", str(pack), "--no-directory"])
    assert result.exit_code == 1, result.output
    assert "unreachable-rule" in result.output
    line = next(
        n
        for n, text in enumerate((pack / "status.yaml").read_text().splitlines(), 1)
        if "name: training_due_soon" in text
    )
    assert re.search(
        rf"status\.yaml:{line}: error \[unreachable-rule\] status rule 'training_due_soon'"
        r" can never decide: rule 'training_overdue' above it",
        result.output.replace("\n", " "),
    ), result.output


def test_rules_test_shows_expected_versus_got(runner: CliRunner, pack: Path) -> None:
    _edit(pack / "status.yaml", "    status: overdue\n", "    status: grace_period\n")
    result = runner.invoke(cli, ["rules", "test", str(pack)])
    assert result.exit_code == 1
    assert "FAIL" in result.output
    assert "- expected: status=overdue rule=training_overdue" in result.output
    assert "+ got:      status=grace_period rule=training_overdue" in result.output


def test_deploy_stores_versions_and_refuses_bad_packs(
    runner: CliRunner, pack: Path, sqlite_db: Database
) -> None:
    first = runner.invoke(
        cli, ["rules", "deploy", str(MEDICAL), "-m", "first", "--author", "hr-jane"]
    )
    assert first.exit_code == 0, first.output
    _edit(pack / "status.yaml", "    status: overdue\n", "    status: grace_period\n")
    failing = runner.invoke(cli, ["rules", "deploy", str(pack), "-m", "broken tests"])
    assert failing.exit_code == 1 and "refusing to deploy" in failing.output
    _edit(pack / "pack.yaml", "name:", "nmae:")
    invalid = runner.invoke(cli, ["rules", "deploy", str(pack), "-m", "invalid"])
    assert invalid.exit_code == 1 and "pack.yaml:" in invalid.output
    bad_mode = runner.invoke(
        cli, ["rules", "deploy", str(MEDICAL), "-m", "x", "--migration", "now"]
    )
    assert bad_mode.exit_code == 2
    with sqlite_db.session() as session:
        stored = list(session.scalars(select(RulesPackVersion)))
    assert [(v.name, v.author, v.message, v.active) for v in stored] == [
        ("medical-practice", "hr-jane", "first", True)
    ]
    assert "pack.yaml" in stored[0].content["files"]
    listed = runner.invoke(cli, ["rules", "versions"])
    assert listed.exit_code == 0 and stored[0].content_hash[:12] in listed.output


def test_preview_reports_status_and_stage_changes(runner: CliRunner, sqlite_db: Database) -> None:
    today = date(2026, 11, 23)
    with sqlite_db.session() as session:
        person = Person(
            external_id="p-1", name="Ada", roles=["nurse"], department="Nursing", time_zone="UTC"
        )
        session.add(person)
        session.flush()
        for requirement, due, status in (
            ("fire-safety", today - timedelta(days=3), "overdue"),  # 14 grace days in the pack
            ("hipaa-privacy-security", today + timedelta(days=100), "assigned"),
        ):
            session.add(
                Obligation(
                    workflow_id=f"assignment/p-1/{requirement}/1",
                    person_id=person.id,
                    kind="training",
                    requirement_id=requirement,
                    requirement_title=requirement,
                    due_date=due,
                    status=status,
                    pack_hash="builtin",
                    as_of=datetime(2026, 11, 23, tzinfo=UTC),
                )
            )
    result = runner.invoke(
        cli, ["rules", "preview", str(MEDICAL), "--json", "--today", today.isoformat()]
    )
    assert result.exit_code == 0, result.output
    preview = json.loads(result.output)
    rows = {r["requirement_id"]: r for r in preview["rows"]}
    fire = rows["fire-safety"]
    assert (fire["status_before"], fire["status_after"], fire["rule_after"]) == (
        "overdue",
        "grace_period",
        "training_in_grace",
    )
    assert fire["stages_before"] == [] and fire["stages_after"] == ["+7d", "+14d"]
    hipaa = rows["hipaa-privacy-security"]
    assert hipaa["status_after"] == "compliant"
    assert hipaa["stages_before"] == ["-90d", "-60d", "-30d", "-14d", "-7d", "0d"]
    assert hipaa["stages_after"] == ["-30d", "-7d", "0d", "+7d", "+14d"]
    assert preview["transitions"] == {"overdue -> grace_period": 1, "assigned -> compliant": 1}
    assert preview["new_requirements"]["bls-certification"] == 1
    table = runner.invoke(cli, ["rules", "preview", str(MEDICAL), "--today", today.isoformat()])
    assert table.exit_code == 0 and "overdue -> grace_period: 1" in table.output


GARBAGE = [
    ":",
    "- ",
    "\t",
    "&a",
    "*a",
    "{",
    "]",
    '"',
    "!!python/object:os.system",
    "\x00",
    "é",
    "%",
    "`",
    "? ",
    "|",
    "#",
    "1e309",
    "~",
    "null",
    "yes",
    "<<: *x",
    ":100:",
    "[red]",
]


def test_validate_never_crashes_on_corrupted_packs(runner: CliRunner, tmp_path: Path) -> None:
    """Seeded corruptions of a shipped pack: each is valid, or exits 1 with file:line:col lines."""
    import random

    rng = random.Random(2026)
    outcomes = {0: 0, 1: 0}
    for n in range(120):
        target = tmp_path / f"p{n}"
        shutil.copytree(MEDICAL, target)
        victim = rng.choice(sorted(target.glob("*.yaml")))
        lines = victim.read_text().splitlines(True)
        i = rng.randrange(len(lines))
        match rng.randrange(4):
            case 0:
                del lines[i]
            case 1:
                j = rng.randrange(len(lines[i]) + 1)
                lines[i] = lines[i][:j] + rng.choice(GARBAGE) + lines[i][j:]
            case 2:
                lines = [*lines[:i], lines[i][: rng.randrange(len(lines[i]) + 1)]]
            case _:
                lines.insert(i, lines[rng.randrange(len(lines))])
        victim.write_text("".join(lines))
        result = runner.invoke(cli, ["rules", "validate", str(target)])
        assert result.exit_code in (0, 1), (n, result.output, result.exception)
        assert "Traceback" not in result.output
        outcomes[result.exit_code] += 1
        if result.exit_code == 1:
            issues = [line for line in result.output.splitlines()[1:] if line.strip()]
            assert issues, result.output
            for line in issues:
                assert re.match(r"^[^:\s]+\.ya?ml:\d+:\d+: \S.*", line), (n, line)
    assert outcomes[1] > 30  # the corruptions are not all harmless


def test_lint_checks_pack_templates(runner: CliRunner, pack: Path) -> None:
    templates = pack / "templates" / "training"
    templates.mkdir(parents=True)
    (templates / "-7d.email.subject.j2").write_text("Due soon: {{ titel }}")
    (templates / "-7d.emial.txt.j2").write_text("typo in the channel name")
    result = runner.invoke(cli, ["rules", "lint", str(pack), "--no-directory"])
    assert result.exit_code == 1, result.output
    assert "template-error" in result.output and "titel" in result.output
    assert "unused-template" in result.output and "emial" in result.output
