"""Request dependencies: database session, Temporal client, the authenticated principal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, date, datetime
from typing import Annotated, Any, overload

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from temporalio.client import Client

from api.policy import integration_grants
from api.token_cache import TokenCache
from domain.bounds import DateWindow, InstantWindow, OutOfRange
from domain.roles import Role
from duly.settings import Settings
from store import audit
from store.db import Database, run_read_only
from store.people import reports_of
from store.tokens import Principal, Scope, TokenRejected, check_token, hash_token

_bearer = HTTPBearer(auto_error=False, description="A token from `duly tokens create`.")


# The dependencies below that do no I/O are ``async def`` on purpose: FastAPI runs every plain
# ``def`` dependency in its threadpool, a thread hop each (tens to hundreds of microseconds, more
# under load) for what is an attribute read.


def get_database(request: Request) -> Database:
    """The process-wide database."""
    db: Database = request.app.state.database
    return db


def _end(session: Session, *, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session per request, committed when the handler returns normally.

    Opening a session does no I/O, so it happens on the event loop; ending one that holds a
    transaction (a ``def`` handler's work, or a route's pending changes) runs in a worker thread,
    like any database call. A session whose handler already committed (``store.db.committed``)
    or never used it ends without a thread hop.
    """
    session = get_database(request).sessionmaker()
    try:
        yield session
    except BaseException:
        if session.in_transaction():
            await asyncio.to_thread(_end, session, commit=False)
        else:
            session.close()
        raise
    if session.in_transaction():
        await asyncio.to_thread(_end, session, commit=True)
    else:
        session.close()


async def get_settings_dep(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


class LazyTemporal:
    """Connects to Temporal only when a handler calls it, after auth and visibility checks.

    So a missing token is always 401 and an invisible id always 404, even while Temporal is down.
    """

    def __init__(self, request: Request) -> None:
        self._holder = request.app.state.temporal

    async def __call__(self) -> Client:
        """The connected client (503 while Temporal is unreachable)."""
        try:
            client: Client = await self._holder.get()
        except Exception as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=f"Temporal is unreachable ({type(exc).__name__}); try again shortly",
            ) from exc
        return client


#: The API's clock: "now" for the relative bounds (due-date window, evidence not in the future)
#: and for default evidence times. The wall clock, except in tests that run the API against a
#: time-skipping Temporal server, which give ``create_app(clock=env.get_current_time)``.
Clock = Callable[[], Awaitable[datetime]]


async def wall_clock() -> datetime:
    """The current instant (UTC)."""
    return datetime.now(UTC)


async def get_clock(request: Request) -> Clock:
    """The app's clock."""
    clock: Clock = getattr(request.app.state, "clock", wall_clock)
    return clock


async def get_temporal(request: Request) -> LazyTemporal:
    """The lazily connecting Temporal client of this request."""
    return LazyTemporal(request)


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ClockDep = Annotated[Clock, Depends(get_clock)]
TemporalDep = Annotated[LazyTemporal, Depends(get_temporal)]


def get_db(request: Request) -> Database:
    """The process-wide database (handlers that open their own short sessions)."""
    db: Database = request.app.state.database
    return db


DatabaseDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def required_scopes(request: Request) -> frozenset[Scope]:
    """Any one of these scopes lets an integration token call the matched route (empty: none)."""
    route = request.scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return integration_grants(request.method, str(path)) if path else frozenset()


def _verify(session: Session, token: str) -> Principal:
    """Check ``token`` in the database (worker thread; reads only, no transaction left open).

    An async handler may await Temporal next: nothing is held across it (the handler's own
    database work starts afresh).
    """
    return run_read_only(session, lambda: check_token(session, token))


def token_cache(request: Request) -> TokenCache:
    """The app's cache of verified tokens (``DULY_TOKEN_CACHE_SECONDS``)."""
    cache: TokenCache = request.app.state.token_cache
    return cache


