"""Shared fixtures: databases on SQLite and PostgreSQL, the time-skipping server, wheels."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from store.db import Database
from store.migrate import upgrade

# The time-skipping server (anchored clock, isolation between tests): see tests/timeskip.py.
from tests.timeskip import (  # noqa: F401 - fixtures and the report hook, registered here
    env,
    ladder_start,
    pytest_runtest_makereport,
    time_skipping,
    time_skipping_server,
    wheel_binary,
)

# Settings without DULY_SECRET_KEY use a random per-process key in tests, instead of writing
# a development key file into the working directory (see Settings.key_ring).
os.environ.setdefault("DULY_ENV", "test")

pytest_plugins = ["pytester"]  # tests/test_isolation.py runs pytest in pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_ADMIN_URL = os.environ.get(
    "DULY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _postgres_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        engine = sa.create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {exc}"


def require_postgres() -> None:
    """Skip locally, but fail in CI, when PostgreSQL is unreachable."""
    reason = _postgres_available()
    if reason is None:
        return
    message = f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL} ({reason})"
    if IN_CI:
        pytest.fail(message + "; CI must run the PostgreSQL tests", pytrace=False)
    pytest.skip(message)


def create_postgres_database(template: str | None = None) -> tuple[str, str]:
    """Create a throwaway database (empty, or a copy of ``template``); returns (url, name)."""
    require_postgres()
    name = f"duly_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    copy = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
    admin.dispose()
    url = sa.make_url(POSTGRES_ADMIN_URL).set(database=name)
    return url.render_as_string(hide_password=False), name


def drop_postgres_database(name: str) -> None:
    """Drop a database made by :func:`create_postgres_database`."""
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database URL (fails in CI when PostgreSQL is down)."""
    url, name = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(name)


@pytest.fixture(scope="session")
def migrated_postgres_template() -> Iterator[str]:
    """A PostgreSQL database migrated once per test process, copied for each test's database.

    Copying it (``CREATE DATABASE … TEMPLATE``) takes a fraction of running the migrations
    again; nothing ever connects to it after the migrations, as a template requires.
    """
    url, name = create_postgres_database()
    try:
        upgrade(url)
        yield name
    finally:
        drop_postgres_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'duly.db'}"
        upgrade(url)
        yield url
        return
    require_postgres()  # before the session fixture, so its skip or failure reads the same
    url, name = create_postgres_database(request.getfixturevalue("migrated_postgres_template"))
    try:
        yield url
    finally:
        drop_postgres_database(name)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A :class:`Database` on a migrated SQLite or PostgreSQL database."""
    database = Database(db_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database (for tests where the backend does not matter)."""
    url = f"sqlite:///{tmp_path / 'duly.db'}"
    upgrade(url)
    database = Database(url)
    try:
        yield database
    finally:
        database.dispose()


def bearer(
    db: Database, role: object, person: str | None = None, scopes: object = "all"
) -> dict[str, str]:
    """An Authorization header with a fresh token for ``role`` (and ``person``).

    Integration tokens get every scope unless ``scopes`` names some (None: the default).
    """
    from domain.roles import Role
    from store.tokens import Scope, create_token

    parsed = Role(str(role))
    granted: list[Scope] | None = None
    if parsed is Role.INTEGRATION:
        if scopes == "all":
            granted = list(Scope)
        elif scopes is not None:
            granted = [Scope(str(s)) for s in scopes]  # type: ignore[attr-defined]
    with db.session() as session:
        value = create_token(
            session,
            role=parsed,
            person_external_id=person,
            label=f"test {role}",
            scopes=granted,
        )
    return {"Authorization": f"Bearer {value}"}
