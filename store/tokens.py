"""API tokens: created once, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from duly.domain import Role
from store.models import ApiToken, Person

TOKEN_PREFIX = "duly_"


class TokenError(ValueError):
    """A token request that cannot be honoured; the message says why."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's role and, for people-bound roles, their person."""

    token_id: int
    role: Role
    person_id: int | None
    person_external_id: str | None
    label: str | None

    @property
    def actor(self) -> str:
        """A log-safe actor name for the audit trail (no personal data)."""
        who = self.person_external_id or self.label or f"token-{self.token_id}"
        return f"{self.role.value}:{who}"


def hash_token(token: str) -> str:
    """SHA-256 of a token; tokens are 256-bit random, so a plain hash is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, *, role: Role, person_external_id: str | None = None, label: str | None = None
) -> str:
    """Create a token and return it in clear (the only time it is visible).

    Raises:
        TokenError: the role needs a person and none (or an unknown one) was given.
    """
    person_id: int | None = None
    if role in (Role.LEARNER, Role.MANAGER) and not person_external_id:
        raise TokenError(
            f"role {role.value} needs --person: the external id of the person it acts as"
        )
    if person_external_id:
        person = session.scalar(select(Person).where(Person.external_id == person_external_id))
        if person is None:
            raise TokenError(
                f"unknown person {person_external_id!r}; import the directory first "
                "(`duly people import FILE.csv`)"
            )
        person_id = person.id
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            token_hash=hash_token(token),
            prefix=token[: len(TOKEN_PREFIX) + 6],
            role=role.value,
            person_id=person_id,
            label=label,
        )
    )
    session.flush()
    return token


def authenticate(session: Session, token: str) -> Principal | None:
    """Resolve a bearer token to its principal; None when unknown or revoked."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    return Principal(
        token_id=row.id,
        role=Role(row.role),
        person_id=row.person_id,
        person_external_id=row.person.external_id if row.person else None,
        label=row.label,
    )
