"""One error shape across the API, documented on every operation.

Every error answer is a JSON object with a ``detail``:

* a string: what went wrong and how to fix it (401, 403, 404, 409, 410, 413, 429, 503, …);
* a list of ``{loc, msg, type}`` items: which fields of the request are invalid (FastAPI's 422);
* an object: a structured report where a list of fields would say too little (the rules
  endpoints' 422 carries the same ``{valid, issues, lint, tests}`` report ``/rules/validate``
  returns).

:func:`install` adds the exception handlers that keep that promise for errors raised outside the
routers (an unknown path, a method a path does not take, an unexpected exception) and documents
every error status on every operation in ``/openapi.json``, centrally, so a new route is
documented without touching it.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request, routing, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from services.errors import Conflict, Forbidden, Invalid, NotFound, ServiceError, Unavailable

log = logging.getLogger("duly.api")

#: The documented error schema (components/schemas/Error).
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "title": "Detail",
            "description": "What went wrong and how to fix it: a message, the invalid fields "
            "(`loc`, `msg`, `type`), or a structured report (the rules endpoints).",
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}},
                {"type": "object"},
            ],
        }
    },
}

#: Error statuses every operation documents, with the reason a client may see each.
ERROR_STATUSES: dict[int, str] = {
    400: "Malformed request (e.g. unparsable JSON or an unsupported statement)",
    401: "Missing, unknown, expired or revoked bearer token",
    403: "The caller's role may not do this, or a provider signature is missing or invalid",
    404: "Not found, or not visible to the caller (ids cannot be probed)",
    405: "Method not allowed on this path (`Allow` lists the methods it takes)",
    409: "Conflicts with the current state (e.g. already closed, already held)",
    410: "Expired (e.g. an acknowledgement link)",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid input: which field, what value, and the allowed range",
    429: "Too many requests; retry after the `Retry-After` seconds",
    500: "Unexpected server error (logged with a reference; the body never shows internals)",
    503: "A dependency (Temporal, the database) is unreachable; try again shortly",
}

_VALIDATION_REF = "#/components/schemas/HTTPValidationError"
_ERROR_REF = "#/components/schemas/Error"


def iter_routes(app: FastAPI) -> Iterator[BaseRoute]:
    """Every route of ``app`` with its full path, routers included (flattened)."""
    contexts: Callable[[Any], Iterator[Any]] | None = getattr(routing, "iter_route_contexts", None)
    if contexts is None:  # FastAPI without lazily included routers: app.routes is flat
        yield from app.routes
        return
    yield from contexts(app.routes)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods some route of ``app`` answers on the concrete ``path`` (for ``Allow``)."""
    methods: set[str] = set()
    for route in iter_routes(app):
        pattern: re.Pattern[str] | None = getattr(route, "path_regex", None)
        route_methods: set[str] | None = getattr(route, "methods", None)
        if pattern is not None and route_methods and pattern.match(path):
            methods |= route_methods
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        # Starlette answers with the methods of the FIRST route whose path matched, so a
        # catch-all GET or a GET registered before a PUT on the same path hid the others.
        allow = allowed_methods(request.app, request.url.path)
        if allow:
            headers = dict(exc.headers or {})
            headers["Allow"] = ", ".join(allow)
            exc = StarletteHTTPException(405, detail=exc.detail, headers=headers)
    return await http_exception_handler(request, exc)


#: The API's handler of HTTP errors, for the pages to fall back on (``api.web``).
http_error = _http_error


