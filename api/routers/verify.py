"""Public certificate verification: ``GET /verify/{code}``, no token needed.

Anyone holding a certificate's verification code (printed on the certificate, or sent to an
employer) can check it. The answer holds exactly four fields — the holder's name, the
certification's title, its status and the date it is valid until — and nothing else: no email,
no ids, no history.

Codes are 60-bit random, but the page is public, so each client IP is rate-limited (a sliding
window of ``DULY_VERIFY_RATE_LIMIT_PER_MINUTE`` requests per minute, per API process). Unknown
codes count too, so the page cannot be used to enumerate codes. Behind a reverse proxy, run the
API with ``--proxy-headers`` so the client IP is the caller's, not the proxy's.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import date

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.deps import SessionDep, SettingsDep
from store.models import Certificate

router = APIRouter(prefix="/verify", tags=["verify"])

#: The shape of a verification code (``DULY-XXXX-XXXX-XXXX``; see ``CertificateRecord``).
CODE_PATTERN = re.compile(r"^[A-Z0-9-]{6,40}$")
UNKNOWN_CODE = "unknown verification code"
WINDOW_SECONDS = 60.0


class Verification(BaseModel):
    """What the public learns about a certificate: exactly these four fields."""

    holder: str = Field(description="The certificate holder's name.")
    certification: str = Field(description="The certification's title.")
    status: str = Field(
        description="compliant, renewal_due, grace_period, non_compliant, suspended, revoked, "
        "superseded (an earlier cycle that was renewed), …"
    )
    valid_until: date = Field(description="The certificate's expiry date.")


class SlidingWindowLimiter:
    """Admits at most ``limit`` hits per key within a sliding ``window`` of seconds.

    In-process and thread-safe. Memory is bounded: keys idle for a whole window are dropped
    first, and beyond ``max_keys`` the oldest keys are forgotten.
    """

    def __init__(
        self,
        limit: int,
        window: float = WINDOW_SECONDS,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure the limiter.

        Args:
            limit: Hits admitted per key per window (must be at least 1).
            window: The window's length in seconds.
            max_keys: How many keys are remembered at most.
            clock: A monotonic clock in seconds (tests may pass a fake one).
        """
        if limit < 1:
            raise ValueError(f"a rate limit must admit at least 1 request, not {limit}")
        self.limit = limit
        self._window = window
        self._max_keys = max_keys
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Count one hit for ``key``.

        Returns:
            None when the hit is admitted; otherwise the seconds until the next hit would be.
        """
        now = self._clock()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                self._evict(now)
                hits = self._hits[key] = deque()
            while hits and hits[0] <= now - self._window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self._window - now, 0.0)
            hits.append(now)
            return None

    def _evict(self, now: float) -> None:
        if len(self._hits) < self._max_keys:
            return
        for key in [
            k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self._window
        ]:
            del self._hits[key]
        while len(self._hits) >= self._max_keys:
            del self._hits[next(iter(self._hits))]


def _limiter(request: Request, limit: int) -> SlidingWindowLimiter:
    """The app's limiter (one per app, so each app — and each test — starts afresh)."""
    state = request.app.state
    limiter: SlidingWindowLimiter | None = getattr(state, "verify_limiter", None)
    if limiter is None or limiter.limit != limit:
        limiter = SlidingWindowLimiter(limit)
        state.verify_limiter = limiter
    return limiter


def _enforce_rate_limit(request: Request, limit: int) -> None:
    if limit <= 0:
        return
    client = request.client.host if request.client is not None else "unknown"
    retry_after = _limiter(request, limit).hit(client)
    if retry_after is not None:
        seconds = max(1, math.ceil(retry_after))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many verification requests from this address (at most {limit} a"
            f" minute); try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )


@router.get(
    "/{code}",
    response_model=Verification,
    responses={
        404: {"description": "No certificate has this code."},
        429: {"description": "Too many requests from this address; see Retry-After."},
    },
)
def verify_certificate(
    code: str,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
) -> Verification:
    """Verify a certificate by its public code (no token needed).

    Answers only the holder's name, the certification, its status and the date it is valid
    until. A renewed certificate's earlier code answers ``superseded``.
    """
    _enforce_rate_limit(request, settings.verify_rate_limit_per_minute)
    normalized = code.strip().upper()
    if not CODE_PATTERN.match(normalized):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=UNKNOWN_CODE)
    row = session.scalar(select(Certificate).where(Certificate.verification_code == normalized))
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=UNKNOWN_CODE)
    response.headers["Cache-Control"] = "no-store"
    return Verification(
        holder=row.person.name,
        certification=row.title,
        status=row.status,
        valid_until=row.expires_on,
    )
