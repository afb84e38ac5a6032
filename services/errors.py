"""Domain errors raised by the services; ``api/errors.py`` maps each to one HTTP status.

A service never raises ``HTTPException``: the CLI and the dev stack call the same functions
and report these errors in their own way.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error a service raises on purpose; ``detail`` is safe to show a caller."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def body(self) -> object:
        """The ``detail`` of the error's answer (a subclass may add structured fields)."""
        return self.detail


class NotFound(ServiceError):
    """The thing does not exist, or the caller may not see it (both answer the same)."""

    def __init__(self, detail: str = "not found") -> None:
        super().__init__(detail)


class Forbidden(ServiceError):
    """The caller is known but may not do this."""


class Conflict(ServiceError):
    """The thing is in a state that refuses the request (e.g. the workflow has closed)."""


class Invalid(ServiceError):
    """The request is well-formed but its content is refused (an HTTP 422)."""


class Unavailable(ServiceError):
    """A dependency (Temporal, a worker) did not answer in time; retrying may help."""
