"""Alembic environment: the URL comes from the caller's config (set from Duly's settings)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from store.db import MIGRATION_TIMEOUTS, make_engine
from store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations on the configured database."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from duly.settings import get_settings

        url = get_settings().resolved_database_url
    engine = make_engine(url, MIGRATION_TIMEOUTS)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


run_migrations_online()
