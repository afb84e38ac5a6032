"""What every page shares: the session cookie, CSRF tokens, templates and error pages.

The pages under ``/ui`` authenticate with the same tokens as the API (:mod:`services.signin`
explains why a session *is* a token). The browser keeps it in the ``duly_session`` cookie::

    <expiry, unix seconds>.<l|t>.<token>.<base64url HMAC-SHA256 (web-session key), 128 bits>

``l``: the session was opened by a sign-in link (its token is revoked at sign-out); ``t``: an
API token pasted by its holder (left valid at sign-out). The cookie is ``HttpOnly``,
``SameSite=Strict``, ``Secure`` when the pages are served over https, and ends at the earlier
of the session's and the token's expiry. A request may also send ``Authorization: Bearer`` (no
cookie, so no CSRF check: a browser never adds that header by itself).

Every form carries a CSRF token: an HMAC of the session's token under the web-session key (or,
on the sign-in forms before any session exists, a random value also set as the ``duly_csrf``
cookie). htmx sends it as ``X-CSRF-Token``.

Access is declared in :mod:`api.policy` like every other route; :func:`page_principal` applies
the role check from that declaration, and the routes apply the row-level scope with the same
:func:`api.deps.visible_person_ids` the API uses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from api import errors
from api.deps import SessionDep, required_scopes
from api.policy import POLICY, Access
from duly.settings import Settings
from services.errors import Conflict, Invalid, ServiceError, Unavailable
from store.tokens import Principal, TokenRejected, check_token

SESSION_COOKIE = "duly_session"
ANON_CSRF_COOKIE = "duly_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
MAC_BYTES = 16

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates" / "pages"
STATIC = HERE / "static"

#: Sent with every page: no framing, no third-party anything, nothing cached.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html", "svg"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _mac(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()[:MAC_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def session_key(request: Request) -> bytes:
    """The web-session key of the app's settings."""
    settings: Settings = request.app.state.settings
    return settings.key_ring().web_session


def encode_session(key: bytes, token: str, expires_at: datetime, *, from_link: bool) -> str:
    """The cookie value of a session on ``token`` until ``expires_at``."""
    payload = f"{int(expires_at.timestamp())}.{'l' if from_link else 't'}.{token}"
    return f"{payload}.{_mac(key, payload)}"


def decode_session(key: bytes, value: str, *, now: datetime) -> tuple[str, bool] | None:
    """``(token, from_link)`` of a valid, unexpired cookie; None otherwise."""
    if len(value) > 400:
        return None
    payload, _, mac = value.rpartition(".")
    if not payload or not hmac.compare_digest(_mac(key, payload).encode(), mac.encode()):
        return None
    exp, kind, token = [*payload.split(".", 2), "", ""][:3]
    if not exp.isdigit() or kind not in ("l", "t") or not token:
        return None
    if now.timestamp() >= int(exp):
        return None
    return token, kind == "l"


def csrf_for(key: bytes, token: str) -> str:
    """The CSRF token of the session on ``token``."""
    return _mac(key, "csrf|" + hashlib.sha256(token.encode()).hexdigest())


def is_secure(request: Request) -> bool:
    """Whether the page is served over https (then cookies are ``Secure``)."""
    settings: Settings = request.app.state.settings
    return request.url.scheme == "https" or (settings.public_url or "").startswith("https:")


class PageAuth:
    """How the current request authenticated (set on ``request.state.page_auth``)."""

    def __init__(self, principal: Principal, token: str, *, cookie: bool, from_link: bool) -> None:
        self.principal = principal
        self.token = token
        self.cookie = cookie
        self.from_link = from_link


def _route_policy(request: Request) -> tuple[str, str]:
    route = request.scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", "")
    return request.method, str(path)


