"""Public certificate verification: ``GET /verify/{code}``, no token needed.

Anyone holding a certificate's verification code (printed on the certificate, or sent to an
employer) can check it. The answer holds exactly four fields — the holder's name, the
certification's title, its status and the date it is valid until — and nothing else: no email,
no ids, no history. A track's completion certificate answers the same way: the track's name,
``completed``, and no expiry date (``valid_until`` null).

Codes are 60-bit random, but the page is public, so each client IP is rate-limited (a sliding
window of ``DULY_VERIFY_RATE_LIMIT_PER_MINUTE`` requests per minute, in the storage of
``DULY_RATE_LIMIT_STORAGE``; see :mod:`api.limits`, which counts before this route runs).
Unknown codes count too, so the page cannot be used to enumerate codes. Behind a reverse proxy,
run ``duly api --forwarded-allow-ips PROXY_IP`` so the client IP is the caller's, not the
proxy's.
"""

from __future__ import annotations

import re
from datetime import date

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, Field

from api.deps import SessionDep
from store import certificates

router = APIRouter(prefix="/verify", tags=["verify"])

#: The shape of a verification code (``DULY-XXXX-XXXX-XXXX``; see ``CertificateRecord``).
CODE_PATTERN = re.compile(r"^[A-Z0-9-]{6,40}$")
UNKNOWN_CODE = "unknown verification code"


class Verification(BaseModel):
    """What the public learns about a certificate: exactly these four fields."""

    holder: str = Field(description="The certificate holder's name.")
    certification: str = Field(
        description="The certification's title (a track's certificate: the track's name)."
    )
    status: str = Field(
        description="compliant, renewal_due, grace_period, non_compliant, suspended, revoked, "
        "superseded (an earlier cycle that was renewed), …; a track's certificate: completed"
    )
    valid_until: date | None = Field(
        description="The certificate's expiry date (null: a track's certificate, which does"
        " not expire)."
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
    response: Response,
    session: SessionDep,
) -> Verification:
    """Verify a certificate by its public code (no token needed).

    Answers only the holder's name, the certification, its status and the date it is valid
    until. A renewed certificate's earlier code answers ``superseded``; a completed track's
    certificate answers ``completed`` with no expiry.
    """
    normalized = code.strip().upper()
    if not CODE_PATTERN.match(normalized):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=UNKNOWN_CODE)
    found = certificates.find(session, normalized)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=UNKNOWN_CODE)
    response.headers["Cache-Control"] = "no-store"
    return Verification(
        holder=found.holder,
        certification=found.title,
        status=found.status,
        valid_until=found.valid_until,
    )
