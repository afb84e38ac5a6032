"""The store on SQLite and PostgreSQL: migrations, audit log, ledger, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from store import audit
from store.db import Database
from store.migrate import downgrade, upgrade
from store.models import AuditEntry, Notification, Person

TABLES = {
    "people",
    "obligations",
    "notifications",
    "audit_log",
    "api_tokens",
    "rules_pack_versions",
    "notification_preferences",
    "dead_letters",
    "mentor_profiles",
    "mentee_profiles",
    "mentorships",
    "mentorship_sessions",
    "mentorship_feedback",
}


def test_models_and_migrations_agree(db: Database) -> None:
    """Autogenerate finds nothing to add or drop: every model change has its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from store.models import Base

    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    structural = [
        d for d in diff if d[0] in {"add_table", "remove_table", "add_column", "remove_column"}
    ]
    assert structural == []


def test_migrations_create_every_table_and_round_trip(db: Database) -> None:
    assert set(sa.inspect(db.engine).get_table_names()) >= TABLES
    db.dispose()
    downgrade(db.url, "base")
    assert not TABLES & set(sa.inspect(db.engine).get_table_names())
    db.dispose()
    upgrade(db.url)
    assert set(sa.inspect(db.engine).get_table_names()) >= TABLES


def test_audit_log_is_append_only_in_the_database(db: Database) -> None:
    with db.session() as session:
        audit.record(session, actor="hr:x", actor_role="hr_admin", action="a", target="t")
    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), db.session() as session:
            session.execute(sa.text(statement))
    with db.session() as session:
        assert session.scalar(select(AuditEntry.actor)) == "hr:x"


def test_audit_chain_detects_tampering(db: Database) -> None:
    with db.session() as session:
        for n in range(3):
            audit.record(
                session,
                actor="hr:x",
                actor_role="hr_admin",
                action="assignment.create",
                target=f"t{n}",
                after={"n": n},
            )
    with db.session() as session:
        assert audit.verify_chain(session) == []
        ids = list(session.scalars(select(AuditEntry.id).order_by(AuditEntry.id)))
    # Someone with database-owner rights drops the guard and edits history.
    with db.session() as session:
        if db.engine.dialect.name == "postgresql":
            session.execute(sa.text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update"))
        else:
            session.execute(sa.text("DROP TRIGGER audit_log_no_update"))
        session.execute(
            sa.text("UPDATE audit_log SET target = 'forged' WHERE id = :id"), {"id": ids[1]}
        )
    with db.session() as session:
        assert audit.verify_chain(session) == [ids[1]]


def test_ledger_idempotency_key_is_unique(db: Database) -> None:
    def row() -> Notification:
        return Notification(
            idempotency_key="assignment/p/r/1|builtin|-7d|p|email",
            workflow_id="assignment/p/r/1",
            channel="email",
            provider="outbox",
            kind="training",
            stage="-7d",
            pack_hash="builtin",
            subject="s",
            body="b",
            status="sent",
            fired_at=datetime.now(UTC),
        )

    with db.session() as session:
        session.add(row())
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(row())


def test_timestamps_come_back_as_the_same_instant_in_utc(db: Database) -> None:
    eastern = timezone(timedelta(hours=-5))
    moment = datetime(2026, 3, 8, 1, 30, tzinfo=eastern)
    with db.session() as session:
        session.add(Person(external_id="p-1", name="A", roles=[], created_at=moment))
    with db.session() as session:
        person = session.scalar(select(Person))
        assert person is not None
        assert person.created_at == moment and person.created_at.tzinfo is not None
        assert person.created_at.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"), db.session() as session:
        session.add(Person(external_id="p-2", name="B", roles=[], created_at=datetime(2026, 1, 1)))
        session.flush()
