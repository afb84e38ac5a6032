"""xAPI LRS pull: ``GET statements?verb=…&since=…&ascending=true`` with ``more`` paging.

Any xAPI 1.0.3 LRS (Learning Locker, SCORM Cloud, Veracity, …) with HTTP Basic credentials (the
secret is ``key:secret``). One query per verb Duly uses (``completed``, ``passed``, ``failed``,
cmi5 ``satisfied``, ``voided``); each page is one batch, handled exactly as
``POST /xapi/statements`` handles a batch, and the cursor keeps, per verb, the ``stored`` time
of the last statement of the last page recorded (``since`` is exclusive in xAPI).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urljoin

import httpx

from services.connectors.base import Batch, ConnectorError, Http, Sleep
from services.intake import PULLED_VERBS

XAPI_VERSION = "1.0.3"
PAGE_SIZE = 100
#: Pages one sync follows per verb; the rest waits for the next sync (the cursor is kept).
MAX_PAGES = 200


class LrsConnector:
    """Pulls statements from an LRS.

    Args:
        endpoint: The LRS's xAPI endpoint, e.g. ``https://lrs.example.org/xapi/``.
        key: Basic-auth user (the LRS client's key).
        secret: Basic-auth password.
        verbs: The verb IRIs to pull (default: every verb Duly uses).
    """

    def __init__(
        self,
        endpoint: str,
        key: str,
        secret: str,
        *,
        verbs: tuple[str, ...] = PULLED_VERBS,
        page_size: int = PAGE_SIZE,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self._endpoint = endpoint if endpoint.endswith("/") else endpoint + "/"
        self._http = Http(
            self._endpoint,
            what="the LRS",
            transport=transport,
            headers={"X-Experience-API-Version": XAPI_VERSION},
            auth=(key, secret),
            sleep=sleep,
        )
        self.verbs = verbs
        self._page = page_size

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.close()

    async def test(self) -> str:
        """``GET about`` (versions), then a one-statement query to check the credentials."""
        about = await self._http.json("GET", "about")
        versions = about.get("version") if isinstance(about, dict) else None
        await self._http.json("GET", "statements", params={"limit": 1})
        return f"LRS speaking xAPI {', '.join(versions or ['?'])}"

    async def pull(self, cursor: dict[str, Any]) -> AsyncIterator[Batch]:
        """One batch per page per verb, oldest first."""
        since: dict[str, str] = dict(cursor.get("since") or {})
        for verb in self.verbs:
            params: dict[str, Any] | None = {
                "verb": verb,
                "ascending": "true",
                "limit": self._page,
            }
            if since.get(verb):
                assert params is not None
                params["since"] = since[verb]
            url = "statements"
            for page in range(MAX_PAGES):
                answer = await self._http.json("GET", url, params=params)
                if not isinstance(answer, dict) or not isinstance(answer.get("statements"), list):
                    raise ConnectorError("the LRS answered a StatementResult without statements")
                statements = [s for s in answer["statements"] if isinstance(s, dict)]
                stored = [s["stored"] for s in statements if isinstance(s.get("stored"), str)]
                if stored:
                    since[verb] = max(stored)
                yield Batch(
                    cursor={**cursor, "since": dict(since)},
                    statements=statements,
                    label=f"{verb.rsplit('/', 1)[-1]} page {page + 1}",
                )
                more = answer.get("more")
                if not more:
                    break
                # ``more`` is an IRL relative to the LRS's host; it carries the query itself.
                url, params = urljoin(self._endpoint, str(more)), None
