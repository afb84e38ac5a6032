"""Service errors to HTTP: the one place a :class:`services.errors.ServiceError` gets a status."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from services.errors import Conflict, Forbidden, Invalid, NotFound, ServiceError, Unavailable

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


async def _handle(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServiceError)
    # The same body as HTTPException's: {"detail": ...}.
    return JSONResponse({"detail": error.body()}, status_code=status_of(error))


def install(app: FastAPI) -> None:
    """Answer every :class:`ServiceError` a router lets through with its status."""
    app.add_exception_handler(ServiceError, _handle)
