"""Stored packs and directory entries as the rules layer takes them: parsed, plain data.

The store keeps a pack's files and the directory's rows; the rules layer takes a parsed
:class:`rules.model.Pack` and plain facts. This module is the adapter between the two floors,
shared by the activities and the services (both read packs pinned by content hash).
"""

from __future__ import annotations

import threading
from typing import Protocol

from sqlalchemy.orm import Session

from rules.loader import pack_from_files
from rules.model import Pack
from rules.obligation_facts import PersonAttributes
from store.packs import active_hash, stored_files

_CACHE: dict[str, Pack] = {}
_CACHE_LOCK = threading.Lock()


def load_version(session: Session, content_hash: str) -> Pack | None:
    """The pack stored under ``content_hash`` (parsed once: a stored version never changes).

    Args:
        session: A session (only read).
        content_hash: The full hash, or a unique prefix of at least 8 characters.

    Returns:
        The pack, or None when no version matches.
    """
    with _CACHE_LOCK:
        cached = _CACHE.get(content_hash)
    if cached is not None:
        return cached
    stored = stored_files(session, content_hash)
    if stored is None:
        return None
    full_hash, files = stored
    pack = pack_from_files(files)
    with _CACHE_LOCK:
        _CACHE[full_hash] = pack
    return pack


def active_pack(session: Session) -> Pack | None:
    """The active pack, if any was deployed."""
    content_hash = active_hash(session)
    return load_version(session, content_hash) if content_hash else None


class _DirectoryEntry(Protocol):
    """A person's stored directory attributes: a ``Person``, or a row with the same names."""

    @property
    def roles(self) -> list[str] | None: ...
    @property
    def department(self) -> str | None: ...
    @property
    def location(self) -> str | None: ...
    @property
    def employer(self) -> str | None: ...
    @property
    def employment_status(self) -> str: ...


def person_attributes(person: _DirectoryEntry) -> PersonAttributes:
    """A directory row's attributes as facts (empty text for missing values).

    Args:
        person: A ``store.models.Person``, or a row with its attribute names (the sweep's
            :class:`store.sweep.SweepRow`).
    """
    return PersonAttributes(
        roles=list(person.roles or []),
        department=person.department or "",
        location=person.location or "",
        employer=person.employer or "",
        employment_status=person.employment_status,
    )
