"""`duly integrations add|list|test|sync` against a CSV drop folder (no Temporal needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from duly.cli import app as cli
from store.db import Database
from store.models import DeadLetter


@pytest.fixture
def runner(sqlite_db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.setenv("DULY_DATABASE_URL", sqlite_db.url)
    monkeypatch.setenv("DULY_DATA_DIR", str(tmp_path / "data"))
    # Nothing listens here: the schedule is reported pending, and nothing needs a signal.
    monkeypatch.setenv("DULY_TEMPORAL_ADDRESS", "127.0.0.1:1")
    return CliRunner()


def test_add_list_test_and_sync_a_csv_drop(
    runner: CliRunner, sqlite_db: Database, tmp_path: Path
) -> None:
    added = runner.invoke(
        cli,
        ["integrations", "add", "provider", "--kind", "csv_drop", "--config", '{"folder": "in"}'],
    )
    assert added.exit_code == 0, added.output
    assert "integration 1 (csv_drop) added" in added.output and "pending" in added.output

    missing = runner.invoke(cli, ["integrations", "test", "1"])
    assert missing.exit_code == 1 and "does not exist" in missing.output

    folder = tmp_path / "data" / "drops" / "in"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text(
        "person,requirement_id,completed_at\nnobody,hipaa,2020-13-45\n", encoding="utf-8"
    )
    ok = runner.invoke(cli, ["integrations", "test", "1"])
    assert ok.exit_code == 0 and "1 CSV file" in ok.output

    synced = runner.invoke(cli, ["integrations", "sync", "1", "--here"])
    assert synced.exit_code == 0, synced.output
    assert '"dead_lettered": 1' in synced.output
    with sqlite_db.session() as session:
        [letter] = session.scalars(select(DeadLetter)).all()
        assert letter.source == "csv_drop:1" and "a.csv row 2" in letter.reason

    listed = runner.invoke(cli, ["integrations", "list"])
    assert listed.exit_code == 0 and "provider" in listed.output and "ok" in listed.output


def test_add_refuses_a_pasted_secret(runner: CliRunner) -> None:
    result = runner.invoke(
        cli,
        [
            "integrations",
            "add",
            "lms",
            "--kind",
            "moodle",
            "--config",
            '{"base_url": "https://moodle.example"}',
            "--secret-ref",
            "abcdef123",
        ],
    )
    assert result.exit_code == 2 and "the secret is not stored" in result.output
