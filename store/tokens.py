"""API tokens: shown once, stored as SHA-256, expiring, revocable; integrations carry scopes.

What a token may do is decided from the directory, not frozen in the token: a token whose
person is terminated stops once the API's cached verification of it is
``DULY_TOKEN_CACHE_SECONDS`` old (:mod:`api.token_cache`; at once with 0), and a manager sees
whoever reports to them *now* (see :func:`api.deps.visible_person_ids`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.roles import Role
from domain.statuses import EmploymentStatus
from store.models import ApiToken, Person
from store.types import utcnow

TOKEN_PREFIX = "duly_"
#: How long a new token stays valid unless told otherwise (``DULY_TOKEN_LIFETIME_DAYS``).
DEFAULT_LIFETIME = timedelta(days=90)


class Scope(StrEnum):
    """What an integration (machine) token may do; person tokens are governed by their role."""

    XAPI_WRITE = "xapi:write"
    COMPLETIONS_WRITE = "completions:write"
    ASSIGNMENTS_WRITE = "assignments:write"
    PEOPLE_IMPORT = "people:import"
    PEOPLE_READ = "people:read"
    #: Provisioning by an identity provider: every ``/scim/v2`` route (and nothing else).
    SCIM = "scim"


#: An integration token created without ``--scope`` may only post learning records.
DEFAULT_INTEGRATION_SCOPES = frozenset({Scope.XAPI_WRITE})


class TokenError(ValueError):
    """A token request that cannot be honoured; the message says why."""


class TokenRejected(Exception):
    """A bearer token that does not authenticate; the message says why (safe to show)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's role and, for people-bound roles, their person."""

    token_id: int
    role: Role
    person_id: int | None
    person_external_id: str | None
    label: str | None
    #: Integration tokens: their scopes; None for person tokens (the role decides).
    scopes: frozenset[Scope] | None = None
    #: When the token stops being valid (None: never); the API's token cache re-checks it.
    expires_at: datetime | None = field(default=None, compare=False)

    @property
    def actor(self) -> str:
        """A log-safe actor name for the audit trail (no personal data)."""
        who = self.person_external_id or self.label or f"token-{self.token_id}"
        return f"{self.role.value}:{who}"

    def allows(self, scope: Scope) -> bool:
        """Whether this principal holds ``scope`` (person tokens: always; their role decides)."""
        return self.scopes is None or scope in self.scopes


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed (never the token or its hash)."""

    id: int
    prefix: str
    role: str
    person: str | None
    label: str | None
    scopes: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    #: ``active``, ``expired``, ``revoked`` or ``person-terminated``.
    state: str


def hash_token(token: str) -> str:
    """SHA-256 of a token; tokens are 256-bit random, so a plain hash is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Scope names to scopes.

    Raises:
        TokenError: An unknown scope (the message lists the known ones).
    """
    scopes: set[Scope] = set()
    for value in values:
        try:
            scopes.add(Scope(value.strip()))
        except ValueError as exc:
            known = ", ".join(s.value for s in Scope)
            raise TokenError(f"unknown scope {value!r}; use one or more of: {known}") from exc
    return frozenset(scopes)


def create_token(
    session: Session,
    *,
    role: Role,
    person_external_id: str | None = None,
    label: str | None = None,
    scopes: Iterable[Scope] | None = None,
    lifetime: timedelta | None = DEFAULT_LIFETIME,
    now: datetime | None = None,
) -> str:
    """Create a token and return it in clear (the only time it is visible).

    Args:
        session: The database session.
        role: The token's role.
        person_external_id: The person a learner or manager token acts as.
        label: A note to recognise the token by.
        scopes: Integration tokens only; default :data:`DEFAULT_INTEGRATION_SCOPES`.
        lifetime: How long it stays valid; None (never expires) only for integration tokens.
        now: The creation time (tests); the clock otherwise.

    Raises:
        TokenError: The role needs a person and none (or an unknown or terminated one) was
            given; scopes for a person role; no expiry for a person role.
    """
    person_id: int | None = None
    if role in (Role.LEARNER, Role.MANAGER) and not person_external_id:
        raise TokenError(
            f"role {role.value} needs --person: the external id of the person it acts as"
        )
    if role is not Role.INTEGRATION and scopes is not None:
        raise TokenError(
            f"--scope is for integration tokens; a {role.value} token is governed by its role"
        )
    if role is not Role.INTEGRATION and lifetime is None:
        raise TokenError("--no-expiry is for integration tokens; person tokens always expire")
    if lifetime is not None and lifetime <= timedelta(0):
        raise TokenError("a token's lifetime must be positive")
    if person_external_id:
        person = session.scalar(select(Person).where(Person.external_id == person_external_id))
        if person is None:
            raise TokenError(
                f"unknown person {person_external_id!r}; import the directory first "
                "(`duly people import FILE.csv`)"
            )
        if person.employment_status == EmploymentStatus.TERMINATED:
            raise TokenError(f"person {person_external_id!r} is terminated")
        person_id = person.id
    granted: list[str] | None = None
    if role is Role.INTEGRATION:
        chosen = DEFAULT_INTEGRATION_SCOPES if scopes is None else frozenset(scopes)
        granted = sorted(s.value for s in chosen)
    created = now or utcnow()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            token_hash=hash_token(token),
            prefix=token[: len(TOKEN_PREFIX) + 6],
            role=role.value,
            person_id=person_id,
            label=label,
            created_at=created,
            expires_at=created + lifetime if lifetime is not None else None,
            scopes=granted,
        )
    )
    session.flush()
    return token


def check_token(session: Session, token: str, *, now: datetime | None = None) -> Principal:
    """Resolve a bearer token to its principal, as the directory stands now.

    Raises:
        TokenRejected: Unknown, revoked, expired, or its person is terminated.
    """
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        raise TokenRejected("unknown or revoked token")
    if row.expires_at is not None and (now or utcnow()) >= row.expires_at:
        raise TokenRejected("token expired; ask an HR admin for a new one (`duly tokens create`)")
    person = row.person
    if person is not None and person.employment_status == EmploymentStatus.TERMINATED:
        raise TokenRejected("this token's person is no longer employed")
    if row.role in (Role.LEARNER, Role.MANAGER) and person is None:
        raise TokenRejected("unknown or revoked token")
    scopes: frozenset[Scope] | None = None
    if row.role == Role.INTEGRATION:
        # Unknown names (a scope removed in a later version) grant nothing.
        scopes = frozenset(Scope(s) for s in (row.scopes or []) if s in Scope._value2member_map_)
    return Principal(
        token_id=row.id,
        role=Role(row.role),
        person_id=row.person_id,
        person_external_id=person.external_id if person else None,
        label=row.label,
        scopes=scopes,
        expires_at=row.expires_at,
    )


def authenticate(session: Session, token: str) -> Principal | None:
    """Resolve a bearer token to its principal; None when it does not authenticate."""
    try:
        return check_token(session, token)
    except TokenRejected:
        return None


def _info(row: ApiToken, now: datetime) -> TokenInfo:
    if row.revoked_at is not None:
        state = "revoked"
    elif row.expires_at is not None and now >= row.expires_at:
        state = "expired"
    elif row.person is not None and row.person.employment_status == EmploymentStatus.TERMINATED:
        state = "person-terminated"
    else:
        state = "active"
    return TokenInfo(
        id=row.id,
        prefix=row.prefix,
        role=row.role,
        person=row.person.external_id if row.person else None,
        label=row.label,
        scopes=row.scopes,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        state=state,
    )


def list_tokens(
    session: Session, *, include_inactive: bool = False, now: datetime | None = None
) -> list[TokenInfo]:
    """Every token (by id), without secrets; only the usable ones unless ``include_inactive``."""
    moment = now or utcnow()
    rows = session.scalars(select(ApiToken).order_by(ApiToken.id))
    infos = [_info(row, moment) for row in rows]
    return infos if include_inactive else [i for i in infos if i.state == "active"]


def revoke_token(session: Session, token_id: int, *, now: datetime | None = None) -> TokenInfo:
    """Revoke a token at once (idempotent: revoking twice keeps the first time).

    Raises:
        TokenError: No token has this id.
    """
    row = session.get(ApiToken, token_id) if 0 < token_id <= 2**31 - 1 else None
    if row is None:
        raise TokenError(f"no token with id {token_id}; see `duly tokens list --all`")
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()
        session.flush()
    return _info(row, now or utcnow())


def find_token(session: Session, token: str) -> TokenInfo | None:
    """The listing of a token given in clear (None: unknown); for reusing demo tokens."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    return _info(row, utcnow()) if row is not None else None