async def get_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Authenticate the bearer token against the directory (as of ``DULY_TOKEN_CACHE_SECONDS``).

    401 when missing, unknown, revoked, expired or its person is terminated; 403 when an
    integration token lacks the route's scope (declared in :data:`api.policy.POLICY`). A token
    this process verified less than ``DULY_TOKEN_CACHE_SECONDS`` ago is not looked up again
    (:mod:`api.token_cache`); otherwise the lookup runs in a worker thread, in a transaction of
    its own.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing bearer token: send `Authorization: Bearer <token>` "
            "(create one with `duly tokens create --role ROLE`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    cache = token_cache(request)
    key = hash_token(credentials.credentials)
    principal = cache.get(key)
    if principal is None:
        try:
            principal = await asyncio.to_thread(_verify, session, credentials.credentials)
        except TokenRejected as exc:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail=str(exc),
                headers={"WWW-Authenticate": "Bearer"},
            ) from None
        cache.put(key, principal, principal.expires_at)
    if principal.scopes is not None:
        needed = required_scopes(request)
        if not needed & principal.scopes:
            what = (
                "scope " + " or ".join(sorted(s.value for s in needed))
                if needed
                else "a scope no integration token has"
            )
            granted = ", ".join(sorted(s.value for s in principal.scopes)) or "none"
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"this integration token may not do this: it needs {what} "
                f"(granted: {granted}); create a token with `duly tokens create --role "
                "integration --scope SCOPE`",
            )
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: Role) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency that admits only the given roles (403 otherwise)."""
    allowed = frozenset(roles)

    async def _check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"role {principal.role.value} may not do this; allowed: {names}",
            )
        return principal

    return _check


def visible_person_ids(session: Session, principal: Principal) -> set[int] | None:
    """Row-level scope: the person ids this principal may see, or None for everyone.

    A learner sees themself; a manager sees themself and every report, transitively; HR,
    auditors and integrations see everyone.
    """
    if principal.role in (Role.HR_ADMIN, Role.AUDITOR, Role.INTEGRATION):
        return None
    if principal.person_id is None:
        return set()
    if principal.role is Role.LEARNER:
        return {principal.person_id}
    return {principal.person_id, *reports_of(session, principal.person_id)}


def ensure_visible(session: Session, principal: Principal, person_id: int) -> None:
    """404 (not 403, so ids are not probed) when the principal may not see this person."""
    scope = visible_person_ids(session, principal)
    if scope is not None and person_id not in scope:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")


def audit_action(
    session: Session, principal: Principal, action: str, target: str, after: Any
) -> None:
    """Record an API action in the hash-chained audit log, as the caller."""
    audit.record(
        session,
        actor=principal.actor,
        actor_role=principal.role.value,
        action=action,
        target=target,
        after=after,
    )


def out_of_range(problem: OutOfRange, loc: tuple[str | int, ...] = ("body",)) -> Exception:
    """A 422 in FastAPI's own validation shape naming the field, the value and the range."""
    return RequestValidationError([problem.error(loc)])


@overload
def within(
    window: DateWindow, field: str, value: date, loc: tuple[str | int, ...] = ...
) -> date: ...
@overload
def within(
    window: InstantWindow, field: str, value: datetime, loc: tuple[str | int, ...] = ...
) -> datetime: ...
def within(
    window: DateWindow | InstantWindow,
    field: str,
    value: Any,
    loc: tuple[str | int, ...] = ("body",),
) -> Any:
    """``value`` when inside the settings' window, else a 422 (see :func:`out_of_range`).

    The request schemas carry the absolute bounds; this is the relative window (today − 5 y …
    today + 10 y for due dates, not in the future for evidence) the models cannot know.
    """
    try:
        checked = window.check(field, value)
    except OutOfRange as problem:
        raise out_of_range(problem, loc) from problem
    return value if checked is None else checked
