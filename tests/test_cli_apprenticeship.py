"""`duly apprenticeship import-hours`: a provider CSV without the needed columns is refused."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from duly.cli import app


def test_import_hours_refuses_a_csv_without_its_columns(tmp_path: Path) -> None:
    csv = tmp_path / "hours.csv"
    csv.write_text("person,program,day\np-2011,elevator-mechanic,2026-01-05\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["apprenticeship", "import-hours", str(csv)])
    assert result.exit_code == 2, result.output
    # The console wraps at its width (a long temporary path moves the break).
    assert "missing columns entry_id, kind, hours" in " ".join(result.output.split())


def test_the_apprenticeship_commands_exist() -> None:
    result = CliRunner().invoke(app, ["apprenticeship", "--help"])
    assert result.exit_code == 0
    for command in ("enroll", "status", "import-hours"):
        assert command in result.output
