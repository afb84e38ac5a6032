"""Moodle through its web services REST protocol (a token; ``/webservice/rest/server.php``).

Pull: for every Moodle course the pack maps to a requirement (``moodle_course_id``), page the
enrolled users (``core_enrol_get_enrolled_users`` with ``limitfrom``/``limitnumber``) and ask
each one's course completion (``core_completion_get_course_completion_status``); a completed
course becomes a plain completion for the person whose Moodle ``idnumber`` is their external id
(else their email), dated by its latest criterion's ``timecompleted``.

Push: an open obligation for a mapped requirement enrols its person in the course
(``core_user_get_users_by_field`` by ``idnumber`` then email, ``enrol_manual_enrol_users``).

The token needs those five functions (and ``core_webservice_get_site_info`` for the connection
test). Moodle answers errors as HTTP 200 with ``{"exception", "errorcode", "message"}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx

from services.connectors.base import (
    Batch,
    Completion,
    ConnectorError,
    Enrolment,
    Http,
    Reject,
    Sleep,
)
from services.intake import CompletionIn

REST_PATH = "/webservice/rest/server.php"
#: Moodle's default "student" role id (``role_id`` in the config changes it).
STUDENT_ROLE = 5
PAGE_SIZE = 100
#: Errors that mean the token (not one user or course) is wrong: the sync stops.
_TOKEN_ERRORS = frozenset({"invalidtoken", "accessexception", "webservicesnotenabled"})


class MoodleConnector:
    """Pulls course completions from Moodle and pushes enrolments to it.

    Args:
        base_url: The Moodle site, e.g. ``https://moodle.example.org``.
        token: The web service token.
        courses: Moodle course id → requirement id (from the active pack).
        integration_id: The integration (part of every idempotency key).
        role_id: The role enrolments are given.
        page_size: Users per ``core_enrol_get_enrolled_users`` page.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        courses: dict[int, str],
        integration_id: int,
        role_id: int = STUDENT_ROLE,
        page_size: int = PAGE_SIZE,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self._http = Http(base_url.rstrip("/"), what="Moodle", transport=transport, sleep=sleep)
        self._token = token
        self.courses = courses
        self._integration = integration_id
        self._role = role_id
        self._page = page_size

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.close()

    async def call(self, function: str, **params: Any) -> Any:
        """Call a web service function; a Moodle exception raises :class:`MoodleError`."""
        form = {"wstoken": self._token, "wsfunction": function, "moodlewsrestformat": "json"}
        form.update(_flatten(params))
        answer = await self._http.json("POST", REST_PATH, data=form)
        if isinstance(answer, dict) and "exception" in answer:
            code = str(answer.get("errorcode", ""))
            message = str(answer.get("message", ""))[:200]
            if code in _TOKEN_ERRORS:
                raise ConnectorError(f"Moodle refused the token ({code}): {message}")
            raise MoodleError(code, message)
        return answer

    async def test(self) -> str:
        """``core_webservice_get_site_info``: the site's name and release."""
        info = await self.call("core_webservice_get_site_info")
        if not isinstance(info, dict):
            raise ConnectorError("Moodle answered site info that is not an object")
        return f"Moodle {info.get('release', '?')} at {info.get('sitename', '?')}"

    async def pull(self, cursor: dict[str, Any]) -> AsyncIterator[Batch]:
        """One batch per page of enrolled users per course; the last one advances ``since``.

        ``since`` (epoch seconds) is the latest completion time of a sync that recorded all it
        pulled; completions before it are not handed again (equal ones are, idempotently).
        """
        since = int(cursor.get("since", 0))
        latest = since
        for course_id, requirement_id in sorted(self.courses.items()):
            offset = 0
            while True:
                users = await self.call(
                    "core_enrol_get_enrolled_users",
                    courseid=course_id,
                    options=[
                        {"name": "limitfrom", "value": offset},
                        {"name": "limitnumber", "value": self._page},
                    ],
                )
                if not isinstance(users, list):
                    raise ConnectorError("Moodle answered enrolled users that are not a list")
                batch = Batch(cursor=dict(cursor), label=f"course {course_id} from {offset}")
                for user in users:
                    done = await self._completion(course_id, requirement_id, user, since)
                    if isinstance(done, Reject):
                        batch.rejects.append(done)
                    elif done is not None:
                        batch.completions.append(done)
                        latest = max(latest, int(done.completed_at.timestamp()))
                yield batch
                if len(users) < self._page:
                    break
                offset += len(users)
        yield Batch(cursor={**cursor, "since": latest}, label="done")

    async def _completion(
        self, course_id: int, requirement_id: str, user: dict[str, Any], since: int
    ) -> Completion | Reject | None:
        user_id = user.get("id")
        try:
            status = await self.call(
                "core_completion_get_course_completion_status", courseid=course_id, userid=user_id
            )
        except MoodleError as problem:
            # Completion tracking off for the course or the user: nothing to record for them.
            if problem.code in ("nocriteriaset", "err_nousers", "usernotenrolled"):
                return None
            raise ConnectorError(f"Moodle: {problem.code}: {problem.message}") from problem
        completion = (status or {}).get("completionstatus") or {}
        if not completion.get("completed"):
            return None
        times = [
            int(c["timecompleted"])
            for c in completion.get("completions") or []
            if isinstance(c, dict) and c.get("timecompleted")
        ]
        person = str(user.get("idnumber") or "").strip() or str(user.get("email") or "").strip()
        key = f"moodle:{self._integration}:{course_id}:{user_id}"
        payload = {"moodle_course_id": course_id, "moodle_user_id": user_id}
        if not times:
            return Reject("Moodle reports the course completed without a time", payload, key)
        when = max(times)
        if when < since:
            return None
        if not person:
            return Reject("the Moodle user has neither idnumber nor email", payload, key)
        completed_at = datetime.fromtimestamp(when, UTC)
        return Completion(
            CompletionIn(
                person=person[:320],
                requirement_id=requirement_id,
                source="moodle",
                attempt_id=f"moodle-course-{course_id}",
                idempotency_key=f"{key}:{when}"[:180],
            ),
            completed_at,
        )

    async def push(self, enrolments: list[Enrolment]) -> list[tuple[Enrolment, str | None]]:
        """Enrol each person in their course; an unknown Moodle user is reported, not raised."""
        results: list[tuple[Enrolment, str | None]] = []
        found: list[tuple[Enrolment, int]] = []
        for enrolment in enrolments:
            user_id = await self._user_id(enrolment)
            if user_id is None:
                results.append((enrolment, "no Moodle user has this idnumber or email"))
            else:
                found.append((enrolment, user_id))
        if found:
            await self.call(
                "enrol_manual_enrol_users",
                enrolments=[
                    {"roleid": self._role, "userid": user_id, "courseid": e.course_id}
                    for e, user_id in found
                ],
            )
            results.extend((e, None) for e, _ in found)
        return results

    async def _user_id(self, enrolment: Enrolment) -> int | None:
        lookups = [("idnumber", enrolment.person_external_id)]
        if enrolment.person_email:
            lookups.append(("email", enrolment.person_email))
        for field, value in lookups:
            users = await self.call("core_user_get_users_by_field", field=field, values=[value])
            if isinstance(users, list) and len(users) == 1 and isinstance(users[0], dict):
                return int(users[0]["id"])
        return None


class MoodleError(Exception):
    """A Moodle exception about one call (not the token)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Moodle's REST form encoding: ``options[0][name]=limitfrom``, ``values[0]=x``."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, dict):
            out.update(_flatten(value, name))
        elif isinstance(value, list):
            out.update(_flatten({str(i): v for i, v in enumerate(value)}, name))
        elif isinstance(value, bool):
            out[name] = "1" if value else "0"
        else:
            out[name] = str(value)
    return out
