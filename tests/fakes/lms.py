"""Local fakes of Moodle's web services REST API and of an xAPI LRS, as httpx transports.

They speak the real shapes: Moodle's ``/webservice/rest/server.php`` (form-encoded ``wstoken``,
``wsfunction``, ``moodlewsrestformat=json``; errors as HTTP 200 with ``exception``/``errorcode``;
``limitfrom``/``limitnumber`` paging) and an LRS's ``GET statements`` (``verb``, ``since``
exclusive, ``ascending``, ``limit``; a StatementResult with a relative ``more`` IRL; HTTP Basic;
``X-Experience-API-Version``). Either can answer 429 with ``Retry-After`` a number of times.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx


def _unflatten(form: dict[str, str]) -> dict[str, Any]:
    """``options[0][name]=x`` → ``{"options": {"0": {"name": "x"}}}``."""
    out: dict[str, Any] = {}
    for key, value in form.items():
        parts = re.findall(r"[^\[\]]+", key)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


@dataclass
class FakeMoodle:
    """A Moodle site: courses with enrolled users and their completion times."""

    token: str = "moodle-token"
    #: course id → list of users (id, email, idnumber).
    enrolled: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    #: (course id, user id) → timecompleted (epoch seconds).
    completed: dict[tuple[int, int], int] = field(default_factory=dict)
    #: Answer 429 this many times (with Retry-After) before answering.
    rate_limited: int = 0
    retry_after: str = "2"
    calls: list[str] = field(default_factory=list)
    enrolments: list[dict[str, str]] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/webservice/rest/server.php"
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if self.rate_limited > 0:
            self.rate_limited -= 1
            return httpx.Response(429, headers={"Retry-After": self.retry_after})
        assert form.pop("moodlewsrestformat") == "json"
        function = form.pop("wsfunction")
        self.calls.append(function)
        if form.pop("wstoken", None) != self.token:
            return httpx.Response(
                200,
                json={
                    "exception": "moodle_exception",
                    "errorcode": "invalidtoken",
                    "message": "Invalid token - token not found",
                },
            )
        params = _unflatten(form)
        # Moodle answers a function that returns nothing with the JSON literal null.
        return httpx.Response(200, content=json.dumps(getattr(self, function)(params)).encode())

    def core_webservice_get_site_info(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"sitename": "Fake Moodle", "release": "4.3 (Build: 20231009)", "functions": []}

    def core_enrol_get_enrolled_users(self, params: dict[str, Any]) -> Any:
        course = int(params["courseid"])
        if course not in self.enrolled:
            return {
                "exception": "dml_missing_record_exception",
                "errorcode": "invalidrecord",
                "message": "Can't find data record in database table course.",
            }
        options = {o["name"]: o["value"] for o in params.get("options", {}).values()}
        start = int(options.get("limitfrom", 0))
        limit = int(options.get("limitnumber", 0)) or 10**6
        return self.enrolled[course][start : start + limit]

    def core_completion_get_course_completion_status(self, params: dict[str, Any]) -> Any:
        key = (int(params["courseid"]), int(params["userid"]))
        when = self.completed.get(key)
        return {
            "completionstatus": {
                "completed": when is not None,
                "aggregation": 1,
                "completions": [
                    {
                        "type": 4,
                        "title": "Activity completion",
                        "status": "Yes" if when else "No",
                        "complete": when is not None,
                        "timecompleted": when,
                        "details": {"type": "Activity completion", "criteria": "Quiz"},
                    }
                ],
            },
            "warnings": [],
        }

    def core_user_get_users_by_field(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        field_name = params["field"]
        value = params["values"]["0"]
        users = {u["id"]: u for users in self.enrolled.values() for u in users}
        return [u for u in users.values() if str(u.get(field_name)) == value]

    def enrol_manual_enrol_users(self, params: dict[str, Any]) -> None:
        self.enrolments.extend(params["enrolments"].values())
        return None


@dataclass
class FakeLrs:
    """An LRS holding statements (each with ``stored``), paging ``limit`` at a time."""

    key: str = "lrs-key"
    secret: str = "lrs-secret"
    statements: list[dict[str, Any]] = field(default_factory=list)
    rate_limited: int = 0
    retry_after: str = "3"
    #: Answer this HTTP status to statements queries (once) instead of statements.
    fail_with: int | None = None
    queries: list[dict[str, str]] = field(default_factory=list)
    #: ``more`` token → the statements left and the page size (the IRL carries the query).
    _pages: dict[str, tuple[list[dict[str, Any]], int]] = field(default_factory=dict)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Experience-API-Version"] == "1.0.3"
        expected = base64.b64encode(f"{self.key}:{self.secret}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return httpx.Response(401, json={"message": "Unauthorized"})
        if self.rate_limited > 0:
            self.rate_limited -= 1
            return httpx.Response(429, headers={"Retry-After": self.retry_after})
        path = request.url.path
        if path.endswith("/about"):
            return httpx.Response(200, json={"version": ["1.0.3"]})
        assert path.endswith("/statements"), path
        if self.fail_with is not None:
            status, self.fail_with = self.fail_with, None
            return httpx.Response(status, json={"message": "boom"})
        query = dict(request.url.params)
        self.queries.append(query)
        limit = int(query.get("limit", 0))
        if "more" in query:
            rest, limit = self._pages.pop(query["more"])
        else:
            rest = [
                s
                for s in sorted(self.statements, key=lambda s: s["stored"])
                if (not query.get("verb") or s["verb"]["id"] == query["verb"])
                and (not query.get("since") or s["stored"] > query["since"])
            ]
        limit = limit or len(rest) or 1
        page, remaining = rest[:limit], rest[limit:]
        more = ""
        if remaining:
            token = f"p{len(self.queries)}"
            self._pages[token] = (remaining, limit)
            more = f"/xapi/statements?more={token}"
        return httpx.Response(200, json={"statements": page, "more": more})
