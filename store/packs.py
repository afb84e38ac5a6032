"""Deployed rules pack versions: store, activate, list them and read their files by hash.

A version is stored with every file of the pack (so the exact pack a workflow is pinned to can
be loaded again years later), its content hash, author, message and migration mode. Exactly one
version is active: new obligations pin it. Redeploying content that was deployed before
reactivates that version (a rollback) instead of storing a copy.

The store keeps files, not parsed packs: parsing and validation belong to the rules layer
(``rules.loader.pack_from_files``), and callers load a stored version through
``activities.packs.load_version`` (parsed once per content hash).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store import audit
from store.models import RulesPackVersion
from store.types import utcnow


class Migration(StrEnum):
    """What a deploy does to obligations that are already running.

    * ``grandfather``: nothing; running workflows keep the version they started with, only new
      obligations use the new one. Managers see no change until the next cycle.
    * ``rebase``: running workflows adopt the new version at their next step (their next timer):
      remaining stages are re-planned from the new policy; nothing is sent at deploy time.
    * ``apply_now``: running workflows are signalled to adopt it at once: their status is
      re-decided and remaining stages re-planned immediately, so a stage that the new policy
      puts in the past is sent now (one late notice, never a burst).
    """

    GRANDFATHER = "grandfather"
    REBASE = "rebase"
    APPLY_NOW = "apply_now"


class _PackInfo(Protocol):
    @property
    def name(self) -> str: ...


class DeployablePack(Protocol):
    """What the store keeps of a pack the caller has already loaded, validated and linted.

    :class:`rules.model.Pack` fits; the store never parses a pack itself (the rules layer
    does: ``rules.loader.pack_from_files`` on :func:`stored_files`).
    """

    @property
    def content_hash(self) -> str:
        """The hash of the pack's files (its identity)."""
        ...

    @property
    def info(self) -> _PackInfo:
        """The pack's ``pack`` section (its name)."""
        ...

    @property
    def files(self) -> dict[str, str]:
        """Every file of the pack: relative name -> text."""
        ...


def deploy(
    session: Session,
    pack: DeployablePack,
    *,
    author: str,
    message: str | None,
    migration: Migration,
    actor_role: str = "hr_admin",
) -> RulesPackVersion:
    """Store ``pack`` (or find the identical stored version) and make it the active one.

    The caller has validated and linted the pack. The deploy is recorded in the audit log.

    Returns:
        The now-active version.
    """
    previous = active_version(session)
    version = session.scalar(
        select(RulesPackVersion).where(RulesPackVersion.content_hash == pack.content_hash)
    )
    if version is None:
        version = RulesPackVersion(
            content_hash=pack.content_hash,
            name=pack.info.name,
            author=author,
            message=message,
            migration=migration.value,
            content={"files": pack.files},
            active=False,
            deployed_at=utcnow(),
        )
        session.add(version)
    else:
        version.author, version.message, version.migration = author, message, migration.value
        version.deployed_at = utcnow()
    session.execute(update(RulesPackVersion).values(active=False))
    version.active = True
    session.flush()
    audit.record(
        session,
        actor=author,
        actor_role=actor_role,
        action="rules.deploy",
        target=f"rules_pack/{pack.info.name}",
        before={"content_hash": previous.content_hash} if previous else None,
        after={
            "content_hash": pack.content_hash,
            "migration": migration.value,
            "message": message,
        },
    )
    return version


def active_version(session: Session) -> RulesPackVersion | None:
    """The active version, if any pack was deployed."""
    return session.scalar(select(RulesPackVersion).where(RulesPackVersion.active.is_(True)))


def versions(session: Session) -> list[RulesPackVersion]:
    """Every stored version, newest deploy first."""
    return list(
        session.scalars(
            select(RulesPackVersion).order_by(
                RulesPackVersion.deployed_at.desc(), RulesPackVersion.id.desc()
            )
        )
    )


def find_version(session: Session, content_hash: str) -> RulesPackVersion | None:
    """The version with this hash (a unique prefix of at least 8 characters also works)."""
    if len(content_hash) == 64:
        return session.scalar(
            select(RulesPackVersion).where(RulesPackVersion.content_hash == content_hash)
        )
    if len(content_hash) < 8:
        return None
    matches = list(
        session.scalars(
            select(RulesPackVersion).where(RulesPackVersion.content_hash.startswith(content_hash))
        )
    )
    return matches[0] if len(matches) == 1 else None


def stored_files(session: Session, content_hash: str) -> tuple[str, dict[str, str]] | None:
    """The full content hash and the files of a stored version (a unique 8+ prefix works).

    Returns:
        ``(content_hash, files)``, or None when no version matches.
    """
    version = find_version(session, content_hash)
    if version is None:
        return None
    return version.content_hash, dict(version.content["files"])


def active_hash(session: Session) -> str | None:
    """The active version's content hash (None: no pack deployed, the built-in rules apply)."""
    return session.scalar(
        select(RulesPackVersion.content_hash).where(RulesPackVersion.active.is_(True))
    )


def describe(version: RulesPackVersion) -> dict[str, object]:
    """A version as plain data (no file contents), for the CLI and the API."""
    deployed: datetime = version.deployed_at
    return {
        "content_hash": version.content_hash,
        "name": version.name,
        "author": version.author,
        "message": version.message,
        "migration": version.migration,
        "active": version.active,
        "deployed_at": deployed.isoformat(),
        "files": sorted(version.content.get("files", {})),
    }