def page_principal(request: Request, session: SessionDep) -> Principal:
    """Authenticate a page request (cookie or bearer) and apply the route's declared roles.

    401 (the sign-in page) without a valid session; 403 for a role the route's policy in
    :data:`api.policy.POLICY` does not admit; on a POST from a cookie session, 403 without the
    session's CSRF token.
    """
    now = datetime.now(UTC)
    header = request.headers.get("authorization", "")
    token: str | None = None
    from_link = False
    cookie = False
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
    else:
        decoded = decode_session(
            session_key(request), request.cookies.get(SESSION_COOKIE, ""), now=now
        )
        if decoded is not None:
            token, from_link = decoded
            cookie = True
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="sign in to see this page")
    try:
        principal = check_token(session, token, now=now)
    except TokenRejected as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=str(exc)) from None
    policy = POLICY.get(_route_policy(request))
    if policy is None or policy.access is not Access.TOKEN or not policy.admits(principal.role):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"a {principal.role.value} may not open this page",
        )
    if principal.scopes is not None and not (required_scopes(request) & principal.scopes):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="integration tokens have no pages")
    request.state.page_auth = PageAuth(principal, token, cookie=cookie, from_link=from_link)
    session.commit()
    return principal


PagePrincipal = Annotated[Principal, Depends(page_principal)]


async def csrf_principal(request: Request, principal: PagePrincipal) -> Principal:
    """:func:`page_principal`, and 403 unless a cookie session's POST carries its CSRF token.

    Every page POST authenticates with this; bearer requests need no CSRF token.
    """
    auth: PageAuth = request.state.page_auth
    if not auth.cookie:
        return principal
    expected = csrf_for(session_key(request), auth.token)
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="this form has expired or did not come from Duly; reload the page and retry",
        )
    return principal


#: The principal of a page POST (CSRF checked).
FormPrincipal = Annotated[Principal, Depends(csrf_principal)]


def anonymous_csrf(request: Request) -> str:
    """The pre-session CSRF value of the sign-in forms (the cookie's, or a new one)."""
    current = request.cookies.get(ANON_CSRF_COOKIE, "")
    return current if 20 <= len(current) <= 64 else secrets.token_urlsafe(24)


