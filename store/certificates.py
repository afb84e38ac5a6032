"""Verification codes and what ``GET /verify/{code}`` answers, for every kind of certificate.

Two kinds of certificate carry a code: a held certification's cycle (table ``certificates``)
and a completed track (``track_enrolments.certificate_code``). One code space covers both, so a
code names exactly one certificate, and the public page answers the same four fields for
either.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Certificate, TrackEnrolment

__all__ = ["CODE_ALPHABET", "CODE_PREFIX", "Verified", "find", "new_code", "unused_code"]

#: Base32 without 0/1/8/9 look-alikes: 32 symbols, 5 bits each.
CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
CODE_PREFIX = "DULY"

#: A track completion certificate's status on the public page (it does not expire).
TRACK_COMPLETED = "completed"


def new_code() -> str:
    """A fresh random verification code such as ``DULY-7KQ2-MZ4P-XW3A`` (60 random bits)."""
    groups = ("".join(secrets.choice(CODE_ALPHABET) for _ in range(4)) for _ in range(3))
    return "-".join((CODE_PREFIX, *groups))


def _taken(session: Session, code: str) -> bool:
    return (
        session.scalar(select(Certificate.id).where(Certificate.verification_code == code))
        is not None
        or session.scalar(select(TrackEnrolment.id).where(TrackEnrolment.certificate_code == code))
        is not None
    )


def unused_code(session: Session) -> str:
    """A code no certificate (certification or track) has yet (a clash is ~impossible)."""
    while True:
        code = new_code()
        if not _taken(session, code):
            return code


@dataclass(frozen=True)
class Verified:
    """What the public page shows of a certificate.

    Attributes:
        holder: The holder's name.
        title: The certification's title, or the track's name when it was completed.
        status: The certification's status, or ``completed`` for a track.
        valid_until: The certificate's expiry date (None: a track's certificate, no expiry).
    """

    holder: str
    title: str
    status: str
    valid_until: date | None


def find(session: Session, code: str) -> Verified | None:
    """The certificate with this (normalised) code, of either kind; None when none has it."""
    cert = session.scalar(select(Certificate).where(Certificate.verification_code == code))
    if cert is not None:
        return Verified(cert.person.name, cert.title, cert.status, cert.expires_on)
    track = session.scalar(select(TrackEnrolment).where(TrackEnrolment.certificate_code == code))
    if track is not None and track.certificate_title is not None:
        return Verified(track.person.name, track.certificate_title, TRACK_COMPLETED, None)
    return None
