"""The CLI paths that build workflow inputs refuse out-of-range values before touching Temporal."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from duly.cli import app as cli
from store.db import Database


@pytest.fixture
def runner(sqlite_db: Database, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DULY_DATABASE_URL", sqlite_db.url)
    # Nothing listens here: a command that reached Temporal would fail differently.
    monkeypatch.setenv("DULY_TEMPORAL_ADDRESS", "127.0.0.1:1")
    return CliRunner()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["assign", "--requirement", "hipaa", "--due", "9999-12-31"],
            "--due 9999-12-31 is out of range: allowed ",
        ),
        (
            [
                "assignments",
                "restart",
                "assignment/p-1/hipaa/1",
                "-r",
                "typo",
                "--due",
                "2099-01-01",
            ],
            "--due 2099-01-01 is out of range: allowed ",
        ),
        (
            [
                "certifications",
                "restart",
                "certification/p-1/bls",
                "-r",
                "typo",
                "--expires-on",
                "0001-01-01",
            ],
            "--expires-on 0001-01-01 is out of range: allowed ",
        ),
        (
            [
                "certifications",
                "restart",
                "certification/p-1/bls",
                "-r",
                "typo",
                "--issued-on",
                "2099-01-01",
            ],
            "--issued-on 2099-01-01 is out of range: allowed 1970-01-01 to ",
        ),
    ],
)
def test_out_of_range_dates_exit_2_naming_option_value_and_range(
    runner: CliRunner, args: list[str], expected: str
) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert expected in result.output


def test_the_window_follows_the_settings(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DULY_DUE_DATE_FUTURE_YEARS", "1")
    today = datetime.now(UTC).date()
    two_years = today.replace(year=today.year + 2, day=1)
    result = runner.invoke(
        cli, ["assign", "--requirement", "hipaa", "--due", two_years.isoformat()]
    )
    assert result.exit_code == 2, result.output
    assert "DULY_DUE_DATE_FUTURE_YEARS" in result.output
