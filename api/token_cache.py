"""A short-lived, per-process cache of verified bearer tokens (``DULY_TOKEN_CACHE_SECONDS``).

Why: checking a token costs a database transaction of its own (a pooled connection, its
liveness ping, ``BEGIN``, the lookup, ``COMMIT``) on every request, about as much as the
request's own work on the hot read routes. A token that verified less than
``DULY_TOKEN_CACHE_SECONDS`` ago (default 5) is trusted again without asking the database.

What that trades: a token revoked, or whose person is terminated, by *another* process (the
CLI, a directory import or SCIM call answered by another API process, a direct database
change) keeps working in this process until its entry is that old, so for at most
``DULY_TOKEN_CACHE_SECONDS``. A revocation through this process (``DELETE /tokens/{id}``) drops
the entry at once. ``0`` turns the cache off: every request asks the database again, as before.

What it never does: cache a rejection (an unknown, revoked or expired token always asks the
database, so a new token works at once); outlive a token's own expiry (checked at every hit);
hold the token itself (entries are keyed by its SHA-256, like the database); grow without bound
(at most :data:`MAX_ENTRIES` tokens; when full it starts over).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from store.tokens import Principal
from store.types import utcnow

#: More distinct live tokens than this in one TTL and the cache is emptied (and refills).
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    expires_at: datetime | None
    verified_at: float


class TokenCache:
    """Principals of recently verified tokens, by token hash, for ``ttl_seconds``.

    Args:
        ttl_seconds: How long a verification is trusted; 0 disables the cache.
        monotonic: The clock entries age by (tests pass a fake one).
        wall_clock: The clock a token's own expiry is compared with (tests pass a fake one).
    """

    def __init__(
        self,
        ttl_seconds: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.ttl = ttl_seconds
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether verifications are cached at all."""
        return self.ttl > 0

    def get(self, token_hash: str) -> Principal | None:
        """The principal of a token verified less than ``ttl`` ago and not expired since."""
        if not self.enabled:
            return None
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if self._monotonic() - entry.verified_at >= self.ttl or (
            entry.expires_at is not None and self._wall_clock() >= entry.expires_at
        ):
            with self._lock:
                self._entries.pop(token_hash, None)
            return None
        return entry.principal

    def put(self, token_hash: str, principal: Principal, expires_at: datetime | None) -> None:
        """Remember a token the database has just accepted."""
        if not self.enabled:
            return
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[token_hash] = _Entry(principal, expires_at, self._monotonic())

    def forget(self, token_id: int) -> None:
        """Drop a token (revoked through this process) so its next request asks the database."""
        with self._lock:
            for key in [k for k, e in self._entries.items() if e.principal.token_id == token_id]:
                del self._entries[key]
