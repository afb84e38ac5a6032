"""Deployed rules pack versions: store, activate, list and load them by content hash.

A version is stored with every file of the pack (so the exact pack a workflow is pinned to can
be loaded again years later), its content hash, author, message and migration mode. Exactly one
version is active: new obligations pin it. Redeploying content that was deployed before
reactivates that version (a rollback) instead of storing a copy.
"""

from __future__ import annotations

import re
import tempfile
import threading
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from rules.loader import PackInvalid, PackIssue, load_pack
from rules.model import Pack
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


_NAME = re.compile(r"^(templates/([A-Za-z0-9_.-]+/)*)?[A-Za-z0-9_.-]+$")


def pack_from_files(files: dict[str, str]) -> Pack:
    """Load a pack from its files (stored, or uploaded through the API) exactly as from a directory.

    Raises:
        PackInvalid: A file name that is not a plain pack file name, or anything
            :func:`rules.loader.load_pack` finds.
    """
    bad = [
        PackIssue(
            name[:80],
            1,
            1,
            "file names are plain names like requirements.yaml or templates/<dir>/<name>.j2"
            " (no '..', '/' at the start or backslashes)",
        )
        for name in files
        # "." names the directory itself (writing it was an IsADirectoryError, a 500).
        if not _NAME.match(name) or {".", ".."} & set(name.split("/"))
    ]
    if bad:
        raise PackInvalid(bad)
    with tempfile.TemporaryDirectory(prefix="duly-pack-") as tmp:
        root = Path(tmp)
        for name, text in files.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        try:
            return load_pack(root)
        except PackInvalid as invalid:
            # Directory-level issues name the directory: the server's temporary path, an
            # internal no client should see. Name it "(pack)" instead.
            raise PackInvalid(
                [
                    PackIssue(
                        issue.file.replace(tmp, "(pack)"),
                        issue.line,
                        issue.column,
                        issue.message.replace(tmp, "(pack)"),
                    )
                    for issue in invalid.issues
                ]
            ) from None


_CACHE: dict[str, Pack] = {}
_CACHE_LOCK = threading.Lock()


def deploy(
    session: Session,
    pack: Pack,
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


def load_version(session: Session, content_hash: str) -> Pack | None:
    """The pack stored under ``content_hash`` (cached: a stored version never changes)."""
    with _CACHE_LOCK:
        cached = _CACHE.get(content_hash)
    if cached is not None:
        return cached
    version = find_version(session, content_hash)
    if version is None:
        return None
    pack = pack_from_files(dict(version.content["files"]))
    with _CACHE_LOCK:
        _CACHE[version.content_hash] = pack
    return pack


def active_pack(session: Session) -> Pack | None:
    """The active pack, if any was deployed."""
    version = active_version(session)
    return load_version(session, version.content_hash) if version else None


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
