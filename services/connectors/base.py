"""The connector interface every learning-system connector implements, and its HTTP helper.

A connector reads a source in **batches**. Each batch carries what to hand to the intake (xAPI
statements, plain completions, rows already known to be bad) and the cursor the source stands
at once the batch is recorded; :func:`services.integrations.run_sync` commits that cursor only
after every item of the batch was recorded, dead-lettered or found a duplicate, so a sync that
fails half-way starts again from the last whole batch (the intake's idempotency keys make the
repeat harmless).
"""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from services.intake import CompletionIn

Sleep = Callable[[float], Awaitable[None]]

#: Longest wait a ``Retry-After`` is honoured for; beyond it the sync fails and the schedule
#: tries again at its next run (an activity must not sleep for an hour).
MAX_RETRY_AFTER_SECONDS = 120.0
#: How many 429 answers in a row one request waits out before the sync gives up.
MAX_RATE_LIMIT_RETRIES = 3
HTTP_TIMEOUT_SECONDS = 30.0


class ConnectorError(Exception):
    """The source refused or failed (bad token, HTTP error, rate limit beyond patience).

    The message is shown to HR (integration's ``last_error``): it never contains the secret.
    """


@dataclass
class Completion:
    """A plain completion and the instant it happened (checked against the evidence bounds)."""

    body: CompletionIn
    completed_at: datetime


@dataclass
class Reject:
    """An item the connector already knows is bad (a malformed CSV row): a dead letter."""

    reason: str
    payload: dict[str, Any]
    key: str | None = None


@dataclass
class Batch:
    """One batch of a pull and the cursor to store once all of it is recorded."""

    cursor: dict[str, Any]
    statements: list[dict[str, Any]] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    #: Shown in the sync's log (a file name, a page): never personal data.
    label: str = ""


@dataclass(frozen=True)
class Enrolment:
    """An open obligation to push to the learning system as an enrolment."""

    obligation_id: int
    person_external_id: str
    person_email: str | None
    course_id: int


class Connector(Protocol):
    """What :mod:`services.integrations` needs of a connector."""

    async def test(self) -> str:
        """Check the connection and credentials; a short description of what answered.

        Raises:
            ConnectorError: The source cannot be reached or refuses the credentials.
        """
        ...

    def pull(self, cursor: dict[str, Any]) -> AsyncIterator[Batch]:
        """The batches after ``cursor``, in order.

        Raises:
            ConnectorError: The source failed; batches already yielded stay recorded.
        """
        ...


class Pusher(Protocol):
    """A connector that also pushes enrolments (Moodle)."""

    async def push(self, enrolments: list[Enrolment]) -> list[tuple[Enrolment, str | None]]:
        """Enrol each; per enrolment None when done, else why not (a dead letter)."""
        ...


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date); 1 if absent."""
    if not value:
        return 1.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class Http:
    """An HTTP client for a connector: timeouts, 429 + ``Retry-After`` waits, errors named.

    Args:
        base_url: The source's base URL.
        what: The source's name in error messages (``Moodle``, ``the LRS``).
        transport: An httpx transport (tests give a fake that speaks the real API).
        sleep: How to wait out a ``Retry-After`` (tests record it instead of sleeping).
        headers: Sent with every request (authentication, protocol version).
    """

    def __init__(
        self,
        base_url: str,
        *,
        what: str,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
    ) -> None:
        self.what = what
        self._sleep: Sleep = sleep or asyncio.sleep
        self._client = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            timeout=HTTP_TIMEOUT_SECONDS,
            headers=headers,
            auth=auth,
            follow_redirects=False,
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send; wait out up to :data:`MAX_RATE_LIMIT_RETRIES` 429s; raise on any other error."""
        for _ in range(MAX_RATE_LIMIT_RETRIES + 1):
            try:
                response = await self._client.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                raise ConnectorError(f"{self.what} unreachable: {type(exc).__name__}") from exc
            if response.status_code != 429:
                break
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait > MAX_RETRY_AFTER_SECONDS:
                raise ConnectorError(
                    f"{self.what} rate-limited us for {wait:.0f}s; the next scheduled sync retries"
                )
            await self._sleep(wait)
        else:
            raise ConnectorError(
                f"{self.what} still rate-limited after {MAX_RATE_LIMIT_RETRIES} waits"
            )
        if response.status_code in (401, 403):
            raise ConnectorError(
                f"{self.what} refused the credentials (HTTP {response.status_code});"
                " check the integration's secret"
            )
        if response.status_code >= 400:
            raise ConnectorError(f"{self.what} answered HTTP {response.status_code}")
        return response

    async def json(self, method: str, url: str, **kwargs: Any) -> Any:
        """:meth:`request`, answered JSON."""
        response = await self.request(method, url, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ConnectorError(f"{self.what} answered something that is not JSON") from exc
