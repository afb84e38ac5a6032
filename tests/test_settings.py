"""Settings: DULY_* variables, defaults, and production refusing unsafe secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from duly.settings import DEV_SECRET_KEY, Settings

STRONG = "x" * 48


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("DULY_DATABASE_URL", "DULY_ENV", "DULY_SECRET_KEY", "DULY_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    settings = Settings()
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_database_url.endswith(".duly/duly.db")
    assert settings.temporal_address == "127.0.0.1:7233"
    assert settings.api_base_url == "http://127.0.0.1:8000"
    assert settings.temporal_ui_url == "http://127.0.0.1:8233"


def test_environment_variables_configure_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DULY_DATABASE_URL", "postgresql+psycopg://u:p@db:5432/duly")
    monkeypatch.setenv("DULY_TEMPORAL_ADDRESS", "temporal:7233")
    monkeypatch.setenv("DULY_TEMPORAL_TASK_QUEUE", "q2")
    monkeypatch.setenv("DULY_API_PORT", "9000")
    monkeypatch.setenv("DULY_SENDGRID_API_KEY", "SG.secret")
    settings = Settings()
    assert settings.resolved_database_url == "postgresql+psycopg://u:p@db:5432/duly"
    assert settings.temporal_task_queue == "q2" and settings.api_port == 9000
    assert settings.sendgrid_api_key is not None
    assert "SG.secret" not in repr(settings)  # secrets never print


def test_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DULY_TWILIO_AUTH_TOKEN", "")
    assert Settings().twilio_auth_token is None


@pytest.mark.parametrize("secret", [None, DEV_SECRET_KEY, "short"])
def test_production_refuses_missing_default_or_weak_secret(
    monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    monkeypatch.setenv("DULY_ENV", "production")
    monkeypatch.setenv("DULY_DATABASE_URL", "postgresql+psycopg://u:p@db/duly")
    if secret is None:
        monkeypatch.delenv("DULY_SECRET_KEY", raising=False)
    else:
        monkeypatch.setenv("DULY_SECRET_KEY", secret)
    with pytest.raises(ValidationError, match="DULY_SECRET_KEY"):
        Settings()


def test_production_needs_a_real_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DULY_ENV", "production")
    monkeypatch.setenv("DULY_SECRET_KEY", STRONG)
    monkeypatch.delenv("DULY_DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match="DULY_DATABASE_URL"):
        Settings()


def test_production_accepts_a_strong_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DULY_ENV", "production")
    monkeypatch.setenv("DULY_SECRET_KEY", STRONG)
    monkeypatch.setenv("DULY_DATABASE_URL", "postgresql+psycopg://u:p@db/duly")
    assert Settings().env == "production"


def test_cli_reports_bad_configuration_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from duly.cli import app

    monkeypatch.setenv("DULY_ENV", "production")
    monkeypatch.setenv("DULY_DATABASE_URL", "postgresql+psycopg://u:p@db/duly")
    monkeypatch.delenv("DULY_SECRET_KEY", raising=False)
    result = CliRunner().invoke(app, ["migrate"])
    assert result.exit_code == 2
    assert "DULY_SECRET_KEY" in result.output
    assert "Traceback" not in result.output