def check_anonymous_csrf(request: Request, given: str) -> None:
    """403 unless the sign-in form's CSRF field equals its cookie."""
    cookie = request.cookies.get(ANON_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), given.encode()):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="this form has expired or did not come from Duly; reload the page and retry",
        )


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A page: ``template`` with the signed-in principal, its CSRF token and ``context``."""
    auth: PageAuth | None = getattr(request.state, "page_auth", None)
    values: dict[str, Any] = {
        "request": request,
        "principal": auth.principal if auth else None,
        "csrf": csrf_for(session_key(request), auth.token) if auth else "",
        "path": request.url.path,
    }
    values.update(context or {})
    html = _env.get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code, headers={**PAGE_HEADERS, **(headers or {})})


@dataclass
class FormState:
    """A refused form, drawn again: what was typed, and why it was refused.

    Attributes:
        name: Which form of the page (``enrol``, ``transfer``...): only that one shows it.
        values: What was typed, field by field, so nothing is lost (a list for a group of
            checkboxes, a bool for one).
        errors: One message per field (what is wrong and how to fix it), in the form's order.
        message: A refusal no single field owns (the workflow said no, Temporal did not answer).
    """

    name: str
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    message: str = ""


def field_errors(exc: ValidationError, hints: Mapping[str, str]) -> dict[str, str]:
    """A pydantic refusal as one message per field (its first error), in the model's order.

    A field is named by its path without list indexes (``availability.hours_per_month``,
    ``specializations``); an error of the whole model is under ``""``. ``hints`` says, per
    field, what a good value looks like; it follows pydantic's message, so each message says
    what is wrong and how to fix it.
    """
    found: dict[str, str] = {}
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
        if name in found:
            continue
        what = error["msg"]
        if error["type"] == "string_too_short" and (error.get("ctx") or {}).get("min_length") == 1:
            what = "This is required"
        hint = hints.get(name)
        found[name] = f"{what}: {hint}" if hint else what
    return found


M = TypeVar("M", bound=BaseModel)


async def submit_form(
    form: FormState,
    model: type[M],
    data: Mapping[str, Any],
    hints: Mapping[str, str],
    call: Callable[[M], Awaitable[object]],
) -> int | None:
    """Validate a page form with the API's body model, then call the API's service.

    Returns None when the service did it; otherwise the status to draw the form again with
    (``form`` then holds the errors): 422 with one message per field when the model refuses
    ``data``; else what :func:`submit_service` answers.
    """
    try:
        body = model.model_validate(dict(data))
    except ValidationError as exc:
        _place(form, field_errors(exc, hints))
        return status.HTTP_422_UNPROCESSABLE_CONTENT
    return await submit_service(form, hints, lambda: call(body))


async def submit_service(
    form: FormState, hints: Mapping[str, str], call: Callable[[], Awaitable[object]]
) -> int | None:
    """Call the API's service for a page form; None when it did it, else the status to redraw.

    The service's refusals (:class:`Invalid`, :class:`Conflict`, :class:`Unavailable` when
    Temporal did not answer) go next to the field they name (``ServiceError.field``, or each
    field of a pydantic refusal the service raised from), or above the form. Other errors (not
    found, forbidden) answer as usual.
    """
    try:
        await call()
    except (Invalid, Conflict, Unavailable) as exc:
        cause = exc.__cause__
        if isinstance(cause, ValidationError):
            _place(form, field_errors(cause, hints))
        elif exc.field is not None and exc.field in form.values:
            form.errors = {exc.field: exc.detail}
        else:
            form.message = exc.detail
        return errors.status_of(exc)
    return None


def _place(form: FormState, found: Mapping[str, str]) -> None:
    """Each error next to its field; those of no field of the form above it."""
    form.errors = {name: text for name, text in found.items() if name in form.values}
    form.message = "; ".join(text for name, text in found.items() if name not in form.values)


def render_fragment(template: str, context: dict[str, Any]) -> str:
    """A template rendered to a string (an SVG chart, an htmx fragment)."""
    return _env.get_template(template).render(context)


def wants_page(request: Request) -> bool:
    """Whether an error on this request is answered as a page (``/ui``, not asking for JSON)."""
    return request.url.path.startswith("/ui") and "application/json" not in request.headers.get(
        "accept", ""
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not wants_page(request):
        return await errors.http_error(request, exc)
    if exc.status_code == status.HTTP_401_UNAUTHORIZED:
        token = anonymous_csrf(request)
        response = render(
            request,
            "sign_in.html",
            {"anon_csrf": token, "message": exc.detail, "next": request.url.path},
            status_code=401,
        )
        set_anonymous_csrf(request, response, token)
        return response
    return render(
        request,
        "error.html",
        {"status": exc.status_code, "detail": exc.detail},
        status_code=exc.status_code,
    )


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    if not wants_page(request):
        return await errors.service_error(request, exc)
    code = errors.status_of(exc)
    return render(request, "error.html", {"status": code, "detail": exc.detail}, status_code=code)


def set_anonymous_csrf(request: Request, response: Response, value: str) -> None:
    """Set the sign-in forms' CSRF cookie."""
    response.set_cookie(
        ANON_CSRF_COOKIE,
        value,
        max_age=3600,
        httponly=True,
        secure=is_secure(request),
        samesite="strict",
        path="/ui",
    )


def set_session(
    request: Request, response: Response, token: str, expires_at: datetime, *, from_link: bool
) -> None:
    """Open the session: the signed cookie, ending with the session."""
    value = encode_session(session_key(request), token, expires_at, from_link=from_link)
    max_age = max(1, int((expires_at - datetime.now(UTC)).total_seconds()))
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=max_age,
        httponly=True,
        secure=is_secure(request),
        samesite="strict",
        path="/",
    )


def clear_session(request: Request, response: Response) -> None:
    """Drop the session cookie."""
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, secure=is_secure(request), samesite="strict"
    )


Handler = Callable[[Request, Exception], Awaitable[Response]]


def install(app: FastAPI) -> None:
    """Serve the static files and answer errors under ``/ui`` as pages (after errors.install)."""
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ServiceError, _service_error)
