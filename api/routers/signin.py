"""Signing in and out of the pages (``/ui/sign-in``): emailed one-time links, pasted tokens.

See :mod:`services.signin` (links, sessions as tokens) and :mod:`api.web` (cookie, CSRF).
A GET of a link never signs anyone in (mail scanners fetch every URL in a message): it shows a
button that POSTs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import SessionDep, SettingsDep
from api.web import (
    FormPrincipal,
    PageAuth,
    PagePrincipal,
    anonymous_csrf,
    check_anonymous_csrf,
    clear_session,
    render,
    set_anonymous_csrf,
    set_session,
)
from domain.roles import Role
from services import signin
from store.tokens import TokenRejected, check_token, find_token

router = APIRouter(prefix="/ui", tags=["pages"], include_in_schema=False)

#: Where each role lands after signing in.
HOME = {
    Role.LEARNER: "/ui/me",
    Role.MANAGER: "/ui/team",
    Role.HR_ADMIN: "/ui/org",
    Role.AUDITOR: "/ui/audit",
}


def _safe_next(value: str | None) -> str | None:
    """A same-site path to return to after signing in (never another host)."""
    if value and value.startswith("/ui") and not value.startswith("//") and "\\" not in value:
        return value
    return None


def _sign_in_page(request: Request, *, message: str | None = None, code: int = 200) -> Response:
    token = anonymous_csrf(request)
    response = render(
        request,
        "sign_in.html",
        {"anon_csrf": token, "message": message, "next": request.query_params.get("next")},
        status_code=code,
    )
    set_anonymous_csrf(request, response, token)
    return response


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request) -> Response:
    """The sign-in page: ask for a link by email, or paste an API token."""
    return _sign_in_page(request)


@router.post("/sign-in/link", response_class=HTMLResponse)
def request_link(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)],
    csrf: Annotated[str, Form(max_length=64)],
) -> Response:
    """Email a one-time link; the answer is the same whether the address is known or not."""
    check_anonymous_csrf(request, csrf)
    signin.request_link(session, settings=settings, email=email, now=datetime.now(UTC))
    return render(request, "link_sent.html", {"minutes": settings.sign_in_link_minutes})


def _link_problem(request: Request, exc: Exception) -> Response:
    if isinstance(exc, signin.LinkExpired):
        message, code = "This sign-in link has expired. Ask for a new one below.", 410
    elif isinstance(exc, signin.LinkUsed):
        message, code = "This sign-in link has already been used. Ask for a new one below.", 410
    else:
        message, code = "This sign-in link is not valid. Ask for a new one below.", 400
    return _sign_in_page(request, message=message, code=code)


@router.get("/sign-in/link/{token}", response_class=HTMLResponse)
def confirm_link(request: Request, token: str, settings: SettingsDep) -> Response:
    """Check a link (signature and expiry) and show a "Sign in" button; changes nothing."""
    try:
        signin.verify_link_token(settings.key_ring().sign_in_link, token, now=datetime.now(UTC))
    except (signin.LinkInvalid, signin.LinkExpired) as exc:
        return _link_problem(request, exc)
    anon = anonymous_csrf(request)
    response = render(request, "confirm_link.html", {"token": token, "anon_csrf": anon})
    set_anonymous_csrf(request, response, anon)
    return response


@router.post("/sign-in/link/{token}")
def redeem_link(
    request: Request,
    token: str,
    session: SessionDep,
    settings: SettingsDep,
    csrf: Annotated[str, Form(max_length=64)],
) -> Response:
    """Redeem the link once and open a session."""
    check_anonymous_csrf(request, csrf)
    now = datetime.now(UTC)
    try:
        value = signin.redeem_link(session, settings=settings, token=token, now=now)
    except (signin.LinkInvalid, signin.LinkExpired, signin.LinkUsed) as exc:
        session.rollback()
        return _link_problem(request, exc)
    session.commit()
    principal = check_token(session, value, now=now)
    response = RedirectResponse(HOME[principal.role], status_code=status.HTTP_303_SEE_OTHER)
    set_session(
        request,
        response,
        value,
        now + timedelta(minutes=settings.web_session_minutes),
        from_link=True,
    )
    return response


@router.post("/sign-in/token")
def sign_in_with_token(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=200)],
    csrf: Annotated[str, Form(max_length=64)],
    next: Annotated[str | None, Form(max_length=500)] = None,
) -> Response:
    """Open a session on a pasted API token (HR, auditors; anyone with a person token)."""
    check_anonymous_csrf(request, csrf)
    now = datetime.now(UTC)
    value = token.strip()
    try:
        principal = check_token(session, value, now=now)
    except TokenRejected as exc:
        return _sign_in_page(request, message=f"That token does not work: {exc}.", code=401)
    if principal.role not in HOME:
        return _sign_in_page(request, message="Integration tokens cannot sign in.", code=403)
    info = find_token(session, value)
    ends = now + timedelta(minutes=settings.web_session_minutes)
    if info is not None and info.expires_at is not None:
        ends = min(ends, info.expires_at)
    target = _safe_next(next) or HOME[principal.role]
    response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    set_session(request, response, value, ends, from_link=False)
    return response


@router.post("/sign-out")
def sign_out(request: Request, session: SessionDep, principal: FormPrincipal) -> Response:
    """End the session: a link session's token is revoked; the cookie is dropped."""
    auth: PageAuth = request.state.page_auth
    signin.end_session(session, token_id=principal.token_id, revoke=auth.from_link)
    response = RedirectResponse("/ui/sign-in", status_code=status.HTTP_303_SEE_OTHER)
    clear_session(request, response)
    return response


@router.get("")
def home(principal: PagePrincipal) -> Response:
    """The caller's own page."""
    target = HOME.get(principal.role)
    if target is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="no page for this role")
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
