"""The append-only, hash-chained audit log of API actions."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import AuditEntry
from store.types import check_finite, utcnow

GENESIS = "0" * 64


def _digest(prev_hash: str, at: datetime, fields: dict[str, Any]) -> str:
    payload = json.dumps(
        {"prev": prev_hash, "at": at.isoformat(), **fields}, sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def record(
    session: Session,
    *,
    actor: str,
    actor_role: str,
    action: str,
    target: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry chained to the previous one.

    On PostgreSQL a transaction-scoped advisory lock serialises appends so two concurrent
    writers cannot both link to the same head and fork the chain; SQLite serialises writers itself.
    """
    # Before the hash: a NaN would be hashed as a token no JSON column can store.
    check_finite(before, "before")
    check_finite(after, "after")
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy import text

        session.execute(text("SELECT pg_advisory_xact_lock(424242)"))
    prev = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
    prev_hash = prev or GENESIS
    at = utcnow()
    fields = {
        "actor": actor,
        "actor_role": actor_role,
        "action": action,
        "target": target,
        "before": before,
        "after": after,
    }
    entry = AuditEntry(at=at, prev_hash=prev_hash, hash=_digest(prev_hash, at, fields), **fields)
    session.add(entry)
    session.flush()
    return entry


def verify_chain(session: Session) -> list[int]:
    """Return the ids of entries whose hash or link does not match (empty when intact)."""
    broken: list[int] = []
    prev_hash = GENESIS
    for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id)):
        fields = {
            "actor": entry.actor,
            "actor_role": entry.actor_role,
            "action": entry.action,
            "target": entry.target,
            "before": entry.before,
            "after": entry.after,
        }
        if entry.prev_hash != prev_hash or entry.hash != _digest(prev_hash, entry.at, fields):
            broken.append(entry.id)
        prev_hash = entry.hash
    return broken


def entry_intact(entry: AuditEntry) -> bool:
    """Whether one entry's hash matches its own fields and the link it names.

    A slice of the log (an evidence pack) is checked entry by entry with this; whether the
    links join up with the rest of the log is :func:`verify_chain`'s.
    """
    fields = {
        "actor": entry.actor,
        "actor_role": entry.actor_role,
        "action": entry.action,
        "target": entry.target,
        "before": entry.before,
        "after": entry.after,
    }
    return entry.hash == _digest(entry.prev_hash, entry.at, fields)