async def _unexpected(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log; the body names no path, module or value of the server.
    reference = uuid.uuid4().hex[:12]
    log.error(
        "unexpected %s on %s %s (ref %s)",
        type(exc).__name__,
        request.method,
        request.url.path,
        reference,
        exc_info=exc,
    )
    return JSONResponse(
        {"detail": f"internal error (ref {reference}); the server log has the details"},
        status_code=500,
    )


#: Seconds a client is told to wait when the database is unreachable: long enough for a pooled
#: connection to be re-established, short enough that a brief outage costs a retry or two.
DATABASE_RETRY_AFTER = 5


def database_unavailable(exc: BaseException) -> str | None:
    """Why ``exc`` means "the database cannot answer now" (None: it is some other error).

    Operational errors are the ones the request did not cause and a retry may cure: the
    server refused or dropped the connection (restart, failover, network), a statement or
    lock timeout, or no pooled connection free within the pool timeout. Constraint, data and
    programming errors are not: they stay 500s (or the service's own 409/422).
    """
    if isinstance(exc, sa_exc.TimeoutError):
        return "no database connection became free in time"
    if isinstance(exc, sa_exc.DBAPIError) and (
        exc.connection_invalidated
        or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
    ):
        return "the database is unreachable or did not answer in time"
    return None


async def _database_error(request: Request, exc: Exception) -> Response:
    reason = database_unavailable(exc)
    if reason is None:
        return await _unexpected(request, exc)
    # Warning, not error: an outage is an operations event, not a bug; the class name is
    # enough (the driver's message names host and port, never a password or a row).
    log.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    return JSONResponse(
        {"detail": f"{reason}; try again in a few seconds"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
    )


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the ``Error`` schema and every error status to each operation of ``schema``.

    Idempotent. Statuses an operation already documents with a model of its own (e.g. the xAPI
    per-statement results) are kept; FastAPI's default 422 becomes ``Error``, whose ``detail``
    also admits the list FastAPI's validation errors give.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    if "ValidationError" not in components:
        components["ValidationError"] = {
            "title": "ValidationError",
            "type": "object",
            "required": ["loc", "msg", "type"],
            "properties": {
                "loc": {
                    "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                },
                "msg": {"type": "string"},
                "type": {"type": "string"},
            },
        }
    json_error = {"application/json": {"schema": {"$ref": _ERROR_REF}}}
    # Pages for people (acknowledgement links) answer their errors as a page too.
    page_error = {"text/html": {"schema": {"type": "string"}}, **json_error}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            is_page = any(
                "text/html" in answer.get("content", {})
                for code, answer in responses.items()
                if code.startswith("2")
            )
            error_content = page_error if is_page else json_error
            for code, description in ERROR_STATUSES.items():
                existing = responses.get(str(code))
                if existing is None:
                    responses[str(code)] = {"description": description, "content": error_content}
                    continue
                json_schema = existing.get("content", {}).get("application/json", {}).get("schema")
                if json_schema == {"$ref": _VALIDATION_REF}:
                    existing["content"] = error_content
                    existing["description"] = description
                elif not json_schema and "text/html" not in existing.get("content", {}):
                    # Declared elsewhere without a body (e.g. the limits' 413/429): the shape.
                    existing["content"] = error_content
    return schema


#: Status per service error; the most specific class wins (the MRO is walked).
STATUS: dict[type[ServiceError], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Forbidden: status.HTTP_403_FORBIDDEN,
    Conflict: status.HTTP_409_CONFLICT,
    Invalid: status.HTTP_422_UNPROCESSABLE_CONTENT,
    Unavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
}


def status_of(error: ServiceError) -> int:
    """The HTTP status of ``error`` (500 for a service error without a mapping)."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return status.HTTP_500_INTERNAL_SERVER_ERROR


#: The API's handler of service errors, for the pages to fall back on (``api.web``).
async def service_error(request: Request, error: Exception) -> JSONResponse:
    """A service error as ``{"detail": ...}`` with its mapped status."""
    return await _handle(request, error)


async def _handle(_request: Request, error: Exception) -> JSONResponse:
    """A service error as ``{"detail": ...}`` with its mapped status."""
    assert isinstance(error, ServiceError)
    # The same body as HTTPException's: {"detail": ...}.
    return JSONResponse({"detail": error.body()}, status_code=status_of(error))


def install(app: FastAPI) -> None:
    """Use the one error shape for every error and document it on every operation."""
    app.add_exception_handler(ServiceError, _handle)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # A database outage answers 503 + Retry-After (not 500) and recovers by itself: the pool
    # pings idle connections and drops dead ones (store.db.make_engine).
    app.add_exception_handler(sa_exc.DBAPIError, _database_error)
    app.add_exception_handler(sa_exc.TimeoutError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return document_errors(generate())

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point
