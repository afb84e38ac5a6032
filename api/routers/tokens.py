"""API tokens for HR admins: list them, revoke one (audited). Tokens are created with the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel

from api.deps import SessionDep, audit_action, require_roles, token_cache
from domain.roles import Role
from store.tokens import Principal, TokenError, TokenInfo, list_tokens, revoke_token

router = APIRouter(prefix="/tokens", tags=["tokens"])

HrAdmin = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN))]


class TokenRead(BaseModel):
    """A token as listed: never the token or its hash, only its first characters."""

    id: int
    prefix: str
    role: str
    person: str | None
    label: str | None
    scopes: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    state: str


def _read(info: TokenInfo) -> TokenRead:
    return TokenRead(**info.__dict__)


@router.get("", response_model=list[TokenRead], summary="List API tokens")
def get_tokens(
    session: SessionDep,
    principal: HrAdmin,
    include_inactive: Annotated[
        bool, Query(alias="all", description="Also expired, revoked and terminated people's.")
    ] = False,
) -> list[TokenRead]:
    """Every usable token (``?all=true``: also expired, revoked, terminated people's)."""
    return [_read(i) for i in list_tokens(session, include_inactive=include_inactive)]


@router.delete(
    "/{token_id}",
    response_model=TokenRead,
    summary="Revoke a token at once",
    responses={404: {"description": "No token has this id."}},
)
def delete_token(
    token_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    session: SessionDep,
    principal: HrAdmin,
    request: Request,
) -> TokenRead:
    """Revoke a token: its next request answers 401. Revoking twice changes nothing.

    At once on this API process; other API processes may still accept it for up to
    ``DULY_TOKEN_CACHE_SECONDS`` (their cache of verified tokens).
    """
    try:
        info = revoke_token(session, token_id)
    except TokenError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    audit_action(
        session,
        principal,
        "token.revoke",
        f"token:{info.id}",
        {"prefix": info.prefix, "role": info.role, "person": info.person},
    )
    # Committed before the cache forgets it, so no request in between re-verifies it as valid.
    session.commit()
    token_cache(request).forget(token_id)
    return _read(info)
