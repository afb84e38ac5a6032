"""Domain errors raised by the services; ``api/errors.py`` maps each to one HTTP status.

A service never raises ``HTTPException``: the CLI and the dev stack call the same functions
and report these errors in their own way.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error a service raises on purpose; ``detail`` is safe to show a caller.

    ``field`` names the input the error is about (``supervisor``), when one is: a page shows
    the message next to that form field; the API's answer stays ``{"detail": ...}``.
    """

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field

    def body(self) -> object:
        """The ``detail`` of the error's answer (a subclass may add structured fields)."""
        return self.detail


class NotFound(ServiceError):
    """The thing does not exist, or the caller may not see it (both answer the same)."""

    def __init__(self, detail: str = "not found", *, field: str | None = None) -> None:
        super().__init__(detail, field=field)


class Forbidden(ServiceError):
    """The caller is known but may not do this."""


class Conflict(ServiceError):
    """The thing is in a state that refuses the request (e.g. the workflow has closed)."""


class Invalid(ServiceError):
    """The request is well-formed but its content is refused (an HTTP 422)."""


class Unavailable(ServiceError):
    """A dependency (Temporal, a worker) did not answer in time; retrying may help."""
